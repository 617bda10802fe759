"""The scanning station (/scan) in a real browser (Chromium through Playwright) and over raw HTTP:
scanning staff start a scan on the eSCL emulator, watch its pages arrive as thumbnails and the
batch reach its final state; the scanner's trouble (jam, empty feeder, busy, unreachable) is told
in the staff's language; roles, agencies and malformed input are refused clearly.

The emulated scanners hold the first three pages of examples/sample-batch.pdf (the scanner's own
JPEG pages); the app digitizes with the fast page stages of tests/browser.py (no OCR)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pikepdf
import pytest
from playwright.sync_api import Page, expect

from scanners.devices import ScannerConfig
from scanners.scan import ScanProgress
from tests.browser import LiveApp, http_login, login, make_settings, serve, shot
from tests.escl_emulator import EmulatorConfig, EsclEmulator

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"
H40 = "000.00.04.H40"
H12 = "000.00.04.H12"
MAIN, JAM, EMPTY, OWN_H12, GONE = ("Máy quét tầng 1", "Máy quét kẹt giấy", "Máy quét hết giấy",
                                   "Máy quét H12", "Máy quét đã tắt")
MISFEED, DOOR = "Máy quét kéo giấy lỗi", "Máy quét mở nắp"


def sample_pages(count: int) -> list[bytes]:
    """The first pages of the sample batch as the JPEG bytes a scanner sends."""
    with pikepdf.open(SAMPLE) as pdf:
        return [bytes(next(iter(p.get_images(recursive=False).values())).read_raw_bytes())
                for p in pdf.pages[:count]]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Station:
    app: LiveApp
    ids: dict[str, str]  # scanner name -> device id
    emulators: dict[str, EsclEmulator]


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    pages = sample_pages(3)
    emulators = {
        MAIN: EsclEmulator(EmulatorConfig(pages=pages, uuid="5d2a6a51-0000-4000-8000-000000000001")),
        JAM: EsclEmulator(EmulatorConfig(pages=pages, jam_after=1,
                                         uuid="5d2a6a51-0000-4000-8000-000000000002")),
        EMPTY: EsclEmulator(EmulatorConfig(pages=pages, feeder_empty=True,
                                           uuid="5d2a6a51-0000-4000-8000-000000000003")),
        OWN_H12: EsclEmulator(EmulatorConfig(pages=pages, uuid="5d2a6a51-0000-4000-8000-000000000004")),
        MISFEED: EsclEmulator(EmulatorConfig(pages=pages, jam_after=0, abort_reason="ScannerAdfMispick",
                                             uuid="5d2a6a51-0000-4000-8000-000000000005")),
        DOOR: EsclEmulator(EmulatorConfig(pages=pages, jam_after=1, abort_reason="ScannerAdfDoorOpen",
                                          uuid="5d2a6a51-0000-4000-8000-000000000006")),
    }
    for emulator in emulators.values():
        emulator.start()
    configs = [ScannerConfig(url=e.url, name=name, uuid=e.config.uuid, page_delay=0.4,
                             agency=H12 if name == OWN_H12 else None)
               for name, e in emulators.items()]
    gone = ScannerConfig(url=f"http://127.0.0.1:{closed_port()}/eSCL/", name=GONE,
                         uuid="5d2a6a51-0000-4000-8000-000000000009")
    settings = make_settings(tmp_path_factory.mktemp("scan"), scanners=[*configs, gone])
    try:
        with serve(settings) as app:
            yield Station(app, {**{n: e.config.uuid for n, e in emulators.items()},
                                GONE: gone.uuid or ""}, emulators)
    finally:
        for emulator in emulators.values():
            emulator.stop()


def finished(station: Station, scan_id: str, timeout: float = 60) -> ScanProgress:
    """The scan once it ended, and its batch once processed: the next test gets a free scanner."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = station.app.app.state.scans.get(scan_id)
        if progress is not None and progress.finished:
            return progress
        time.sleep(0.05)
    raise AssertionError(f"scan {scan_id} did not finish")


def processed(station: Station, batch_id: str, timeout: float = 120) -> dict[str, Any]:
    """The batch's record once the worker has processed every page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = station.app.pipeline.record(batch_id)
        if record.status in ("done", "needs_review", "failed"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} was not processed")


def start(client: httpx.Client, csrf: str, **form: Any) -> httpx.Response:
    return client.post("/scan", data={"csrf": csrf, "source": "feeder", **form})


def scan_id_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:2000]
    location = response.headers["location"]
    assert location.startswith("/scan?scan=")
    return location.split("=", 1)[1]


def thumbnails_loaded(page: Page, count: int) -> None:
    page.wait_for_function(
        "n => { const all = [...document.querySelectorAll('#scan-progress .scan-thumbs img')];"
        " return all.length === n && all.every(i => i.complete && i.naturalWidth > 0); }", arg=count)


def choose_and_start(page: Page, station: Station, scanner: str) -> None:
    radio = page.locator(f"#scanner-list input[value='{station.ids[scanner]}']")
    radio.check()
    with page.expect_navigation():
        page.click("#scan-go")


# in the browser


def test_staff_scan_three_pages_and_watch_them_arrive(station: Station, page: Page) -> None:
    """Given scanning staff at the station, when they pick the scanner and start a feeder scan of
    three pages, then the pages appear one by one as thumbnails, the scan ends done and its batch
    shows in the batch list with its final status and the dossiers found."""
    problems: list[str] = []  # CSP violations, failed thumbnails...
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    # Of the agency whose receipts the sample's pages carry: writes are scoped like reads.
    username, password = station.app.user("scanner", ["000.00.60.H93"], name="Phạm Thu Hà")
    login(page, station.app.url, username, password)
    expect(page).to_have_url(f"{station.app.url}/scan")
    expect(page.locator(f"#scanner-list label:has(input[value='{station.ids[MAIN]}'])")
           ).to_contain_text(MAIN)
    expect(page.locator("#scanner-list")).not_to_contain_text(OWN_H12)  # another agency's
    expect(page.locator(f"#scanner-list label:has(input[value='{station.ids[GONE]}']) .badge")
           ).to_have_text("Không kết nối được")
    shot(page, "station")
    choose_and_start(page, station, MAIN)
    expect(page.locator("#scan-progress .scan-thumbs img").first).to_be_visible()
    shot(page, "pages-arriving")
    progress = page.locator("#scan-progress")
    expect(progress).to_have_attribute("data-state", "done", timeout=30_000)
    thumbnails_loaded(page, 3)
    expect(progress.locator(".scan-count")).to_have_text("3 trang")
    expect(progress).to_have_attribute("data-batch", "done", timeout=30_000)
    expect(progress.locator(".scan-outcome")).to_contain_text("Lô đã xử lý xong: tìm thấy")
    scan = finished(station, page.url.split("=", 1)[1])
    row = page.locator(f"#scan-batches tr[data-batch='{scan.batch_id}']")
    expect(row).to_have_attribute("data-status", "done")
    expect(row).to_contain_text(MAIN)
    expect(row.locator("code").first).to_contain_text("-")
    badge = page.locator(f"#scanner-list label:has(input[value='{station.ids[MAIN]}']) .badge")
    expect(badge).to_have_text("Khay nạp giấy trống")  # read again: its stack went through
    shot(page, "scan-done")
    row.get_by_role("link", name="Xem").click()
    expect(page.locator("h1")).to_contain_text(f"Lô {MAIN} · ")  # its scanner and local time
    expect(page.locator(".scan-thumbs img")).to_have_count(3)
    shot(page, "batch")
    assert problems == []


def test_a_paper_jam_is_told_and_the_pages_scanned_go_to_review(station: Station,
                                                                 page: Page) -> None:
    """Given a scanner that jams after the first sheet, when staff scan on it, then the station
    says in Vietnamese that the paper jammed, shows the one page received, the batch needs review
    with a link to the review queue, and the scanner list shows the scanner jammed."""
    username, password = station.app.user("scanner", [H40])
    login(page, station.app.url, username, password)
    choose_and_start(page, station, JAM)
    progress = page.locator("#scan-progress")
    expect(progress).to_have_attribute("data-state", "incomplete", timeout=30_000)
    expect(progress.locator("[role=alert]")).to_contain_text("Kẹt giấy trong khay nạp")
    thumbnails_loaded(page, 1)
    expect(progress).to_have_attribute("data-batch", "needs_review", timeout=30_000)
    expect(progress.locator("a.scan-review-link")).to_have_attribute(
        "href", re.compile(r"^/review/batches/b[0-9a-f]+$"))
    badge = page.locator(f"#scanner-list label:has(input[value='{station.ids[JAM]}']) .badge")
    expect(badge).to_have_text("Kẹt giấy")  # the scanners' states were read again after the scan
    shot(page, "jammed")


def test_an_empty_feeder_is_told_and_makes_no_batch(station: Station, page: Page) -> None:
    """Given a scanner whose feeder is empty (its state says so), when staff start a scan on it,
    then the station tells them to load the pages, and no batch is made."""
    username, password = station.app.user("scanner", [H40])
    login(page, station.app.url, username, password)
    badge = page.locator(f"#scanner-list label:has(input[value='{station.ids[EMPTY]}']) .badge")
    expect(badge).to_have_text("Khay nạp giấy trống")
    choose_and_start(page, station, EMPTY)
    progress = page.locator("#scan-progress")
    expect(progress).to_have_attribute("data-state", "failed", timeout=30_000)
    expect(progress.locator("[role=alert]")).to_contain_text("Khay nạp giấy trống: hãy đặt hồ sơ")
    expect(progress.locator(".scan-thumbs img")).to_have_count(0)
    expect(progress.locator(".scan-outcome")).to_have_count(0)
    shot(page, "feeder-empty")


def test_the_station_in_english_explains_a_bad_dossier_code(station: Station, page: Page) -> None:
    """Given staff who chose English, when they type a malformed dossier code and press Enter
    (as a barcode reader does), then the station, in English, says the code is not valid and
    keeps what they chose."""
    username, password = station.app.user("scanner", [H40])
    login(page, station.app.url, username, password)
    page.click("header .langs a[lang=en]")
    expect(page.locator("h1")).to_have_text("Scanning station")
    page.locator(f"#scanner-list input[value='{station.ids[MAIN]}']").check()
    page.check("input[name=source][value=platen]")
    expect(page.locator("#duplex")).to_be_disabled()  # both sides only from the feeder
    page.fill("#dossier", "HS-123")
    with page.expect_navigation():  # a barcode reader's Enter: the form is complete, it starts
        page.press("#dossier", "Enter")
    expect(page.locator("#scan-error")).to_have_text(
        "“HS-123” is not a valid dossier code (for example 000.00.04.H40-240315-0001).")
    expect(page.locator("#dossier")).to_have_value("HS-123")
    expect(page.locator("input[name=source][value=platen]")).to_be_checked()
    expect(page.locator(f"#scanner-list input[value='{station.ids[MAIN]}']")).to_be_checked()
    shot(page, "bad-code-english")


# over raw HTTP


@pytest.mark.parametrize("role", ["processor", "auditor"])
def test_other_roles_are_forbidden_the_station(station: Station, role: str) -> None:
    """Given a processor or an auditor, when they open the station, its fragments, or post a
    scan, then each answers 403 and no scan starts."""
    username, password = station.app.user(role, [H40])
    client, csrf = http_login(station.app.url, username, password)
    before = len(station.app.app.state.scans.recent())
    with closing(client):
        for path in ("/scan", "/scan/scanners", "/scan/batches", "/scan/scans/0123456789abcdef"):
            assert client.get(path).status_code == 403, path
        assert start(client, csrf, scanner=station.ids[MAIN]).status_code == 403
    assert len(station.app.app.state.scans.recent()) == before


def test_another_agencys_scan_batch_and_thumbnails_are_404(station: Station) -> None:
    """Given a scan made by agency H40's staff, when staff of agency H12 ask for its page, its
    panel, its batch or their thumbnails, then each answers 404 and H12's batch list does not
    show it; H40's staff get small, cacheable JPEG thumbnails."""
    mine, password = station.app.user("scanner", [H40])
    theirs, _ = station.app.user("scanner", [H12])
    client, csrf = http_login(station.app.url, mine, password)
    other, _ = http_login(station.app.url, theirs, password)
    with closing(client), closing(other):
        scan = finished(station, scan_id_of(start(client, csrf, scanner=station.ids[MAIN])))
        assert scan.agency == H40 and scan.batch_id
        paths = [f"/scan?scan={scan.id}", f"/scan/scans/{scan.id}",
                 f"/scan/scans/{scan.id}/pages/1.jpg", f"/scan/batches/{scan.batch_id}",
                 f"/scan/batches/{scan.batch_id}/pages/1.jpg"]
        for path in paths:
            assert client.get(path).status_code == 200, path
            assert other.get(path).status_code == 404, path
        assert scan.batch_id in client.get("/scan/batches").text
        assert scan.batch_id not in other.get("/scan/batches").text
        thumb = client.get(f"/scan/scans/{scan.id}/pages/2.jpg")
        assert thumb.headers["content-type"] == "image/jpeg" and len(thumb.content) < 20_000
        assert "max-age" in thumb.headers["cache-control"]
        assert client.get(f"/scan/scans/{scan.id}/pages/4.jpg").status_code == 404
        stored = client.get(f"/scan/batches/{scan.batch_id}/pages/1.jpg")  # the batch is done:
        assert stored.headers["content-type"] == "image/jpeg"  # the page as the pipeline stored it
        assert "immutable" in stored.headers["cache-control"] and "scan" not in stored.headers["etag"]


@pytest.mark.parametrize(("form", "message"), [
    ({"dossier": "not a code"}, "“NOT A CODE” không phải là mã hồ sơ hợp lệ"),
    ({"source": "platen", "duplex": "1"}, "Chỉ quét hai mặt được khi dùng khay nạp giấy"),
    ({"source": "roof"}, "Nguồn giấy phải là khay nạp giấy hoặc mặt kính."),
    ({"scanner": "no-such-scanner"}, "Không tìm thấy máy quét này."),
    ({"scanner": OWN_H12}, "Không tìm thấy máy quét này."),  # another agency's: as if missing
    ({"scanner": ""}, "Hãy chọn một máy quét."),
    ({"color": "CMYK32"}, "Hãy chọn chế độ màu và độ phân giải trong danh sách."),
    ({"resolution": "1200"}, "Hãy chọn chế độ màu và độ phân giải trong danh sách."),
    ({"resolution": "3OO"}, "Hãy chọn chế độ màu và độ phân giải trong danh sách."),
])
def test_malformed_start_requests_get_a_clear_error(station: Station, form: dict[str, str],
                                                     message: str) -> None:
    """Given scanning staff, when a start request is malformed, then the station answers 422 with
    a message saying what is wrong, and starts nothing."""
    username, password = station.app.user("scanner", [H40])
    client, csrf = http_login(station.app.url, username, password)
    before = len(station.app.app.state.scans.recent())
    fields = {"scanner": station.ids[MAIN], **form}
    if fields["scanner"] == OWN_H12:
        fields["scanner"] = station.ids[OWN_H12]
    with closing(client):
        answer = start(client, csrf, **fields)
    assert answer.status_code == 422
    assert message in answer.text
    assert len(station.app.app.state.scans.recent()) == before


def test_a_busy_scanner_refuses_a_second_scan(station: Station) -> None:
    """Given a scan running on a scanner, when staff start another on it, then the station answers
    409 saying the scanner is busy with another batch."""
    username, password = station.app.user("scanner", [H40])
    client, csrf = http_login(station.app.url, username, password)
    with closing(client):
        first = scan_id_of(start(client, csrf, scanner=station.ids[MAIN]))
        second = start(client, csrf, scanner=station.ids[MAIN])
        finished(station, first)
    assert second.status_code == 409
    assert "Máy quét này đang quét một lô khác." in second.text


def test_an_unreachable_scanner_is_told(station: Station) -> None:
    """Given a scanner that is switched off, when staff start a scan on it, then its panel says the
    scanner cannot be reached and what to check."""
    username, password = station.app.user("scanner", [H40])
    client, csrf = http_login(station.app.url, username, password)
    with closing(client):
        scan = finished(station, scan_id_of(start(client, csrf, scanner=station.ids[GONE])))
        panel = client.get(f"/scan/scans/{scan.id}", headers={"HX-Request": "true"})
    assert (scan.state, scan.problem) == ("failed", "unreachable")
    assert "Không kết nối được với máy quét: kiểm tra máy đã bật" in panel.text


@pytest.mark.parametrize(("scanner", "state", "message"), [
    (MISFEED, "failed", "Máy không kéo được giấy, hoặc kéo nhiều tờ cùng lúc"),
    (DOOR, "incomplete", "Nắp khay nạp giấy đang mở: đóng nắp rồi quét lại."),
])
def test_the_feeders_trouble_is_told_in_vietnamese(station: Station, scanner: str, state: str,
                                                   message: str) -> None:
    """Given a feeder that misfeeds its first sheet, or whose cover opens after one page, when
    staff scan on it, then the scan's panel says what happened and what to do, in Vietnamese."""
    username, password = station.app.user("scanner", [H40])
    client, csrf = http_login(station.app.url, username, password)
    with closing(client):
        scan = finished(station, scan_id_of(start(client, csrf, scanner=station.ids[scanner])))
        panel = client.get(f"/scan/scans/{scan.id}")
    assert scan.state == state
    assert message in panel.text


def test_a_colour_scan_at_200_dpi_asks_the_scanner_for_that(station: Station) -> None:
    """Given scanning staff, when they choose colour at 200 dpi, then the scanner is asked for
    RGB24 at 200 dpi, the batch is stored at 200 dpi, and the station shows the choice again."""
    username, password = station.app.user("scanner", [H40])
    client, csrf = http_login(station.app.url, username, password)
    emulator = station.emulators[MAIN]
    before = set(emulator.jobs)
    with closing(client):
        answer = start(client, csrf, scanner=station.ids[MAIN], color="RGB24", resolution="200")
        scan_id = scan_id_of(answer)
        progress = finished(station, scan_id)
        shown = client.get(f"/scan?scan={scan_id}").text
    (job,) = [emulator.jobs[j] for j in set(emulator.jobs) - before]
    assert job.settings["ColorMode"] == "RGB24"
    assert (job.settings["XResolution"], job.settings["YResolution"]) == (200, 200)
    assert (progress.color_mode, progress.resolution) == ("RGB24", 200)
    assert progress.batch_id is not None
    assert processed(station, progress.batch_id).pages == 3
    assert station.app.pipeline.page_facts_for(progress.batch_id, [0])[0].dpi == 200
    assert '<option value="RGB24" selected>' in shown and '<option value="200" selected>' in shown


def test_starting_a_scan_is_audited(station: Station) -> None:
    """Given scanning staff, when they start a scan at the station, then the audit trail records
    who started which scan, on which scanner, for which agency."""
    username, password = station.app.user("scanner", [H40])
    client, csrf = http_login(station.app.url, username, password)
    code = f"{H40}-240315-0042"
    with closing(client):
        scan_id = scan_id_of(start(client, csrf, scanner=station.ids[MAIN], dossier=code.lower()))
    finished(station, scan_id)
    audit = station.app.pipeline.audit
    assert audit is not None
    entries = [e for e in audit.entries(None, 0, 10_000) if e["target"] == scan_id]
    assert [(e["actor"], e["action"], e["agency"]) for e in entries] == [
        (f"user:{username}", "scan.start", H40)]
    assert entries[0]["detail"]["device"] == station.ids[MAIN]
    assert entries[0]["detail"]["dossier"] == code


def test_a_batch_waiting_for_a_dependency_says_so_in_plain_words(station: Station) -> None:
    """Given a batch of H40 waiting for the registry, when its staff open it on the station, then
    they read that it waits, for what, until when it is tried again, and that its pages are kept
    (no need to scan again), not an error."""
    from ingest.registry import RegistryUnavailable

    pipeline = station.app.pipeline
    unique = Path(pipeline.settings.storage.data_dir) / "waiting.pdf"
    unique.write_bytes(SAMPLE.read_bytes() + b"\n% waiting\n")
    batch_id = pipeline.receive(unique, agency=H40, source="upload")
    pipeline.inspect(batch_id)
    pipeline.wait(batch_id, RegistryUnavailable("registry answered 503"))
    mine, password = station.app.user("scanner", [H40])
    client, _ = http_login(station.app.url, mine, password)
    with closing(client):
        text = client.get(f"/scan/batches/{batch_id}").text
    assert "Đang chờ" in text
    assert "Lô đang chờ hệ thống xử lý hồ sơ (tra cứu mã hồ sơ) hoạt động trở lại" in text
    assert "không cần quét lại" in text
    assert 'role="alert"' not in text


def test_a_batch_lists_its_unreadable_pages_with_their_reasons(station: Station) -> None:
    """Given a batch whose only page is too small to read, when its staff open it on the
    station, then they read which page could not be read and why."""
    from PIL import Image

    from ingest.runner import run_file

    pipeline = station.app.pipeline
    tiny = Path(pipeline.settings.storage.data_dir) / "tiny.png"
    Image.new("L", (1, 1), 255).save(tiny)
    record = run_file(pipeline, tiny, agency=H40, source="upload")
    mine, password = station.app.user("scanner", [H40])
    client, _ = http_login(station.app.url, mine, password)
    with closing(client):
        text = client.get(f"/scan/batches/{record.batch_id}").text
    assert "Trang 1 không đọc được: too_small: page 0 is 1x1 pixels" in text


def test_a_scan_is_named_by_its_scanner_and_local_time_and_its_jam_said_in_vietnamese(
        station: Station) -> None:
    """Given a scan that jammed, the review queue names its batch by the scanner (not a file
    name with a UTC time), the batch page by the scanner and the office's local time, and the
    reason is said in Vietnamese with no English and no doubled full stop."""
    from datetime import datetime, timedelta, timezone

    client, csrf = http_login(station.app.url, *station.app.user("scanner", [H40]))
    with closing(client):
        progress = finished(station, scan_id_of(start(client, csrf, scanner=station.ids[JAM])))
        assert progress.batch_id is not None
        record = processed(station, progress.batch_id)
        queue = client.get("/review").text
        batch = client.get(f"/review/batches/{record.batch_id}").text
    row = queue.split(f'href="/review/batches/{record.batch_id}"', 1)[0].rsplit("<tr", 1)[1]
    assert JAM in row and "scan-" not in row and record.file not in row
    assert "Kẹt giấy trong khay nạp" in row and "Paper jam" not in row + batch
    local = datetime.fromisoformat(record.received_at).astimezone(timezone(timedelta(hours=7)))
    title = batch.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert JAM in title and local.strftime("%d/%m/%Y %H:%M") in title


def test_the_station_works_without_javascript(station: Station, browser) -> None:
    """Given a browser with JavaScript off, the scanner list is on the page as served, a scan
    starts from the plain form, and the page follows it by reloading itself."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1366,
                                                                        "height": 768})
    try:
        page = context.new_page()
        login(page, station.app.url, *station.app.user("scanner", [H40]))
        page.goto(f"{station.app.url}/scan")
        radio = page.locator(f"#scanner-list input[value='{station.ids[MAIN]}']")
        expect(radio).to_have_count(1)
        assert "Đang tìm các máy quét" not in page.content()
        radio.check()
        with page.expect_navigation():
            page.click("#scan-go")
        assert "/scan?scan=" in page.url
        expect(page.locator("#scan-progress")).to_have_count(1)
        shot(page, "no-javascript")
        finished(station, page.url.split("scan=", 1)[1])
    finally:
        context.close()


def test_at_1366x768_the_agency_and_the_start_button_are_in_view(station: Station,
                                                                  page: Page) -> None:
    """Given a user of every agency at 1366x768, the agency field (required, its suggestions
    the agencies known) and the start button are visible without scrolling."""
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, station.app.url, *station.app.user("scanner", ["*"]))
    page.goto(f"{station.app.url}/scan")
    agency = page.locator("#agency")
    expect(agency).to_be_in_viewport()
    assert agency.get_attribute("required") is not None
    options = page.locator("#agency-list option").evaluate_all("os => os.map(o => o.value)")
    assert H12 in options  # a scanner's agency
    expect(page.locator("#scan-go")).to_be_in_viewport(ratio=1)
    shot(page, "above-the-fold")


def test_a_jammed_scanner_is_never_preselected() -> None:
    from api.web.scan_pages import chosen_scanner
    from scanners.devices import Device

    jammed = Device("a", "Máy A", "http://a/eSCL/", "config", state="jammed")
    ready = Device("b", "Máy B", "http://b/eSCL/", "config", state="idle")
    assert chosen_scanner([jammed, ready], "") == "b"
    assert chosen_scanner([jammed], "") == ""
    assert chosen_scanner([jammed, ready], "a") == "a"  # the one staff picked stays picked


def test_a_batch_being_processed_shows_its_page_counter() -> None:
    from api.web.render import templates
    from scanners.scan import ScanProgress

    progress = ScanProgress("0123456789abcdef", "dev", "Máy quét tầng 1", "feeder", False,
                            state="done", pages=12)
    html = templates.env.get_template("scan_progress.html").render(
        scan=progress, batch={"batch_id": "b1", "status": "processing", "dossiers": 0,
                              "pages": 12, "pages_done": 3}, lang="vi", started=None)
    assert "Đã xử lý 3/12 trang" in html


class _Slow:
    """A page stage that takes its time, so a test can watch the batch being processed."""

    name = "slow"

    def __call__(self, work: Any) -> None:
        time.sleep(0.8)


def test_the_station_counts_the_pages_processed(station: Station, page: Page,
                                               tmp_path: Path) -> None:
    """Given pages that take a while each and a batch processed behind the scan (as a worker
    does), when staff scan three, then while the batch is being processed the station counts
    the pages done of the three, and then says the outcome."""
    import shutil
    import threading

    from ingest.runner import run_file

    pipeline, service = station.app.pipeline, station.app.app.state.scans
    stages, accept = pipeline.page_stages, service.accept
    workers: list[threading.Thread] = []

    def queued(path: Path, **kw: Any) -> Any:  # stored now, processed behind, like Celery
        copy = tmp_path / f"{len(workers)}-{path.name}"
        shutil.copyfile(path, copy)
        batch_id = pipeline.receive(copy, **kw)
        workers.append(threading.Thread(target=run_file, args=(pipeline, copy), kwargs=kw))
        workers[-1].start()
        return pipeline.record(batch_id)

    pipeline.page_stages, service.accept = [*stages, _Slow()], queued
    try:
        # an agency of its own: the emulator's pages, scanned before for H40, make a new batch
        login(page, station.app.url, *station.app.user("scanner", ["000.00.04.H77"]))
        choose_and_start(page, station, MAIN)
        counter = page.locator("#scan-progress .scan-pages-done")
        expect(counter).to_contain_text("Đã xử lý", timeout=30_000)
        expect(counter).to_have_attribute("data-total", "3")
        shot(page, "pages-processed")
        expect(page.locator("#scan-progress")).to_have_attribute(
            "data-batch", re.compile("done|needs_review"), timeout=60_000)
    finally:
        pipeline.page_stages, service.accept = stages, accept
        for worker in workers:
            worker.join(60)
