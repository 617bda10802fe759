"""Many dossiers at once through the REST API: a ZIP of their stored objects with checksums, and
a verification of each; scoped like the single-dossier routes."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from storage import layout
from tests.synth import ASN_BATCH

ASN = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("bulk") / "data", workers=1,
                        dossier_code_grammar=ASN, scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    run_file(pipeline, ASN_BATCH)
    store = KeyStore(settings.storage.catalog_url)
    keys = {role: store.create(role, ["ASN"]) for role in ("scanner", "processor", "auditor")}
    keys["other_auditor"] = store.create("auditor", ["H40"])
    with TestClient(create_app(settings, submit=lambda *a, **k: None)) as client:
        yield client, keys, pipeline


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def codes(pipeline: Pipeline) -> list[str]:
    assert pipeline.catalog is not None
    items, _ = pipeline.catalog.list_dossiers(("ASN",))
    return [item["dossier_id"] for item in items]


def test_export_holds_each_dossier_as_stored_with_checksums_that_check(env) -> None:
    """Given the batch's dossiers, when a processor exports them, then the ZIP holds each one's
    manifest and objects byte for byte as stored, and SHA256SUMS matches every file."""
    client, keys, pipeline = env
    wanted = codes(pipeline)
    assert len(wanted) >= 2
    r = client.post("/api/v1/exports", json={"codes": wanted},
                    headers=auth(keys["processor"]))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    for code in wanted:
        manifest = pipeline.dossiers.versions(code)[-1]
        stored = pipeline.store.get(layout.version_prefix(code, manifest.version) + "manifest.json")
        assert archive.read(f"{code}/manifest.json") == stored
        for name, obj in manifest.objects.items():
            assert archive.read(f"{code}/{name}") == pipeline.store.get(obj.key)
    sums = archive.read("SHA256SUMS").decode().splitlines()
    names = [n for n in archive.namelist() if n != "SHA256SUMS"]
    assert sorted(line.split("  ", 1)[1] for line in sums) == sorted(names)
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest


def test_export_of_one_dossier_is_named_by_its_code(env) -> None:
    client, keys, pipeline = env
    code = codes(pipeline)[0]
    r = client.post("/api/v1/exports", json={"codes": [code]},
                    headers=auth(keys["auditor"]))
    assert r.headers["content-disposition"] == f'attachment; filename="{code}.zip"'


def test_export_with_another_agencys_dossier_sends_nothing_and_names_it(env) -> None:
    """Given a list with one dossier the key's agency does not hold, then 404 naming it, as for a
    dossier that does not exist, and no ZIP."""
    client, keys, pipeline = env
    code = codes(pipeline)[0]
    r = client.post("/api/v1/exports", json={"codes": [code]},
                    headers=auth(keys["other_auditor"]))
    assert (r.status_code, r.json()["detail"]) == (404, f"no such dossier: {code}")
    missing = client.post("/api/v1/exports", json={"codes": [code, "ASN99999"]},
                          headers=auth(keys["processor"]))
    assert missing.json()["detail"] == "no such dossier: ASN99999"


def test_export_refuses_a_scanner_key(env) -> None:
    client, keys, pipeline = env
    r = client.post("/api/v1/exports", json={"codes": codes(pipeline)[:1]},
                    headers=auth(keys["scanner"]))
    assert r.status_code == 403


@pytest.mark.parametrize("body", [{}, {"codes": []}, {"codes": "ASN00125"}, {"codes": ["x\x00"]},
                                  {"codes": ["ASN00125"] * 101}, [1, 2]])
def test_malformed_lists_are_422(env, body: object) -> None:
    client, keys, _ = env
    for route in ("exports", "verifications"):
        r = client.post(f"/api/v1/{route}", json=body, headers=auth(keys["auditor"]))
        assert r.status_code == 422, (route, r.text)


def test_bulk_verify_reports_each_dossier_and_finds_a_changed_object(env) -> None:
    """Given one dossier whose PDF was changed behind the archive's back, when an auditor
    verifies all, then that one is reported with its problem, the others ok, and `ok` is false."""
    client, keys, pipeline = env
    wanted = codes(pipeline)
    before = client.post("/api/v1/verifications", json={"codes": wanted},
                         headers=auth(keys["auditor"])).json()
    assert before["ok"] and [d["dossier_id"] for d in before["dossiers"]] == wanted
    victim = wanted[-1]
    pdf = pipeline.dossiers.versions(victim)[-1].objects["dossier.pdf"]
    path = pipeline.store.file_path(pdf.key)
    assert path is not None
    original = path.read_bytes()
    try:
        Path(path).write_bytes(original + b"%tampered\n")
        after = client.post("/api/v1/verifications", json={"codes": wanted},
                            headers=auth(keys["auditor"])).json()
    finally:
        Path(path).write_bytes(original)
    assert not after["ok"]
    bad = {d["dossier_id"]: d for d in after["dossiers"] if not d["ok"]}
    assert list(bad) == [victim]
    assert [p["problem"] for p in bad[victim]["problems"]] == ["changed"]


def test_bulk_verify_is_for_auditors(env) -> None:
    client, keys, pipeline = env
    r = client.post("/api/v1/verifications", json={"codes": codes(pipeline)},
                    headers=auth(keys["processor"]))
    assert r.status_code == 403
