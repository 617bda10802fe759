"""A crash or an outage never strands a batch: work lost with a killed worker comes back by itself,
and a batch stopped by a dependency waits for it instead of failing. Real workers, real brokers,
real kill -9; recovery timings shortened by SOHOA_RECOVERY (lease 6 s, watchdog every 2 s)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.faults import Cuttable, Group, Registry, free_port, running, sohoa_env, submit_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"  # 7 pages: two dossiers and a blank page
SAMPLE_DOSSIERS = [("000.00.60.H93-230405-0792", [0, 1, 2]), ("000.00.78.H22-230427-5992", [4, 5, 6])]
SOHOA = Path(sys.executable).parent / "sohoa"
FAST = json.dumps({"lease_s": 6, "tick_s": 2, "backoff_s": 2, "backoff_max_s": 4,
                   "task_retries": 1})


def environment(tmp_path: Path, broker: str | None, **extra: str) -> dict[str, str]:
    return sohoa_env(tmp_path / "data", broker, SOHOA_RECOVERY=FAST, **extra)


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
        batch_id = submit_file(env, SAMPLE)
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


def test_a_batch_waits_while_object_storage_is_down_and_finishes_when_it_is_back(
        tmp_path: Path) -> None:
    """Given `sohoa serve` on S3 (moto's server behind a proxy we can cut), when object storage
    goes away while a batch is being processed, then the batch waits for `object storage`
    (recorded in the catalog while the store cannot take it), and once the store is back it
    finishes by itself, every dossier stored once."""
    from moto.server import ThreadedMotoServer

    from storage.catalog import Catalog
    from storage.s3 import S3ObjectStore

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    proxy = Cuttable((host, port))
    bucket = f"sohoa-{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "mfp-1"
    folder.mkdir()
    env = environment(tmp_path, None, SOHOA_S3_ENDPOINT=f"127.0.0.1:{proxy.port}",
                      SOHOA_S3_ACCESS_KEY="test", SOHOA_S3_SECRET_KEY="test",
                      SOHOA_S3_SECURE="false", SOHOA_S3_REGION="us-east-1", SOHOA_S3_BUCKET=bucket,
                      SOHOA_FOLDER=json.dumps({"devices": {"mfp-1": str(folder)},
                                               "poll_seconds": 0.5, "settle_seconds": 0.5}))
    log = tmp_path / "serve.log"
    try:
        with running([str(SOHOA), "serve", "--port", "0"], env, log):
            wait_until(lambda: b"Application startup complete" in log.read_bytes(), 60,
                       "serve started", [log])
            store = S3ObjectStore.connect(f"{host}:{port}", "test", "test", bucket, secure=False,
                                          region="us-east-1")
            (folder / "scan.pdf").write_bytes(SAMPLE.read_bytes())

            def batch_id() -> str | None:
                keys = [k for k in store.list("batches/") if k.endswith("/batch.json")]
                return keys[0].split("/")[1] if keys else None

            def s3_record() -> dict:
                found = batch_id()
                return json.loads(store.get(f"batches/{found}/batch.json")) if found else {}

            def pages() -> int:
                found = batch_id()
                return len([k for k in store.list(f"batches/{found}/pages/")
                            if k.endswith(".json")]) if found else 0

            wait_until(lambda: pages() >= 1, 120, "a first page stored", [log])
            proxy.down()
            catalog = Catalog(f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}")
            found = batch_id()

            def waiting() -> bool:
                record = catalog.batch(found) or {}
                return record.status == "waiting"

            wait_until(waiting, 120, "the batch waiting", [log])
            assert catalog.batch(found).waiting_for["dependency"] == "object storage"
            assert catalog.batch(found).error.startswith("object storage unavailable: ")
            time.sleep(6)  # down for several tries: still waiting, never failed
            assert catalog.batch(found).status == "waiting"
            proxy.up()
            wait_until(lambda: s3_record().get("status") == "done", 120, "the batch done", [log])
        done = s3_record()
        assert [(d["dossier_id"], d["pages"]) for d in done["dossiers"]] == SAMPLE_DOSSIERS
        for code, _ in SAMPLE_DOSSIERS:
            manifests = [k for k in store.list(f"dossiers/{code}/") if k.endswith("manifest.json")]
            assert manifests == [f"dossiers/{code}/v0001/manifest.json"]
        assert catalog.batch(found).status == "done"
    finally:
        proxy.down()
        moto.stop()


def test_an_upload_cut_by_a_killed_server_leaves_no_batch_and_is_taken_when_sent_again(
        tmp_path: Path) -> None:
    """Given `sohoa serve` receiving an upload, when the server is killed (SIGKILL to all of it)
    with half the body sent, then no batch exists (the client got no 202 and still has the
    file), and the restarted server takes the same upload and digitizes it."""
    import socket

    import httpx

    env = environment(tmp_path, None)
    key = subprocess.run([str(SOHOA), "apikey", "create", "--role", "scanner", "--agency", "*"],
                         env=env, capture_output=True, text=True, timeout=60).stdout.strip()
    port = free_port()
    log = tmp_path / "serve.log"
    boundary = "sohoa-cut-upload"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"scan.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode() \
        + SAMPLE.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    objects = tmp_path / "data" / "objects"
    with running([str(SOHOA), "serve", "--port", str(port)], env, log) as first:
        wait_until(lambda: b"Uvicorn running on" in log.read_bytes(), 60,  # listening
                   "serve started", [log])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(f"POST /api/v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n"
                           f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
                           .encode() + body[:len(body) // 2])
            time.sleep(1)
            first.kill()
    assert not list(objects.glob("batches/*/batch.json"))
    with running([str(SOHOA), "serve", "--port", str(port)], env, log):
        wait_until(lambda: log.read_bytes().count(b"Uvicorn running on") == 2, 60,
                   "serve started again", [log])
        with SAMPLE.open("rb") as f:
            r = httpx.post(f"http://127.0.0.1:{port}/api/v1/batches",
                           files={"file": ("scan.pdf", f, "application/pdf")},
                           headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
        wait_until(lambda: record(objects, batch_id).get("status") == "done", 120,
                   "the batch done", [log])
    assert [(d["dossier_id"], d["pages"]) for d in record(objects, batch_id)["dossiers"]] == \
        SAMPLE_DOSSIERS

