"""`verify` proves stored dossiers unchanged, and finds the one byte that changed."""

from pathlib import Path

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from storage.integrity import verify
from tests.synth import ASN_BATCH


@pytest.fixture
def stored(tmp_path: Path) -> Pipeline:
    settings = Settings(data_dir=tmp_path / "data", workers=1,
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    run_file(pipeline, ASN_BATCH)
    return pipeline


def test_untouched_store_verifies_clean(stored: Pipeline) -> None:
    findings = verify(stored.store)
    assert len(findings) == 5 * 5  # 5 one-page dossiers: pdf, its component's copy, text, fields, original
    assert {f.problem for f in findings} == {"ok"}


def test_a_changed_byte_is_found(stored: Pipeline, tmp_path: Path) -> None:
    pdf = tmp_path / "data" / "objects" / "dossiers" / "ASN00125" / "v0001" / "dossier.pdf"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 1
    pdf.write_bytes(bytes(data))
    bad = [f for f in verify(stored.store) if f.problem != "ok"]
    assert [(f.dossier_id, f.key, f.problem) for f in bad] == \
        [("ASN00125", "dossiers/ASN00125/v0001/dossier.pdf", "changed")]


def test_a_removed_object_is_found(stored: Pipeline, tmp_path: Path) -> None:
    (tmp_path / "data" / "objects" / "dossiers" / "ASN00124" / "v0001" / "fields.json").unlink()
    bad = [f for f in verify(stored.store, "ASN00124") if f.problem != "ok"]
    assert [(f.key, f.problem) for f in bad] == [("dossiers/ASN00124/v0001/fields.json", "missing")]


SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-batch.pdf"


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Pipeline, list[str]]:
    """The repository's sample batch stored: two dossiers, indexed and audited."""
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, SAMPLE)
    return pipeline, [d.dossier_id for d in record.dossiers]


def check(pipeline: Pipeline, code: str | None = None) -> list[tuple[str, str, str]]:
    return [(f.dossier_id, f.key.rsplit("/", 1)[-1], f.problem)
            for f in verify(pipeline.store, code, pipeline.catalog, pipeline.audit)
            if f.problem != "ok"]


def test_an_untouched_archive_is_proven_whole_manifests_included(archive) -> None:
    pipeline, codes = archive
    findings = verify(pipeline.store, None, pipeline.catalog, pipeline.audit)
    # each stored object (pdf, component copies, text, fields), the original, the manifest
    assert len(findings) == sum(len(m.objects) + 2 for c in codes for m in pipeline.dossiers.versions(c))
    assert {f.problem for f in findings} == {"ok"}


def test_a_dossier_deleted_from_storage_is_missing(archive, tmp_path: Path) -> None:
    """Given a dossier's whole folder deleted from object storage behind the catalog's back, then
    verify reports its version MISSING (the catalog and the audit log both know it)."""
    import shutil

    pipeline, codes = archive
    shutil.rmtree(tmp_path / "data" / "objects" / "dossiers" / codes[0])
    assert check(pipeline) == [(codes[0], "manifest.json", "missing")]


def test_a_manifest_rewritten_with_fresh_hashes_is_changed(archive, tmp_path: Path) -> None:
    """Given fields.json rewritten and its new SHA-256 put into the manifest, then every object
    matches its manifest, but the manifest no longer matches the checksum the audit log
    recorded when the version was made: CHANGED."""
    import hashlib
    import json

    pipeline, codes = archive
    folder = tmp_path / "data" / "objects" / "dossiers" / codes[1] / "v0001"
    forged = json.dumps({"applicant_name": {"value": "Kẻ Giả Mạo", "page": 0,
                                            "confidence": 1.0, "source": "ocr"}}).encode()
    (folder / "fields.json").write_bytes(forged)
    manifest = json.loads((folder / "manifest.json").read_bytes())
    manifest["objects"]["fields.json"]["sha256"] = hashlib.sha256(forged).hexdigest()
    manifest["objects"]["fields.json"]["size"] = len(forged)
    (folder / "manifest.json").write_bytes(json.dumps(manifest).encode())
    assert check(pipeline) == [(codes[1], "manifest.json", "changed")]


def test_the_cli_api_and_web_give_the_same_verdict(archive, tmp_path: Path) -> None:
    """Given a dossier deleted from storage and another whose manifest was rewritten, then
    `sohoa verify --json` (exit 1), GET /api/v1/dossiers/{code}/verify and the web's "verify
    now" report the same problems."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import KeyStore
    from api.web.dossier_pages import check_dossier

    pipeline, codes = archive
    folder = tmp_path / "data" / "objects" / "dossiers" / codes[1] / "v0001"
    manifest = json.loads((folder / "manifest.json").read_bytes())
    manifest["note"] = "rewritten"
    (folder / "manifest.json").write_bytes(json.dumps(manifest).encode())
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data")}
    sohoa = str(Path(sys.executable).parent / "sohoa")
    out = subprocess.run([sohoa, "verify", "--json", codes[1]], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    cli = [(p["key"], p["problem"]) for p in json.loads(out.stdout)["problems"]]
    key = KeyStore(pipeline.settings.storage.catalog_url).create("auditor", ["*"])
    client = TestClient(create_app(pipeline.settings, submit=lambda *a, **k: {}))
    body = client.get(f"/api/v1/dossiers/{codes[1]}/verify",
                      headers={"Authorization": f"Bearer {key}"}).json()
    api = [(p["key"], p["problem"]) for p in body["problems"]]
    _, web = check_dossier(pipeline, pipeline.catalog.dossier(codes[1]))
    assert cli == api == [(p["key"], p["problem"]) for p in web] == [
        (f"dossiers/{codes[1]}/v0001/manifest.json", "changed")]
    assert body["ok"] is False
    shutil.rmtree(tmp_path / "data" / "objects" / "dossiers" / codes[0])
    out = subprocess.run([sohoa, "verify"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and f"MISSING  {codes[0]} v1" in out.stdout


def test_verify_over_the_api_is_for_auditors_of_the_agency(archive) -> None:
    """Given keys of each role and of another agency, then only an auditor (or admin) of the
    dossier's agency gets the verdict; a processor gets 403, another agency 404."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import KeyStore

    pipeline, codes = archive
    keys = KeyStore(pipeline.settings.storage.catalog_url)
    agency = pipeline.catalog.dossier(codes[0])["agency"]
    client = TestClient(create_app(pipeline.settings, submit=lambda *a, **k: {}))

    def status(role: str, agencies: list[str]) -> int:
        key = keys.create(role, agencies)
        return client.get(f"/api/v1/dossiers/{codes[0]}/verify",
                          headers={"Authorization": f"Bearer {key}"}).status_code

    assert status("auditor", [agency]) == 200 and status("admin", ["*"]) == 200
    assert status("processor", [agency]) == 403 and status("scanner", [agency]) == 403
    assert status("auditor", ["000.00.99.H99"]) == 404
    assert client.get(f"/api/v1/dossiers/{codes[0]}/verify").status_code == 401
