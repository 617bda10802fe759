"""`sohoa serve` and `sohoa worker` stop when asked, within 30 s, leaving nothing running; any number
of workers run on one machine; a worker that cannot start says so with its exit status. Real
processes, each command in a session of its own so that whatever it started can be found (and,
should a test fail, killed)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import free_port, kill_session, session, session_gone

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"  # 7 pages, two dossiers
SOHOA = Path(sys.executable).parent / "sohoa"
STOP_LIMIT_S = 30.0


class Command:
    """A sohoa command in a new session (its pid is the session id), logged to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path,
                 program: list[str] | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen([*(program or [str(SOHOA)]), *args], env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.sid = self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)  # its main process only, as systemd or `kill PID` would

    def stopped_within(self, limit: float) -> tuple[int, float]:
        """(exit status, seconds) once it has exited; fails past `limit` seconds."""
        start = time.monotonic()
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {limit:.0f} s after the signal:\n"
                                 + self.text()[-4000:]) from None
        return code, time.monotonic() - start

    def kill_all(self) -> None:
        """Last resort: SIGKILL to every process of the session, whatever group it is in."""
        kill_session(self.sid, self.proc)
        self._out.close()


@pytest.fixture
def start() -> Iterator[Callable[..., Command]]:
    """Starts sohoa commands; whatever they started is killed at the end, even on failure."""
    started: list[Command] = []

    def run(args: list[str], env: dict[str, str], log: Path,
            program: list[str] | None = None) -> Command:
        started.append(Command(args, env, log, program))
        return started[-1]

    yield run
    for command in started:
        command.kill_all()


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # A queue of its own: tests running at once share the machine's Redis and RabbitMQ.
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "1",
           "SOHOA_SCANNER_DISCOVERY": "false",
           "SOHOA_BROKER_QUEUE": f"sohoa-test-{uuid.uuid4().hex[:12]}"}
    env.pop("SOHOA_BROKER_URL", None)
    return {**env, **extra}


def api_key(env: dict[str, str]) -> str:
    out = subprocess.run([str(SOHOA), "apikey", "create", "--role", "scanner", "--agency", "*"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               command: Command) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        assert command.proc.poll() is None, f"exited while waiting for {what}:\n{command.text()[-4000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout:.0f} s:\n{command.text()[-4000:]}")


def serving_a_batch(tmp_path: Path, start: Callable[..., Command]) -> tuple[Command, str, dict]:
    """`sohoa serve` on embedded defaults with the sample batch uploaded and half processed."""
    env, port = serve_env(tmp_path), free_port()
    headers = {"Authorization": f"Bearer {api_key(env)}"}
    serve = start(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    api = f"http://127.0.0.1:{port}/api/v1"

    def answers() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{api}/batches/x").status_code == 401
        return False

    wait_until(answers, 60, "API", serve)
    with SAMPLE.open("rb") as f:
        created = httpx.post(f"{api}/batches", headers=headers, timeout=60,
                             files={"file": ("sample-batch.pdf", f, "application/pdf")})
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]

    def underway() -> dict | None:
        status = httpx.get(f"{api}/batches/{batch_id}", headers=headers, timeout=10).json()
        return status if status.get("pages_done", 0) >= 1 else None

    status = wait_until(underway, 120, "page processed", serve)
    assert isinstance(status, dict) and status["pages_done"] < status["pages"], status
    return serve, batch_id, env


def batch_record(env: dict[str, str], batch_id: str) -> dict:
    path = Path(env["SOHOA_DATA_DIR"]) / "objects" / "batches" / batch_id / "batch.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_a_signal_while_a_batch_is_processed(
        tmp_path: Path, start: Callable[..., Command], sig: int) -> None:
    """Given `sohoa serve` processing an uploaded batch, when its main process alone gets SIGTERM
    (or SIGINT), then it exits with status 0 within 30 s and no process it started (API, worker,
    pool processes, Tesseract children) is left in its session."""
    serve, _, _ = serving_a_batch(tmp_path, start)
    assert len(session(serve.sid)) >= 3  # serve, its worker, the worker's pool process at least
    serve.signal(sig)
    code, took = serve.stopped_within(STOP_LIMIT_S)
    print(f"serve stopped by {signal.Signals(sig).name} in {took:.1f} s")
    assert code == 0, serve.text()[-4000:]
    assert session_gone(serve.sid) == [], serve.text()[-4000:]
    assert "warm stop" in serve.text()


def test_a_second_signal_forces_the_stop_and_the_page_in_hand_goes_back_to_the_queue(
        tmp_path: Path, start: Callable[..., Command]) -> None:
    """Given `sohoa serve` processing an uploaded batch, when it gets SIGTERM and a second SIGTERM
    half a second later, then it stops at once (cold stop of its worker) with a non-zero status and
    nothing left running; and a worker started afterwards finishes the batch (the pages it had in
    hand went back to the queue)."""
    serve, batch_id, env = serving_a_batch(tmp_path, start)
    serve.signal(signal.SIGTERM)
    time.sleep(0.5)
    serve.signal(signal.SIGTERM)
    code, took = serve.stopped_within(15)
    print(f"serve forced to stop in {took:.1f} s")
    assert code == 1, serve.text()[-4000:]
    assert session_gone(serve.sid) == [], serve.text()[-4000:]
    assert "forcing the stop" in serve.text() and "cold stop" in serve.text()
    assert batch_record(env, batch_id).get("status") == "processing"

    worker = start(["worker"], env, tmp_path / "worker.log")
    wait_until(lambda: batch_record(env, batch_id).get("status") in ("done", "needs_review"), 180,
               "batch finished", worker)
    assert batch_record(env, batch_id)["status"] == "done"
    worker.signal(signal.SIGTERM)
    assert worker.stopped_within(STOP_LIMIT_S)[0] == 0, worker.text()[-4000:]
    assert session_gone(worker.sid) == []


def redis_url() -> str:
    """A Redis database nobody seems to use now (tests run beside others on the machine's Redis):
    an empty one, else one with no task queued or unacknowledged, else any."""
    import redis

    dbs = {db: redis.Redis(host="127.0.0.1", port=6379, db=db) for db in random.sample(range(1, 16), 15)}
    quiet = ([db for db, r in dbs.items() if r.dbsize() == 0]
             or [db for db, r in dbs.items() if r.llen("sohoa") == 0 and r.hlen("unacked") == 0]
             or list(dbs))
    return f"redis://127.0.0.1:6379/{quiet[0]}"


def submit(env: dict[str, str]) -> str:
    """Queues the sample batch, made unique (a trailing PDF comment): RabbitMQ's only vhost is
    shared with whatever else runs on this machine, and a worker of another test taking a task of
    the same batch id would run it on its own data."""
    unique = Path(env["SOHOA_DATA_DIR"]).parent / "sample-batch.pdf"
    unique.write_bytes(SAMPLE.read_bytes() + f"\n% {uuid.uuid4()}\n".encode())
    code = ("import json, sys; from pathlib import Path; from ingest.tasks import submit; "
            "print(json.dumps(submit(Path(sys.argv[1])).as_dict()))")
    out = subprocess.run([sys.executable, "-c", code, str(unique)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["batch_id"]


READY = re.compile(r"(\S+@\S+) ready\.")


@pytest.mark.parametrize("broker", ["redis", "amqp", "embedded"])
def test_two_workers_on_one_machine_both_run_and_both_stop(
        tmp_path: Path, start: Callable[..., Command], broker: str) -> None:
    """Given two `sohoa worker` processes started at once on the same machine and broker (no
    --hostname), when a batch is submitted, then both stay up with node names of their own and the
    batch finishes; and SIGTERM stops each with status 0, leaving no process behind."""
    env = serve_env(tmp_path)
    if broker != "embedded":
        env["SOHOA_BROKER_URL"] = (redis_url() if broker == "redis"
                                   else "amqp://guest:guest@127.0.0.1:5672//")
    workers = [start(["worker", "--concurrency", "1"], env, tmp_path / f"worker{i}.log")
               for i in (1, 2)]
    names = [wait_until(lambda w=w: READY.search(w.text()), 60, "ready worker", w).group(1)
             for w in workers]
    assert names[0] != names[1]
    batch_id = submit(env)
    wait_until(lambda: batch_record(env, batch_id).get("status") in ("done", "needs_review", "failed"),
               180, "batch finished", workers[0])
    assert batch_record(env, batch_id)["status"] == "done"
    assert [w.proc.poll() for w in workers] == [None, None], [w.text()[-3000:] for w in workers]
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        code, took = w.stopped_within(STOP_LIMIT_S)
        print(f"{broker} worker stopped in {took:.1f} s")
        assert code == 0, w.text()[-4000:]
        assert session_gone(w.sid) == [], w.text()[-4000:]


def test_a_worker_that_cannot_reach_its_broker_exits_non_zero(
        tmp_path: Path, start: Callable[..., Command]) -> None:
    """Given SOHOA_BROKER_URL pointing to a port where nothing listens, when `sohoa worker` starts
    with its broker retries bounded, then it gives up with exit status 1 and says so."""
    env = serve_env(tmp_path, SOHOA_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    worker = start(["worker", "--broker-retries", "1"], env, tmp_path / "worker.log")
    code, took = worker.stopped_within(60)
    print(f"gave up in {took:.1f} s")
    assert code == 1, worker.text()[-4000:]
    assert "the worker did not start" in worker.text()
    assert session_gone(worker.sid) == []


def test_a_worker_whose_node_name_is_taken_exits_non_zero(
        tmp_path: Path, start: Callable[..., Command]) -> None:
    """Given a worker running on RabbitMQ as node NAME, when a second worker starts with
    --hostname NAME, then the second one exits at once with status 1 and the first runs on."""
    env = serve_env(tmp_path, SOHOA_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//")
    name = f"taken-{os.getpid()}-{random.randrange(10**6)}@%h"
    first = start(["worker", "--hostname", name], env, tmp_path / "first.log")
    wait_until(lambda: READY.search(first.text()), 60, "ready worker", first)
    second = start(["worker", "--hostname", name], env, tmp_path / "second.log")
    code, _ = second.stopped_within(60)
    assert code == 1, second.text()[-4000:]
    assert "ResourceLocked" in second.text()
    assert first.proc.poll() is None
    first.signal(signal.SIGINT)
    assert first.stopped_within(STOP_LIMIT_S)[0] == 0, first.text()[-4000:]
    assert session_gone(first.sid) == session_gone(second.sid) == []


def test_a_page_still_running_when_the_warm_stop_is_over_goes_back_to_the_queue(
        tmp_path: Path, start: Callable[..., Command]) -> None:
    """Given a worker whose warm stop may last 0.5 s (instead of 25 s) processing a batch, when it
    gets SIGTERM while a page is in hand, then it stops cold by itself (status 1, nothing left
    running) and a worker started afterwards finishes the batch: the page went back to the queue."""
    env = serve_env(tmp_path)
    (tmp_path / "data").mkdir()  # (made by the sohoa command, which this is not)
    short = [sys.executable, "-c", "import ingest.worker as w; w.STOP_SECONDS = 0.5; w.main(1)"]
    worker = start([], env, tmp_path / "short.log", program=short)
    wait_until(lambda: READY.search(worker.text()), 60, "ready worker", worker)
    batch_id = submit(env)
    wait_until(lambda: worker.text().count("received") > worker.text().count("succeeded") >= 1,
               120, "a page in hand after the first", worker)
    worker.signal(signal.SIGTERM)
    code, took = worker.stopped_within(STOP_LIMIT_S)
    print(f"worker stopped cold after its warm stop in {took:.1f} s")
    assert code == 1, worker.text()[-4000:]
    assert "cold stop (pages still running)" in worker.text()
    assert session_gone(worker.sid) == []
    assert batch_record(env, batch_id)["status"] == "processing"

    again = start(["worker"], env, tmp_path / "again.log")
    wait_until(lambda: batch_record(env, batch_id).get("status") in ("done", "needs_review"), 180,
               "batch finished", again)
    assert batch_record(env, batch_id)["status"] == "done"
