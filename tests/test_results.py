"""A dossier's result (the decision, certificate or licence issued): stored as result vN, OCR'd
into a searchable PDF/A, idempotent, in the feed as `result_added`, verified, and reachable by its
three ways in: `sohoa ingest --result`, POST /api/v1/dossiers/{code}/result, and a scan after a
SOHOA-RESULT separator sheet. Real pipeline runs (OCR included) on generated scans."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ingest.versions import Announcer
from ocr.text import fold
from storage import layout
from storage.integrity import problems, verify
from tests.synth import Canvas, Page, Scan, code128, make_batch, receipt, receipt_fields, write_pdf

DPI = 200


def result_page(code: str | None, title: str = "QUYẾT ĐỊNH") -> Any:
    """A result as agencies print it: motto, an all-caps title, and the dossier's code as a
    Code 128 (None: no code on it)."""
    c = Canvas(DPI)
    if code:
        bar = code128(code, DPI)
        c.paste(bar, c.width - bar.width - c.margin, c.px(0.4))
        c.y = c.px(1.1)
    c.line("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 12, bold=True, center=True)
    c.line("Độc lập - Tự do - Hạnh phúc", 12, center=True)
    c.line(title, 18, bold=True, center=True)
    c.line("Về việc cấp giấy phép xây dựng nhà ở riêng lẻ", 13, center=True)
    c.line("Điều 1. Cấp giấy phép cho ông Nguyễn Văn An được xây dựng công trình.", 12)
    return c.page("result", code=code)


def result_sheet() -> Any:
    """The KẾT QUẢ sheet as `sohoa sheet result` prints it."""
    from ocr import sheets

    return Page(sheets.render(sheets.result_sheet()).convert("L"), sheets.DPI, kind="separator")


def write_png(page: Any, path: Path) -> Path:
    page.image.save(path, dpi=(DPI, DPI))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Any]:
    """Given two dossiers digitized from a generated batch."""
    root = tmp_path_factory.mktemp("results")
    settings = Settings(data_dir=root / "data", workers=1, scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    batch = make_batch(2, dpi=DPI, text_pages=0, with_id_card=False, seed=7)
    record = run_file(pipeline, batch.write_pdf(root / "batch.pdf"))
    codes = [d.code for d in batch.dossiers]
    assert [d.dossier_id for d in record.dossiers] == codes
    return {"root": root, "settings": settings, "pipeline": pipeline, "codes": codes}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]),
               "SOHOA_DATA_DIR": str(settings.storage.data_dir), "SOHOA_WORKERS": "1",
               "OMP_THREAD_LIMIT": "1"}
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True,
                          text=True, env=environ, timeout=600)


def test_cli_stores_a_result_as_a_searchable_pdfa(env) -> None:
    """Given a dossier, when `sohoa ingest --result CODE decision.png` runs, then the original
    file is stored byte for byte, and result v1 is a PDF/A whose text layer has the OCR'd title;
    its manifest has the checksums, `signature: unsigned` and the title; the dossier's version
    is unchanged."""
    pipeline, code = env["pipeline"], env["codes"][0]
    path = write_png(result_page(code), env["root"] / "decision.png")
    out = cli(env["settings"], "ingest", "--result", code, str(path), "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    batch = json.loads(out.stdout)["batches"][0]
    assert batch["status"] == "done"
    assert [(r["dossier_id"], r["version"]) for r in batch["results"]] == [(code, 1)]
    record = pipeline.record(batch["batch_id"])
    assert pipeline.store.get(record.original) == path.read_bytes()
    manifest = pipeline.dossiers.results(code)[0]
    pdf = pipeline.store.get(manifest.pdf.key)
    assert hashlib.sha256(pdf).hexdigest() == manifest.pdf.sha256
    assert manifest.signature == {"status": "unsigned"}
    assert fold(manifest.title or "").startswith("quyet dinh")  # as OCR read it
    assert manifest.original.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pikepdf.open(__import__("io").BytesIO(pdf)) as doc:
        assert doc.open_metadata().get("pdfaid:part") == "2"
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True).stdout
    assert "xay dung nha o rieng le" in " ".join(fold(text.decode()).split())
    assert pipeline.catalog.dossier(code)["version"] == 1


def test_the_same_result_again_is_the_same_result_and_a_new_one_is_v2(env) -> None:
    """When the same file is sent again as the result, then nothing new is stored; when another
    file is sent, it is result v2, and a listener hears one `result_added` for it."""
    pipeline, code = env["pipeline"], env["codes"][0]
    again = run_file(pipeline, env["root"] / "decision.png", code, result=True)
    assert again.already_ingested
    assert [m.version for m in pipeline.dossiers.results(code)] == [1]
    heard: list[dict[str, Any]] = []
    pipeline.dossiers.listeners.append(Announcer(heard.append))
    try:
        path = write_png(result_page(code, "GIẤY PHÉP XÂY DỰNG"), env["root"] / "licence.png")
        record = run_file(pipeline, path, code, result=True)
    finally:
        pipeline.dossiers.listeners.pop()
    assert [(r["dossier_id"], r["version"]) for r in record.results] == [(code, 2)]
    assert [(e["kind"], e["dossier_id"], e["version"]) for e in heard] \
        == [("result_added", code, 2)]
    assert heard[0]["sha256"] == record.results[0]["sha256"]


def test_the_feed_announces_each_result(env) -> None:
    """Then the change feed has a `result_added` event per stored result, with the PDF's key
    and checksum, after the dossier's `created`."""
    pipeline, code = env["pipeline"], env["codes"][0]
    events = [e for e in pipeline.catalog.events(None, limit=500) if e["dossier_id"] == code]
    assert [(e["kind"], e["version"]) for e in events] \
        == [("created", 1), ("result_added", 1), ("result_added", 2)]
    stored = pipeline.dossiers.results(code)
    assert [e["sha256"] for e in events[1:]] \
        == [m.pdf.sha256 for m in stored]


def test_a_result_for_an_unknown_dossier_is_refused_and_kept(env) -> None:
    """When a result is sent for a code that has no dossier, then the CLI says so and exits 1,
    and the upload is a failed batch whose original is stored."""
    code = "000.00.04.H40-230414-0999"
    path = write_png(result_page(code), env["root"] / "orphan.png")
    out = cli(env["settings"], "ingest", "--result", code, str(path))
    assert out.returncode == 1
    assert f"no dossier {code}" in out.stdout
    pipeline = env["pipeline"]
    batch_id = next(line.split("batch ")[1].split(",")[0] for line in out.stdout.splitlines()
                    if "(batch " in line)
    record = pipeline.record(batch_id)
    assert record.status == "failed" and record.results == []
    assert pipeline.store.get(record.original) == path.read_bytes()
    assert pipeline.catalog.result(code) is None


def test_a_malformed_code_is_refused_by_the_cli(env) -> None:
    out = cli(env["settings"], "ingest", "--result", "not-a-code", str(env["root"] / "decision.png"))
    assert out.returncode == 2 and "is not a dossier code" in out.stderr


def test_pages_after_a_result_sheet_become_the_result_of_the_code_they_carry(env) -> None:
    """Given a batch: a new dossier's receipt, a SOHOA-RESULT sheet, then a result carrying the
    second dossier's code, when it is digitized, then the new dossier gets its version and the
    second dossier gets result v1, not a new version."""
    pipeline, code = env["pipeline"], env["codes"][1]
    new_code = "000.00.31.H31-230501-0042"
    pages = [(receipt(new_code, receipt_fields(3, 1), DPI), Scan(seed=1)),
             (result_sheet(), Scan(seed=2)), (result_page(code), Scan(seed=3))]
    record = run_file(pipeline, write_pdf(pages, env["root"] / "mixed.pdf"))
    assert record.status == "done", record
    assert [d.dossier_id for d in record.dossiers] == [new_code]
    assert [(r["dossier_id"], r["version"], r["pages"]) for r in record.results] \
        == [(code, 1, [2])]
    assert {"page": 1, "reason": "separator"} in record.dropped_pages
    assert pipeline.catalog.dossier(code)["version"] == 1
    assert pipeline.catalog.result(code)["version"] == 1


def test_verify_checks_results_and_their_anchor(env) -> None:
    """Then `verify` checks each result's objects, original and manifest anchor (all ok)."""
    pipeline, code = env["pipeline"], env["codes"][0]
    findings = verify(pipeline.store, code, pipeline.catalog, pipeline.audit)
    result_keys = {f.key for f in findings if f.key.startswith("results/")}
    assert layout.result_prefix(code, 2) + "manifest.json" in result_keys
    assert layout.result_prefix(code, 1) + "result.pdf" in result_keys
    assert problems(findings) == []


@pytest.fixture(scope="module")
def api(env) -> Iterator[tuple[TestClient, dict[str, str]]]:
    pipeline = env["pipeline"]

    def submit_now(path: Path, **kw: Any) -> dict[str, Any]:
        return run_file(pipeline, path, **kw)

    client = TestClient(create_app(env["settings"], submit=submit_now))
    client.__enter__()
    agency = env["codes"][0].split("-")[0]
    store = KeyStore(env["settings"].storage.catalog_url)
    keys = {"scanner": store.create("scanner", [agency]),
            "processor": store.create("processor", [agency]),
            "other": store.create("scanner", ["000.00.99.H99"]),
            "auditor": store.create("auditor", ["*"])}
    yield client, keys
    client.__exit__(None, None, None)


def post_result(client: TestClient, key: str, code: str, data: bytes,
                name: str = "giay-phep.png") -> Any:
    return client.post(f"/api/v1/dossiers/{code}/result",
                       files={"file": (name, data, "image/png")},
                       headers={"Authorization": f"Bearer {key}"})


def test_api_upload_stores_the_next_result_and_shows_it(env, api) -> None:
    """When a scanner key of the dossier's agency uploads a result, then 202 with its id, the
    batch is done, GET /dossiers/{code} shows result v3 with its checksum and download link,
    and the download is the stored PDF byte for byte."""
    client, keys = api
    pipeline, code = env["pipeline"], env["codes"][0]
    data = write_png(result_page(code, "GIẤY CHỨNG NHẬN"), env["root"] / "gcn.png").read_bytes()
    r = post_result(client, keys["scanner"], code, data)
    assert r.status_code == 202, r.text
    assert r.json()["id"].startswith("b") and r.json()["dossier_id"] == code
    status = client.get(f"/api/v1/batches/{r.json()['id']}",
                        headers={"Authorization": f"Bearer {keys['scanner']}"}).json()
    assert status["status"] == "done"
    found = client.get(f"/api/v1/dossiers/{code}",
                       headers={"Authorization": f"Bearer {keys['processor']}"}).json()
    stored = pipeline.dossiers.results(code)[-1]
    assert found["result"]["version"] == 3 == stored.version
    assert found["result"]["sha256"] == stored.pdf.sha256
    download = client.get(found["result"]["download"],
                          headers={"Authorization": f"Bearer {keys['processor']}"})
    assert download.status_code == 200
    assert download.content == pipeline.store.get(stored.pdf.key)


def test_a_dossier_without_a_result_has_none(env, api) -> None:
    """The dossier made by the mixed batch above has no result: `result` is null; the dossier
    whose result came after the SOHOA-RESULT sheet has result v1."""
    client, keys = api
    auditor = {"Authorization": f"Bearer {keys['auditor']}"}
    found = client.get("/api/v1/dossiers/000.00.31.H31-230501-0042", headers=auditor).json()
    assert found["result"] is None
    found = client.get(f"/api/v1/dossiers/{env['codes'][1]}", headers=auditor).json()
    assert found["result"]["version"] == 1


def test_api_another_agencys_dossier_is_404_and_the_upload_kept(env, api) -> None:
    client, keys = api
    code = env["codes"][0]
    data = write_png(result_page(code, "GIẤY PHÉP KHÁC"), env["root"] / "other.png").read_bytes()
    r = post_result(client, keys["other"], code, data)
    assert r.status_code == 404
    assert len(env["pipeline"].dossiers.results(code)) == 3
    failed = [b for b in env["pipeline"].catalog.recent_batches(("000.00.99.H99",))
              if b.result_for == code]
    assert failed and failed[0].status == "failed"
    assert env["pipeline"].store.get(failed[0].original) == data


def test_api_unknown_dossier_is_404(api) -> None:
    client, keys = api
    r = post_result(client, keys["scanner"], "000.00.04.H40-230414-0998", b"\x89PNG")
    assert r.status_code == 404


def test_api_wrong_role_is_403(env, api) -> None:
    client, keys = api
    r = post_result(client, keys["processor"], env["codes"][0], b"\x89PNG")
    assert r.status_code == 403


@pytest.mark.parametrize(("code", "status"), [("not-a-code", 404), ("X" * 80, 422)])
def test_api_malformed_code_is_refused(api, code: str, status: int) -> None:
    """A string that is no dossier code is no dossier (404, as on every {code} route); one
    longer than a code can be is malformed (422)."""
    client, keys = api
    assert post_result(client, keys["scanner"], code, b"\x89PNG").status_code == status


def test_api_upload_without_a_file_is_422(env, api) -> None:
    client, keys = api
    r = client.post(f"/api/v1/dossiers/{env['codes'][0]}/result", data={"x": "1"},
                    files={"other": ("a.txt", b"1", "text/plain")},
                    headers={"Authorization": f"Bearer {keys['scanner']}"})
    assert r.status_code in (400, 422)


def test_api_too_large_is_413(env, api) -> None:
    client, keys = api
    big = b"0" * (env["settings"].web.max_upload_mb * 1024 * 1024 + 200 * 1024)
    assert post_result(client, keys["scanner"], env["codes"][0], big).status_code == 413


def test_verify_finds_a_changed_result(env) -> None:
    """When a stored result's PDF is rewritten, then verify reports it changed."""
    pipeline, code = env["pipeline"], env["codes"][1]
    manifest = pipeline.dossiers.results(code)[0]
    key = manifest.pdf.key
    pipeline.store.put(key, b"%PDF-1.7 forged", overwrite=True)
    bad = problems(verify(pipeline.store, code, pipeline.catalog, pipeline.audit))
    assert [(f.key, f.problem) for f in bad] == [(key, "changed")]


@pytest.mark.parametrize(("kind", "value"), [("result", "SOHOA-RESULT"), ("separator", "PATCHT")])
def test_sohoa_sheet_prints_the_sheet_the_splitter_looks_for(tmp_path: Path, kind: str,
                                                             value: str) -> None:
    """Given the default settings, when staff print `sohoa sheet KIND`, then the PDF's page
    carries the barcode the splitter takes for that sheet."""
    import io

    import numpy as np
    from PIL import Image

    from ocr import barcodes
    from ocr.pdf import page_jpeg

    out = tmp_path / f"{kind}.pdf"
    done = subprocess.run([str(Path(sys.executable).parent / "sohoa"), "sheet", kind, "-o",
                           str(out)], capture_output=True, text=True,
                          env={**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr
    page = Image.open(io.BytesIO(page_jpeg(out, 0))).convert("L")
    assert [b.value for b in barcodes.read(np.asarray(page))] == [value]
