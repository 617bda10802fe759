"""As fast past one machine: the benchmark batch through `sohoa ingest` (no server, no broker),
through `sohoa serve` on embedded defaults (local disk, SQLite, the embedded broker, its own 2
workers) and through `sohoa serve --no-worker` plus two `sohoa worker --concurrency 1` processes
on PostgreSQL, Redis and S3 (moto's server), alternating; then a long batch through the
distributed set-up, its pages per minute measured as it goes (on PostgreSQL and Redis, the objects
on local disk: moto's server holds every object in memory and ran this 24 GB machine out of it at
1,000 pages; `--steady-s3` to try).

    .venv/bin/python bench/distributed.py --pages 24 --repeat 3     # embedded vs distributed
    .venv/bin/python bench/distributed.py --steady 1000 --repeat 0  # a 1,000-page batch

Each server run uploads the batch (bench/ocr_throughput.py's mix: receipts, ID cards, prose pages skewed up
to ±10°, blank backs) with POST /api/v1/batches once its servers and workers are up, and is timed
from the upload to the batch's final status (GET /api/v1/batches/{id}, polled every 0.5 s). Every
run starts from empty storage and a new database. The long batch repeats six 24-page parts of the
mix (their dossiers grow as their codes come again). Its table takes the pages in the order they
were done, by tenths: pages per minute, each page's own work (its stages' seconds) and the rest of
its task's time (queueing, leases, reading and storing, the catalog). Pages are queued heaviest
first, so pages per minute rise as they lighten; steady means the rest of the task does not grow
as the catalog and the queue do. The last column, pages per minute at the batch's mean page (the
page work got through per minute, over the mean page's work), is what the heaviest-first order
does not move: a slowdown as the batch grows would show there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from faults import (  # noqa: E402
    READY,
    Api,
    Scene,
    broker_url,
    free_port,
    say,
    wait_for,
)
from ocr_throughput import SKEWS, long_pdf, make_batch  # noqa: E402
from procmon import compiled  # noqa: E402

from tests.databases import fresh_postgres  # noqa: E402

FINAL = ("done", "needs_review", "failed")


class Options(argparse.Namespace):
    """What bench/faults.py's Scene reads of its options."""

    fast = False
    keep = False


def embedded(scene: Scene) -> Api:
    env = scene.env()
    port = free_port()
    api = Api(port, _key(env))
    serve = scene.start("serve", ["serve", "--port", str(port)], env)
    wait_for(api.answers, 120, "serve answering", scene, alive=(serve,), poll=0.3)
    return api


def distributed(scene: Scene, stack: contextlib.ExitStack, s3: bool = True) -> tuple[Api, object]:
    """serve --no-worker and two workers on PostgreSQL, Redis and S3 (moto), or with `s3=False`
    the local disk they share; (api, store)."""
    from storage.objects import LocalObjectStore

    database = stack.enter_context(fresh_postgres())
    env = scene.env(broker_url(scene, "redis"), SOHOA_DATABASE_URL=database)
    store: object = LocalObjectStore(scene.objects)
    if s3:
        from storage.s3 import S3ObjectStore

        # moto's server in a process of its own, new for every run, as MinIO would be: in this
        # process its objects would stay from run to run (moto's state is the process's), and
        # its requests would share this process's interpreter with the status polls.
        host, port_s3 = "127.0.0.1", free_port()
        moto = scene.start("moto", ["-H", host, "-p", str(port_s3)], os.environ.copy(),
                           program=[str(Path(sys.executable).with_name("moto_server"))])
        wait_for(lambda: _answers(host, port_s3), 60, "moto answering", scene, alive=(moto,))
        bucket = f"sohoa-{uuid.uuid4().hex[:12]}"
        env.update(SOHOA_S3_ENDPOINT=f"{host}:{port_s3}", SOHOA_S3_ACCESS_KEY="test",
                   SOHOA_S3_SECRET_KEY="test", SOHOA_S3_SECURE="false",
                   SOHOA_S3_REGION="us-east-1", SOHOA_S3_BUCKET=bucket)
        store = S3ObjectStore.connect(f"{host}:{port_s3}", "test", "test", bucket, secure=False,
                                      region="us-east-1")
    port = free_port()
    api = Api(port, _key(env))
    serve = scene.start("serve", ["serve", "--no-worker", "--port", str(port)], env)
    workers = [scene.start(f"worker-{i}", ["worker", "--concurrency", "1"], env) for i in (1, 2)]
    alive = (serve, *workers)
    wait_for(api.answers, 120, "serve answering", scene, alive=alive, poll=0.3)
    for w in workers:
        wait_for(lambda w=w: READY.search(w.text()), 120, f"{w.label} ready", scene, alive=alive)
    return api, store


def _answers(host: str, port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _key(env: dict[str, str]) -> str:
    from faults import api_key

    return api_key(env)


def timed(api: Api, pdf: Path, scene: Scene, pages: int, store: object | None = None,
          every: float = 10.0) -> tuple[float, str, list[tuple[float, int]]]:
    """(seconds from upload to final status, status, [(seconds, pages done)] every `every` s when
    `store` is given)."""
    from faults import pages_done

    batch_id, _ = api.post(pdf)
    start = time.monotonic()
    progress: list[tuple[float, int]] = [(0.0, 0)]
    next_at = every
    while True:
        found = api.get(f"/batches/{batch_id}")
        if found.get("status") in FINAL:
            took = time.monotonic() - start
            progress.append((took, pages))
            return took, str(found["status"]), progress
        now = time.monotonic() - start
        if store is not None and now >= next_at:
            progress.append((now, pages_done(store, batch_id)))
            next_at += every
        if now > 4 * 3600:
            raise SystemExit("the batch did not finish in 4 hours")
        time.sleep(0.5)  # a client watching the batch; each poll is audited and reads the store


def ingest(scene: Scene, pdf: Path) -> tuple[float, str]:
    """`sohoa ingest` of the file: the same machine without a broker or a server (its start-up,
    about a second, counted)."""
    import json
    import subprocess

    from faults import SOHOA

    start = time.monotonic()
    out = subprocess.run([str(SOHOA), "ingest", "--json", str(pdf)], env=scene.env(),
                         capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - start
    if out.returncode:
        raise SystemExit(f"sohoa ingest failed: {out.stderr[-2000:]}")
    return took, json.loads(out.stdout)["batches"][0]["status"]


def one_run(kind: str, pdf: Path, pages: int, opts: Options) -> tuple[float, str]:
    scene = Scene(f"{kind}", opts)
    try:
        with contextlib.ExitStack() as stack:
            if kind == "ingest":
                took, status = ingest(scene, pdf)
                say(f"{kind}: {pages} pages in {took:.1f} s ({status})")
                return took, status
            api = embedded(scene) if kind == "embedded" else distributed(scene, stack)[0]
            took, status, _ = timed(api, pdf, scene, pages)
            # the longest: a finish task delivered twice logs its second run (~0.01 s) too
            finish = sorted((float(m[1]) for p in scene.procs
                             for m in FINISH_DONE.finditer(p.text())), reverse=True)
            say(f"{kind}: {pages} pages in {took:.1f} s ({status}); the batch's finish task: "
                + (f"{finish[0]:.2f} s" if finish else "not in the logs"))
            return took, status
    finally:
        scene.close()


FINISH_DONE = re.compile(r"sohoa\.finish_batch\[[0-9a-f-]+\] succeeded in ([\d.]+)s")
TASK_DONE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]*\] Task "
                       r"sohoa\.process_page\[[0-9a-f-]+\] succeeded in ([\d.]+)s: (\d+)", re.M)


@dataclass
class PageDone:
    at: float  # seconds since the first page finished
    task_s: float  # the task's wall time, as Celery logged it
    work_s: float  # the page's own stages (its facts' `seconds`)


def steady(pdf: Path, pages: int, opts: Options, s3: bool
           ) -> tuple[list[tuple[float, int]], list[PageDone]]:
    """The long batch: (pages done every 10 s, each page task as the workers logged it)."""
    scene = Scene("steady", opts)
    try:
        with contextlib.ExitStack() as stack:
            api, store = distributed(scene, stack, s3)
            took, status, progress = timed(api, pdf, scene, pages, store)
            say(f"steady: {pages} pages in {took:.1f} s ({status})")
            return progress, _page_tasks(scene, store)
    finally:
        scene.close()


def _page_tasks(scene: Scene, store: object) -> list[PageDone]:
    import json
    from datetime import datetime

    found = []
    for proc in scene.procs:
        for m in TASK_DONE.finditer(proc.text()):
            at = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((at, float(m[2]), int(m[3])))
    batch = next(k.split("/")[1] for k in store.list("batches/"))  # type: ignore[attr-defined]
    out = []
    first = min(at for at, _s, _i in found)
    for at, task_s, index in sorted(found):
        facts = json.loads(store.get(f"batches/{batch}/pages/{index:05d}.json"))  # type: ignore[attr-defined]
        out.append(PageDone(at - first, task_s, sum(facts.get("seconds", {}).values())))
    return out


def by_tenths(done: list[PageDone]) -> list[tuple[int, float, float, float]]:
    """Per tenth of the pages in the order they finished: (pages, pages per minute, the pages'
    own work in s per page, the rest of their tasks' time in s per page). Pages are queued
    heaviest first, so pages per minute rise as the pages lighten; the rest of a task's time (its
    queueing, leases, reading and storing, the catalog) is what would grow with the catalog and
    the queue."""
    out = []
    n = len(done)
    for k in range(10):
        part = done[n * k // 10:n * (k + 1) // 10]
        if not part:
            continue
        start = done[n * k // 10 - 1].at if k else 0.0
        span = max(part[-1].at - start, 1e-9)
        work = sum(p.work_s for p in part) / len(part)
        rest = sum(p.task_s - p.work_s for p in part) / len(part)
        out.append((len(part), len(part) / span * 60, work, rest))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each set-up, alternating")
    ap.add_argument("--steady", type=int, default=0, metavar="N", help="also an N-page batch")
    ap.add_argument("--steady-s3", action="store_true",
                    help="the long batch on moto too (it holds every object in memory: ~23 GB "
                         "at 1,000 pages, more than this machine has); by default on local disk")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory")
    args = ap.parse_args()
    opts = Options(keep=args.keep)
    compiled(ROOT)
    files = Scene("batch", opts)  # a directory removed at the end (--keep keeps it)
    try:
        work = files.dir
        if args.repeat:
            batch = make_batch(args.pages, SKEWS)
            pdf, pages = batch.write_pdf(work / "batch.pdf"), len(batch.pages)
            del batch
        runs: dict[str, list[float]] = {"ingest": [], "embedded": [], "distributed": []}
        for _ in range(args.repeat):
            for kind in runs:
                took, status = one_run(kind, pdf, pages, opts)
                if status not in ("done", "needs_review"):
                    raise SystemExit(f"{kind}: batch {status}")
                runs[kind].append(took)
        if args.repeat:
            print("| set-up | pages | seconds (median) | runs | pages per minute |")
            print("|---|---|---|---|---|")
            for kind, times in runs.items():
                med = statistics.median(times)
                print(f"| {kind} | {pages} | {med:.1f} | {', '.join(f'{t:.1f}' for t in times)} | "
                      f"{pages / med * 60:.1f} |")
            distributed_s = statistics.median(runs["distributed"])
            for kind in ("embedded", "ingest"):
                ratio = statistics.median(runs[kind]) / distributed_s
                print(f"\ndistributed / {kind} throughput: {ratio:.2f}")
        if args.steady:
            count = long_pdf(args.steady, work / "long.pdf")
            progress, done = steady(work / "long.pdf", count, opts, args.steady_s3)
            where = "S3 (moto)" if args.steady_s3 else "local disk"
            all_done = next((t for t, n in progress if n >= count), progress[-1][0])
            print(f"\n{count} pages, distributed (PostgreSQL, Redis, {where}): "
                  f"{progress[-1][0]:.0f} s, {count / progress[-1][0] * 60:.1f} pages per minute; "
                  f"every page done at {all_done:.0f} s, then the batch's finish (its dossiers "
                  f"assembled and stored, one task): {progress[-1][0] - all_done:.0f} s")
            mean_work = statistics.fmean(p.work_s for p in done)
            print("\n| tenth (pages in the order done) | pages | pages per minute | "
                  "page work s/page | rest of the task s/page | pages per minute at the mean page |")
            print("|---|---|---|---|---|---|")
            for k, (n, rate, work_s, rest_s) in enumerate(by_tenths(done), 1):
                print(f"| {k} | {n} | {rate:.1f} | {work_s:.2f} | {rest_s:.3f} | "
                      f"{rate * work_s / mean_work:.1f} |")
    finally:
        files.close()


if __name__ == "__main__":
    main()
