"""Faults and recovery, end to end with real processes: what an office gets when a worker is killed,
`sohoa serve` is stopped, the registry or the object store goes away, two workers share a machine,
or the API dies in the middle of an upload; and what it gets from partial, corrupt and huge input
(issue 10).

    .venv/bin/python bench/faults.py                  # production recovery defaults (~40 min)
    .venv/bin/python bench/faults.py --fast           # lease 6 s, watchdog tick 2 s, backoff 2 s
    .venv/bin/python bench/faults.py --only kill-worker,registry-down --outage 60 --keep

Scenarios (`--only` takes names or prefixes, comma-separated or repeated):

    kill-worker-embedded|redis|amqp   kill -9 of a worker's process group mid-batch, a new worker at
                                      once: time from the kill to `done`
    serve-sigterm|sigint|sigterm-twice   a signal to `sohoa serve` mid-batch: time to exit, exit
                                      status, processes left in its session; serve again: time to
                                      `done`
    registry-down                     the registry answers 503 for --outage s: states seen, time from
                                      its answering again to `done`
    store-down                        S3 (moto behind a proxy we cut) gone for --outage s once a page
                                      is stored: time from its return to `done`
    two-workers-embedded|redis|amqp   two `sohoa worker` on one machine and broker: both stay up, the
                                      batch finishes, both exit statuses after SIGTERM
    api-killed-mid-upload             serve killed with half an upload received, then with the upload
                                      being written to incoming/: no batch, the leftover kept while
                                      young and removed at the next start once older than an hour

Partial, corrupt and huge input (issue 10): each must be marked, explained, and never pass for a
complete dossier.

    jammed-rescan                     `sohoa scan` of a 3-page dossier on the eSCL emulator (v1), then
                                      a rescan that jams after one sheet (exit 2): the dossier stays
                                      v1, the rescan waits in review (incomplete_rescan), no feed
                                      event; time of the rescan
    cut-ftp-upload                    serve's FTP receiver; an ftplib client process uploading a
                                      3-page dossier (throttled) is SIGKILLed at ~40%, for a PDF in
                                      page order and one linearized (page tree at the end): batch
                                      incomplete, dossier held (incomplete_scan), no version; time
                                      from the kill to the batch settled
    folder-slow-writes                serve's watched folder; writer processes put a JPEG and a
                                      3-page TIFF in 4 open/append/close rounds, pausing longer than
                                      the settle time: one batch per file, not incomplete, original
                                      byte-identical; time from the last byte to settled
    corrupt-pages                     the sample with garbage DCT, Flate, JBIG2 and CCITT pages slipped
                                      in, through the API: each a failed page `corrupt: ...`, the
                                      batch needs_review, both dossiers made of their good pages
    tiny-and-complex                  a 1x1 PNG and a page of 300,000 vector strokes through the API,
                                      SOHOA_RENDER_SECONDS=10: too_small and too_complex failed
                                      pages, settled in about the render limit, no pdftoppm left
    big-beside-small                  a 3,000-page PDF through the API (time to its 202), the 7-page
                                      sample right after: time for it to be done while the big one
                                      is still processing; then serve is stopped

Each scenario runs in its own temporary directory (data, logs, TMPDIR; removed unless --keep), on
free ports, a Redis database nobody uses and a RabbitMQ virtual host of its own (made with
rabbitmqctl when it can be, else `/`); whatever it started is killed with its whole session at the
end, even on error. Progress goes to stderr, the table (markdown) to stdout.

"Pages stored once": every page of the batch has its one facts object and every dossier exactly one
version, v0001, made by this batch; "page tasks twice" counts pages whose process_page task
succeeded more than once in the worker logs (a second delivery finds the page done or waits for the
lease of the worker holding it; it does not store the page again). For partial input it says
which versions exist (none, or only the complete one) and what the held or stored original holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import mimetypes
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults import (  # noqa: E402
    Cuttable,
    Group,
    Registry,
    free_port,
    kill_session,
    session,
    submit_file,
)

SAMPLE = ROOT / "examples" / "sample-batch.pdf"  # 7 pages: two dossiers and a blank page
SOHOA = Path(sys.executable).parent / "sohoa"
FAST = {"lease_s": 6, "tick_s": 2, "backoff_s": 2}
DEFAULTS = {"lease_s": 60, "tick_s": 15, "backoff_s": 30, "backoff_max_s": 300, "task_retries": 3}
FINAL = ("done", "needs_review", "failed")
REQUIRED_S = 120.0  # issue 9: a lost task comes back within 2 minutes of a live worker
SUCCEEDED = re.compile(r"sohoa\.process_page\[[0-9a-f-]+\] succeeded in [\d.]+s: (\d+)")
READY = re.compile(r"(\S+@\S+) ready\.")
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[faults {time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A scenario could not go on: what was awaited did not come."""


# ---- processes ----------------------------------------------------------------------------------


class Proc(Group):
    """A sohoa command (or, with `program`, a client such as a `python -c` uploader) in a session
    of its own (tests.faults.Group), logged to a file. `kill` ends its whole session: `sohoa
    serve` runs its worker in a process group of its own."""

    def __init__(self, label: str, args: list[str], env: dict[str, str], log: Path,
                 program: list[str] | None = None) -> None:
        super().__init__([*(program or [str(SOHOA)]), *args], env, log)
        self.label = label
        self.sid = self.proc.pid
        self.started = time.monotonic()
        self._killed = False

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        """To its main process only, as systemd or `kill PID` would."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def exited_within(self, limit: float) -> tuple[int | None, float]:
        """(exit status or None if still running after `limit` s, seconds waited)."""
        start = time.monotonic()
        try:
            code: int | None = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def left(self, within: float = 2.0) -> list[str]:
        """What is left of its session after `within` s (exiting processes get that long)."""
        deadline = time.monotonic() + within
        while (found := session(self.sid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def kill(self) -> None:
        """SIGKILL to every process of its session, whatever group it is in."""
        if self._killed:
            return
        self._killed = True
        kill_session(self.sid, self.proc)
        super().kill()

    def stop(self, limit: float = 40.0) -> tuple[int | None, float, list[str]]:
        """SIGTERM to its main process: (exit status, seconds, processes left); then kill."""
        self.signal(signal.SIGTERM)
        code, took = self.exited_within(limit)
        left = self.left() if code is not None else session(self.sid)
        self.kill()
        return code, took, left


class Scene:
    """One scenario's directory, environment and processes; `close` leaves nothing running."""

    def __init__(self, name: str, opts: argparse.Namespace) -> None:
        self.name, self.opts = name, opts
        self.dir = Path(tempfile.mkdtemp(prefix=f"sohoa-faults-{name}-"))
        (self.dir / "tmp").mkdir()
        self.objects = self.dir / "data" / "objects"
        self.procs: list[Proc] = []
        self.cleanups: list[Callable[[], None]] = []

    def env(self, broker: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
        env.update(SOHOA_DATA_DIR=str(self.dir / "data"), SOHOA_WORKERS="2",
                   SOHOA_SCANNER_DISCOVERY="false", TMPDIR=str(self.dir / "tmp"), **extra)
        if self.opts.fast:
            env["SOHOA_RECOVERY"] = json.dumps(FAST)
        if broker:
            env["SOHOA_BROKER_URL"] = broker
        return env

    def start(self, label: str, args: list[str], env: dict[str, str],
              program: list[str] | None = None) -> Proc:
        proc = Proc(label, args, env, self.dir / f"{label}.log", program)
        self.procs.append(proc)
        shown = "python -c …" if program else "sohoa"
        say(f"{self.name}: started {label} (pid {proc.sid}): {shown} {' '.join(args)}")
        return proc

    def client(self, label: str, code: str, *args: str) -> Proc:
        """A client process (`python -c code args`): a scanner's uploader, a folder writer."""
        return self.start(label, list(args), {**os.environ, "TMPDIR": str(self.dir / "tmp")},
                          program=[sys.executable, "-c", code])

    def tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.label} ({p.log})\n{p.text()[-chars:]}" for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.kill()
            except Exception as e:  # keep killing the others
                say(f"{self.name}: could not kill {proc.label}: {e}")
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as e:
                say(f"{self.name}: cleanup: {e}")
        if self.opts.keep:
            say(f"{self.name}: kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, scene: Scene,
             alive: tuple[Proc, ...] = (), poll: float = 0.2) -> tuple[Any, float]:
    """(the condition's value, seconds) once true; Failed after `timeout` s or if one of `alive`
    exits meanwhile."""
    start = time.monotonic()
    while True:
        value = condition()
        if value:
            return value, time.monotonic() - start
        for proc in alive:
            if proc.proc.poll() is not None:
                raise Failed(f"{proc.label} exited ({proc.proc.returncode}) while waiting for {what}")
        if time.monotonic() - start > timeout:
            raise Failed(f"no {what} after {timeout:.0f} s")
        time.sleep(poll)


# ---- brokers ------------------------------------------------------------------------------------


def broker_url(scene: Scene, broker: str) -> str | None:
    if broker == "embedded":
        return None
    if broker == "redis":
        import redis

        # Nobody connected to it, nothing queued in it (other runs may have left Celery's
        # bindings behind: harmless); emptied at the end if it was empty at the start.
        used = {int(c["db"]) for c in redis.Redis(host="127.0.0.1", port=6379).client_list()}
        for db in random.sample(range(1, 16), 15):
            client = redis.Redis(host="127.0.0.1", port=6379, db=db)
            if db in used or client.llen("sohoa") or client.exists("unacked"):
                continue
            if client.dbsize() == 0:
                scene.cleanups.append(client.flushdb)
            return f"redis://127.0.0.1:6379/{db}"
        raise Failed("no idle Redis database")
    # RabbitMQ: a virtual host of our own, so that nobody else's worker takes our tasks
    vhost = f"sohoa-faults-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctl = shutil.which("rabbitmqctl")
    try:
        if ctl is None:
            raise OSError("no rabbitmqctl")
        for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
            subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        say(f"{scene.name}: RabbitMQ virtual host not made ({e}): using /")
        return "amqp://guest:guest@127.0.0.1:5672//"
    scene.cleanups.append(lambda: subprocess.run([ctl, "delete_vhost", vhost], capture_output=True,
                                                 timeout=60, check=False))
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


# ---- batches ------------------------------------------------------------------------------------


def make_batch(copies: int, out: Path) -> Path:
    """The sample `copies` times over: different bytes from the sample, same two dossiers (a code
    seen again continues its dossier), 7 x `copies` pages. Each copy is opened anew so that its
    streams are copied, not shared."""
    import pikepdf

    with pikepdf.new() as pdf:
        for _ in range(copies):
            source = pikepdf.open(SAMPLE)
            pdf.pages.extend(source.pages)
        pdf.save(out)
    return out


def submit(env: dict[str, str], path: Path) -> str:
    try:
        return submit_file(env, path)
    except RuntimeError as e:
        raise Failed(str(e)) from None


def api_key(env: dict[str, str]) -> str:
    out = subprocess.run([str(SOHOA), "apikey", "create", "--role", "scanner", "--agency", "*"],
                         env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise Failed(f"apikey create failed: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


class Api:
    def __init__(self, port: int, key: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self.headers = {"Authorization": f"Bearer {key}"}

    def answers(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base}/batches/x", timeout=5).status_code == 401
        except httpx.TransportError:
            return False

    def upload(self, path: Path) -> str:
        return self.post(path)[0]

    def post(self, path: Path) -> tuple[str, float]:
        """(batch id, seconds to the 202 answer) of an upload of `path`."""
        import httpx

        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        start = time.monotonic()
        with path.open("rb") as f:
            created = httpx.post(f"{self.base}/batches", headers=self.headers, timeout=300,
                                 files={"file": (path.name, f, mime)})
        took = time.monotonic() - start
        if created.status_code != 202:
            raise Failed(f"upload answered {created.status_code}: {created.text[:500]}")
        return created.json()["batch_id"], took

    def get(self, path: str) -> dict[str, Any]:
        """GET {base}{path} as this key; {} when it does not answer 200 (not there yet)."""
        import httpx

        try:
            found = httpx.get(f"{self.base}{path}", headers=self.headers, timeout=30)
        except httpx.TransportError:
            return {}
        return found.json() if found.status_code == 200 else {}

    def settled(self, batch_id: str) -> Callable[[], dict[str, Any] | None]:
        """The batch as GET /batches/{id} answers it, once its status is final."""
        def check() -> dict[str, Any] | None:
            found = self.get(f"/batches/{batch_id}")
            return found if found.get("status") in FINAL else None
        return check


def local_store(scene: Scene) -> Any:
    from storage.objects import LocalObjectStore

    return LocalObjectStore(scene.objects)


def record(store: Any, batch_id: str) -> dict[str, Any]:
    try:
        return json.loads(store.get(f"batches/{batch_id}/batch.json"))
    except Exception:  # not there yet, or the store is down
        return {}


def pages_done(store: Any, batch_id: str) -> int:
    try:
        return len([k for k in store.list(f"batches/{batch_id}/pages/") if k.endswith(".json")])
    except Exception:
        return 0


def finished(store: Any, batch_id: str) -> Callable[[], str | None]:
    def check() -> str | None:
        status = record(store, batch_id).get("status")
        return status if status in FINAL else None
    return check


def stored_once(store: Any, batch_id: str) -> str:
    """Every page has its facts object, every dossier exactly one version (v0001) of this batch."""
    done = record(store, batch_id)
    pages = int(done.get("pages") or 0)
    facts = sorted(k for k in store.list(f"batches/{batch_id}/pages/") if k.endswith(".json"))
    expected = [f"batches/{batch_id}/pages/{i:05d}.json" for i in range(pages)]
    problems = []
    if not pages or facts != expected:
        problems.append(f"page facts {len(facts)} for {pages} pages")
    codes = [d["dossier_id"] for d in done.get("dossiers") or []]
    stored_codes = {k.split("/")[1] for k in store.list("dossiers/")}
    if set(codes) != stored_codes or len(codes) != len(set(codes)):
        problems.append(f"dossiers in the record {codes}, in the store {sorted(stored_codes)}")
    for code in codes:
        manifests = sorted(k for k in store.list(f"dossiers/{code}/") if k.endswith("/manifest.json"))
        if manifests != [f"dossiers/{code}/v0001/manifest.json"]:
            problems.append(f"{code}: {[m.split('/')[2] for m in manifests]}")
        elif json.loads(store.get(manifests[0])).get("batch_id") != batch_id:
            problems.append(f"{code}: v0001 made by another batch")
    if problems:
        return "NO: " + "; ".join(problems)
    return f"yes ({pages}/{pages} pages, {len(codes)} dossiers v0001)"


def tasks_twice(*logs: Path) -> dict[int, int]:
    """Pages whose process_page task succeeded more than once, with how many times."""
    counts: Counter[int] = Counter()
    for log in logs:
        if log.exists():
            counts.update(int(n) for n in SUCCEEDED.findall(log.read_text(errors="replace")))
    return {n: c for n, c in sorted(counts.items()) if c > 1}


def twice_text(twice: dict[int, int]) -> str:
    return (f"page tasks twice: {len(twice)} ({', '.join(f'p{n}x{c}' for n, c in twice.items())})"
            if twice else "page tasks twice: 0")


def leases_held(scene: Scene, batch_id: str) -> list[str]:
    path = scene.dir / "data" / "catalog.sqlite3"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return [k for (k,) in db.execute("SELECT key FROM leases WHERE batch_id = ?", (batch_id,))]
    except sqlite3.Error:
        return []


class Watcher:
    """Follows a batch's status in the background: the states it went through."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read
        self.seen: list[str] = []
        self.tries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(0.5)
            with contextlib.suppress(Exception):
                found = self.read() or {}
                status = found.get("status")
                if status == "waiting":
                    waiting = found.get("waiting_for") or {}
                    status = f"waiting ({waiting.get('dependency')})"
                    self.tries = max(self.tries, int(waiting.get("tries") or 0))
                if status and (not self.seen or self.seen[-1] != status):
                    self.seen.append(status)
            if stopping:  # a last look once stopped
                return

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(5)
        return " → ".join(self.seen)


@dataclass
class Row:
    scenario: str
    outcome: str
    once: str = "—"
    recover: str = "—"
    note: str = ""


def secs(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


# ---- 1. kill -9 a worker mid-batch ---------------------------------------------------------------


def kill_worker(scene: Scene, broker: str, batch: Path) -> Row:
    env = scene.env(broker_url(scene, broker))
    store = local_store(scene)
    first = scene.start("worker-a", ["worker", "--concurrency", "2"], env)
    batch_id = submit(env, batch)
    say(f"{scene.name}: batch {batch_id} submitted")
    pages = record(store, batch_id).get("pages") or 7
    threshold = max(2, pages // 4)
    wait_for(lambda: pages_done(store, batch_id) >= threshold, 600, f"{threshold} pages done",
             scene, alive=(first,))
    first.kill()  # SIGKILL to the worker, its pool processes and their Tesseract children
    killed_at = time.monotonic()
    at_kill, in_hand = pages_done(store, batch_id), leases_held(scene, batch_id)
    say(f"{scene.name}: killed worker-a at {at_kill}/{pages} pages ({len(in_hand)} leases held)")
    if at_kill >= pages:
        return Row(scene.name, "no test: all pages done before the kill")
    second = scene.start("worker-b", ["worker", "--concurrency", "2"], env)
    status, _ = wait_for(finished(store, batch_id), 1800, "batch finished", scene, alive=(second,))
    took = time.monotonic() - killed_at
    say(f"{scene.name}: batch {status} {took:.1f} s after the kill")
    text = stored_once(store, batch_id)
    code, stop_s, left = second.stop()
    twice = tasks_twice(first.log, second.log)
    outcome = status if took <= REQUIRED_S else f"{status} (over the {REQUIRED_S:.0f} s required)"
    return Row(scene.name, outcome, text, secs(took),
               f"killed at {at_kill}/{pages} pages, {len(in_hand)} in hand; {twice_text(twice)}; "
               f"new worker stopped: status {code} in {stop_s:.1f} s, {len(left)} left")


# ---- 2. signals to sohoa serve ------------------------------------------------------------------


def serving(scene: Scene, env: dict[str, str], label: str, port: int, api: Api) -> Proc:
    serve = scene.start(label, ["serve", "--port", str(port)], env)
    wait_for(api.answers, 120, f"{label} answering", scene, alive=(serve,), poll=0.3)
    return serve


def stop_serve(scene: Scene, how: str, batch: Path) -> Row:
    env, port = scene.env(), free_port()
    api, store = Api(port, api_key(env)), local_store(scene)
    serve = serving(scene, env, "serve-1", port, api)
    batch_id = api.upload(batch)
    pages = record(store, batch_id).get("pages") or 7
    threshold = max(2, pages // 4)
    wait_for(lambda: pages_done(store, batch_id) >= threshold, 600, f"{threshold} pages done",
             scene, alive=(serve,))
    before = len(session(serve.sid))
    at_signal = pages_done(store, batch_id)
    sig = signal.SIGINT if how == "sigint" else signal.SIGTERM
    serve.signal(sig)
    if how == "sigterm-twice":
        time.sleep(1)
        serve.signal(signal.SIGTERM)
    code, took = serve.exited_within(60)
    left = serve.left() if code is not None else session(serve.sid)
    at_exit = pages_done(store, batch_id)
    state = record(store, batch_id).get("status")
    say(f"{scene.name}: serve exited {code} in {took:.1f} s, {len(left)} left, batch {state} "
        f"{at_exit}/{pages}")
    forced = [ln.strip() for ln in serve.text().splitlines()
              if "did not stop: killed" in ln or "processes left behind" in ln]
    serve.kill()
    if state in FINAL:
        return Row(scene.name, f"no test: batch {state} at the stop")
    again = serving(scene, env, "serve-2", port, api)
    restarted = again.started
    status, _ = wait_for(finished(store, batch_id), 1800, "batch finished", scene, alive=(again,))
    took_again = time.monotonic() - restarted
    text = stored_once(store, batch_id)
    code2, stop2, left2 = again.stop()
    twice = tasks_twice(serve.log, again.log)
    clean = code is not None and not left and (code == 0 or how == "sigterm-twice")
    outcome = (f"{status}; exit {'none (still running)' if code is None else code} in {took:.1f} s, "
               f"{len(left)} left")
    if not clean:
        outcome += " (NOT clean)"
    return Row(scene.name, outcome, text, f"{secs(took_again)} after restart",
               f"{before} processes in its session; signal at {at_signal}/{pages} pages, "
               f"{at_exit}/{pages} at exit; {'; '.join(forced) + '; ' if forced else ''}"
               f"{twice_text(twice)}; second serve stopped: status "
               f"{code2} in {stop2:.1f} s, {len(left2)} left")


# ---- 3. the registry down -----------------------------------------------------------------------


def registry_down(scene: Scene, batch: Path) -> Row:
    Registry.up.clear()
    Registry.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scene.cleanups.append(server.server_close)
    scene.cleanups.append(server.shutdown)
    url = f"http://127.0.0.1:{server.server_port}/dossiers/{{code}}"
    env, port = scene.env(SOHOA_REGISTRY_URL=url, SOHOA_REGISTRY_ALLOW_PRIVATE="true"), free_port()
    api, store = Api(port, api_key(env)), local_store(scene)
    serve = serving(scene, env, "serve", port, api)
    batch_id = api.upload(batch)
    down_since = time.monotonic()
    say(f"{scene.name}: batch {batch_id} uploaded; the registry answers 503 for {scene.opts.outage} s")
    watcher = Watcher(lambda: record(store, batch_id))
    try:
        def outage_over() -> bool:
            if record(store, batch_id).get("status") in FINAL:
                raise Failed(f"batch {record(store, batch_id)['status']} during the outage")
            return time.monotonic() - down_since >= scene.opts.outage
        wait_for(outage_over, scene.opts.outage + 60, "end of the outage", scene, alive=(serve,),
                 poll=0.5)
        during = record(store, batch_id)
        asked = len(Registry.asked)
        Registry.up.set()
        up_at = time.monotonic()
        say(f"{scene.name}: registry up ({asked} requests answered 503); batch {during.get('status')}")
        status, _ = wait_for(finished(store, batch_id), after_outage(scene), "batch finished", scene,
                             alive=(serve,), poll=0.5)
        took = time.monotonic() - up_at
    finally:
        states = watcher.stop()
    text = stored_once(store, batch_id)
    procedure = None
    with contextlib.suppress(Exception):
        first = record(store, batch_id)["dossiers"][0]["dossier_id"]
        manifest = json.loads(store.get(f"dossiers/{first}/v0001/manifest.json"))
        procedure = (manifest.get("registry") or {}).get("procedure")
    code, stop_s, left = serve.stop()
    outcome = status if "failed" not in states else f"{status} (was failed!)"
    return Row(scene.name, f"{outcome}; states: {states}", text, f"{secs(took)} after it answers",
               f"down {scene.opts.outage:.0f} s from the upload; {asked} registry requests answered "
               f"503; {watcher.tries} tries while waiting; registry procedure kept: "
               f"{procedure}; serve stopped: status {code} "
               f"in {stop_s:.1f} s, {len(left)} left")


def after_outage(scene: Scene) -> float:
    """How long to wait for `done` once the dependency is back: the pause between tries doubles
    from backoff_s (30 s) while it is down, so it is at most about twice the outage."""
    return min(1900.0, max(600.0, 3 * scene.opts.outage + 300))


# ---- 4. object storage down ---------------------------------------------------------------------


def store_down(scene: Scene, batch: Path) -> Row:
    from moto.server import ThreadedMotoServer

    from storage.catalog import Catalog
    from storage.s3 import S3ObjectStore

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: no line per request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    scene.cleanups.append(moto.stop)
    host, moto_port = moto.get_host_and_port()
    proxy = Cuttable((host, moto_port))
    scene.cleanups.append(proxy.down)
    bucket = f"sohoa-{uuid.uuid4().hex[:12]}"
    env = scene.env(SOHOA_S3_ENDPOINT=f"127.0.0.1:{proxy.port}", SOHOA_S3_ACCESS_KEY="test",
                    SOHOA_S3_SECRET_KEY="test", SOHOA_S3_SECURE="false",
                    SOHOA_S3_REGION="us-east-1", SOHOA_S3_BUCKET=bucket)
    port = free_port()
    api = Api(port, api_key(env))
    serve = serving(scene, env, "serve", port, api)
    store = S3ObjectStore.connect(f"{host}:{moto_port}", "test", "test", bucket, secure=False,
                                  region="us-east-1")  # straight to moto, not through the proxy
    batch_id = api.upload(batch)
    catalog = Catalog(f"sqlite:///{scene.dir / 'data' / 'catalog.sqlite3'}")
    pages = record(store, batch_id).get("pages") or 7
    wait_for(lambda: pages_done(store, batch_id) >= 1, 600, "a first page stored", scene,
             alive=(serve,))
    proxy.down()
    down_at = time.monotonic()
    at_cut = pages_done(store, batch_id)
    say(f"{scene.name}: object store cut at {at_cut}/{pages} pages for {scene.opts.outage} s")
    def indexed() -> dict[str, Any]:  # the catalog's copy of the batch record
        found = catalog.batch(batch_id)
        return found.as_dict() if found else {}

    watcher = Watcher(indexed)
    try:
        def outage_over() -> bool:
            status = indexed().get("status")
            if status in FINAL:
                raise Failed(f"batch {status} during the outage")
            return time.monotonic() - down_at >= scene.opts.outage
        wait_for(outage_over, scene.opts.outage + 60, "end of the outage", scene, alive=(serve,),
                 poll=0.5)
        proxy.up()
        up_at = time.monotonic()
        say(f"{scene.name}: object store back")

        def both_final() -> str | None:
            status = finished(store, batch_id)()
            return status if status and indexed().get("status") == status else None
        status, _ = wait_for(both_final, after_outage(scene), "batch finished", scene,
                             alive=(serve,), poll=0.5)
        took = time.monotonic() - up_at
    finally:
        states = watcher.stop()
    text = stored_once(store, batch_id)
    code, stop_s, left = serve.stop()
    outcome = status if "failed" not in states else f"{status} (was failed!)"
    return Row(scene.name, f"{outcome}; states (catalog): {states}", text,
               f"{secs(took)} after it is back",
               f"cut at {at_cut}/{pages} pages for {scene.opts.outage:.0f} s; {watcher.tries} tries "
               f"while waiting; {twice_text(tasks_twice(serve.log))}; serve stopped: status {code} "
               f"in {stop_s:.1f} s, {len(left)} left")


# ---- 5. two workers on one machine ---------------------------------------------------------------


def two_workers(scene: Scene, broker: str, batch: Path) -> Row:
    env = scene.env(broker_url(scene, broker))
    store = local_store(scene)
    workers = [scene.start(f"worker-{i}", ["worker", "--concurrency", "1"], env) for i in (1, 2)]
    names = []
    for w in workers:
        found, _ = wait_for(lambda w=w: READY.search(w.text()), 120, f"{w.label} ready", scene,
                            alive=tuple(workers))
        names.append(found.group(1))
    start = time.monotonic()
    batch_id = submit(env, batch)
    status, _ = wait_for(finished(store, batch_id), 1800, "batch finished", scene,
                         alive=tuple(workers))
    took = time.monotonic() - start
    alive = [w.proc.poll() is None for w in workers]
    text = stored_once(store, batch_id)
    share = [len(SUCCEEDED.findall(w.text())) for w in workers]
    for w in workers:
        w.signal(signal.SIGTERM)
    signalled, stops = time.monotonic(), []
    for w in workers:
        code, _ = w.exited_within(40)
        stop_s = time.monotonic() - signalled
        left = w.left() if code is not None else session(w.sid)
        stops.append((code, stop_s, len(left)))
        w.kill()
    both = "both alive" if all(alive) else f"alive: {alive}"
    clean = all(code == 0 and not left for code, _, left in stops)
    return Row(scene.name,
               f"{status}, {both}; exit statuses {', '.join(str(c) for c, _, _ in stops)}"
               + ("" if clean else " (NOT clean)"), text, f"{secs(took)} (whole batch)",
               f"node names {' and '.join(names)}; page tasks {share[0]} + {share[1]}; stopped in "
               f"{', '.join(f'{s:.1f} s ({n} left)' for _, s, n in stops)}")


# ---- 6. the API killed mid-upload ----------------------------------------------------------------


def send_upload(port: int, key: str, path: Path, fraction: float) -> socket.socket:
    """A multipart POST /api/v1/batches of which only `fraction` of the file is sent."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /api/v1/batches HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Authorization: Bearer {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                  f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n").encode() + head)
    limit = int(size * fraction)
    with path.open("rb") as f:
        sent = 0
        while sent < limit and (chunk := f.read(min(1 << 20, limit - sent))):
            sock.sendall(chunk)
            sent += len(chunk)
    if fraction >= 1:
        sock.sendall(tail)
    return sock


def deleted_files(pid: int) -> list[str]:
    """Open files of `pid` that have no name any more (an anonymous temporary file), with sizes."""
    found = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.endswith("(deleted)"):
                    size = os.stat(f"/proc/{pid}/fd/{fd}").st_size
                    found.append(f"{target} {size / 2**20:.0f} MB")
    return found


def batches(store: Any) -> list[str]:
    return [k for k in store.list("batches/") if k.endswith("/batch.json")]


def leftovers(scene: Scene) -> list[Path]:
    incoming = scene.dir / "data" / "incoming"
    found = sorted(incoming.glob("tmp*")) if incoming.exists() else []
    return found + sorted(scene.objects.rglob(".tmp-*"))


def api_killed(scene: Scene, big: Path) -> Row:
    env, port = scene.env(), free_port()
    key = api_key(env)
    api, store = Api(port, key), local_store(scene)
    size_mb = big.stat().st_size / 2**20
    notes = []

    # a) half the body sent, then kill -9: the API had not begun to store it
    serve = serving(scene, env, "serve-1", port, api)
    sock = send_upload(port, key, big, 0.5)
    time.sleep(2)
    held = ", ".join(deleted_files(serve.sid)).replace(str(scene.dir / "tmp"), "$TMPDIR")
    serve.kill()
    sock.close()
    half_left = leftovers(scene)
    notes.append(f"a) {size_mb / 2:.0f} of {size_mb:.0f} MB sent, serve killed: "
                 f"{len(batches(store))} batches, {len(half_left)} files left "
                 f"(the half body was in {held or 'no file'})")
    say(f"{scene.name}: {notes[-1]}")

    # b) the whole body sent; kill -9 as soon as the API writes it to incoming/
    serve = serving(scene, env, "serve-2", port, api)
    first_start = "start-up cleanup" in serve.text()
    sending: list[socket.socket] = []

    def send_whole() -> None:
        with contextlib.suppress(ConnectionError):  # the server is killed under it: the scenario
            sending.append(send_upload(port, key, big, 1.0))
    sender = threading.Thread(target=send_whole, daemon=True)
    sender.start()
    incoming = scene.dir / "data" / "incoming"

    def writing() -> list[Path]:
        return sorted(incoming.glob("tmp*")) if incoming.exists() else []
    wait_for(writing, 120, "the upload written to incoming/", scene, alive=(serve,), poll=0.001)
    serve.kill()
    sender.join(30)
    for sock in sending:
        sock.close()
    left = leftovers(scene)
    created = batches(store)
    sizes = ", ".join(f"{p.relative_to(scene.dir / 'data')} {p.stat().st_size / 2**20:.1f} MB"
                      for p in left)
    notes.append(f"b) serve killed while writing the upload: {len(created)} batches; left: "
                 f"{sizes or 'nothing'}")
    say(f"{scene.name}: {notes[-1]}")

    # c) started again: a leftover younger than an hour is kept
    serve = serving(scene, env, "serve-3", port, api)
    kept = [p for p in left if p.exists()]
    line = next((ln for ln in serve.text().splitlines() if "start-up cleanup" in ln), "")
    code3, _, left3 = serve.stop()
    notes.append(f"c) restarted: {len(kept)}/{len(left)} kept (younger than an hour), log: "
                 f"`{line.split('] ', 1)[-1]}`")

    # d) aged two hours, started again: removed, logged
    old = time.time() - 7200
    for p in kept:
        os.utime(p, (old, old))
    serve = serving(scene, env, "serve-4", port, api)
    removed = [p for p in kept if not p.exists()]
    lines = [ln.split("] ", 1)[-1] for ln in serve.text().splitlines()
             if "crash leftover" in ln and ("removed" in ln or "freed" in ln)]
    code4, _, left4 = serve.stop()
    shown = "; ".join(f"`{ln.replace(str(scene.dir), '…')}`" for ln in lines[:3])
    notes.append(f"d) aged 2 h, restarted: {len(removed)}/{len(kept)} removed, log: {shown}")
    say(f"{scene.name}: {notes[-2]}; {notes[-1]}")
    fine = (not created and kept == left and left and removed == kept and code3 == code4 == 0
            and not left3 and not left4)
    outcome = ("no batch; leftover kept while young, removed once old" if fine else
               f"CHECK: batches {len(created)}, left {len(left)}, kept {len(kept)}, removed "
               f"{len(removed)}, stops {code3}/{code4}")
    if not first_start:
        notes.append("(no cleanup line at the first restart)")
    return Row(scene.name, outcome, "—", "—", "; ".join(notes))


# ---- 7. partial, corrupt and huge input (issue 10) ----------------------------------------------


def dossier_scan(n_dossiers: int, text_pages: int, seed: int) -> Any:
    """Receipts and prose pages as a feeder scans them (tests/synth.py): n dossiers of 1 +
    `text_pages` pages each, with their codes."""
    from tests import synth

    return synth.make_batch(n_dossiers=n_dossiers, dpi=200, seed=seed, text_pages=text_pages,
                            with_id_card=False)


def versions_of(store: Any, code: str) -> list[str]:
    """The version folders stored for `code` (v0001, ...)."""
    return sorted(k.split("/")[2] for k in store.list(f"dossiers/{code}/")
                  if k.endswith("/manifest.json"))


def held_entries(record: dict[str, Any]) -> list[tuple[str, list[int], str]]:
    """(code, pages, reason) of the review entries holding a version back."""
    return [(r["code"], r["pages"], r["reason"]) for r in record.get("review") or []
            if r.get("reason") in ("incomplete_rescan", "incomplete_scan")]


def catalog_of(scene: Scene) -> Any:
    from storage.catalog import Catalog

    return Catalog(f"sqlite:///{scene.dir / 'data' / 'catalog.sqlite3'}")


def feed(catalog: Any) -> list[tuple[str, str, int]]:
    """The change feed processing systems read (GET /api/v1/events): (kind, code, version)."""
    return [(e["kind"], e["dossier_id"], e["version"]) for e in catalog.events(None)]


def new_batch(store: Any, before: set[str]) -> Callable[[], str | None]:
    """The id of the one batch that was not in `before`."""
    def check() -> str | None:
        made = set(batches(store)) - before
        return made.pop().split("/")[1] if len(made) == 1 else None
    return check


def jammed_rescan(scene: Scene) -> Row:
    """A dossier scanned whole (v1), then scanned again on a feeder that jams after the first
    sheet: the jam must not make a 1-page v2 of a 3-page dossier (issue 10, 1.)."""
    from tests import synth
    from tests.escl_emulator import EmulatorConfig, EsclEmulator

    stack = dossier_scan(1, 2, seed=5)
    code = stack.dossiers[0].code
    pages = [synth.encode(synth.degrade(p, s), p.dpi, s) for p, s in stack.pages]  # the feeder's JPEGs
    store = local_store(scene)
    runs: list[tuple[int | None, float, str]] = []  # (exit status, seconds, batch id) per scan
    for label, jam in (("scan-v1", None), ("rescan-jammed", 1)):
        emulator = EsclEmulator(EmulatorConfig(pages=pages, jam_after=jam)).start()
        scene.cleanups.append(emulator.stop)
        env = scene.env(SOHOA_SCANNERS=json.dumps([{"url": emulator.url, "name": "mfp-escl"}]))
        before = set(batches(store))
        scan = scene.start(label, ["scan", emulator.url], env)
        status, took = scan.exited_within(900)
        scan.kill()
        emulator.stop()
        if status is None:
            raise Failed(f"{label} still running after {took:.0f} s")
        batch_id, _ = wait_for(new_batch(store, before), 10, f"{label}'s batch", scene)
        runs.append((status, took, batch_id))
        say(f"{scene.name}: {label} exited {status} in {took:.1f} s: batch {batch_id} "
            f"{record(store, batch_id).get('status')}")
    (v1_exit, v1_s, v1_id), (re_exit, re_s, re_id) = runs
    first, rescan = record(store, v1_id), record(store, re_id)
    catalog = catalog_of(scene)
    dossier = catalog.dossier(code) or {}
    held = [(h["batch_id"], h["pages"], h["reason"]) for h in dossier.get("held") or []]
    events = feed(catalog)
    stored = versions_of(store, code)
    manifest = json.loads(store.get(f"dossiers/{code}/v0001/manifest.json")) if stored else {}
    checks = {
        "v1 scan exit 0, done": (v1_exit, first.get("status")) == (0, "done"),
        "rescan exit 2": re_exit == 2,
        "rescan 1 page, incomplete, in review": (
            rescan.get("pages") == 1 and bool(rescan.get("incomplete"))
            and rescan.get("status") == "needs_review" and rescan.get("dossiers") == []),
        "rescan held as incomplete_rescan": held_entries(rescan) == [(code, [0], "incomplete_rescan")],
        "dossier still v1 of 3 pages": (dossier.get("version"), len(dossier.get("pages") or []))
        == (1, 3),
        "held under the dossier": held == [(re_id, [0], "incomplete_rescan")],
        "feed: only v1 created": events == [("created", code, 1)],
        "v0001 only, by the v1 scan": stored == ["v0001"] and manifest.get("batch_id") == v1_id,
    }
    failed = [name for name, ok in checks.items() if not ok]
    outcome = ("dossier stays v1 (3 pages); the rescan waits in review as incomplete_rescan, "
               "no feed event" if not failed else f"NOT AS REQUIRED: {', '.join(failed)}")
    return Row(scene.name, outcome,
               f"{'yes' if stored == ['v0001'] else 'NO'}: {code} {', '.join(stored)} "
               f"({len(manifest.get('pages') or [])} pages); rescan's page held, no version",
               f"{secs(re_s)} (rescan, exit {re_exit})",
               f"v1 scan of 3 sheets: exit {v1_exit} in {v1_s:.1f} s; rescan: "
               f"`{rescan.get('incomplete')}`; dossier held {held}; feed {len(events)} event(s): "
               f"{events}")


def cut_ftp_upload(scene: Scene) -> Row:
    """A scanner's FTP upload of a 3-page dossier, its client SIGKILLed at ~40%: pyftpdlib may
    call the transfer complete, the file's own structure says it is not (issue 10, 1.). Two
    layouts of the same PDF: objects in page order (pikepdf's plain save: the page tree comes
    first), and linearized as img2pdf writes it (the page tree comes last, so a prefix has none)."""
    import pikepdf

    from tests import synth
    from tests.test_folder_writes import UPLOADER  # ftplib, 8 kB every 50 ms, as scanner1

    stack = dossier_scan(1, 2, seed=21)
    code = stack.dossiers[0].code
    linearized = synth.write_pdf(stack.pages, scene.dir / "linearized.pdf")
    plain = scene.dir / "plain.pdf"
    with pikepdf.open(linearized) as pdf:
        pdf.save(plain)
    ftp_port, port = free_port(), free_port()
    env = scene.env(SOHOA_FTP=json.dumps({
        "accounts": [{"device": "mfp-ftp-1", "username": "scanner1", "password": "s3cret-1"}],
        "port": ftp_port, "auth_failed_delay_seconds": 0}))
    api, store = Api(port, api_key(env)), local_store(scene)
    serve = serving(scene, env, "serve", port, api)
    catalog = catalog_of(scene)
    spooled = scene.dir / "data" / "spool" / "incoming"

    def received() -> int:
        sizes = [0]
        for f in spooled.glob("*/file/dossier.pdf"):
            with contextlib.suppress(OSError):
                sizes.append(f.stat().st_size)
        return max(sizes)

    outcomes, notes, times, kept_text = [], [], [], []
    for source in (plain, linearized):
        data, layout = source.read_bytes(), source.stem
        before = set(batches(store))
        client = scene.client(f"ftp-client-{layout}", UPLOADER, str(ftp_port), str(source))
        wait_for(lambda d=data: received() >= len(d) * 4 // 10, 300, "40% of the upload received",
                 scene, alive=(serve, client), poll=0.05)
        at_kill = received()
        client.kill()
        killed_at = time.monotonic()
        say(f"{scene.name}: {layout}: ftp client killed at {at_kill} of {len(data)} bytes")
        batch_id, _ = wait_for(new_batch(store, before), 120, "the batch", scene, alive=(serve,))
        done, _ = wait_for(api.settled(batch_id), 600, "the batch settled", scene,
                           alive=(serve,))
        times.append(time.monotonic() - killed_at)
        full = record(store, batch_id)
        kept = store.get(full["original"])
        held = [(h["batch_id"], h["reason"]) for h in catalog.held(code)]
        why = done.get("incomplete") or ""
        checks = {  # what fails if it is not so
            "`incomplete` not set": why.startswith("the file is cut short: "),
            f"{done.get('status')}, not needs_review": done.get("status") == "needs_review",
            "the original is not the prefix received": 0 < len(kept) < len(data)
            and data.startswith(kept),
            # No page readable (the page tree was past the cut): nothing to hold, and nothing
            # can pass for the dossier either; staff see an interrupted scan to do again.
            "the dossier not held": (batch_id, "incomplete_scan") in held or (
                not full.get("pages") and not done.get("dossiers")),
        }
        failed = [name for name, ok in checks.items() if not ok]
        shown = ("dossier held (incomplete_scan)" if held else
                 "no page readable: nothing held, no version")
        outcomes.append(f"{layout}: " + (f"incomplete, in review, {shown}"
                                         if not failed else f"NOT AS REQUIRED: {', '.join(failed)}"))
        pages_held = sum(len(p) for _, p, _ in held_entries(full))
        kept_text.append(f"{layout}: original = the {len(kept):,} bytes received, {pages_held} "
                         f"of 3 pages held")
        notes.append(f"{layout} ({len(data):,} bytes): killed at {at_kill:,}; incomplete "
                     f"`{why or None}`; {done.get('status')}, error `{done.get('error')}`, failed "
                     f"pages {[f['page'] for f in done.get('failed_pages') or []]}")
    events, stored = feed(catalog), sorted({k.split("/")[1] for k in store.list("dossiers/")})
    serve_log = serve.text()
    code_stop, stop_s, left = serve.stop()
    if stored or events:
        outcomes.append(f"NOT AS REQUIRED: versions {stored}, feed {events}")
    if "Traceback" in serve_log:
        outcomes.append("a traceback in serve's log")
    return Row(scene.name, "; ".join(outcomes),
               f"{'yes' if not stored else 'NO'}: no version, no feed event; {'; '.join(kept_text)}",
               " / ".join(f"{secs(t)}" for t in times) + " from the kill to settled",
               f"{'; '.join(notes)}; serve stopped: status {code_stop} in {stop_s:.1f} s, "
               f"{len(left)} left")


FOLDER_SETTLE = 1.0  # seconds a folder file must stop changing; the writer pauses twice as long


def folder_slow_writes(scene: Scene) -> Row:
    """A scanner writing a JPEG and a TIFF into the watched folder a quarter at a time, each
    quarter in its own open/append/close, pausing longer than the settle time (such a file used
    to be taken half-written: 5 batches from one JPEG, issue 10, 1.)."""
    from scanners.folder import DONE
    from tests import synth
    from tests.test_folder_writes import WRITER, assert_cut_short_at, cut_points

    stack = dossier_scan(2, 2, seed=9)
    images = [synth.degrade(p, s) for p, s in stack.pages]
    tiff_code, jpeg_code = (d.code for d in stack.dossiers)
    jpeg = synth.encode(images[3], 200, stack.pages[3][1])  # the second dossier's receipt alone
    out = scene.dir / "scan.tif"
    images[0].save(out, save_all=True, append_images=images[1:3], compression="tiff_lzw",
                   dpi=(200, 200))  # the first dossier, 3 pages
    files = {"scan0001.jpg": jpeg, "scan0002.tif": out.read_bytes()}
    for name, data in files.items():
        try:  # the premise: between chunks each file is cut short by its own structure
            with warnings.catch_warnings():  # Pillow on a TIFF cut short: the very point
                warnings.simplefilter("ignore")
                assert_cut_short_at(data, cut_points("chunked", len(data)), scene.dir / "tmp")
        except AssertionError as e:
            raise Failed(f"{name} looks whole part way: {e}") from None
        (scene.dir / f"source-{name}").write_bytes(data)
    drop = scene.dir / "scans" / "mfp-1"
    drop.mkdir(parents=True)
    env = scene.env(SOHOA_FOLDER=json.dumps({
        "devices": {"mfp-1": str(drop)}, "poll_seconds": 0.5, "settle_seconds": FOLDER_SETTLE,
        "unfinished_seconds": 60}))
    port = free_port()
    api, store = Api(port, api_key(env)), local_store(scene)
    serve = serving(scene, env, "serve", port, api)
    writers = {name: scene.client(f"writer-{name}", WRITER, str(scene.dir / f"source-{name}"),
                                  str(drop / name), "chunked", str(2 * FOLDER_SETTLE))
               for name in files}
    last_byte: dict[str, float] = {}
    for name, writer in writers.items():
        status, _ = writer.exited_within(60)
        if status != 0:
            raise Failed(f"writer of {name} exited {status}: {writer.text()[-500:]}")
        last_byte[name] = float(writer.text().split()[-1])  # its monotonic time (system-wide)

    taken: dict[str, float] = {}  # when each file was seen moved to .sohoa-done
    settled: dict[str, float] = {}  # when its batch was first seen final

    def all_settled() -> dict[str, list[dict[str, Any]]] | None:
        by_file: dict[str, list[dict[str, Any]]] = {}
        for key in batches(store):
            found = record(store, key.split("/")[1])
            by_file.setdefault(found.get("file"), []).append(found)
        now = time.monotonic()
        for name in files:
            if name not in taken and (drop / DONE / name).exists():
                taken[name] = now
            if name not in settled and any(r.get("status") in FINAL for r in by_file.get(name, [])):
                settled[name] = now
        final = all(r.get("status") in FINAL for rs in by_file.values() for r in rs)
        return by_file if len(taken) == len(settled) == len(files) and final else None
    by_file, _ = wait_for(all_settled, 600, "both files taken and their batches settled", scene,
                          alive=(serve,), poll=0.2)
    time.sleep(3 * FOLDER_SETTLE)  # a late second batch of a file would show now
    by_file = all_settled() or by_file
    serve_log = serve.text()
    code_stop, stop_s, left = serve.stop()
    notes, problems, once = [], [], []
    for name, data in files.items():
        found = by_file.get(name) or []
        if len(found) != 1:
            problems.append(f"{name}: {len(found)} batches")
            continue
        batch = found[0]
        same = store.get(batch["original"]) == data
        if batch.get("incomplete") or not same:
            problems.append(f"{name}: incomplete {batch.get('incomplete')!r}, original "
                            f"{'identical' if same else 'DIFFERS'}")
        code = tiff_code if name.endswith(".tif") else jpeg_code
        made = [(d["dossier_id"], len(d["pages"])) for d in batch.get("dossiers") or []]
        once.append(f"{name}: {code} {', '.join(versions_of(store, code)) or 'no version'}")
        notes.append(f"{name} ({len(data) / 2**10:.0f} kB): {batch['status']}, dossiers {made}, "
                     f"taken {taken[name] - last_byte[name]:.1f} s and settled "
                     f"{settled[name] - last_byte[name]:.1f} s after its last byte")
    if "Traceback" in serve_log:
        problems.append("a traceback in serve's log")
    outcome = ("one batch per file, not incomplete, original byte-identical" if not problems
               else f"NOT AS REQUIRED: {'; '.join(problems)}")
    return Row(scene.name, outcome, "; ".join(once),
               " / ".join(f"{secs(settled[n] - last_byte[n])}" for n in files)
               + " from the last byte to settled",
               f"4 open/append/close rounds, {2 * FOLDER_SETTLE:.0f} s apart (settle "
               f"{FOLDER_SETTLE:.0f} s); {'; '.join(notes)}; serve stopped: status {code_stop} "
               f"in {stop_s:.1f} s, {len(left)} left")


CORRUPT = ("DCT", "Flate", "JBIG2", "CCITT")


def corrupt_pdf(where: Path) -> tuple[Path, dict[int, str]]:
    """The 7-page sample with a page of garbage DCT, Flate, JBIG2 and CCITT data slipped in
    among its dossiers' pages; (file, {page index: stream kind})."""
    import pikepdf

    from tests.test_heavy_pages import ccitt_page_pdf
    from tests.test_page_failures import corrupt_page_pdf

    bad: dict[str, Path] = {}
    for kind in CORRUPT:
        bad[kind] = where / f"corrupt-{kind}.pdf"
        if kind == "CCITT":
            ccitt_page_pdf(bad[kind], random.Random(0).randbytes(40_000))
        else:
            corrupt_page_pdf(bad[kind], f"{kind}Decode")
    # sample pages 0-2 dossier A, 3 blank, 4-6 dossier B; a corrupt page inside each dossier
    order: list[tuple[Path, int]] = [(SAMPLE, 0), (SAMPLE, 1), (bad["DCT"], 0), (SAMPLE, 2),
                                     (bad["Flate"], 0), (SAMPLE, 3), (SAMPLE, 4), (SAMPLE, 5),
                                     (bad["JBIG2"], 0), (SAMPLE, 6), (bad["CCITT"], 0)]
    out = where / "corrupt-mixed.pdf"
    sources = {p: pikepdf.open(p) for p in {p for p, _ in order}}
    try:
        with pikepdf.new() as pdf:
            for path, index in order:
                pdf.pages.append(sources[path].pages[index])
            pdf.save(out)
    finally:
        for source in sources.values():
            source.close()
    kinds = {i: next(k for k, p in bad.items() if p == path)
             for i, (path, _) in enumerate(order) if path != SAMPLE}
    return out, kinds


def corrupt_pages(scene: Scene) -> Row:
    """A PDF whose good pages make two dossiers and four of whose pages are garbage streams
    (such pages used to be drawn white and dropped as blank, the batch `done`: issue 10, 2.)."""
    source, kinds = corrupt_pdf(scene.dir)
    env, port = scene.env(), free_port()
    api, store = Api(port, api_key(env)), local_store(scene)
    serve = serving(scene, env, "serve", port, api)
    batch_id, to_202 = api.post(source)
    sent = time.monotonic()
    done, _ = wait_for(api.settled(batch_id), 900, "the batch settled", scene, alive=(serve,))
    took = time.monotonic() - sent
    text = stored_once(store, batch_id)
    serve_log = serve.text()
    code_stop, stop_s, left = serve.stop()
    failed = {f["page"]: f["error"] for f in done.get("failed_pages") or []}
    wrong = [f"p{i} {kind}: {failed.get(i)!r}" for i, kind in kinds.items()
             if not (failed.get(i) or "").startswith(f"corrupt: page {i}: {kind} stream cannot "
                                                     "be decoded")]
    made = [(d["dossier_id"], d["pages"]) for d in done.get("dossiers") or []]
    dropped = {d["page"]: d["reason"] for d in done.get("dropped_pages") or []}
    problems = list(wrong)
    if set(failed) - set(kinds):
        problems.append(f"good pages failed too: {sorted(set(failed) - set(kinds))}")
    if (done.get("status"), done.get("error")) != ("needs_review",
                                                   f"{len(kinds)} pages could not be read"):
        problems.append(f"status {done.get('status')}, error {done.get('error')!r}")
    if [len(p) for _, p in made] != [3, 3] or set(kinds) & set(dropped):
        problems.append(f"dossiers {made}, dropped {dropped}")
    if "Traceback" in serve_log:
        problems.append("a traceback in serve's log")
    outcome = ("needs_review, `4 pages could not be read`; each corrupt page failed with its "
               "reason; both dossiers made of their good pages" if not problems
               else f"NOT AS REQUIRED: {'; '.join(problems)}")
    reasons = "; ".join(f"p{i}: `{failed.get(i, '—')}`" for i in kinds)
    return Row(scene.name, outcome, text, f"{secs(took)} (upload to settled)",
               f"11 pages, {to_202:.2f} s to the 202; failed_pages {reasons}; dossiers "
               f"{made}; dropped {dropped}; serve stopped: status {code_stop} "
               f"in {stop_s:.1f} s, {len(left)} left")


RENDER_SECONDS = 10


def tiny_and_complex(scene: Scene) -> Row:
    """A 1x1 PNG (it used to print an OpenCV traceback) and a page of 300,000 vector strokes
    (minutes of pdftoppm) under SOHOA_RENDER_SECONDS=10: both must fail with their reason, in
    about the render limit, no pdftoppm left drawing (issue 10, 3.)."""
    from PIL import Image

    from tests.test_heavy_pages import vector_page_pdf

    tiny, strokes = scene.dir / "tiny-1x1.png", scene.dir / "strokes-300000.pdf"
    Image.new("L", (1, 1), 255).save(tiny)
    vector_page_pdf(strokes, 300_000)
    env, port = scene.env(SOHOA_RENDER_SECONDS=str(RENDER_SECONDS)), free_port()
    api = Api(port, api_key(env))
    serve = serving(scene, env, "serve", port, api)
    sent: dict[str, tuple[str, float]] = {}
    for path in (tiny, strokes):
        batch_id, _ = api.post(path)
        sent[path.name] = (batch_id, time.monotonic())
    results: dict[str, tuple[dict[str, Any], float]] = {}
    for name, (batch_id, at) in sent.items():
        done, _ = wait_for(api.settled(batch_id), 900, f"{name} settled", scene, alive=(serve,))
        results[name] = (done, time.monotonic() - at)
    drawing = [p for p in session(serve.sid) if "pdftoppm" in p]
    time.sleep(2)  # one killed at its limit is reaped by then
    left_drawing = [p for p in session(serve.sid) if "pdftoppm" in p]
    serve_log = serve.text()
    code_stop, stop_s, left = serve.stop()
    expected = {tiny.name: "too_small: page 0 is 1x1 pixels: too small to read",
                strokes.name: f"too_complex: page 0 took longer than {RENDER_SECONDS} s to draw"}
    problems, notes = [], []
    for name, (done, took) in results.items():
        failed = [f["error"] for f in done.get("failed_pages") or []]
        notes.append(f"{name}: {done.get('status')} in {took:.1f} s, failed_pages `{failed}`")
        if (done.get("status"), failed) != ("needs_review", [expected[name]]):
            problems.append(f"{name}: {done.get('status')}, {failed}")
    if left_drawing:
        problems.append(f"pdftoppm left: {left_drawing}")
    if "Traceback" in serve_log or "dsize.empty" in serve_log:
        problems.append("a traceback in serve's log")
    outcome = ("too_small and too_complex failed pages, both in review; no pdftoppm left, no "
               "traceback" if not problems else f"NOT AS REQUIRED: {'; '.join(problems)}")
    worst = max(took for _, took in results.values())
    return Row(scene.name, outcome, "— (no page readable: no version)",
               f"{secs(worst)} (upload to settled, slower of the two)",
               f"SOHOA_RENDER_SECONDS={RENDER_SECONDS}; {'; '.join(notes)}; pdftoppm at settle: "
               f"{len(drawing)}, 2 s later: {len(left_drawing)}; serve stopped: status "
               f"{code_stop} in {stop_s:.1f} s, {len(left)} left")


BIG_PAGES = 3000


def big_beside_small(scene: Scene) -> Row:
    """A 3,000-page PDF uploaded, then the 7-page sample right after it (such an upload used to
    block for minutes, and every batch sent after it to wait behind all its pages: about 50 min
    for 5,000, issue 10, 3.). Stopped once the small one is settled, the big one unfinished."""
    from tests.test_big_batches import big_pdf  # blank 50 dpi pages sharing one JPEG: 0.5 MB

    big = big_pdf(scene.dir / "big-3000.pdf", BIG_PAGES)
    env, port = scene.env(SOHOA_MAX_PAGES=str(2 * BIG_PAGES)), free_port()
    api, store = Api(port, api_key(env)), local_store(scene)
    serve = serving(scene, env, "serve", port, api)
    big_id, big_202 = api.post(big)
    small_id, small_202 = api.post(SAMPLE)
    sent = time.monotonic()
    say(f"{scene.name}: {BIG_PAGES}-page upload answered in {big_202:.2f} s, the 7-page one in "
        f"{small_202:.2f} s")
    small, _ = wait_for(api.settled(small_id), 3600, "the small batch settled", scene,
                        alive=(serve,), poll=0.5)
    took = time.monotonic() - sent
    then = api.get(f"/batches/{big_id}")
    text = stored_once(store, small_id)
    serve_log = serve.text()
    code_stop, stop_s, left = serve.stop()
    made = [(d["dossier_id"], d["pages"]) for d in small.get("dossiers") or []]
    problems = []
    if big_202 > 2:
        problems.append(f"the {BIG_PAGES}-page upload took {big_202:.1f} s to answer (over 2 s)")
    if small.get("status") != "done" or len(made) != 2:
        problems.append(f"small batch {small.get('status')}, dossiers {made}")
    if then.get("status") in FINAL or then.get("pages_done", 0) >= BIG_PAGES:
        problems.append(f"the big one was {then.get('status')} first ({then.get('pages_done')} "
                        "pages done): the small one did not pass it")
    if "Traceback" in serve_log:
        problems.append("a traceback in serve's log")
    outcome = (f"the small batch done while the big one was at {then.get('pages_done')}/"
               f"{then.get('pages')} pages" if not problems
               else f"NOT AS REQUIRED: {'; '.join(problems)}")
    return Row(scene.name, outcome, f"small batch: {text}",
               f"{secs(took)} (the 7-page batch, from its 202 to done)",
               f"{BIG_PAGES}-page PDF ({big.stat().st_size / 2**20:.1f} MB): 202 in "
               f"{big_202:.2f} s; 7-page upload right after: 202 in {small_202:.2f} s; the big "
               f"one then {then.get('status')}; stopped there: serve status {code_stop} in "
               f"{stop_s:.1f} s, {len(left)} left")


# ---- the run -----------------------------------------------------------------------------------

Scenario = tuple[str, Callable[[Scene, dict[str, Path]], Row]]
SCENARIOS: list[Scenario] = [
    *[(f"kill-worker-{b}", lambda s, f, b=b: kill_worker(s, b, f["long"]))
      for b in ("embedded", "redis", "amqp")],
    *[(f"serve-{h}", lambda s, f, h=h: stop_serve(s, h, f["long"]))
      for h in ("sigterm", "sigint", "sigterm-twice")],
    ("registry-down", lambda s, f: registry_down(s, f["sample"])),
    ("store-down", lambda s, f: store_down(s, f["sample"])),
    *[(f"two-workers-{b}", lambda s, f, b=b: two_workers(s, b, f["sample"]))
      for b in ("embedded", "redis", "amqp")],
    ("api-killed-mid-upload", lambda s, f: api_killed(s, f["big"])),
    ("jammed-rescan", lambda s, f: jammed_rescan(s)),
    ("cut-ftp-upload", lambda s, f: cut_ftp_upload(s)),
    ("folder-slow-writes", lambda s, f: folder_slow_writes(s)),
    ("corrupt-pages", lambda s, f: corrupt_pages(s)),
    ("tiny-and-complex", lambda s, f: tiny_and_complex(s)),
    ("big-beside-small", lambda s, f: big_beside_small(s)),
]


def chosen(only: list[str]) -> list[Scenario]:
    wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
    if not wanted:
        return SCENARIOS
    picked = [s for s in SCENARIOS if any(s[0] == w or s[0].startswith(w) for w in wanted)]
    unknown = [w for w in wanted if not any(s[0].startswith(w) for s in SCENARIOS)]
    if unknown or not picked:
        sys.exit(f"unknown scenario {unknown}; known: {', '.join(s[0] for s in SCENARIOS)}")
    return picked


def files(picked: list[Scenario], where: Path) -> dict[str, Path]:
    found = {"sample": SAMPLE}
    names = [name for name, _ in picked]
    if any(n.startswith(("kill-worker", "serve-")) for n in names):
        found["long"] = make_batch(3, where / "batch-21.pdf")
    if "api-killed-mid-upload" in names:
        found["big"] = make_batch(30, where / "batch-210.pdf")
    for name, path in found.items():
        say(f"{name}: {path.name}, {path.stat().st_size / 2**20:.1f} MB")
    return found


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true",
                        help=f"shortened recovery timings {json.dumps(FAST)} instead of the defaults")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="scenarios to run (names or prefixes, comma-separated; repeatable)")
    parser.add_argument("--outage", type=float, default=120.0,
                        help="seconds the registry / object store stays down (default 120)")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory")
    opts = parser.parse_args()
    picked = chosen(opts.only)
    timings = FAST if opts.fast else DEFAULTS
    say(f"recovery timings: {json.dumps(timings)}; outage {opts.outage:.0f} s; "
        f"{len(picked)} scenarios")
    load_before = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="sohoa-faults-") as tmp:
        inputs = files(picked, Path(tmp))
        for name, run in picked:
            say(f"== {name}")
            scene = Scene(name, opts)
            try:
                row = run(scene, inputs)
            except Exception as e:
                say(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc()}{scene.tails()}")
                row = Row(name, f"ERROR: {type(e).__name__}: {e}"[:300])
            finally:
                scene.close()
            say(f"{name}: {row.outcome} | {row.once} | {row.recover} | {row.note}")
            rows.append(row)
    mode = "--fast " + json.dumps(FAST) if opts.fast else "defaults " + json.dumps(DEFAULTS)
    load = " → ".join(f"{a:.1f}/{b:.1f}/{c:.1f}" for a, b, c in (load_before, os.getloadavg()))
    print(f"Recovery timings: {mode}; outage {opts.outage:.0f} s; {os.cpu_count()} cores, load "
          f"average {load} (1/5/15 min, at start → end).\n")
    print("| scenario | outcome | pages stored once | time to recover or finish | note |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {cell(r.scenario)} | {cell(r.outcome)} | {cell(r.once)} | {cell(r.recover)} | "
              f"{cell(r.note)} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
