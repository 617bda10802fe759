"""The search page's list as staff use it: a thumbnail of each dossier's first page, and the
ticked rows downloaded as one ZIP or verified at once (auditors), scoped like everything else."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page

from ingest.runner import run_file
from storage import layout
from tests import synth
from tests.browser import LiveApp, http_login, login, shot

H40, H56 = "000.00.04.H40", "000.00.04.H56"
CODES = ["000.00.04.H40-230414-0021", "000.00.04.H40-230414-0022"]
OTHER = "000.00.04.H56-230414-0023"


@pytest.fixture(scope="module")
def stored(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("bulk")
    ours = [(synth.receipt(code, synth.receipt_fields(n), 200), synth.Scan(seed=n))
            for n, code in enumerate(CODES)]
    assert run_file(live_app.pipeline, synth.write_pdf(ours, folder / "ours.pdf"),
                    agency=H40).status == "done"
    theirs = [(synth.receipt(OTHER, synth.receipt_fields(5), 200), synth.Scan())]
    assert run_file(live_app.pipeline, synth.write_pdf(theirs, folder / "theirs.pdf"),
                    agency=H56).status == "done"


def test_the_list_shows_a_thumbnail_of_each_dossiers_first_page(live_app: LiveApp, stored,
                                                                 page: Page) -> None:
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/dossiers")
    page.wait_for_load_state("networkidle")
    shot(page, "list")
    for code in CODES:
        thumb = page.locator(f"tr[data-code='{code}'] td.thumb img")
        assert thumb.evaluate("img => img.complete && img.naturalWidth") > 0


def test_ticked_dossiers_download_as_one_zip_with_checksums(live_app: LiveApp, stored,
                                                           page: Page, tmp_path: Path) -> None:
    """Given two dossiers ticked in the list, when the clerk clicks "Tải về (ZIP)", then the
    download holds each one's manifest and PDF as stored, and SHA256SUMS checks."""
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/dossiers")
    for code in CODES:
        page.check(f"tr[data-code='{code}'] input[name=codes]")
    with page.expect_download() as download:
        page.click("#bulk-export")
    path = tmp_path / "chosen.zip"
    download.value.save_as(path)
    archive = zipfile.ZipFile(path)
    for code in CODES:
        manifest = live_app.pipeline.dossiers.versions(code)[-1]
        assert archive.read(f"{code}/dossier.pdf") == \
            live_app.pipeline.store.get(manifest.objects["dossier.pdf"].key)
        assert archive.read(f"{code}/manifest.json") == live_app.pipeline.store.get(
            layout.version_prefix(code, manifest.version) + "manifest.json")
    for line in archive.read("SHA256SUMS").decode().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest


def test_bulk_verify_records_each_check_and_shows_it_in_the_list(live_app: LiveApp,
                                                                 stored) -> None:
    client, csrf = http_login(live_app.url, *live_app.user("auditor", [H40]))
    try:
        r = client.post("/dossiers/verify", data={"csrf": csrf, "codes": CODES,
                                                  "next": "/dossiers?q=H40"})
        assert r.status_code == 303 and r.headers["location"] == "/dossiers?q=H40#results"
        entries = live_app.pipeline.audit.entries(limit=100_000)  # type: ignore[union-attr]
        checked = {e["target"] for e in entries if e["action"] == "dossier.verify"}
        assert set(CODES) <= checked
    finally:
        client.close()


@pytest.mark.parametrize("route", ["/dossiers/export", "/dossiers/verify"])
def test_another_agencys_dossier_in_the_ticked_rows_is_404_and_nothing_is_done(
        live_app: LiveApp, stored, route: str) -> None:
    client, csrf = http_login(live_app.url, *live_app.user("auditor", [H40]))
    try:
        before = len(live_app.pipeline.audit.entries(limit=100_000))  # type: ignore[union-attr]
        r = client.post(route, data={"csrf": csrf, "codes": [CODES[0], OTHER]})
        assert r.status_code == 404 and "PK" not in r.text[:2]
        after = live_app.pipeline.audit.entries(limit=100_000)  # type: ignore[union-attr]
        assert not [e for e in after[before:] if e["action"] in ("dossier.verify",
                                                                 "dossier.export.read")]
    finally:
        client.close()


def test_bulk_verify_is_for_auditors_and_needs_the_csrf_token(live_app: LiveApp, stored) -> None:
    clerk, csrf = http_login(live_app.url, *live_app.user("processor", [H40]))
    auditor, _ = http_login(live_app.url, *live_app.user("auditor", [H40]))
    try:
        assert clerk.post("/dossiers/verify", data={"csrf": csrf, "codes": CODES}).status_code == 403
        assert auditor.post("/dossiers/verify", data={"codes": CODES}).status_code == 403
    finally:
        clerk.close()
        auditor.close()


def test_nothing_ticked_says_so(live_app: LiveApp, stored) -> None:
    client, csrf = http_login(live_app.url, *live_app.user("processor", [H40]))
    try:
        r = client.post("/dossiers/export", data={"csrf": csrf})
        assert r.status_code == 422 and "Chưa chọn hồ sơ nào" in r.text
    finally:
        client.close()


def test_too_many_codes_are_refused_without_an_error(live_app: LiveApp, stored) -> None:
    client, csrf = http_login(live_app.url, *live_app.user("processor", [H40]))
    try:
        r = client.post("/dossiers/export", data={"csrf": csrf, "codes": [CODES[0]] * 101})
        assert 400 <= r.status_code < 500
    finally:
        client.close()
