"""The MinIO/S3 object store through the real minio SDK, against an S3-protocol server on loopback
(moto's server mode: versioning and object lock included)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio.error import S3Error
from moto.server import ThreadedMotoServer

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from storage.objects import (
    LocalObjectStore,
    ObjectExists,
    ObjectMissing,
    ObjectStore,
    get_all,
)
from storage.s3 import S3ObjectStore
from tests.synth import ASN_BATCH


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def store_at(endpoint: str, object_lock: bool = False) -> S3ObjectStore:
    return S3ObjectStore.connect(endpoint, "test", "test", f"sohoa-{uuid.uuid4().hex[:12]}",
                                 secure=False, region="us-east-1", object_lock=object_lock)


def without_conditional_writes(store: S3ObjectStore) -> S3ObjectStore:
    """`store` as on a server that ignores If-None-Match (an older MinIO): the header never
    reaches the server."""
    put = store.client._put_object

    def without_condition(bucket: str, key: str, data: bytes, headers: dict | None = None,
                          query_params: dict | None = None) -> object:
        return put(bucket, key, data, {k: v for k, v in (headers or {}).items()
                                       if k != "If-None-Match"}, query_params)

    store.client._put_object = without_condition  # type: ignore[method-assign]
    return store


def test_bytes_round_trip_exactly(endpoint: str) -> None:
    store = store_at(endpoint)
    data = os.urandom(300_000)
    info = store.put("batches/b1/original.pdf", data)
    assert store.get("batches/b1/original.pdf") == data
    assert info.sha256 == hashlib.sha256(data).hexdigest() == store.sha256(info.key)


def test_large_file_goes_up_in_parts_and_comes_down_as_a_stream(endpoint: str,
                                                                 tmp_path: Path) -> None:
    store = store_at(endpoint)
    big = tmp_path / "scan.tiff"
    big.write_bytes(os.urandom(40 * 1024 * 1024))  # > 2 parts of 16 MiB
    store.put_file("batches/b2/original.tiff", big)
    with store.local_path("batches/b2/original.tiff") as copy:
        assert copy.read_bytes() == big.read_bytes()
    with store.open("batches/b2/original.tiff") as stream:
        assert stream.read(10) == big.read_bytes()[:10]


def test_immutable_objects_refuse_different_content(endpoint: str) -> None:
    store = store_at(endpoint)
    store.put("dossiers/X/v0001/fields.json", b"{}")
    store.put("dossiers/X/v0001/fields.json", b"{}")  # same bytes: fine
    with pytest.raises(ObjectExists):
        store.put("dossiers/X/v0001/fields.json", b'{"a": 1}')
    # and neither the same bytes again nor the refused ones wrote a version of the key
    assert store.get("dossiers/X/v0001/fields.json") == b"{}"
    assert len(store.versions("dossiers/X/v0001/fields.json")) == 1


def test_immutable_objects_are_kept_on_a_server_that_ignores_conditional_writes(
        endpoint: str) -> None:
    store = without_conditional_writes(store_at(endpoint))
    store.put("dossiers/X/v0001/fields.json", b"{}")
    store.put("dossiers/X/v0001/fields.json", b"{}")
    with pytest.raises(ObjectExists):
        store.put("dossiers/X/v0001/fields.json", b'{"a": 1}')
    assert store._conditional_writes is False
    assert store.get("dossiers/X/v0001/fields.json") == b"{}"


def test_overwriting_a_record_keeps_its_versions(endpoint: str) -> None:
    store = store_at(endpoint)
    store.put("batches/b3/batch.json", b"received")
    store.put("batches/b3/batch.json", b"done", overwrite=True)
    assert store.get("batches/b3/batch.json") == b"done"
    assert len(store.versions("batches/b3/batch.json")) == 2


def test_listing_and_missing_objects(endpoint: str) -> None:
    store = store_at(endpoint)
    for key in ("a/1", "a/2", "b/1"):
        store.put(key, b"x")
    assert list(store.list("a/")) == ["a/1", "a/2"]
    assert not store.exists("a/3")
    with pytest.raises(ObjectMissing):
        store.get("a/3")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_both_stores_answer_the_whole_protocol(endpoint: str, tmp_path: Path, kind: str) -> None:
    """Size, ranged reads and the file path (or none) through the protocol alone: what the API's
    PDF route uses, with no `isinstance` on a backend."""
    store: ObjectStore = (LocalObjectStore(tmp_path / "objects") if kind == "local"
                          else store_at(endpoint))
    data = os.urandom(5000)
    store.put("dossiers/X/v0001/dossier.pdf", data)
    assert store.size("dossiers/X/v0001/dossier.pdf") == 5000
    with store.open_range("dossiers/X/v0001/dossier.pdf", 100, 250) as part:
        assert part.read() == data[100:350]
    with store.open_range("dossiers/X/v0001/dossier.pdf", 4990, 10) as part:
        assert part.read(4) + part.read() == data[4990:]
    with store.open("dossiers/X/v0001/dossier.pdf") as whole:
        assert whole.read() == data
    path = store.file_path("dossiers/X/v0001/dossier.pdf")
    assert (path is not None) == (kind == "local")
    assert path is None or path.read_bytes() == data
    for call in (lambda: store.size("a/3"), lambda: store.open_range("a/3", 0, 1),
                 lambda: store.open("a/3")):
        with pytest.raises(ObjectMissing):
            call()


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_objects_read_together_come_back_in_the_order_asked(endpoint: str, tmp_path: Path,
                                                             kind: str) -> None:
    # Given twenty objects of different sizes, and one key that is missing
    store: ObjectStore = (LocalObjectStore(tmp_path / "objects") if kind == "local"
                          else store_at(endpoint))
    data = {f"batches/b1/pages/{i:05d}.json": os.urandom(100 * (i + 1)) for i in range(20)}
    for key, value in data.items():
        store.put(key, value)
    keys = list(reversed(data))
    # When they are read together (side by side from S3), then each is where it was asked for
    assert get_all(store, keys) == [data[k] for k in keys]
    # and a missing one is reported as missing, as one read would
    with pytest.raises(ObjectMissing):
        get_all(store, [*keys[:3], "batches/b1/pages/99999.json"])


def test_claims_are_won_once(endpoint: str) -> None:
    store = store_at(endpoint)
    assert store.create("dossiers/X/v0001/.claim", b"batch-1")
    assert not store.create("dossiers/X/v0001/.claim", b"batch-2")
    assert store.get("dossiers/X/v0001/.claim") == b"batch-1"


def test_a_claim_is_one_conditional_put_where_the_server_enforces_it(endpoint: str) -> None:
    # Given a server that refuses a second If-None-Match: * PUT of a key (moto, like S3 and MinIO)
    store = store_at(endpoint)
    store.create("dossiers/X/v0001/.claim", b"batch-1")
    assert store._conditional_writes is True
    # When a claim is lost, then it wrote no version of the key
    assert not store.create("dossiers/X/v0001/.claim", b"batch-2")
    assert len(store.versions("dossiers/X/v0001/.claim")) == 1


def test_claims_are_won_once_on_a_server_that_ignores_conditional_writes(endpoint: str) -> None:
    # Given a server that ignores If-None-Match (an older MinIO)
    store = without_conditional_writes(store_at(endpoint))
    # When two claims of one key are made, then the store has noticed and the first still wins
    assert store.create("dossiers/X/v0001/.claim", b"batch-1")
    assert store._conditional_writes is False
    assert not store.create("dossiers/X/v0001/.claim", b"batch-2")
    assert store.create("dossiers/X/v0002/.claim", b"batch-2")


def test_worm_retention_refuses_deletes(endpoint: str) -> None:
    store = store_at(endpoint, object_lock=True)
    store.put("dossiers/X/v0001/dossier.pdf", b"%PDF-1.7 ...", retention_days=30)
    version = store.versions("dossiers/X/v0001/dossier.pdf")[0]
    with pytest.raises(S3Error):
        store.client.remove_object(store.bucket, "dossiers/X/v0001/dossier.pdf",
                                   version_id=version)
    assert store.get("dossiers/X/v0001/dossier.pdf") == b"%PDF-1.7 ..."


def test_pipeline_runs_on_the_s3_store(endpoint: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=2, s3_endpoint=endpoint,
                        s3_access_key="test", s3_secret_key="test", s3_secure=False,
                        s3_region="us-east-1", s3_bucket=f"sohoa-{uuid.uuid4().hex[:12]}",
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    sample = ASN_BATCH
    record = run_file(pipeline, sample)
    assert [d.dossier_id for d in record.dossiers] == [f"ASN0012{i}" for i in range(3, 8)]
    assert pipeline.store.get(record.original) == sample.read_bytes()
    assert not (tmp_path / "data" / "objects").exists()  # everything went to S3
    assert list((tmp_path / "data" / "cache").iterdir()) == []  # the local copy is cleaned up


def test_api_streams_pdfs_from_s3_with_ranges(endpoint: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import KeyStore

    settings = Settings(data_dir=tmp_path / "data", workers=1, s3_endpoint=endpoint,
                        s3_access_key="test", s3_secret_key="test", s3_secure=False,
                        s3_region="us-east-1", s3_bucket=f"sohoa-{uuid.uuid4().hex[:12]}",
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    run_file(pipeline, ASN_BATCH)
    with TestClient(create_app(settings, submit=lambda *a, **k: {})) as client:
        check_ranges(client, KeyStore(settings.storage.catalog_url).create("processor", ["ASN"]))


def check_ranges(client, key: str) -> None:  # type: ignore[no-untyped-def]
    h = {"Authorization": f"Bearer {key}"}
    full = client.get("/api/v1/dossiers/ASN00124/pdf", headers=h)
    assert full.status_code == 200 and full.content.startswith(b"%PDF")
    assert full.headers["etag"] == f'"{hashlib.sha256(full.content).hexdigest()}"'
    part = client.get("/api/v1/dossiers/ASN00124/pdf", headers={**h, "Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == full.content[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(full.content)}"
    tail = client.get("/api/v1/dossiers/ASN00124/pdf", headers={**h, "Range": "bytes=-20"})
    assert tail.content == full.content[-20:]
    bad = client.get("/api/v1/dossiers/ASN00124/pdf",
                     headers={**h, "Range": f"bytes={len(full.content)}-"})
    assert bad.status_code == 416


def test_retention_follows_the_procedure_the_registry_names(endpoint: str, tmp_path: Path) -> None:
    """Given WORM storage, 10 years of retention for procedure 1.000948 and none by default, and
    a registry that names that procedure for ASN00123 only, when the batch is digitized, then
    ASN00123's objects are locked for 10 years and refuse deletion, and ASN00124's are not locked."""
    import threading
    from datetime import UTC, datetime, timedelta
    from http.server import HTTPServer

    from tests.test_registry import Registry

    server = HTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(
            data_dir=tmp_path / "data", workers=1, s3_endpoint=endpoint, s3_access_key="test",
            s3_secret_key="test", s3_secure=False, s3_region="us-east-1", s3_object_lock=True,
            s3_bucket=f"sohoa-{uuid.uuid4().hex[:12]}", retention_by_procedure={"1.000948": 3650},
            registry_url=f"http://127.0.0.1:{server.server_port}/d/{{code}}", registry_token="t0ken",
            registry_allow_private=True, dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
        pipeline = Pipeline.from_settings(settings)
        pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
        record = run_file(pipeline, ASN_BATCH)
    finally:
        server.shutdown()
    store = pipeline.store
    assert isinstance(store, S3ObjectStore)
    first = next(d for d in record.dossiers if d.dossier_id == "ASN00123")
    assert first.fields["procedure"]["value"] == "1.000948"
    assert first.fields["registry_applicant"] == {"value": "Nguyễn Văn An", "page": 0,
                                                     "confidence": 1.0, "source": "registry"}
    until = store.client.stat_object(store.bucket, first.pdf).metadata[
        "x-amz-object-lock-retain-until-date"]
    assert datetime.fromisoformat(until.replace("Z", "+00:00")) > datetime.now(UTC) + timedelta(days=3640)
    version = store.versions(first.pdf)[0]
    with pytest.raises(S3Error):
        store.client.remove_object(store.bucket, first.pdf, version_id=version)
    second = next(d for d in record.dossiers if d.dossier_id == "ASN00124")
    assert "x-amz-object-lock-retain-until-date" not in store.client.stat_object(
        store.bucket, second.pdf).metadata


def test_a_server_that_stops_answering_fails_the_call_in_seconds_not_minutes() -> None:
    # Given an S3 endpoint that takes connections and then says nothing (a network that dropped
    # them without a word)
    import socket
    import threading
    import time

    from storage.errors import TRANSIENT

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    host, port = listener.getsockname()
    try:
        # When the store is reached with a timeout of 0.3 s
        start = time.monotonic()
        with pytest.raises(TRANSIENT):
            S3ObjectStore.connect(f"{host}:{port}", "test", "test", "sohoa-silent",
                                  secure=False, region="us-east-1", timeout_s=0.3)
        # Then the call fails as a transient error (the batch waits and resumes), within its
        # retries' timeouts, not minio's five minutes each
        assert time.monotonic() - start < 60
    finally:
        listener.close()
        for s in held:
            s.close()
