"""The dossier pages in a real browser (Chromium through Playwright) and over raw HTTP: search
without accents, the dossier view, PDF download, "verify now" on intact and tampered dossiers,
field corrections, agency scoping, roles and malformed input.

The dossiers are real scans (tests/synth.py) digitized by the pipeline: two receipts read by OCR
(one a poor scan, so some fields come with low confidence), two by their barcodes only."""

from __future__ import annotations

import hashlib
import re
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from api.web.dossier_pages import LOW_CONFIDENCE
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from tests import synth
from tests.browser import LiveApp, http_login, login, shot

H40, H56 = "000.00.04.H40", "000.00.04.H56"
AN = "000.00.04.H40-230414-0002"  # Nguyễn Văn An: a clean receipt, read by OCR
NGOC = "000.00.04.H40-230415-0003"  # Trần Thị Bích Ngọc: a poor scan, some fields read unsure
THANG = "000.00.04.H40-230416-0004"  # Lê Đức Thắng: barcodes only; tampered with by one test
OTHER = "000.00.04.H56-230414-0007"  # Nguyễn Văn An again, but of another agency
MISREAD = "000.00.04.H40-230418-0008"  # Phạm Thị Hồng Nhung: barcodes only; withdrawn by one test
MISSING = "000.00.04.H40-991231-9999"
CLEAN = synth.Scan()
NOISY = synth.Scan(blur=2.0, noise=40, jpeg_quality=30, seed=3)


def dossier_pages(code: str, applicant: int, receipt_scan: synth.Scan = CLEAN
                  ) -> list[tuple[synth.Page, synth.Scan]]:
    """A receipt and a copy of the applicant's ID card (its QR carries the name)."""
    fields = synth.receipt_fields(applicant)
    name, address = fields["applicant_name"], fields["address"]
    payload = f"00109{applicant:07d}||{name}|15031990|Nam|{address}|20042021"
    return [(synth.receipt(code, fields, 200), receipt_scan),
            (synth.id_card_copy(payload, name, 200), CLEAN)]


@pytest.fixture(scope="module")
def manifests(live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Digitizes the four dossiers; returns their stored manifests by code."""
    folder = tmp_path_factory.mktemp("scans")
    read = synth.write_pdf(dossier_pages(AN, 0) + dossier_pages(NGOC, 1, NOISY), folder / "ocr.pdf")
    with_ocr = Pipeline.from_settings(live_app.settings)  # the default stages: OCR included
    assert run_file(with_ocr, read, agency=H40).status == "done"
    fast = synth.write_pdf(dossier_pages(THANG, 2) + dossier_pages(MISREAD, 3),
                           folder / "fast.pdf")
    assert run_file(live_app.pipeline, fast, agency=H40).status == "done"
    # H56's dossier comes in H56's own batch: writes are scoped like reads.
    theirs = synth.write_pdf(dossier_pages(OTHER, 0), folder / "h56.pdf")
    assert run_file(live_app.pipeline, theirs, agency=H56).status == "done"
    return {code: live_app.pipeline.dossiers.versions(code)[-1]
            for code in (AN, NGOC, THANG, OTHER, MISREAD)}


def catalog_fields(live_app: LiveApp, code: str) -> dict[str, dict[str, Any]]:
    found = live_app.pipeline.catalog.dossier(code)  # type: ignore[union-attr]
    assert found is not None
    return found["fields"]


def audit_of(live_app: LiveApp, code: str, action: str) -> list[dict[str, Any]]:
    entries = live_app.pipeline.audit.entries(limit=100_000)  # type: ignore[union-attr]
    return [e for e in entries if e["target"] == code and e["action"] == action]


def snap(page: Page, name: str) -> None:
    """A screenshot once the page's images and preview have loaded, taken from the top (the
    preview frame sticks to the window, so on a scrolled page it would show midway)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)  # the PDF viewer draws after its bytes arrive
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, name)


def result_codes(html: str) -> list[str]:
    return re.findall(r'<tr data-code="([^"]+)"', html)


# in the browser


def test_an_auditor_finds_a_dossier_without_accents_and_downloads_its_pdf(
        live_app: LiveApp, page: Page, manifests: dict[str, dict]) -> None:
    """Given an auditor of H40, when they search "nguyen van" without accents, then the dossier of
    Nguyễn Văn An is found (not the namesake of another agency), its page opens, and the PDF they
    download is byte for byte the stored one (its SHA-256 is the manifest's)."""
    problems: list[str] = []  # console errors, among them any Content-Security-Policy refusal
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    username, password = live_app.user("auditor", [H40], name="Đỗ Thị Hà")
    login(page, live_app.url, username, password)
    expect(page).to_have_url(f"{live_app.url}/dossiers")
    snap(page, "search-page")
    page.fill("#q", "nguyen van")
    page.click("#search-form button[type=submit]")
    row = page.locator(f"tr[data-code='{AN}']")
    expect(row).to_contain_text("Nguyễn Văn An")
    expect(page.locator(f"tr[data-code='{OTHER}']")).to_have_count(0)
    snap(page, "found-without-accents")
    row.locator("a.code").click()
    expect(page.locator("h1")).to_contain_text(AN)
    expect(page.locator("#field-applicant_name")).to_contain_text("Nguyễn Văn An")
    snap(page, "dossier")
    page.locator(".thumbs a").nth(1).click()  # page 2 in the preview
    page.wait_for_function(  # the frame may be replaced while it loads: ask the page
        "() => /\\/pdf\\?v=1#page=2&/.test(document.querySelector('iframe[name=preview]')"
        "?.contentWindow?.location.href || '')")
    snap(page, "page-2")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == f"{AN}.pdf"
    data = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifests[AN].objects["dossier.pdf"].sha256
    assert problems == []


def test_an_auditor_verifies_a_dossier_from_the_search_results(
        live_app: LiveApp, page: Page, manifests: dict[str, dict]) -> None:
    """Given the auditors' search page, when a row's verify button is pressed, then that row's
    status turns to intact in place, without leaving the results."""
    username, password = live_app.user("auditor", [H40])
    login(page, live_app.url, username, password, next_path="/search?q=tran+thi+bich+ngoc")
    row = page.locator(f"tr[data-code='{NGOC}']")
    page.evaluate("window.stayed = true")
    row.locator("button[type=submit]").click()
    expect(row.locator(".badge")).to_have_text("Toàn vẹn")
    assert page.evaluate("window.stayed") is True  # the same page: only the cell was replaced
    snap(page, "verified-in-the-results")


def test_the_one_search_page_ranks_marks_and_counts(live_app: LiveApp, page: Page,
                                                    manifests: dict[str, dict]) -> None:
    """Given an auditor following a link to the former search page, when it asks for "hung dao",
    then the one search page opens with Lê Đức Thắng's dossier (xã Hưng Đạo) first, the words
    marked in its snippet, and how many dossiers match; the menu has one search page."""
    username, password = live_app.user("auditor", [H40])
    login(page, live_app.url, username, password, next_path="/search?q=hung+dao")
    expect(page).to_have_url(re.compile(r"/dossiers\?q=hung(\+|%20)dao$"))
    expect(page.locator("tr[data-code]").first).to_have_attribute("data-code", THANG)
    expect(page.locator(f"tr[data-snippet-of='{THANG}'] mark").first).to_have_text("Hưng Đạo")
    expect(page.locator("#count")).to_have_text(re.compile(r"^Khoảng \d+ kết quả$"))
    expect(page.locator("header nav a", has_text="Hồ sơ")).to_have_count(1)
    expect(page.locator("header a[href='/search']")).to_have_count(0)
    snap(page, "ranked-search")


def test_verify_now_on_an_intact_dossier_says_ok_and_is_audited(
        live_app: LiveApp, page: Page, manifests: dict[str, dict]) -> None:
    """Given an intact dossier never verified, when an auditor presses "verify now", then the
    panel says every file matches, the status reads intact, and the check is in the audit log
    and in the page's audit trail at once."""
    username, password = live_app.user("auditor", [H40])
    login(page, live_app.url, username, password, next_path=f"/dossiers/{AN}")
    panel = page.locator("#integrity")
    expect(panel.locator(".badge")).to_have_text("Chưa kiểm tra")
    expect(page.locator("#trail")).not_to_contain_text("Kiểm tra toàn vẹn")
    snap(page, "not-verified-yet")
    panel.locator("button[type=submit]").click()
    expect(panel.locator(".result-ok")).to_contain_text("mọi tệp khớp với mã kiểm tra SHA-256")
    expect(panel.locator(".badge")).to_have_text("Toàn vẹn")
    expect(page.locator("#head-badge .badge")).to_have_text("Toàn vẹn")
    expect(page.locator("#trail")).to_contain_text("Kiểm tra toàn vẹn")  # no reload needed
    snap(page, "verified-ok")
    (entry,) = audit_of(live_app, AN, "dossier.verify")
    assert entry["actor"] == f"user:{username}"
    # a finding per stored object (the PDF, text, fields, the component copies), the original,
    # and the manifest against the audit log
    objects = len(manifests[AN].objects)
    assert (entry["detail"]["result"], entry["detail"]["objects"]) == ("ok", objects + 2)


def test_verify_now_reports_each_difference_after_tampering(
        live_app: LiveApp, page: Page, manifests: dict[str, dict]) -> None:
    """Given a dossier whose stored PDF was changed and whose text and fields were deleted
    behind sohoa's back, when an auditor opens it and presses "verify now", then each difference
    is listed with the recorded and the current SHA-256, and the search finds it among the
    dossiers with differences."""
    objects = manifests[THANG].objects
    root = live_app.settings.storage.data_dir / "objects"
    with (root / objects["dossier.pdf"].key).open("ab") as pdf:
        pdf.write(b"\n% changed after digitization\n")
    (root / objects["text.json"].key).unlink()
    (root / objects["fields.json"].key).unlink()
    changed = hashlib.sha256((root / objects["dossier.pdf"].key).read_bytes()).hexdigest()
    username, password = live_app.user("auditor", [H40])
    login(page, live_app.url, username, password, next_path=f"/dossiers/{THANG}")
    panel = page.locator("#integrity")
    panel.locator("button[type=submit]").click()
    expect(panel.locator(".result-bad")).to_be_visible()
    rows = panel.locator("table.problems tbody tr")
    expect(rows).to_have_count(3)
    pdf_row = rows.filter(has_text="v0001/dossier.pdf")
    expect(pdf_row).to_contain_text("Nội dung đã bị thay đổi")
    expect(pdf_row).to_contain_text(objects["dossier.pdf"].sha256)
    expect(pdf_row).to_contain_text(changed)
    expect(rows.filter(has_text="v0001/text.json")).to_contain_text("Tệp bị mất")
    expect(rows.filter(has_text="v0001/fields.json")).to_contain_text("Tệp bị mất")
    expect(panel.locator(".badge")).to_have_text("Có sai khác")
    expect(page.locator("#head-badge .badge")).to_have_text("Có sai khác")
    snap(page, "differences")
    page.goto(f"{live_app.url}/search?status=problem")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator(f"tr[data-code='{THANG}'] .badge")).to_have_text("Có sai khác")
    snap(page, "search-problems")


def test_a_processor_corrects_a_field_and_sees_it_beside_the_machines(
        live_app: LiveApp, page: Page, manifests: dict[str, dict]) -> None:
    """Given a poorly scanned receipt, then the fields read below the confidence threshold are
    highlighted; when a processor corrects the misread procedure, then the page shows the new
    value as corrected with what the machine read beside it, and the search finds the new value."""
    fields = catalog_fields(live_app, NGOC)
    unsure = {n for n, f in fields.items() if f["confidence"] < LOW_CONFIDENCE}
    assert unsure, "the poor scan should leave some field unsure"
    machine_procedure = fields["procedure"]["value"]
    username, password = live_app.user("processor", [H40], name="Vũ Minh Châu")
    login(page, live_app.url, username, password)
    expect(page).to_have_url(f"{live_app.url}/dossiers")
    snap(page, "dossier-list")
    page.click(f"tr[data-code='{NGOC}'] a.code")
    expect(page).to_have_url(f"{live_app.url}/dossiers/{NGOC}")
    expect(page.locator(".fields tr.low")).to_have_count(len(unsure))
    highlighted = page.locator(".fields tr.low").evaluate_all("rows => rows.map(r => r.id)")
    assert set(highlighted) == {f"field-{n}" for n in unsure}
    snap(page, "low-confidence")
    row = page.locator("#field-procedure")
    row.locator("summary").click()
    row.locator("input[name=value]").fill("Cấp giấy chứng nhận quyền sử dụng đất")
    row.locator("input[name=reason]").fill("đối chiếu với giấy tiếp nhận")
    snap(page, "correcting")
    row.locator("details.fix button[type=submit]").click()
    expect(page.locator("[role=status]")).to_contain_text("Đã lưu giá trị sửa")
    expect(row.locator(".value")).to_have_text("Cấp giấy chứng nhận quyền sử dụng đất")
    expect(row.locator(".machine")).to_contain_text(machine_procedure)
    expect(row.locator(".machine")).to_contain_text("đối chiếu với giấy tiếp nhận")
    expect(row).to_contain_text("Người sửa")
    snap(page, "corrected")
    assert catalog_fields(live_app, NGOC)["procedure"]["source"] == "corrected"
    page.goto(f"{live_app.url}/dossiers?q=chung+nhan+quyen+su+dung+dat")
    expect(page.locator(f"tr[data-code='{NGOC}']")).to_be_visible()


def test_the_dossier_page_in_english(live_app: LiveApp, page: Page,
                                     manifests: dict[str, dict]) -> None:
    """Given a processor who picked English, then the dossier page speaks English."""
    username, password = live_app.user("processor", [H40])
    login(page, live_app.url, username, password)
    page.click("header .langs a[lang=en]")
    page.goto(f"{live_app.url}/dossiers/{AN}")
    expect(page.locator("#fields-title")).to_have_text("Extracted fields")
    expect(page.locator("#download")).to_contain_text("Download PDF")
    snap(page, "english")


# over raw HTTP


@pytest.mark.parametrize("path", ["/search", "/dossiers", f"/dossiers/{AN}", f"/dossiers/{AN}/pdf"])
def test_scanning_staff_are_forbidden_the_dossier_pages(live_app: LiveApp, manifests: dict,
                                                        path: str) -> None:
    """Given a scanner, when they open a search or dossier page, then it answers 403."""
    username, password = live_app.user("scanner", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        r = client.get(path)
    assert r.status_code == 403 and "Bạn không có quyền truy cập trang này." in r.text


def test_a_code_with_control_characters_is_404_not_an_error(live_app: LiveApp,
                                                             manifests: dict) -> None:
    """Given a processor, when a dossier address holds a NUL byte or a newline, then it answers
    404 like any missing dossier (the code never reaches the database)."""
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        for code in ("%00", f"{AN}%00", "a%0Ab", "%7F"):
            assert client.get(f"/dossiers/{code}").status_code == 404, code


def test_the_address_shows_the_units_of_the_official_list_it_names(live_app: LiveApp,
                                                                   manifests: dict) -> None:
    """Given An's dossier, whose receipt and ID card give an address of before the 2025
    reorganization, when a processor opens it, then beside the address the page names its ward,
    district and province as the former list spells them; the stored field holds their codes."""
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        html = client.get(f"/dossiers/{AN}").text
    row = html[html.index('id="field-address"'):]
    row = row[:row.index("</tr>")]
    assert "trước ngày 01/7/2025: Phường Hàng Bài, Quận Hoàn Kiếm, Thành phố Hà Nội" in row
    assert catalog_fields(live_app, AN)["address"]["place"]["ward_code"] == 88


def test_another_agencys_dossier_is_404_like_a_missing_one(live_app: LiveApp,
                                                            manifests: dict) -> None:
    """Given a processor of H40, when they open, preview, verify or correct a dossier of H56, then
    each answers exactly like a dossier that does not exist, and nothing of it shows."""
    username, password = live_app.user("processor", [H40])
    client, csrf = http_login(live_app.url, username, password)
    with closing(client):
        for suffix, method in (("", "get"), ("/pdf", "get"), ("/verify", "post"),
                               ("/fields/applicant_name", "post")):
            data = {"csrf": csrf, "value": "x"} if method == "post" else None
            theirs = client.request(method, f"/dossiers/{OTHER}{suffix}", data=data)
            missing = client.request(method, f"/dossiers/{MISSING}{suffix}", data=data)
            assert theirs.status_code == missing.status_code == 404, suffix
            # the same page, but for the address asked (the language links carry it)
            assert theirs.text.replace(OTHER, MISSING) == missing.text
            assert "Nguyễn Văn An" not in theirs.text
    assert audit_of(live_app, OTHER, "dossier.field.correct") == []


def test_another_agencys_dossiers_never_show_in_results(live_app: LiveApp, manifests: dict) -> None:
    """Given an auditor of H40, when they search for a name both agencies have, or ask for H56's
    dossiers, then only their agency's dossier is listed and H56 is not offered as a filter."""
    username, password = live_app.user("auditor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        found = client.get("/dossiers", params={"q": "nguyen van an"})
        theirs = client.get("/dossiers", params={"q": "nguyen van an", "agency": H56})
        everything = client.get("/dossiers")
    assert result_codes(found.text) == [AN]
    assert theirs.status_code == 400 and result_codes(theirs.text) == []
    assert "Bạn chỉ tra cứu được hồ sơ của cơ quan mình." in theirs.text
    assert OTHER not in everything.text and H56 not in everything.text


def test_an_auditor_of_every_agency_sees_both(live_app: LiveApp, manifests: dict) -> None:
    """Given an auditor of all agencies ('*'), when they search the shared name, then both
    agencies' dossiers are listed, and the agency filter narrows them down."""
    username, password = live_app.user("auditor", ["*"])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        both = client.get("/dossiers", params={"q": "nguyen van an"})
        one = client.get("/dossiers", params={"q": "nguyen van an", "agency": H56})
    assert sorted(result_codes(both.text)) == [AN, OTHER]  # the same name: either first
    assert result_codes(one.text) == [OTHER]


def test_pages_of_results_follow_each_other_by_cursor(live_app: LiveApp, manifests: dict) -> None:
    """Given the dossiers of H40, when a processor pages through them one at a time, then each
    page shows the next dossier and the last page has no next link."""
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    seen: list[str] = []
    url: str | None = "/dossiers?limit=1"
    with closing(client):
        while url and len(seen) < 10:
            r = client.get(url)
            assert r.status_code == 200
            seen += result_codes(r.text)
            found = re.search(r'class="next" rel="next" href="([^"]+)"', r.text)
            url = found.group(1).replace("&amp;", "&") if found else None
    listed, _ = live_app.pipeline.catalog.list_dossiers((H40,), limit=100)  # type: ignore[union-attr]
    assert seen == [d["dossier_id"] for d in listed] and {AN, NGOC, THANG} <= set(seen)


def test_filters_narrow_the_results(live_app: LiveApp, manifests: dict) -> None:
    """Given the dossiers of H40 stored today, when a processor filters by today's date, by a
    later date or by procedure, then exactly the matching dossiers are listed."""
    today = datetime.now(timezone(timedelta(hours=7))).date()
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        def codes(**params: str) -> list[str]:
            r = client.get("/dossiers", params=params)
            assert r.status_code == 200
            return result_codes(r.text)
        assert AN in codes(**{"from": today.isoformat(), "to": today.isoformat()})
        assert codes(**{"from": (today + timedelta(days=1)).isoformat()}) == []
        assert codes(to=(today - timedelta(days=1)).isoformat()) == []
        assert codes(procedure="Đăng ký khai sinh") == [AN]


def test_a_search_for_an_exact_code_opens_the_dossier(live_app: LiveApp, manifests: dict) -> None:
    """Given an auditor, when the search is exactly a dossier code (as a barcode reader types
    it), then the dossier opens; another agency's code opens nothing."""
    username, password = live_app.user("auditor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        mine = client.get("/dossiers", params={"q": AN.lower()})
        theirs = client.get("/dossiers", params={"q": OTHER})
    assert (mine.status_code, mine.headers["location"]) == (303, f"/dossiers/{AN}")
    assert theirs.status_code == 200 and result_codes(theirs.text) == []


@pytest.mark.parametrize(("params", "message"), [
    ({"from": "2023-13-45"}, "Ngày không hợp lệ"),
    ({"from": "2023-05-02", "to": "2023-05-01"}, "Ngày bắt đầu phải trước hoặc bằng ngày kết thúc."),
    ({"after": "not a cursor!"}, "Liên kết trang kết quả không hợp lệ hoặc đã cũ."),
    ({"q": "nguyen " * 40}, "Từ khóa quá dài: tối đa 200 ký tự."),
    ({"limit": "0"}, "Số dòng mỗi trang phải từ 1 đến 100."),
    ({"status": "maybe"}, "Trạng thái toàn vẹn không hợp lệ."),
])
def test_malformed_search_input_gets_a_clear_message(live_app: LiveApp, manifests: dict,
                                                     params: dict[str, str], message: str) -> None:
    """Given an auditor, when the search carries a malformed filter, then the page answers 400
    with a message saying what is wrong, and lists nothing."""
    username, password = live_app.user("auditor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        r = client.get("/dossiers", params=params)
    assert r.status_code == 400
    assert message in r.text and result_codes(r.text) == []


@pytest.mark.parametrize("q", ['"', "*", "NEAR(", "-", ":", "nguyen*", "a:b", "'", "&|!", "(("])
def test_search_syntax_characters_are_never_an_error(live_app: LiveApp, manifests: dict,
                                                     q: str) -> None:
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        assert client.get("/dossiers", params={"q": q}).status_code == 200


def test_a_correction_without_the_csrf_token_is_refused(live_app: LiveApp, manifests: dict) -> None:
    """Given a processor's session, when a correction is posted without its CSRF token, then it
    is refused with 403 and the field keeps its value."""
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    before = catalog_fields(live_app, AN)["applicant_name"]
    with closing(client):
        r = client.post(f"/dossiers/{AN}/fields/applicant_name", data={"value": "Kẻ Giả Mạo"})
    assert r.status_code == 403 and "mã chống giả mạo" in r.text
    assert catalog_fields(live_app, AN)["applicant_name"] == before


@pytest.mark.parametrize(("name", "value", "message"), [
    ("applicant_name", "   ", "Hãy nhập giá trị đúng."),
    ("applicant_name", "x" * 2001, "Giá trị quá dài"),
])
def test_a_malformed_correction_is_shown_at_its_field(live_app: LiveApp, manifests: dict,
                                                      name: str, value: str, message: str) -> None:
    """Given a processor, when a correction is empty or too long, then they are sent back to the
    dossier page at that field, whose form is open with the message, and nothing is stored."""
    username, password = live_app.user("processor", [H40])
    client, csrf = http_login(live_app.url, username, password)
    with closing(client):
        r = client.post(f"/dossiers/{AN}/fields/{name}", data={"value": value, "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"].endswith(f"#field-{name}")
        shown = client.get(r.headers["location"]).text
    field = shown.split(f'id="field-{name}"', 1)[1].split("</tr>", 1)[0]
    assert message in field and "<details class=\"fix\" open>" in field
    assert audit_of(live_app, AN, "dossier.field.correct") == []


def test_a_blank_correction_brings_the_clerk_back_to_the_field_with_its_message(
        live_app: LiveApp, page: Page, manifests: dict) -> None:
    """Given the dossier page at 1366x768, when a processor submits a field's correction
    blank, then the page they land on is the dossier's, scrolled to that field, and its message
    is in view."""
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, live_app.url, *live_app.user("processor", [H40]))
    page.goto(f"{live_app.url}/dossiers/{AN}")
    row = page.locator("#field-email") if page.locator("#field-email").count() \
        else page.locator(".fields tr").last
    name = row.get_attribute("id").removeprefix("field-")  # type: ignore[union-attr]
    row.locator("summary").click()
    row.locator("input[name=value]").evaluate("i => { i.required = false; i.value = ' '; }")
    row.locator("details.fix button[type=submit]").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"#field-{name}") and f"/dossiers/{AN}?" in page.url
    alert = page.locator(f"#field-{name} [role=alert]")
    expect(alert).to_contain_text("Hãy nhập giá trị đúng.")
    expect(alert).to_be_in_viewport()
    snap_at = page.evaluate("window.scrollY")
    assert snap_at > 0


def test_a_low_confidence_value_that_is_right_is_confirmed_and_loses_its_badge(
        live_app: LiveApp, page: Page, manifests: dict) -> None:
    """Given a field read below the confidence threshold whose value is right, when a processor
    confirms it, then it is no longer marked for checking, reads as confirmed by a person, and
    the confirmation is audited and in the catalog; the value is unchanged."""
    fields = catalog_fields(live_app, NGOC)
    name = next(n for n, f in sorted(fields.items())
                if f["confidence"] < LOW_CONFIDENCE and f["source"] not in ("corrected",
                                                                            "confirmed"))
    value = fields[name]["value"]
    username, password = live_app.user("processor", [H40])
    login(page, live_app.url, username, password)
    page.goto(f"{live_app.url}/dossiers/{NGOC}")
    row = page.locator(f"#field-{name}")
    expect(row.locator(".badge.st-low")).to_be_visible()
    row.locator(f"#confirm-{name}").click()
    expect(page.locator("[role=status]")).to_contain_text("Đã xác nhận giá trị là đúng.")
    row = page.locator(f"#field-{name}")
    expect(row.locator(".badge.st-low")).to_have_count(0)
    expect(row).to_contain_text(f"Đã xác nhận đúng bởi {username}")
    after = catalog_fields(live_app, NGOC)[name]
    assert (after["value"], after["source"], after["confidence"]) == (value, "confirmed", 1.0)
    [entry] = [e for e in audit_of(live_app, NGOC, "dossier.field.correct")
               if e["detail"]["field"] == name]
    assert (entry["detail"]["confirmed"], entry["detail"]["value"]) == (True, value)


def test_a_bad_field_name_is_refused(live_app: LiveApp, manifests: dict) -> None:
    """Given a processor, when the field name is not one sohoa could store, then it answers 400."""
    username, password = live_app.user("processor", [H40])
    client, csrf = http_login(live_app.url, username, password)
    with closing(client):
        r = client.post(f"/dossiers/{AN}/fields", data={"name": "Bad Name", "value": "x",
                                                        "csrf": csrf})
    assert r.status_code == 400 and "Tên trường không hợp lệ." in r.text


def test_an_auditor_may_not_correct_a_field(live_app: LiveApp, manifests: dict) -> None:
    """Given an auditor with a valid session and token, when they post a correction, then 403."""
    username, password = live_app.user("auditor", [H40])
    client, csrf = http_login(live_app.url, username, password)
    with closing(client):
        r = client.post(f"/dossiers/{AN}/fields/phone", data={"value": "0900000000", "csrf": csrf})
    assert r.status_code == 403


def test_a_processor_adds_a_field_the_machine_did_not_read(live_app: LiveApp,
                                                          manifests: dict) -> None:
    """Given a dossier digitized from barcodes only (no receipt fields), when a processor adds its
    procedure, then it is stored as a correction the machine had nothing for, and searchable."""
    username, password = live_app.user("processor", [H40])
    client, csrf = http_login(live_app.url, username, password)
    with closing(client):
        r = client.post(f"/dossiers/{MISREAD}/fields", data={
            "name": "procedure", "value": "Cấp bản sao trích lục hộ tịch", "csrf": csrf})
        assert r.status_code == 303
        shown = client.get(r.headers["location"])
        found = client.get("/dossiers", params={"q": "trich luc ho tich"})
    assert "Máy không đọc được trường này" in shown.text
    assert result_codes(found.text) == [MISREAD]
    (entry,) = audit_of(live_app, MISREAD, "dossier.field.correct")
    assert entry["detail"]["previous"] is None


def test_the_audit_trail_is_shown_to_auditors_only(live_app: LiveApp, manifests: dict) -> None:
    """Given a dossier, then an auditor's view of it lists its audit trail (its creation among
    the changes, views only when asked), and a processor's view has no trail."""
    auditor, password = live_app.user("auditor", [H40])
    processor, _ = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, auditor, password)
    other, _ = http_login(live_app.url, processor, password)
    with closing(client), closing(other):
        changes = client.get(f"/dossiers/{AN}").text
        with_reads = client.get(f"/dossiers/{AN}", params={"reads": "1"}).text
        plain = other.get(f"/dossiers/{AN}").text
    assert 'id="trail"' in changes and "Tạo phiên bản" in changes and "Xem hồ sơ" not in changes
    assert "Xem hồ sơ" in with_reads
    assert 'id="trail"' not in plain


def test_the_preview_pdf_is_inline_and_the_stored_bytes(live_app: LiveApp,
                                                       manifests: dict[str, dict]) -> None:
    """Given a processor, when the preview frame loads the PDF, then it is the stored PDF, sent
    inline (shown, not downloaded), and may be framed by the app's own pages only."""
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        r = client.get(f"/dossiers/{AN}/pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("inline")
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert hashlib.sha256(r.content).hexdigest() == manifests[AN].objects["dossier.pdf"].sha256


def test_verify_without_javascript_redirects_back(live_app: LiveApp, manifests: dict) -> None:
    """Given a search row's verify button used without JavaScript, then the check runs and the
    browser is sent back to the search it came from."""
    username, password = live_app.user("auditor", [H40])
    client, csrf = http_login(live_app.url, username, password)
    with closing(client):
        r = client.post(f"/dossiers/{NGOC}/verify", data={"csrf": csrf, "view": "badge",
                                                          "next": "/search?q=ngoc"})
        assert (r.status_code, r.headers["location"]) == (303, "/search?q=ngoc")
        back = client.get("/dossiers", params={"q": "ngoc"})
    assert re.search(rf'data-code="{re.escape(NGOC)}".*?badge st-ok', back.text, re.S)
    assert audit_of(live_app, NGOC, "dossier.verify")[-1]["detail"]["result"] == "ok"


def test_verify_needs_the_csrf_token(live_app: LiveApp, manifests: dict) -> None:
    """Given an auditor's session, when "verify now" is posted without the token, then 403."""
    username, password = live_app.user("auditor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        r = client.post(f"/dossiers/{AN}/verify", data={"view": "panel"})
    assert r.status_code == 403


def raw(live_app: LiveApp) -> httpx.Client:
    return httpx.Client(base_url=live_app.url, trust_env=False, timeout=30)


def test_without_a_session_the_dossier_page_asks_to_log_in(live_app: LiveApp,
                                                          manifests: dict) -> None:
    """Given no session, when a dossier page is opened, then it redirects to the login page."""
    with raw(live_app) as client:
        r = client.get(f"/dossiers/{AN}")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_a_withdrawn_code_points_to_the_dossier_now_holding_its_pages(live_app: LiveApp,
                                                                     manifests: dict) -> None:
    """Given a code a person withdrew as misread (its pages went to another dossier), when a
    processor opens it, then the page answers 410 and links to that dossier; the code is no
    longer listed."""
    live_app.pipeline.dossiers.withdraw(MISREAD, AN, "test:withdraw", "user:reviewer")
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        r = client.get(f"/dossiers/{MISREAD}")
        listed = client.get("/dossiers", params={"q": "pham thi hong nhung"})
    assert r.status_code == 410 and f'href="/dossiers/{AN}"' in r.text
    assert result_codes(listed.text) == []


def test_a_snippet_shows_markup_of_a_dossier_escaped(live_app: LiveApp, manifests: dict) -> None:
    """Given a dossier whose field holds a <script> tag, when it is found, then the page shows the
    tag as text in the snippet, the matched word marked, and runs nothing. (Last: it changes a
    field the tests above read.)"""
    live_app.pipeline.dossiers.correct(NGOC, "email", '<script>alert("x")</script>', "key-1", "")
    username, password = live_app.user("processor", [H40])
    client, _ = http_login(live_app.url, username, password)
    with closing(client):
        r = client.get("/dossiers", params={"q": "alert"})
    assert r.status_code == 200 and result_codes(r.text) == [NGOC]
    assert "&lt;script&gt;<mark>alert</mark>(&#34;x&#34;)&lt;/script&gt;" in r.text.replace("&quot;", "&#34;")
    assert "<script>alert" not in r.text


def test_the_trail_says_what_happened_in_words_not_keys(live_app: LiveApp,
                                                        manifests: dict) -> None:
    """Given a stored dossier, its page's audit trail (shown to auditors) says "Phiên bản 1, từ
    lô b…" rather than `version: 1; batch_id: …; pdf_sha256: …`."""
    client, _ = http_login(live_app.url, *live_app.user("auditor", [H40]))
    with closing(client):
        text = client.get(f"/dossiers/{THANG}").text
    batch = manifests[THANG].batch_id
    trail = text.split('id="trail"', 1)[1]
    assert f"Phiên bản 1, từ lô {batch}" in trail, trail[:3000]
    assert "pdf_sha256" not in text and "batch_id:" not in text
