"""`sohoa worker` as a well-behaved process: Celery's worker, run in this process, with

- a node name of its own: `sohoa-<pid>@<host>` unless given (`--hostname`, Celery's `%h`, `%n`,
  `%d` work). Any number of workers then run on one machine: two with Celery's default
  `celery@<host>` collide (on RabbitMQ the second cannot take the node's pidbox queue and dies).
- a bounded stop: SIGTERM or SIGINT is Celery's warm stop (no new task is taken, but for one that
  the embedded broker's polling loop may still fetch; the pages in hand finish); pages still
  running STOP_SECONDS later are stopped cold (Celery's SIGQUIT), which hands them back to the
  queue (acks are late). A second SIGTERM or SIGINT stops cold at once.
- nothing left behind: the worker adopts the orphans of its subtree (a child subreaper), so the
  Tesseract child of a pool process that died first comes back to it; whatever of its subtree is
  still running when Celery is done is ended before it exits.
- a presence others can see: while ready, it holds the lease `worker:<node>` (storage/leases.py),
  which the status page lists as a worker alive; and its pool processes write their metrics to
  the data dir's `metrics/` (ingest/metrics.py), which `sohoa serve` on the same machine adds up,
  or serves them itself on `--metrics-port`.
- an exit status that tells: 0 after a stop asked for by a signal in which every page in hand
  finished; 1 if the worker never became ready (broker unreachable after its retries, node name
  taken, bad configuration), stopped on an error, or had to stop cold.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from ingest import logs
from ingest.settings import get_settings

STOP_SECONDS = 25.0  # warm stop, then cold: a stop is over within 30 s (systemd allows 90)
END_GRACE_SECONDS = 2.0  # for leftover children between SIGTERM and SIGKILL
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("sohoa.worker")


def default_node_name() -> str:
    return f"sohoa-{os.getpid()}@%h"


def _prctl() -> Any:
    return ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


_PRCTL = _prctl()  # loaded here, not between fork and exec (die_with_parent)


def become_subreaper() -> bool:
    """Orphans of this process's subtree become its children instead of init's (Linux)."""
    return _PRCTL is not None and _PRCTL(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def die_with_parent() -> None:
    """For Popen's preexec_fn: the child gets SIGTERM (a warm stop for a worker) if its parent
    dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def children(pid: int | None = None) -> list[int]:
    """Live or unreaped children of `pid` (this process by default), from /proc."""
    parent, found = pid or os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def _reap(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if not done:
            alive.append(pid)
    return alive


def end_children(patience: float = 1.0, grace: float = END_GRACE_SECONDS) -> list[int]:
    """Reaps every child: those exiting by themselves get `patience` seconds (a Tesseract child
    whose pool process is gone exits at end of file), then SIGTERM, then SIGKILL after `grace`.
    Returns the pids that had to be signalled. Call it once the children one waits for have been
    waited for."""
    ended: list[int] = []
    start = time.monotonic()
    while True:
        alive = _reap(children())
        if not alive:
            return ended
        waited = time.monotonic() - start
        if waited >= patience:
            how = signal.SIGTERM if waited < patience + grace else signal.SIGKILL
            for pid in alive:
                if pid not in ended or how == signal.SIGKILL:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, how)
            ended += [pid for pid in alive if pid not in ended]
        time.sleep(0.05)


@dataclass
class Lifecycle:
    """What happened to the worker, from Celery's signals."""
    ready: bool = False
    stop_signals: int = 0  # SIGTERM/SIGINT/SIGQUIT received
    cold: bool = False
    timer: threading.Timer | None = None

    def on_ready(self, **_: Any) -> None:
        self.ready = True

    def on_shutting_down(self, sig: str = "", how: str = "", **_: Any) -> None:
        """Runs in the main process inside Celery's handler of each stop signal."""
        self.stop_signals += 1
        if how == "Cold":
            if not self.cold:  # a SIGQUIT from outside (serve forcing its stop)
                self.cold = True
                log.warning("cold stop (%s): pages in hand go back to the queue", sig)
        elif self.stop_signals == 1:
            log.warning("warm stop: pages in hand may finish for %.0f s, then they go back to the "
                        "queue (a second SIGTERM or SIGINT: at once)", STOP_SECONDS)
            self.timer = threading.Timer(STOP_SECONDS, self.go_cold, ("pages still running",))
            self.timer.daemon = True
            self.timer.start()
        else:
            self.go_cold(f"second stop signal ({sig})")

    def go_cold(self, why: str) -> None:
        if not self.cold:
            self.cold = True
            log.warning("cold stop (%s): pages in hand go back to the queue", why)
            os.kill(os.getpid(), signal.SIGQUIT)

    def exit_status(self, code: int | None) -> int:
        if self.stop_signals:
            return 1 if self.cold else 0
        if not self.ready:
            log.error("the worker did not start (see above)")
            return 1
        return 0 if code in (0, None) else 1


class Presence:
    """Holds the lease `worker:<node>` while the worker is ready: the status page's "workers
    alive", on any broker and across machines (the lease lives in the catalog's database)."""

    LEASE_SECONDS = 30.0

    def __init__(self, node: str, processes: str) -> None:
        self.node, self.processes = node, processes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, **_: Any) -> None:
        from storage.leases import Leases, worker_key

        leases = Leases(get_settings().storage.catalog_url)
        holder = f"{self.node} ({self.processes}, pid {os.getpid()})"

        def hold() -> None:
            try:
                with leases.holding(worker_key(self.node), self.LEASE_SECONDS, holder):
                    self._stop.wait()
            except Exception:  # the database is away: the status page shows it gone
                log.warning("could not announce this worker", exc_info=True)

        self._thread = threading.Thread(target=hold, name="worker-presence", daemon=True)
        self._thread.start()

    def stop(self, **_: Any) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)


def run(concurrency: int, hostname: str | None = None, broker_retries: int | None = None) -> int:
    """Runs a worker until it is stopped; returns its exit status."""
    from celery import signals
    from celery.utils.nodenames import host_format
    from kombu.utils.url import maybe_sanitize_url

    from ingest.tasks import app, ensure_queue

    if broker_retries is not None:
        app.conf.broker_connection_max_retries = broker_retries
    if app.conf.broker_url.startswith("sqla+"):
        ensure_queue()
    become_subreaper()
    _quiet_privileges_warning()
    node = hostname or default_node_name()
    # before Celery sets up logging: plain lines on stderr, like serve's
    processes = f"{concurrency} process{'es' if concurrency > 1 else ''}"
    print(f"worker {host_format(node)}: {processes}, queue {app.conf.task_default_queue} on "
          f"{maybe_sanitize_url(app.conf.broker_url)}", file=sys.stderr, flush=True)
    life = Lifecycle()
    signals.worker_ready.connect(life.on_ready, weak=False)
    signals.worker_shutting_down.connect(life.on_shutting_down, weak=False)
    fmt = get_settings().monitoring.log_format

    def json_logs(logger: logging.Logger, **_: Any) -> None:  # Celery sets up its own handlers
        for handler in logger.handlers:
            logs.apply(handler, fmt)

    signals.after_setup_logger.connect(json_logs, weak=False)
    signals.after_setup_task_logger.connect(json_logs, weak=False)
    presence = Presence(host_format(node), processes)
    signals.worker_ready.connect(presence.start, weak=False)
    signals.worker_shutting_down.connect(presence.stop, weak=False)
    try:
        code = app.start(["--quiet", "worker", "--loglevel=INFO",  # --quiet: no banner
                          f"--queues={app.conf.task_default_queue}",
                          f"--concurrency={concurrency}", f"--hostname={node}"])
    finally:
        presence.stop()
        if life.timer is not None:
            life.timer.cancel()
        signals.worker_ready.disconnect(life.on_ready)
        signals.worker_shutting_down.disconnect(life.on_shutting_down)
        signals.worker_ready.disconnect(presence.start)
        signals.worker_shutting_down.disconnect(presence.stop)
        signals.after_setup_logger.disconnect(json_logs)
        signals.after_setup_task_logger.disconnect(json_logs)
        left = end_children()
        if left:
            log.warning("ended %d processes left by the pool: %s", len(left), left)
    return life.exit_status(code)


def _quiet_privileges_warning() -> None:
    """Celery's multi-line SecurityWarning for a worker run as root becomes one line."""
    import warnings

    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)
    if os.geteuid() == 0:
        print("the worker runs as root: in production run sohoa as a user of its own",
              file=sys.stderr, flush=True)


def main(concurrency: int, hostname: str | None = None, broker_retries: int | None = None) -> NoReturn:
    """`run`, then exit at once: after a cold stop, billiard's exit-time finalizer can wait for ever
    on a queue lock that a terminated pool process held (seen after a second signal)."""
    status = run(concurrency, hostname, broker_retries)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
