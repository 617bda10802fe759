"""A crash or an outage never strands a batch: work lost with a killed worker comes back by itself,
and a batch stopped by a dependency waits for it instead of failing. Real workers, real brokers,
real kill -9; recovery timings shortened by SOHOA_RECOVERY (lease 6 s, watchdog every 2 s)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"  # 7 pages: two dossiers and a blank page
SAMPLE_DOSSIERS = [("000.00.60.H93-230405-0792", [0, 1, 2]), ("000.00.78.H22-230427-5992", [4, 5, 6])]
SOHOA = Path(sys.executable).parent / "sohoa"
FAST = json.dumps({"lease_s": 6, "tick_s": 2, "backoff_s": 2, "backoff_max_s": 4,
                   "task_retries": 1})


def environment(tmp_path: Path, broker: str | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
           "SOHOA_RECOVERY": FAST, "SOHOA_SCANNER_DISCOVERY": "false", **extra}
    env.pop("SOHOA_BROKER_URL", None)
    if broker:
        env["SOHOA_BROKER_URL"] = broker
    return env


class Group:
    """A command in a session of its own: killed with everything it started, whatever happens."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(40)
        self.kill()


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[Group]:
    group = Group(args, env, log)
    try:
        yield group
    finally:
        group.stop()


def submit(env: dict[str, str], sample: Path) -> str:
    code = ("import json, sys; from pathlib import Path; from ingest.tasks import submit; "
            "print(json.dumps(submit(Path(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, str(sample)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["batch_id"]


def pages_done(objects: Path, batch_id: str) -> int:
    return len(list((objects / "batches" / batch_id / "pages").glob("*.json")))


def wait_until(condition, timeout: float, what: str, logs: list[Path]) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs
                      if p.exists())
    raise AssertionError(f"{what}: not after {timeout} s\n{tails}")


def record(objects: Path, batch_id: str) -> dict:
    path = objects / "batches" / batch_id / "batch.json"
    return json.loads(path.read_text()) if path.exists() else {}


def versions(objects: Path, code: str) -> list[str]:
    return sorted(p.parent.name for p in (objects / "dossiers" / code).glob("v*/manifest.json"))


def redis_url() -> str:
    return f"redis://127.0.0.1:6379/{uuid.uuid4().int % 15 + 1}"


@pytest.mark.parametrize("broker", ["redis", "amqp", "embedded"])
def test_a_batch_whose_worker_is_killed_finishes_on_another_without_anyone_acting(
        tmp_path: Path, broker: str) -> None:
    """Given a worker processing a 7-page batch, when its whole process tree is killed with
    SIGKILL mid-batch and another worker starts, then the batch finishes by itself with its two
    dossiers, each stored as exactly one version."""
    url = {"redis": redis_url(), "amqp": "amqp://guest:guest@127.0.0.1:5672//",
           "embedded": None}[broker]
    env = environment(tmp_path, url)
    objects = tmp_path / "data" / "objects"
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    first = Group([str(SOHOA), "worker", "--concurrency", "2"], env, logs[0])
    try:
        batch_id = submit(env, SAMPLE)
        wait_until(lambda: pages_done(objects, batch_id) >= 1, 120, "a first page", logs)
    finally:
        first.kill()  # SIGKILL to the worker, its pool processes and their Tesseract children
    assert pages_done(objects, batch_id) < 7, "the batch finished before the kill: no test"
    with running([str(SOHOA), "worker", "--concurrency", "2"], env, logs[1]):
        took = wait_until(lambda: record(objects, batch_id).get("status") == "done", 120,
                          "the batch done after the kill", logs)
    done = record(objects, batch_id)
    assert [(d["dossier_id"], d["pages"]) for d in done["dossiers"]] == SAMPLE_DOSSIERS
    assert all(versions(objects, code) == ["v0001"] for code, _ in SAMPLE_DOSSIERS)
    assert took < 120


class Registry(BaseHTTPRequestHandler):
    """The processing system's registry: every code is known, unless it is down (503)."""

    up = threading.Event()
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if not self.up.is_set():
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"procedure": "1.000948", "applicant": "Nguyễn Văn An"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[tuple[str, type[Registry]]]:
    Registry.up.clear()
    Registry.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/dossiers/{{code}}", Registry
    finally:
        server.shutdown()
        server.server_close()


def test_a_batch_waits_while_the_registry_is_down_and_finishes_when_it_answers(
        tmp_path: Path, registry: tuple[str, type[Registry]]) -> None:
    """Given `sohoa serve` with a registry that is down, when a scan arrives in its watched
    folder, then the batch is `waiting` for the registry (never `failed`), and once the registry
    answers again it finishes by itself, its dossiers carrying what the registry said."""
    url, handler = registry
    folder = tmp_path / "mfp-1"
    folder.mkdir()
    env = environment(tmp_path, None, SOHOA_REGISTRY_URL=url, SOHOA_REGISTRY_ALLOW_PRIVATE="true",
                      SOHOA_FOLDER=json.dumps({"devices": {"mfp-1": str(folder)},
                                               "poll_seconds": 0.5, "settle_seconds": 0.5}))
    objects = tmp_path / "data" / "objects"
    log = tmp_path / "serve.log"
    with running([str(SOHOA), "serve", "--port", "0"], env, log):
        (folder / "scan.pdf").write_bytes(SAMPLE.read_bytes())

        def batch() -> dict:
            found = list(objects.glob("batches/*/batch.json"))
            return json.loads(found[0].read_text()) if found else {}

        wait_until(lambda: batch().get("status") == "waiting", 180, "the batch waiting", [log])
        waiting = batch()
        assert waiting["waiting_for"]["dependency"] == "registry"
        assert waiting["error"].startswith("registry unavailable: registry answered 503")
        time.sleep(8)  # tried again (after 2 s, then 4 s), still down: it waits, never fails
        still = batch()
        assert still["status"] == "waiting" and still["waiting_for"]["tries"] >= 1
        asked = len(handler.asked)
        handler.up.set()
        wait_until(lambda: batch().get("status") == "done", 60, "the batch done", [log])
    done = batch()
    assert asked >= 2
    assert done["error"] is None and "waiting_for" not in done
    assert [(d["dossier_id"], d["pages"]) for d in done["dossiers"]] == SAMPLE_DOSSIERS
    manifest = json.loads((objects / "dossiers" / SAMPLE_DOSSIERS[0][0] / "v0001" /
                           "manifest.json").read_text())
    assert manifest["registry"]["procedure"] == "1.000948"
