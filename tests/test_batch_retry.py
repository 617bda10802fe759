"""A batch that waits for a dependency, seen and resumed by people: the batch status names what it
waits for; `POST /api/v1/batches/{id}/retry` and `sohoa batch retry` resume it now; both are
scoped like reads and refuse what they cannot do with a clear answer, never a 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.registry import RegistryUnavailable
from ingest.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"
AGENCY = "000.00.60.H93"
SOHOA = Path(sys.executable).parent / "sohoa"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("retry") / "data", workers=1,
                        scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    resumed: list[str] = []

    def resume(batch_id: str) -> dict:  # what ingest.tasks.retry does, without the queue
        resumed.append(batch_id)
        return pipeline.resume(batch_id, reset=True)

    batch_id = pipeline.receive(SAMPLE, agency=AGENCY)
    for i in range(pipeline.inspect(batch_id).pages):
        pipeline.process_page(batch_id, i)
    pipeline.wait(batch_id, RegistryUnavailable("registry answered 503 for 000.00.60.H93-…"))
    client = TestClient(create_app(settings, submit=lambda *a, **k: {}, resume=resume))
    client.__enter__()
    store = KeyStore(settings.storage.catalog_url)
    keys = {"scanner": store.create("scanner", [AGENCY]),
            "processor": store.create("processor", [AGENCY]),
            "other_scanner": store.create("scanner", ["000.00.78.H22"]),
            "admin": store.create("admin", ["*"])}
    yield client, keys, batch_id, resumed, pipeline
    client.__exit__(None, None, None)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_waiting_batch_says_what_it_waits_for(env) -> None:
    client, keys, batch_id, _, _ = env
    body = client.get(f"/api/v1/batches/{batch_id}", headers=auth(keys["scanner"])).json()
    assert body["status"] == "waiting"
    assert body["error"] == "registry unavailable: registry answered 503 for 000.00.60.H93-…"
    assert body["waiting_for"]["dependency"] == "registry"
    assert body["waiting_for"]["next_try"]


@pytest.mark.parametrize("who, status", [("other_scanner", 404), ("processor", 403)])
def test_retry_is_scoped_like_reads(env, who: str, status: int) -> None:
    client, keys, batch_id, resumed, _ = env
    before = len(resumed)
    r = client.post(f"/api/v1/batches/{batch_id}/retry", headers=auth(keys[who]))
    assert r.status_code == status
    assert len(resumed) == before


@pytest.mark.parametrize("batch_id", ["b" + "0" * 24, "x" * 3000, "..%2F..%2Fetc", "B" * 25])
def test_retry_of_a_missing_or_malformed_batch_is_404(env, batch_id: str) -> None:
    client, keys, _, _, _ = env
    assert client.post(f"/api/v1/batches/{batch_id}/retry",
                       headers=auth(keys["scanner"])).status_code == 404
    assert client.get(f"/api/v1/batches/{batch_id}",
                      headers=auth(keys["scanner"])).status_code == 404


def test_retry_without_a_key_is_401(env) -> None:
    client, _, batch_id, _, _ = env
    assert client.post(f"/api/v1/batches/{batch_id}/retry").status_code == 401


def test_retry_resumes_the_batch_now_and_is_audited(env) -> None:
    client, keys, batch_id, resumed, pipeline = env
    r = client.post(f"/api/v1/batches/{batch_id}/retry", headers=auth(keys["scanner"]))
    assert r.status_code == 202
    assert resumed[-1] == batch_id
    assert r.json()["waiting_for"]["tries"] == 0  # a person asked: the pauses start short again
    entries = pipeline.audit.entries(limit=1000)
    assert any(e["action"] == "batch.retry" and e["target"] == batch_id for e in entries)


def test_a_finished_batch_cannot_be_retried(env) -> None:
    client, keys, batch_id, _, pipeline = env
    pipeline.finalize(batch_id)
    r = client.post(f"/api/v1/batches/{batch_id}/retry", headers=auth(keys["admin"]))
    assert r.status_code == 409
    # the sample's H22 dossier waits in review for H22: writes are scoped like reads
    assert r.json()["detail"] == "the batch is already needs_review"


def test_the_cli_retries_a_waiting_batch_and_names_a_missing_one(tmp_path: Path) -> None:
    """Given a batch waiting for the registry, when `sohoa batch retry` runs, then the batch is
    queued for the workers; `sohoa batch show` says what it waited for; a wrong id is an error."""
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"),
           "SOHOA_SCANNER_DISCOVERY": "false"}
    env.pop("SOHOA_BROKER_URL", None)
    settings = Settings(data_dir=tmp_path / "data", workers=1)
    pipeline = Pipeline.from_settings(settings)
    batch_id = pipeline.receive(SAMPLE)
    pipeline.inspect(batch_id)
    pipeline.wait(batch_id, RegistryUnavailable("registry answered 503"))
    shown = subprocess.run([str(SOHOA), "batch", "show", batch_id], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "waiting for the registry since" in shown.stdout
    retried = subprocess.run([str(SOHOA), "batch", "retry", batch_id], env=env,
                             capture_output=True, text=True, timeout=60)
    assert retried.returncode == 0, retried.stderr
    assert f"batch {batch_id}: waiting, queued for the workers" in retried.stdout
    missing = subprocess.run([str(SOHOA), "batch", "retry", "b" + "0" * 24], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no batch b000" in missing.stderr


def test_sohoa_ingest_names_the_registry_when_it_is_down_and_resumes_the_batch_later(
        tmp_path: Path) -> None:
    """Given a registry that is down, when `sohoa ingest` finishes the pages, then it exits 1
    saying the registry is unavailable (not storage), the batch waits for the registry, and the
    same command once the registry answers finishes it without reading the pages again."""
    from http.server import ThreadingHTTPServer
    from threading import Thread

    from tests.faults import Registry

    Registry.up.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
           "SOHOA_REGISTRY_URL": f"http://127.0.0.1:{server.server_port}/d/{{code}}",
           "SOHOA_REGISTRY_ALLOW_PRIVATE": "true", "SOHOA_SCANNER_DISCOVERY": "false"}
    try:
        first = subprocess.run([str(SOHOA), "ingest", str(SAMPLE)], env=env, capture_output=True,
                               text=True, timeout=300)
        assert first.returncode == 1
        assert "interrupted, registry unavailable: registry answered 503" in first.stderr
        assert "storage" not in first.stderr
        records = list((tmp_path / "data" / "objects").glob("batches/*/batch.json"))
        waiting = json.loads(records[0].read_text())
        assert (waiting["status"], waiting["waiting_for"]["dependency"]) == ("waiting", "registry")
        pages = {p: p.stat().st_mtime_ns for p in records[0].parent.glob("pages/*.json")}
        Registry.up.set()
        second = subprocess.run([str(SOHOA), "ingest", str(SAMPLE)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        assert ": done (batch" in second.stdout
        assert {p: p.stat().st_mtime_ns for p in pages} == pages  # pages not read again
    finally:
        server.shutdown()
        server.server_close()
