"""The review queue in a real browser (Chromium through Playwright) and over raw HTTP: fixing an
unmatched page by scanning its code, editing a dossier's pages, roles, agencies, bad input, and
forms sent twice."""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import img2pdf
import pytest
from playwright.sync_api import Page, expect

from ingest.pipeline import PageRef, Pipeline
from ingest.runner import run_file
from ingest.settings import RegistryConfig
from storage import layout
from tests import synth
from tests.browser import LiveApp, http_login, login, shot

H40 = "000.00.04.H40"
H22 = "000.00.78.H22"
DPI = 200
_numbers = itertools.count(11)  # never -0002, the code box's placeholder


@dataclass
class Scan:
    """A stored batch: page 1 has no code, pages 2-3 make dossier `code` (version 1)."""
    batch_id: str
    code: str
    file: str


@pytest.fixture(scope="module")
def prose() -> list[bytes]:
    """Two prose pages scanned once; every test's batch puts its own receipt between them."""
    paragraphs = synth.corpus_paragraphs()
    blobs = []
    for i in range(2):
        sheet, _ = synth.text_page(paragraphs[i * 8:(i + 1) * 8], DPI)
        scan = synth.Scan(noise=4.0, blur=0.6, seed=i)
        blobs.append(synth.encode(synth.degrade(sheet, scan), DPI, scan))
    return blobs


@pytest.fixture
def scanned(live_app: LiveApp, prose: list[bytes], tmp_path: Path):
    """Makes batches of agency H40 (or another) as the scanning station stores them."""
    def make(agency: str = H40, incomplete: str | None = None,
             pipeline: Pipeline | None = None, sent_by: str | None = None) -> Scan:
        n = next(_numbers)
        code = f"{agency}-230414-{n:04d}"
        scan = synth.Scan(noise=4.0, blur=0.6, seed=100 + n)
        receipt = synth.receipt(code, synth.receipt_fields(n), DPI, "code128")
        path = tmp_path / f"scan-{n}.pdf"
        path.write_bytes(img2pdf.convert([prose[0], synth.encode(synth.degrade(receipt, scan), DPI,
                                                                   scan), prose[1]]))
        name = f"quet-{n:03d}-{uuid.uuid4().hex[:6]}.pdf"
        record = run_file(pipeline or live_app.pipeline, path, agency=sent_by or agency,
                          source="scan", file_name=name, incomplete=incomplete)
        if pipeline is None and not incomplete and not sent_by:
            assert (record.status, record.unmatched_pages) == ("needs_review", [0])
            assert [d.dossier_id for d in record.dossiers] == [code]
        return Scan(record.batch_id, code, name)
    return make


class NoSuchDossier(BaseHTTPRequestHandler):
    """A one-stop-shop registry that knows no dossier."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unknown_codes(live_app: LiveApp) -> Iterator[Pipeline]:
    """The live app's pipeline, asking a registry that knows no code."""
    server = HTTPServer(("127.0.0.1", 0), NoSuchDossier)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/dossiers/{{code}}"
    settings = live_app.settings.model_copy(
        update={"registry": RegistryConfig(url=url, allow_private=True)})
    yield dataclasses.replace(live_app.pipeline, settings=settings)
    server.shutdown()


def versions(live_app: LiveApp, code: str) -> list[int]:
    return [m.version for m in live_app.pipeline.dossiers.versions(code)]


def refs(live_app: LiveApp, code: str) -> list[tuple[int, int]]:
    return [(r.index, r.rotate) for r in Pipeline.page_refs(live_app.pipeline.dossiers.versions(code)[-1])]


def status(live_app: LiveApp, batch_id: str) -> tuple[str, list[int]]:
    record = live_app.pipeline.record(batch_id)
    return record.status, record.unmatched_pages


def action() -> str:
    return uuid.uuid4().hex


def client(live_app: LiveApp, role: str = "scanner", agencies: tuple[str, ...] = (H40,)
           ) -> tuple[httpx.Client, str]:
    return http_login(live_app.url, *live_app.user(role, list(agencies)))


def post(http: httpx.Client, url: str, csrf: str, **data: Any) -> httpx.Response:
    return http.post(url, data={"csrf": csrf, "action_id": action(), **data})


def alert(response: httpx.Response) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', response.text)
    return found.group(1).strip() if found else ""


# in the browser


def test_a_scanner_fixes_an_unmatched_page_by_scanning_its_code(live_app: LiveApp, page: Page,
                                                                scanned) -> None:
    """Given a batch whose first page has no code, when a scanner opens it from the queue and a
    barcode reader types the dossier code and Enter, then the page joins the dossier as its
    version 2, the dossier shows that version, and the batch leaves the queue."""
    scan = scanned()
    login(page, live_app.url, *live_app.user("scanner", [H40], name="Trần Thị Lan"))
    page.click("header nav a[href='/review']")
    row = page.locator("#queue tr", has_text=scan.file)
    expect(row).to_contain_text("1 trang chưa xác định được hồ sơ")
    shot(page, "queue")
    row.get_by_role("link", name="Kiểm tra").click()
    expect(page.locator("#code")).to_be_focused()
    expect(page.locator("#unmatched-1 input[name=pages]")).to_be_checked()
    expect(page.locator("#unmatched-1 img")).to_have_js_property("complete", True)
    assert page.eval_on_selector("#unmatched-1 img", "i => i.naturalWidth") > 100
    shot(page, "batch")
    page.keyboard.type(scan.code, delay=5)  # what a USB barcode reader does
    page.keyboard.press("Enter")
    expect(page.locator("#review-notice")).to_contain_text(
        f"Đã gán trang 1 vào hồ sơ {scan.code}: đã lưu phiên bản 2.")
    expect(page.locator("#review-settled")).to_contain_text("không còn gì cần kiểm tra")
    row_id = "#dossier-" + scan.code.replace(".", "\\.")
    expect(page.locator(f"{row_id} .version")).to_have_text("2")
    shot(page, "assigned")
    page.click("#review-notice a")
    expect(page.locator("#dossier-meta")).to_contain_text("Phiên bản 2 · 3 trang")
    expect(page.locator("#versions li").first).to_contain_text(f"Gán trang 1 của tệp {scan.file}")
    shot(page, "dossier-version-2")
    page.click("text=← Về hàng chờ kiểm tra")
    expect(page.locator("main h1")).to_have_text("Hàng chờ kiểm tra")
    expect(page.locator("main")).not_to_contain_text(scan.file)
    shot(page, "queue-after")
    assert versions(live_app, scan.code) == [1, 2] and refs(live_app, scan.code)[-1] == (0, 0)
    assert status(live_app, scan.batch_id) == ("done", [])


def test_a_mistyped_code_is_refused_and_the_box_stays_ready(live_app: LiveApp, page: Page,
                                                            scanned) -> None:
    """Given a batch under review, when a code that breaks the grammar is entered, then the page
    says so in Vietnamese, keeps what was typed in the focused code box, and changes nothing."""
    scan = scanned()
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/review/batches/{scan.batch_id}")
    page.keyboard.type("000.00.04.H40-2304", delay=5)
    page.keyboard.press("Enter")
    expect(page.locator("#review-error")).to_contain_text(
        "“000.00.04.H40-2304” không phải là mã hồ sơ hợp lệ")
    expect(page.locator("#code")).to_be_focused()
    expect(page.locator("#code")).to_have_value("000.00.04.H40-2304")
    shot(page, "refused")
    assert versions(live_app, scan.code) == [1]
    assert status(live_app, scan.batch_id) == ("needs_review", [0])


def test_a_page_opens_large_and_a_scan_after_it_still_reaches_the_code_box(live_app: LiveApp,
                                                                            page: Page,
                                                                            scanned) -> None:
    """Given a batch under review, when a thumbnail is clicked, then the page opens large in a
    dialog; once closed, a code scanned while the focus is elsewhere still lands in the code box
    and Enter assigns the selected page."""
    scan = scanned()
    login(page, live_app.url, *live_app.user("scanner", [H40]))
    page.goto(f"{live_app.url}/review/batches/{scan.batch_id}")
    page.click("#unmatched-1 a.enlarge")
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("img")).to_have_js_property("complete", True)
    assert page.eval_on_selector("#viewer img", "i => i.naturalHeight") == 1400
    shot(page, "enlarged")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    page.locator("h2#pages-title").click()  # the focus is not in the code box
    expect(page.locator("#code")).not_to_be_focused()
    page.keyboard.type(scan.code, delay=5)
    page.keyboard.press("Enter")
    expect(page.locator("#review-notice")).to_contain_text(f"vào hồ sơ {scan.code}")
    shot(page, "assigned")
    assert status(live_app, scan.batch_id) == ("done", [])


def test_a_code_read_by_ocr_waits_until_confirmed(live_app: LiveApp, page: Page, scanned) -> None:
    """Given a dossier whose code the pipeline read by OCR, not from a barcode, when a processor
    opens the queue, then it lists it with that reason; once confirmed on its page, it is a new
    version with the code from a person, and it leaves the queue."""
    scan = scanned()
    code = f"{H40}-230415-{next(_numbers):04d}"
    live_app.pipeline.dossiers.store_version(code, H40, "ocr", [PageRef(scan.batch_id, 1)],
                                    claim=f"ocr-test:{code}")
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/review")
    row = page.locator("#queue tr", has_text=code)
    expect(row).to_contain_text("Mã hồ sơ đọc bằng OCR, không phải từ mã vạch")
    shot(page, "queue")
    row.get_by_role("link", name="Kiểm tra").click()
    expect(page.locator("#confirm-code")).to_contain_text("Hãy đối chiếu với giấy tiếp nhận")
    shot(page, "to-confirm")
    page.click("#confirm-code button")
    expect(page.locator("#review-notice")).to_have_text("Đã lưu phiên bản 2 của hồ sơ.")
    expect(page.locator("#confirm-code")).to_have_count(0)
    expect(page.locator("#versions li").first).to_contain_text("Xác nhận mã hồ sơ")
    shot(page, "confirmed")
    assert live_app.pipeline.dossiers.versions(code)[-1].code_source == "user"
    page.goto(f"{live_app.url}/review")
    expect(page.locator("main")).not_to_contain_text(code)


def test_rotating_a_page_in_the_browser_makes_a_new_version(live_app: LiveApp, page: Page,
                                                            scanned) -> None:
    """Given a dossier of two upright pages, when its first page is turned right, then version 2
    shows that page on its side and the older version keeps it upright."""
    scan = scanned()
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/review/dossiers/{scan.code}")
    expect(page.locator("#dossier-meta")).to_contain_text("Phiên bản 1 · 2 trang")
    shot(page, "dossier")
    page.click("#page-1 .rotate-right")
    expect(page.locator("#review-notice")).to_have_text("Đã lưu phiên bản 2 của hồ sơ.")
    expect(page.locator("#page-1")).to_have_attribute("data-rotate", "90")
    expect(page.locator("#page-1 img")).to_have_js_property("complete", True)
    width, height = page.eval_on_selector("#page-1 img", "i => [i.naturalWidth, i.naturalHeight]")
    assert width > height
    expect(page.locator("#versions li").first).to_contain_text("Xoay phải trang 1")
    shot(page, "rotated")
    assert refs(live_app, scan.code) == [(1, 90), (2, 0)]
    assert refs_of_version(live_app, scan.code, 1) == [(1, 0), (2, 0)]


def refs_of_version(live_app: LiveApp, code: str, version: int) -> list[tuple[int, int]]:
    manifest = live_app.pipeline.dossiers.versions(code)[version - 1]
    return [(r.index, r.rotate) for r in Pipeline.page_refs(manifest)]


def test_moving_a_page_up_then_dropping_one_reorders_the_dossier(live_app: LiveApp, page: Page,
                                                                  scanned) -> None:
    """Given a dossier of three pages, when its last page is moved up and then its new last page
    dropped (after the confirmation), then versions 3 and 4 hold those orders."""
    scan = scanned()
    http, csrf = client(live_app)
    assert post(http, f"/review/batches/{scan.batch_id}/assign", csrf, code=scan.code,
                pages="1").status_code == 303
    login(page, live_app.url, *live_app.user("scanner", [H40]))
    page.goto(f"{live_app.url}/review/dossiers/{scan.code}")
    expect(page.locator("#pages > li")).to_have_count(3)
    shot(page, "three-pages")
    page.click("#page-3 .earlier")
    expect(page.locator("#review-notice")).to_have_text("Đã lưu phiên bản 3 của hồ sơ.")
    expect(page.locator("#page-2")).to_have_attribute("data-ref", f"{scan.batch_id}:0")
    shot(page, "moved")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#page-3 details.more summary")
    shot(page, "more-tools")
    page.click("#page-3 button.drop")
    expect(page.locator("#review-notice")).to_have_text("Đã lưu phiên bản 4 của hồ sơ.")
    expect(page.locator("#pages > li")).to_have_count(2)
    expect(page.locator("#versions li").first).to_contain_text("Bỏ trang 3")
    shot(page, "dropped")
    assert refs(live_app, scan.code) == [(1, 0), (0, 0)]


def test_a_code_unknown_to_the_registry_is_assigned_with_one_click(live_app: LiveApp, page: Page,
                                                                   scanned, unknown_codes) -> None:
    """Given a receipt whose code the one-stop-shop registry does not know, when staff open the
    batch, then its pages wait as a group offering that code; one click on the offer makes the
    dossier, and the page with no code still waits."""
    scan = scanned(pipeline=unknown_codes)
    assert status(live_app, scan.batch_id) == ("needs_review", [0, 1, 2])
    login(page, live_app.url, *live_app.user("scanner", [H40]))
    page.goto(f"{live_app.url}/review")
    expect(page.locator("#queue tr", has_text=scan.file)).to_contain_text(
        f"Mã {scan.code} không có trong hệ thống một cửa (2 trang)")
    page.goto(f"{live_app.url}/review/batches/{scan.batch_id}")
    group = page.locator("fieldset.group", has_text="Nhóm 2")
    expect(group).to_contain_text(f"Mã đọc được: {scan.code}, chưa có trong hệ thống một cửa.")
    shot(page, "offered")
    group.get_by_role("button", name=f"Gán nhóm này vào {scan.code}").click()
    expect(page.locator("#review-notice")).to_contain_text(
        f"Đã gán trang 2, 3 vào hồ sơ {scan.code}: đã lưu phiên bản 1.")
    expect(page.locator("#unmatched-1")).to_be_visible()
    expect(page.locator("#unmatched-2")).to_have_count(0)
    shot(page, "assigned")
    assert refs(live_app, scan.code) == [(1, 0), (2, 0)]
    assert status(live_app, scan.batch_id) == ("needs_review", [0])


# over HTTP


def test_an_auditor_is_forbidden_the_review_queue(live_app: LiveApp, scanned) -> None:
    """Given an auditor, when they open the queue, a batch or post a change, then each answers
    403 and nothing changes."""
    scan = scanned()
    http, csrf = client(live_app, "auditor")
    assert http.get("/review").status_code == 403
    assert http.get(f"/review/batches/{scan.batch_id}").status_code == 403
    assert http.get(f"/review/dossiers/{scan.code}").status_code == 403
    r = post(http, f"/review/batches/{scan.batch_id}/assign", csrf, code=scan.code, pages="1")
    assert r.status_code == 403 and versions(live_app, scan.code) == [1]


def test_another_agencys_batch_and_dossier_answer_404_and_are_not_listed(live_app: LiveApp,
                                                                          scanned) -> None:
    """Given a batch of H40, when a scanner of H22 asks for it, its page images, its dossier or
    changes them, then each answers 404 like something that does not exist, and their queue does
    not show it."""
    scan = scanned()
    http, csrf = client(live_app, "scanner", (H22,))
    queue = http.get("/review")
    assert queue.status_code == 200 and scan.file not in queue.text and scan.code not in queue.text
    for url in (f"/review/batches/{scan.batch_id}", f"/review/batches/{scan.batch_id}/pages/1.jpg",
                f"/review/dossiers/{scan.code}", f"/review/dossiers/{scan.code}/v1/pages/1.jpg",
                "/review/batches/b000000000000000000000000"):
        assert http.get(url).status_code == 404, url
    assert post(http, f"/review/batches/{scan.batch_id}/assign", csrf, code=scan.code,
                pages="1").status_code == 404
    assert post(http, f"/review/dossiers/{scan.code}", csrf, op="rotate_right", page="1",
                version="1").status_code == 404
    assert versions(live_app, scan.code) == [1]


def test_a_bad_code_is_refused_with_a_clear_message_and_no_change(live_app: LiveApp,
                                                                 scanned) -> None:
    """Given a batch under review, when pages are assigned to a malformed code, to a code of
    another agency or with no page selected, then each answers 422 with its message and the
    batch and dossier stay as they were."""
    scan = scanned()
    http, csrf = client(live_app)
    url = f"/review/batches/{scan.batch_id}/assign"
    cases = [({"code": "HS-123", "pages": "1"}, "“HS-123” không phải là mã hồ sơ hợp lệ"),
             ({"code": f"{H22}-230414-0001", "pages": "1"}, "thuộc cơ quan mà bạn không phụ trách"),
             ({"code": scan.code}, "Hãy chọn ít nhất một trang."),
             ({"code": scan.code, "pages": "2"}, "không còn chờ gán")]
    for data, message in cases:
        r = post(http, url, csrf, **data)
        assert r.status_code == 422 and message in alert(r), (data, alert(r))
    assert versions(live_app, scan.code) == [1]
    assert status(live_app, scan.batch_id) == ("needs_review", [0])


def test_a_page_out_of_range_is_refused_and_changes_nothing(live_app: LiveApp, scanned) -> None:
    """Given a dossier of two pages, when page 9 is turned, page 2 moved to 5 or page 1 dropped
    from a one-page split, then each answers 422 saying what is wrong, and no version is made."""
    scan = scanned()
    http, csrf = client(live_app)
    url = f"/review/dossiers/{scan.code}"
    for data, message in [({"op": "rotate_right", "page": "9"}, "Hồ sơ không có trang 9."),
                          ({"op": "move", "page": "2", "to": "5"}, "Hồ sơ không có trang 5."),
                          ({"op": "earlier", "page": "1"}, "Hồ sơ không có trang 0."),
                          ({"op": "split", "page": "1", "new_code": f"{H40}-230414-9999"},
                           "Chỉ tách được từ trang thứ 2 trở đi.")]:
        r = post(http, url, csrf, version="1", **data)
        assert r.status_code == 422 and message in alert(r), (data, alert(r))
    assert versions(live_app, scan.code) == [1]


def test_a_change_without_the_csrf_token_is_refused(live_app: LiveApp, scanned) -> None:
    """Given a signed-in scanner, when a form is posted without the session's CSRF token, then it
    answers 403 with the security message and nothing changes."""
    scan = scanned()
    http, _ = client(live_app)
    r = http.post(f"/review/batches/{scan.batch_id}/assign",
                  data={"code": scan.code, "pages": "1", "action_id": action()})
    assert r.status_code == 403 and "mã chống giả mạo" in alert(r)
    r = http.post(f"/review/dossiers/{scan.code}",
                  data={"op": "drop", "page": "1", "version": "1", "action_id": action()})
    assert r.status_code == 403
    assert versions(live_app, scan.code) == [1]
    assert status(live_app, scan.batch_id) == ("needs_review", [0])


def test_an_assignment_sent_twice_changes_nothing_the_second_time(live_app: LiveApp,
                                                                  scanned) -> None:
    """Given an assignment made, when the same form (same action id) is sent again, then it
    answers as the first did and makes no second version or audit entry."""
    scan = scanned()
    http, csrf = client(live_app)
    data = {"csrf": csrf, "action_id": action(), "code": scan.code, "pages": "1"}
    first = http.post(f"/review/batches/{scan.batch_id}/assign", data=data)
    assert first.status_code == 303
    audit = live_app.pipeline.audit
    assert audit is not None
    before = [e for e in audit.entries(limit=10_000) if e["target"] == scan.code]
    again = http.post(f"/review/batches/{scan.batch_id}/assign", data=data)
    assert (again.status_code, again.headers["location"]) == (303, first.headers["location"])
    assert versions(live_app, scan.code) == [1, 2]
    assert [e for e in audit.entries(limit=10_000) if e["target"] == scan.code] == before
    assert before[-1]["actor"].startswith("user:scanner")


def test_a_page_turn_sent_twice_turns_the_page_once(live_app: LiveApp, scanned) -> None:
    """Given a page turned right, when the same form is sent again, then the dossier has one new
    version with the page turned by 90 degrees, not 180."""
    scan = scanned()
    http, csrf = client(live_app, "processor")
    data = {"csrf": csrf, "action_id": action(), "op": "rotate_right", "page": "2", "version": "1"}
    for _ in range(2):
        assert http.post(f"/review/dossiers/{scan.code}", data=data).status_code == 303
    assert versions(live_app, scan.code) == [1, 2] and refs(live_app, scan.code) == [(1, 0), (2, 90)]


def test_a_change_made_on_an_old_version_is_refused(live_app: LiveApp, scanned) -> None:
    """Given a dossier someone changed to version 2, when a form made on version 1 drops a page,
    then it answers 409 naming the new version and drops nothing."""
    scan = scanned()
    http, csrf = client(live_app)
    assert post(http, f"/review/dossiers/{scan.code}", csrf, op="later", page="1",
                version="1").status_code == 303
    r = post(http, f"/review/dossiers/{scan.code}", csrf, op="drop", page="1", version="1")
    assert r.status_code == 409 and "nay là phiên bản 2" in alert(r)
    assert refs(live_app, scan.code) == [(2, 0), (1, 0)]


def test_split_then_merge_through_the_forms(live_app: LiveApp, scanned) -> None:
    """Given a two-page dossier, when it is split from page 2 into a new code and that dossier is
    merged back, then the pages move and each dossier gets its versions."""
    scan = scanned()
    new_code = scan.code[:-4] + "7" + scan.code[-3:]
    http, csrf = client(live_app, "processor")
    r = post(http, f"/review/dossiers/{scan.code}", csrf, op="split", page="2", version="1",
             new_code=new_code.lower())
    assert r.status_code == 303 and r.headers["location"].endswith(
        f"done=split&v=2&other={new_code}#split-feedback")  # the notice is beside the form
    assert "các trang tách ra ở hồ sơ " + new_code in http.get(r.headers["location"]).text
    assert refs(live_app, scan.code) == [(1, 0)] and refs(live_app, new_code) == [(2, 0)]
    r = post(http, f"/review/dossiers/{scan.code}", csrf, op="merge", version="2", other=new_code)
    assert r.status_code == 303
    assert refs(live_app, scan.code) == [(1, 0), (2, 0)] and versions(live_app, scan.code) == [1, 2, 3]
    r = post(http, f"/review/dossiers/{scan.code}", csrf, op="merge", version="3",
             other=f"{H40}-230414-0000")
    assert r.status_code == 422 and "Không tìm thấy hồ sơ" in alert(r)
    beside = r.text.split('id="merge-feedback"', 1)[1].split("</div>", 1)[0]
    assert "Không tìm thấy hồ sơ" in beside  # the refusal is next to the merge form


def test_a_merge_refusal_is_seen_where_the_clerk_is(live_app: LiveApp, scanned,
                                                     page: Page) -> None:
    """Given the review page of a dossier at 1366x768, when a clerk at the merge form (at the
    bottom) asks to merge a code that does not exist, then the refusal is in view, next to that
    form, not at the top of the page."""
    scan = scanned()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/review/dossiers/{scan.code}")
    page.fill("#merge-code", f"{H40}-230414-0000")
    page.locator("#merge-form button[type=submit]").click()
    refusal = page.locator("#merge-feedback [role=alert]")
    expect(refusal).to_contain_text("Không tìm thấy hồ sơ")
    expect(refusal).to_be_in_viewport()
    shot(page, "merge-refused")


def test_a_jam_reason_is_said_in_the_pages_language(live_app: LiveApp, scanned) -> None:
    """Given a scan the scanner ended with a paper jam (its reason stored as the scan service
    writes it), the Vietnamese queue and batch page say it in Vietnamese, once, without the
    English text or a doubled full stop; the English pages say it in English."""
    scan = scanned(incomplete="[jam] Paper jam in the feeder: clear it and scan the remaining "
                              "pages.")
    http, _ = client(live_app)
    queue = http.get("/review").text
    assert "Lô quét có thể thiếu trang: Kẹt giấy trong khay nạp" in queue
    batch = http.get(f"/review/batches/{scan.batch_id}").text
    assert "Paper jam" not in queue + batch and ".." not in batch.split("Lý do:")[1][:300]
    http.get("/lang/en")
    assert "The scan may lack pages: Paper jam in the feeder" in http.get("/review").text
    http.get("/lang/vi")


def test_an_incomplete_scan_stays_in_the_queue_until_a_person_decides(live_app: LiveApp,
                                                                      scanned) -> None:
    """Given a scan stopped by a paper jam, its dossier is held: the queue gives the jam as the
    reason and the batch page offers to store the dossier; setting aside the page with no code
    leaves the batch waiting, with no dossier stored; storing the held dossier settles it."""
    scan = scanned(incomplete="paper jam at sheet 4")
    http, csrf = client(live_app)
    assert "Lô quét có thể thiếu trang: paper jam at sheet 4" in http.get("/review").text
    assert f"Lưu thành hồ sơ {scan.code}" in http.get(f"/review/batches/{scan.batch_id}").text
    post(http, f"/review/batches/{scan.batch_id}/discard", csrf, pages="1")
    assert status(live_app, scan.batch_id) == ("needs_review", [1, 2])
    assert versions(live_app, scan.code) == [] and scan.file in http.get("/review").text
    r = post(http, f"/review/batches/{scan.batch_id}/replace", csrf, pages=["2", "3"])
    assert r.status_code == 303 and status(live_app, scan.batch_id) == ("done", [])
    assert versions(live_app, scan.code) == [1]
    assert scan.file not in http.get("/review").text


def test_a_shorter_rescan_is_replaced_or_kept_by_a_person(live_app: LiveApp, scanned) -> None:
    """Given a dossier of 2 pages and a rescan of its receipt alone, then the rescan waits with
    both choices on its batch page and the dossier page says a version waits; keeping the
    current version leaves the dossier as it was."""
    scan = scanned()
    http, csrf = client(live_app)
    post(http, f"/review/batches/{scan.batch_id}/discard", csrf, pages="1")
    assert versions(live_app, scan.code) == [1]
    receipt_only = live_app.pipeline.store.get(layout.page_pdf(scan.batch_id, 1))
    rescan = live_app.settings.storage.data_dir.parent / f"rescan-{scan.code}.pdf"
    rescan.write_bytes(receipt_only)
    record = run_file(live_app.pipeline, rescan, agency=H40, source="scan")
    assert [r.reason for r in record.review] == ["incomplete_rescan"]
    page = http.get(f"/review/batches/{record.batch_id}").text
    assert "Thay phiên bản hiện tại bằng bản quét này" in page
    assert "Giữ phiên bản hiện tại" in page
    reader, _ = client(live_app, "processor")
    assert "đang chờ duyệt" in reader.get(f"/dossiers/{scan.code}").text
    r = post(http, f"/review/batches/{record.batch_id}/keep", csrf, pages="1")
    assert r.status_code == 303 and status(live_app, record.batch_id) == ("done", [])
    assert versions(live_app, scan.code) == [1]
    assert "đang chờ duyệt" not in reader.get(f"/dossiers/{scan.code}").text


def test_pages_with_another_agencys_code_wait_for_that_agency(live_app: LiveApp,
                                                             scanned) -> None:
    """Given a scanner of H22 that scanned a receipt of H40, then no H40 dossier is made; H22's
    staff see their batch but not those pages (no image, cannot store them); H40's staff find
    the batch in their queue, see those pages only, and store them as the H40 dossier."""
    scan = scanned(agency=H40, sent_by=H22)
    record = live_app.pipeline.record(scan.batch_id)
    assert [(r.code, r.pages, r.agency) for r in record.review
            if r.reason == "other_agency"] == [(scan.code, [1, 2], H40)]
    assert versions(live_app, scan.code) == []
    theirs, their_csrf = client(live_app, agencies=(H22,))
    assert "mang mã của một cơ quan khác" in theirs.get(f"/review/batches/{scan.batch_id}").text
    assert theirs.get(f"/review/batches/{scan.batch_id}/pages/2.jpg").status_code == 404
    r = post(theirs, f"/review/batches/{scan.batch_id}/replace", their_csrf, pages=["2", "3"])
    assert r.status_code != 303 and versions(live_app, scan.code) == []
    mine, csrf = client(live_app, agencies=(H40,))
    assert scan.file in mine.get("/review").text
    assert mine.get(f"/review/batches/{scan.batch_id}/pages/2.jpg").status_code == 200
    assert mine.get(f"/review/batches/{scan.batch_id}/pages/1.jpg").status_code == 404
    r = post(mine, f"/review/batches/{scan.batch_id}/discard", csrf, pages="1")
    assert r.status_code != 303
    r = post(mine, f"/review/batches/{scan.batch_id}/replace", csrf, pages=["2", "3"])
    assert r.status_code == 303 and versions(live_app, scan.code) == [1]
    assert status(live_app, scan.batch_id) == ("needs_review", [0])


def test_a_page_set_aside_belongs_to_no_dossier(live_app: LiveApp, scanned) -> None:
    """Given a stray page with no code, when staff set it aside, then the batch leaves review, the
    page is listed as set aside by them, and no dossier changes."""
    scan = scanned()
    http, csrf = client(live_app)
    r = post(http, f"/review/batches/{scan.batch_id}/discard", csrf, pages="1")
    assert r.status_code == 303 and "Đã để riêng trang 1." in http.get(r.headers["location"]).text
    record = live_app.pipeline.record(scan.batch_id)
    assert (record.status, record.dropped_pages[-1].reason) == ("done", "set_aside")
    assert versions(live_app, scan.code) == [1]


def test_the_queue_speaks_english_when_asked(live_app: LiveApp, scanned) -> None:
    """Given the language set to English, when the queue is opened, then its title and reasons
    are in English."""
    scan = scanned()
    http, _ = client(live_app)
    http.get("/lang/en")
    text = http.get("/review").text
    assert "<h1>Review queue</h1>" in text and "Pages with no dossier: 1" in text
    assert "Assign selected pages" in http.get(f"/review/batches/{scan.batch_id}").text


def test_a_dossier_is_opened_by_its_code_from_the_queue(live_app: LiveApp, scanned) -> None:
    """Given the queue's "open a dossier" box, when a code is typed in lower case, then its page
    editor opens; an unknown code or one of another agency says there is no such dossier, and a
    malformed one says so."""
    scan = scanned()
    http, _ = client(live_app)
    r = http.get("/review/dossiers", params={"code": f" {scan.code.lower()} "})
    assert (r.status_code, r.headers["location"]) == (303, f"/review/dossiers/{scan.code}")
    for code in (f"{H40}-230414-0000", f"{H22}-230414-0001"):
        r = http.get("/review/dossiers", params={"code": code})
        assert r.status_code == 404 and alert(r) == f"Không tìm thấy hồ sơ {code}."
    r = http.get("/review/dossiers", params={"code": "abc"})
    assert r.status_code == 422 and "“abc” không phải là mã hồ sơ hợp lệ" in alert(r)


def test_a_code_from_a_barcode_needs_no_confirmation(live_app: LiveApp, scanned) -> None:
    """Given a dossier whose code came from a barcode, when someone posts a confirmation, then it
    answers 422 saying so and makes no version."""
    scan = scanned()
    http, csrf = client(live_app)
    r = post(http, f"/review/dossiers/{scan.code}", csrf, op="confirm", version="1")
    assert r.status_code == 422 and "không cần xác nhận" in alert(r)
    assert versions(live_app, scan.code) == [1]


# correcting a code read wrong


def ocr_read(live_app: LiveApp, scan: Scan, code: str) -> None:
    """Dossier `code` as if OCR had read it (wrongly) on page 2 of the scan."""
    agency = live_app.pipeline.grammar.match(code).agency  # type: ignore[union-attr]
    live_app.pipeline.dossiers.store_version(code, agency, "ocr", [PageRef(scan.batch_id, 1)],
                                    claim=f"ocr-test:{code}")


def test_a_code_read_wrong_is_corrected_by_typing_the_right_one(live_app: LiveApp, page: Page,
                                                                 scanned) -> None:
    """Given a dossier whose code OCR read wrong, when a processor opens it from the queue, its
    "correct the code" box has the focus, and a barcode reader types the right code and Enter
    (into that box even after a click elsewhere on the page), then
    the right code's page opens with a notice, its version 1 holds the page with the code from a
    person, the wrong code leaves the queue, and its old address leads to the right code."""
    scan = scanned()
    wrong, right = f"{H40}-230416-{next(_numbers):04d}", f"{H40}-230416-{next(_numbers):04d}"
    ocr_read(live_app, scan, wrong)
    login(page, live_app.url, *live_app.user("processor", [H40], name="Lê Văn Minh"))
    page.goto(f"{live_app.url}/review")
    page.locator("#queue tr", has_text=wrong).get_by_role("link", name="Kiểm tra").click()
    expect(page.locator("#recode")).to_contain_text("Sửa mã hồ sơ")
    expect(page.locator("#recode-code")).to_be_focused()
    shot(page, "code-in-doubt")
    page.locator("#dossier-meta").click()  # the focus leaves the box: a scan still lands in it
    expect(page.locator("#recode-code")).not_to_be_focused()
    page.keyboard.type(right, delay=5)  # what a USB barcode reader does
    expect(page.locator("#recode-code")).to_have_value(right)
    shot(page, "right-code-typed")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(f"/review/dossiers/{right}?")))
    expect(page.locator("#review-notice")).to_have_text(
        f"Đã sửa mã {wrong} thành {right}: đã lưu phiên bản 1 của hồ sơ {right}. "
        f"Mã {wrong} không còn dùng.")
    expect(page.locator("main h1 code")).to_have_text(right)
    expect(page.locator("#confirm-code")).to_have_count(0)
    expect(page.locator("#versions li").first).to_contain_text(f"nhận các trang của mã {wrong}")
    shot(page, "recoded")
    page.goto(f"{live_app.url}/review")
    expect(page.locator("main h1")).to_have_text("Hàng chờ kiểm tra")
    expect(page.locator("main")).not_to_contain_text(wrong)
    shot(page, "queue-after")
    page.goto(f"{live_app.url}/review/dossiers/{wrong}")
    expect(page.locator("#review-notice")).to_have_text(f"Mã {wrong} đã được sửa thành {right}.")
    expect(page.locator("main h1 code")).to_have_text(right)
    shot(page, "old-address")
    assert refs(live_app, right) == [(1, 0)] and versions(live_app, wrong) == [1, 2]
    assert live_app.pipeline.dossiers.versions(right)[-1].code_source == "user"
    assert live_app.pipeline.dossiers.versions(wrong)[-1].withdrawn.to == right


def test_a_wrong_code_typed_to_correct_a_code_is_refused_and_kept_for_fixing(live_app: LiveApp,
                                                                          scanned) -> None:
    """Given a dossier, when its code is corrected to a malformed code, to its own code or to a
    code of an agency the user does not work for, then each answers 422 saying why, keeps what
    was typed in the box, and nothing changes."""
    scan = scanned()
    http, csrf = client(live_app, "processor")
    url = f"/review/dossiers/{scan.code}"
    for typed, message in [("HS-123", "“HS-123” không phải là mã hồ sơ hợp lệ"),
                           (scan.code, "Đây đã là mã của hồ sơ này"),
                           (f"{H22}-230414-0001", "thuộc cơ quan mà bạn không phụ trách")]:
        r = post(http, url, csrf, op="recode", version="1", new_code=typed)
        assert r.status_code == 422 and message in alert(r), (typed, alert(r))
        assert f'value="{typed}"' in r.text
    assert versions(live_app, scan.code) == [1] and versions(live_app, f"{H22}-230414-0001") == []


def test_correcting_a_code_is_for_its_agencys_staff_only(live_app: LiveApp, scanned) -> None:
    """Given a dossier of H40, when a processor of H22 corrects its code, then it answers 404
    like a dossier that does not exist; an auditor gets 403; nothing changes."""
    scan = scanned()
    right = f"{H40}-230417-{next(_numbers):04d}"
    for role, agencies, status_code in [("processor", (H22,), 404), ("auditor", (H40,), 403)]:
        http, csrf = client(live_app, role, agencies)
        r = post(http, f"/review/dossiers/{scan.code}", csrf, op="recode", version="1",
                 new_code=right)
        assert r.status_code == status_code, role
    assert versions(live_app, scan.code) == [1] and versions(live_app, right) == []


def test_a_correction_sent_twice_leads_to_the_same_page_and_changes_nothing(live_app: LiveApp,
                                                                           scanned) -> None:
    """Given a code corrected, when the same form is sent again (a double Enter), then it leads
    to the same page and makes no second version of either code."""
    scan = scanned()
    right = f"{H40}-230418-{next(_numbers):04d}"
    http, csrf = client(live_app, "scanner")
    data = {"csrf": csrf, "action_id": action(), "op": "recode", "version": "1",
            "new_code": right}
    first = http.post(f"/review/dossiers/{scan.code}", data=data)
    assert first.status_code == 303
    assert first.headers["location"] == \
        f"/review/dossiers/{right}?done=recode&v=1&other={scan.code}"
    again = http.post(f"/review/dossiers/{scan.code}", data=data)
    assert (again.status_code, again.headers["location"]) == (303, first.headers["location"])
    assert versions(live_app, scan.code) == [1, 2] and versions(live_app, right) == [1]
    record = live_app.pipeline.record(scan.batch_id)
    assert [d.dossier_id for d in record.dossiers] == [right]


def test_the_api_answers_gone_for_a_corrected_code(live_app: LiveApp, scanned) -> None:
    """Given a code corrected in review, when a processing system asks the REST API for it, then
    it answers 410 Gone naming the right code, the listing has only the right code, and the
    change feed says the old code was withdrawn to it; another agency's user still gets 404."""
    scan = scanned()
    right = f"{H40}-230419-{next(_numbers):04d}"
    http, csrf = client(live_app, "processor")
    assert post(http, f"/review/dossiers/{scan.code}", csrf, op="recode", version="1",
                new_code=right).status_code == 303
    r = http.get(f"/api/v1/dossiers/{scan.code}")
    assert r.status_code == 410
    assert {k: r.json()["detail"][k] for k in ("dossier_id", "renamed_to", "version")} == {
        "dossier_id": scan.code, "renamed_to": right, "version": 2}
    assert http.get(f"/api/v1/dossiers/{scan.code}/pdf").status_code == 410
    assert http.get(f"/api/v1/dossiers/{right}").json()["pages"] == [1, 2]
    listed = [d["dossier_id"] for d in http.get("/api/v1/dossiers", params={"limit": 200}).json()["items"]]
    assert right in listed and scan.code not in listed
    feed = [(e["kind"], e["dossier_id"], e.get("to"))
            for e in http.get("/api/v1/events", params={"limit": 500}).json()["items"]
            if e["dossier_id"] in (scan.code, right)]
    assert sorted(feed) == sorted([("created", scan.code, None), ("created", right, None),
                                   ("withdrawn", scan.code, right)])
    other, _ = client(live_app, "processor", (H22,))
    assert other.get(f"/api/v1/dossiers/{scan.code}").status_code == 404
