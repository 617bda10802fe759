"""Pipeline tasks on real brokers with Celery workers in separate processes: the machine's Redis and
RabbitMQ, and the embedded SQLite broker that needs no server."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.faults import Group, sohoa_env, submit_file
from tests.synth import ASN_BATCH

ASN = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"
SOHOA = Path(sys.executable).parent / "sohoa"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-batch.pdf"  # in the repo


def environment(tmp_path: Path, broker: str | None) -> dict[str, str]:
    return sohoa_env(tmp_path / "data", broker, SOHOA_DOSSIER_CODE_GRAMMAR=ASN)


def wait_for(record: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists():
            data = json.loads(record.read_text())
            if data["status"] in ("done", "needs_review", "failed"):
                return data
        time.sleep(0.5)
    raise AssertionError(f"batch not finished after {timeout}s")


@pytest.mark.parametrize("broker", [
    "redis://127.0.0.1:6379/{db}",
    "amqp://guest:guest@127.0.0.1:5672//",
    None,  # embedded: kombu's SQLAlchemy transport on SQLite
])
def test_worker_processes_a_batch_page_by_page(tmp_path: Path, broker: str | None) -> None:
    if broker and "{db}" in broker:
        broker = broker.format(db=int(uuid.uuid4().int % 15) + 1)
    env = environment(tmp_path, broker)
    # In a session of its own, logged to a file (a pipe nobody reads would stall the worker).
    worker = Group([str(SOHOA), "worker", "--concurrency", "2"], env, tmp_path / "worker.log")
    try:
        batch_id = submit_file(env, ASN_BATCH)
        try:
            record = wait_for(tmp_path / "data" / "objects" / "batches" / batch_id / "batch.json")
        except AssertionError:
            print((tmp_path / "worker.log").read_text()[-5000:])
            raise
    finally:
        worker.stop()  # SIGTERM, then SIGKILL to the whole group if it lingers
    assert record["status"] == "done"
    assert [(d["dossier_id"], d["pages"]) for d in record["dossiers"]] == [
        ("ASN00123", [0]), ("ASN00124", [2]), ("ASN00125", [3]), ("ASN00126", [6]),
        ("ASN00127", [8])]


def test_new_dossiers_are_announced_to_webhooks_by_the_worker(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    heard: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            heard.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    env = environment(tmp_path, f"redis://127.0.0.1:6379/{int(uuid.uuid4().int % 15) + 1}")
    env["SOHOA_WEBHOOKS"] = json.dumps([{"url": f"http://127.0.0.1:{server.server_port}/h",
                                         "secret": "s", "agencies": ["ASN"]}])
    env["SOHOA_WEBHOOK_ALLOW_PRIVATE"] = "true"
    worker = Group([str(SOHOA), "worker", "--concurrency", "2"], env, tmp_path / "worker.log")
    try:
        batch_id = submit_file(env, ASN_BATCH)
        wait_for(tmp_path / "data" / "objects" / "batches" / batch_id / "batch.json")
        deadline = time.monotonic() + 60
        while len(heard) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
        server.shutdown()
    assert sorted(e["dossier_id"] for e in heard) == [f"ASN0012{i}" for i in range(3, 8)]
    assert {e["kind"] for e in heard} == {"created"}


@pytest.fixture
def local_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ingest.tasks on settings of this test (its cached settings and pipeline reset around it)."""
    from ingest import tasks
    from ingest.page_stages import DetectBlank, ReadBarcodes

    monkeypatch.setenv("SOHOA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SOHOA_DOSSIER_CODE_GRAMMAR", ASN)
    tasks.get_settings.cache_clear()
    tasks._pipeline.cache_clear()
    tasks._leases.cache_clear()
    tasks._pipeline().page_stages = [ReadBarcodes(), DetectBlank()]
    yield tasks
    tasks.get_settings.cache_clear()
    tasks._pipeline.cache_clear()
    tasks._leases.cache_clear()


def test_a_batch_whose_finishing_fails_for_good_is_recorded_as_failed(
        local_tasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a batch whose pages are done, when finishing it raises an error no retry can fix,
    then the batch is recorded as failed with that error (not left `processing`), original kept."""
    pipeline = local_tasks._pipeline()
    batch_id = pipeline.receive(ASN_BATCH)
    for index in range(pipeline.inspect(batch_id).pages):
        pipeline.process_page(batch_id, index)

    def broken(self: object, batch_id: str) -> None:
        raise ValueError("a bug in a dossier stage")

    monkeypatch.setattr(type(pipeline), "finalize", broken)
    result = local_tasks.finish_batch.apply(args=[batch_id])
    record = pipeline.record(batch_id)
    assert result.failed()
    assert (record.status, record.error) == ("failed",
                                                   "unexpected: ValueError: a bug in a dossier stage")
    assert pipeline.store.exists(record.original)


def test_a_batch_whose_finishing_meets_a_dependency_down_waits_instead_of_failing(
        local_tasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a batch whose pages are done, when finishing it keeps meeting a registry that is
    down (quick retries spent), then the batch waits for the registry, never `failed`."""
    from ingest.registry import RegistryUnavailable

    pipeline = local_tasks._pipeline()
    batch_id = pipeline.receive(EXAMPLE)
    for index in range(pipeline.inspect(batch_id).pages):
        pipeline.process_page(batch_id, index)

    def down(self: object, batch_id: str) -> None:
        raise RegistryUnavailable("registry answered 503 for ASN00123")

    monkeypatch.setattr(type(pipeline), "finalize", down)
    local_tasks.finish_batch.apply(args=[batch_id])
    record = pipeline.record(batch_id)
    assert record.status == "waiting"
    assert record.error == "registry unavailable: registry answered 503 for ASN00123"
    assert pipeline.catalog.batch(batch_id).status == "waiting"


def test_sending_the_same_file_again_resumes_a_waiting_batch(
        local_tasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a batch waiting for the registry, when the same file is submitted again, then its
    work is queued at once (the pauses start short again): nothing new is created."""
    from ingest.registry import RegistryUnavailable

    pipeline = local_tasks._pipeline()
    sample = EXAMPLE
    batch_id = pipeline.receive(sample)
    for index in range(pipeline.inspect(batch_id).pages):
        pipeline.process_page(batch_id, index)
    pipeline.wait(batch_id, RegistryUnavailable("registry answered 503"))
    pipeline.resume(batch_id)  # a first try came and went: the pause doubled
    pipeline.wait(batch_id, RegistryUnavailable("registry answered 503"))
    queued: list[str] = []
    monkeypatch.setattr(local_tasks.finish_batch, "delay", queued.append)
    again = local_tasks.submit(sample)
    assert again.batch_id == batch_id
    assert again.waiting_for["tries"] == 0
    assert queued == [batch_id]  # its finishing, all its pages being done
