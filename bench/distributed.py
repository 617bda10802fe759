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
mix (their dossiers grow as their codes come again); the pages done are read from the object
store each 10 s, and the table gives pages per minute in each tenth of the
batch: steady means the last tenth as fast as the first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import time
import uuid
from itertools import pairwise
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
        from moto.server import ThreadedMotoServer

        from storage.s3 import S3ObjectStore

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        scene.cleanups.append(moto.stop)
        host, port_s3 = moto.get_host_and_port()
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
        time.sleep(0.5)


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
            say(f"{kind}: {pages} pages in {took:.1f} s ({status})")
            return took, status
    finally:
        scene.close()


def steady(pdf: Path, pages: int, opts: Options, s3: bool) -> list[tuple[float, int]]:
    scene = Scene("steady", opts)
    try:
        with contextlib.ExitStack() as stack:
            api, store = distributed(scene, stack, s3)
            took, status, progress = timed(api, pdf, scene, pages, store)
            say(f"steady: {pages} pages in {took:.1f} s ({status})")
            return progress
    finally:
        scene.close()


def tenths(progress: list[tuple[float, int]], pages: int) -> list[float]:
    """Pages per minute within each tenth of the batch (by pages done, interpolated in time)."""
    def time_at(done: float) -> float:
        for (t0, p0), (t1, p1) in pairwise(progress):
            if p1 >= done:
                return t0 + (t1 - t0) * ((done - p0) / (p1 - p0) if p1 > p0 else 1.0)
        return progress[-1][0]
    marks = [time_at(pages * k / 10) for k in range(11)]
    return [pages / 10 / (b - a) * 60 if b > a else float("nan") for a, b in pairwise(marks)]


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
            progress = steady(work / "long.pdf", count, opts, args.steady_s3)
            rates = tenths(progress, count)
            where = "S3 (moto)" if args.steady_s3 else "local disk"
            print(f"\n{count} pages, distributed (PostgreSQL, Redis, {where}): "
                  f"{progress[-1][0]:.0f} s, "
                  f"{count / progress[-1][0] * 60:.1f} pages per minute")
            print("| tenth | " + " | ".join(str(k + 1) for k in range(10)) + " |")
            print("|---|" + "---|" * 10)
            print("| pages per minute | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
    finally:
        files.close()


if __name__ == "__main__":
    main()
