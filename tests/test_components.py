"""Dossier components (thành phần hồ sơ): the splitting logic on plain page inputs, the receipt's
list of documents read from OCR, one generated batch through the whole pipeline (copies stored
byte-exact, complete or missing), the API and web routes scoped like the rest, and a person's
correction."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from fastapi.testclient import TestClient
from rapidfuzz import fuzz

from api.app import create_app
from api.keys import KeyStore
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ocr import tesseract
from ocr.components import Listed, PageInput, fold, from_starts, split
from ocr.fields import listed_components
from tests import synth

MOTTO = ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]
A4, A5_WIDE = (8.27, 11.69), (8.27, 5.83)
QR = "001090123456||Nguyễn Văn An|15031990|Nam|Số 12 phố Huế, Hà Nội|20042021"
QR_OTHER = "001190654321||Trần Thị Bích Ngọc|02021992|Nữ|Tổ 5, Điện Biên Phủ|01012022"


def receipt_page() -> PageInput:
    return PageInput(["ỦY BAN NHÂN DÂN QUẬN HOÀN KIẾM", "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
                      "Mã hồ sơ: 000.00.04.H40-230414-0002"], size=A4)


def titled(*title: str, motto: bool = True, size: tuple[float, float] = A4) -> PageInput:
    lines = [*(MOTTO if motto else []), *title, "Kính gửi: Ủy ban nhân dân phường",
             "Họ, chữ đệm, tên người yêu cầu: Nguyễn Văn An"]
    return PageInput(lines, size=size)


def prose(size: tuple[float, float] = A4) -> PageInput:
    return PageInput(["Sau khi kiểm tra, nếu hồ sơ đã đầy đủ và hợp lệ, công chức tiếp nhận",
                      "lập giấy biên nhận và hẹn ngày trả kết quả."], size=size)


def id_card(payload: str = QR) -> PageInput:
    return PageInput(["BẢN SAO CĂN CƯỚC CÔNG DÂN", "Họ và tên: Nguyễn Văn An"], size=A4,
                     qr=[payload])


def running_text() -> PageInput:
    """An untitled page of running text, as long as a typed page's."""
    return PageInput([f"Dòng thứ {i} của một văn bản không có tiêu đề, viết liền một mạch."
                      for i in range(30)], size=A4)


BLANK = PageInput(blank=True, size=A4)


def ranges(pages: list[PageInput], listed: list[Listed] | None = None) -> list[tuple]:
    return [(c.start, c.end, c.type) for c in split(pages, listed or []).components]


# ---- ocr/components.py on plain inputs ----------------------------------------------------


def test_pages_split_at_the_id_qr_and_at_titled_forms_and_certificates() -> None:
    """Given a receipt, an ID-card copy, a form with the motto and a title, and a certificate,
    when split, then each starts a component of its type, and a blank back stays with the page
    before it."""
    pages = [receipt_page(), id_card(), BLANK, titled("TỜ KHAI ĐĂNG KÝ KHAI SINH"),
             titled("GIẤY CHỨNG NHẬN", "QUYỀN SỬ DỤNG ĐẤT, QUYỀN SỞ HỮU NHÀ Ở"),
             titled("QUYẾT ĐỊNH", "VỀ VIỆC GIAO ĐẤT"), titled("BIÊN BẢN XÁC ĐỊNH RANH GIỚI"),
             titled("SƠ ĐỒ THỬA ĐẤT", motto=False)]
    assert ranges(pages) == [(0, 0, "receipt"), (1, 2, "id_card"), (3, 3, "form"),
                             (4, 4, "certificate"), (5, 5, "decision"), (6, 6, "minutes"),
                             (7, 7, "plan")]


def test_pages_without_a_title_continue_the_document_before_them() -> None:
    """Given a contract of three pages whose later pages have only text and a numbered
    heading, when split, then the three pages are one component."""
    heading = PageInput(["II. NỘI DUNG KÊ KHAI", *prose().lines], size=A4)
    pages = [receipt_page(), titled("HỢP ĐỒNG CHUYỂN NHƯỢNG", "QUYỀN SỬ DỤNG ĐẤT"), prose(),
             heading, BLANK]
    (_, contract) = split(pages).components
    assert (contract.start, contract.end, contract.type) == (1, 4, "contract")
    assert contract.title == "Hợp đồng chuyển nhượng quyền sử dụng đất"


def test_a_change_of_paper_size_starts_a_document_named_from_the_receipt_in_order() -> None:
    """Given an untitled A5 page after an A4 form, when split with the receipt's list, then the
    A5 page starts a component that takes the listed document left over."""
    listed = [Listed("Tờ khai đăng ký khai sinh"), Listed("Giấy chứng nhận kết hôn")]
    pages = [receipt_page(), titled("TỜ KHAI ĐĂNG KÝ KHAI SINH"), prose(A5_WIDE), prose(A5_WIDE)]
    found = split(pages, listed)
    *_, married = found.components
    assert (married.start, married.end, married.type) == (2, 3, "certificate")
    assert married.listed_as == "Giấy chứng nhận kết hôn" and found.complete


def test_the_two_sides_of_one_card_are_one_copy_and_two_people_two() -> None:
    """Given the front and back of one ID card, then the cards of two people, when split, then
    the first card is one component of two pages and the second person's card another."""
    back = PageInput(["Đặc điểm nhân dạng: nốt ruồi", "Ngón trỏ trái Ngón trỏ phải"], size=A4)
    pages = [receipt_page(), id_card(), back, id_card(QR_OTHER)]
    found = split(pages).components
    assert [(c.start, c.end, c.type) for c in found] == [(0, 0, "receipt"), (1, 2, "id_card"),
                                                         (3, 3, "id_card")]
    assert [c.citizen_id for c in found[1:]] == ["001090123456", "001190654321"]


def test_titles_match_the_receipts_names_in_other_wording_and_missing_ones_are_named() -> None:
    """Given a receipt listing four documents in its own wording and pages showing three of
    them, when split, then each component knows its listed name and the fourth is missing."""
    listed = [Listed("Bản sao Căn cước công dân", "bản sao"),
              Listed("Đơn đề nghị đăng ký hộ kinh doanh"),
              Listed("Giấy chứng nhận QSD đất đã cấp", "bản sao chứng thực"),
              Listed("Giấy chứng nhận kết hôn", "bản sao")]
    pages = [receipt_page(), id_card(), titled("ĐƠN ĐỀ NGHỊ ĐĂNG KÝ HỘ KINH DOANH"),
             titled("GIẤY CHỨNG NHẬN", "QUYỀN SỬ DỤNG ĐẤT, QUYỀN SỞ HỮU NHÀ Ở")]
    found = split(pages, listed)
    assert [c.listed_as for c in found.components] == [
        None, "Bản sao Căn cước công dân", "Đơn đề nghị đăng ký hộ kinh doanh",
        "Giấy chứng nhận QSD đất đã cấp"]
    assert [m.name for m in found.missing] == ["Giấy chứng nhận kết hôn"]
    assert not found.complete


def test_a_receipt_that_lists_nothing_does_not_make_a_dossier_complete() -> None:
    """Given pages split without any listed document, then nothing is missing yet the dossier
    is not complete by components: nothing says what it should hold."""
    found = split([receipt_page(), id_card()])
    assert (found.missing, found.complete) == ([], False)


def test_a_person_sets_the_boundaries_and_titles() -> None:
    """Given a person's start pages, types and titles, when the components are built from them,
    then they are used as given (confidence 1) and still matched to the receipt's list."""
    pages = [receipt_page(), id_card(), prose(), prose()]
    found = from_starts(pages, [(0, "receipt", "Giấy tiếp nhận"), (1, "id_card", "CCCD"),
                                (2, "form", "Tờ khai đăng ký khai sinh")],
                        [Listed("Tờ khai đăng ký khai sinh"), Listed("Bản sao CCCD")])
    assert [(c.start, c.end, c.type, c.title, c.confidence) for c in found.components] == [
        (0, 0, "receipt", "Giấy tiếp nhận", 1.0), (1, 1, "id_card", "CCCD", 1.0),
        (2, 3, "form", "Tờ khai đăng ký khai sinh", 1.0)]
    assert found.complete


# ---- the receipt's list, read ---------------------------------------------------------------


def test_numbered_lines_in_varied_wording_are_read_as_name_form_and_count() -> None:
    """Given item 1 printed as numbered or dashed lines, each wording its form and count its own
    way, when read, then every document comes out with its name, form and count."""
    lines = ["1. Thành phần hồ sơ nộp gồm:",
             "   1. Tờ khai đăng ký khai sinh (bản chính): 01 bản",
             "   - Bản sao Căn cước công dân: 01 bản",
             "   3) Giấy chứng nhận kết hôn - Bản sao chứng thực - 02 bản",
             "   - Sơ đồ thửa đất, bản chính, số lượng: 01",
             "   - Giấy ủy quyền: 01 bản chính",
             "2. Số lượng hồ sơ: 01 (bộ)"]
    found = listed_components(lines, [0.9] * len(lines), 0)
    assert found is not None and found.items == (
        {"name": "Tờ khai đăng ký khai sinh", "form": "bản chính", "count": 1},
        {"name": "Bản sao Căn cước công dân", "form": "bản sao", "count": 1},
        {"name": "Giấy chứng nhận kết hôn", "form": "bản sao chứng thực", "count": 2},
        {"name": "Sơ đồ thửa đất", "form": "bản chính", "count": 1},
        {"name": "Giấy ủy quyền", "form": "bản chính", "count": 1})


@pytest.mark.parametrize("listing", ["table", "lines"])
def test_the_receipts_list_is_read_from_its_ocr(listing: str) -> None:
    """Given a generated receipt listing six documents as a ruled table (names wrapped in their
    cells) or as numbered lines, when OCR'd by Tesseract and read, then the six documents come
    out with their names (their words: OCR may drop a comma), forms and counts."""
    listed = [("Bản sao Căn cước công dân", "bản sao", 1),
              ("Tờ khai đăng ký khai sinh theo mẫu", "bản chính", 1),
              ("Giấy chứng nhận quyền sử dụng đất, quyền sở hữu nhà ở", "bản sao chứng thực", 2),
              ("Quyết định giao đất", "bản sao chứng thực", 1),
              ("Hợp đồng chuyển nhượng quyền sử dụng đất đã công chứng", "bản chính", 1),
              ("Giấy ủy quyền", "bản chính", 1)]
    page = synth.receipt("000.00.04.H40-230414-0002", synth.receipt_fields(0), 200,
                         listed=listed, listing=listing)
    read = tesseract.run(page.image, 200, "vie")
    words = [w.to_dict() for w in read.words]
    found = listed_components(read.lines, [0.9] * len(read.lines), 0, words)
    assert found is not None
    assert [(fold(i["name"]), i["form"], i["count"]) for i in found.items] == [
        (fold(name), form, count) for name, form, count in listed]


# ---- a generated batch through the pipeline ------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> synth.ComponentBatch:
    """Two dossiers (seed 2): one listed as lines, all there, with a two-sided ID card; one
    listed as a table, one listed certificate left out, a two-page record."""
    return synth.make_component_batch(2, seed=2, listed_range=(4, 4), missing_rate=0.5)


@pytest.fixture(scope="module")
def ingested(batch: synth.ComponentBatch, tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp("components")
    settings = Settings(data_dir=root / "data", workers=2, scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    record = run_file(pipeline, batch.write_pdf(root / "scan.pdf"))
    assert record.status == "done"
    return pipeline


def latest(pipeline: Pipeline, code: str) -> dict[str, Any]:
    return pipeline.dossiers.versions(code)[-1]


def test_each_dossier_is_split_into_its_known_components(batch, ingested) -> None:
    """Given the generated batch, when digitized, then each dossier's components have the page
    ranges (1-based pages of the dossier) and types the generator made."""
    for d in batch.dossiers:
        position = {page: n + 1 for n, page in enumerate(d.pages)}
        truth = [(t.type, [position[p] for p in t.pages]) for t in d.components]
        found = [(c["type"], c["pages"]) for c in latest(ingested, d.code).components]
        assert found == truth, d.code


def test_each_component_is_its_own_pdfa_stored_byte_exact(batch, ingested) -> None:
    """Given the stored versions, then each component's copy is stored under its object name
    with the SHA-256 the manifest holds, is PDF/A-2b and has the component's pages."""
    for d in batch.dossiers:
        manifest = latest(ingested, d.code)
        for c in manifest.components:
            assert re.fullmatch(r"components/\d{2}-[a-z0-9-]+\.pdf", c["object"])
            stored = manifest.objects[c["object"]]
            data = ingested.store.get(stored.key)
            assert hashlib.sha256(data).hexdigest() == stored.sha256
            with pikepdf.open(io.BytesIO(data)) as pdf:
                assert len(pdf.pages) == len(c["pages"])
                assert pdf.open_metadata().pdfa_status == "2B"


def test_complete_by_components_and_the_missing_documents(batch, ingested) -> None:
    """Given one dossier with every listed document and one lacking one, then the first is
    complete by components and the second names the document it lacks."""
    for d in batch.dossiers:
        manifest = latest(ingested, d.code)
        assert manifest.complete_by_components is (not d.missing), d.code
        assert [fold(m["name"]) for m in manifest.missing_components] == \
            [fold(name) for name in d.missing]
    assert {bool(d.missing) for d in batch.dossiers} == {True, False}


def test_the_receipts_list_is_a_field_of_the_dossier(batch, ingested) -> None:
    """Given the digitized receipts, then `components_listed` holds each listed document with
    its form and count, read from the receipt's page (names as OCR reads them: a letter or two
    may differ)."""
    for d in batch.dossiers:
        manifest = latest(ingested, d.code)
        fields = ingested.store.get(manifest.objects["fields.json"].key)
        listed = json.loads(fields)["components_listed"]
        assert (listed["page"], listed["source"]) == (d.pages[0], "ocr")
        assert [(i["form"], i["count"]) for i in listed["items"]] == [
            (form, count) for _, form, count in d.listed]
        for item, (name, _, _) in zip(listed["items"], d.listed, strict=True):
            assert fuzz.ratio(fold(item["name"]), fold(name)) >= 90, (item["name"], name)


# ---- API and web -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(ingested: Pipeline, batch: synth.ComponentBatch):
    client = TestClient(create_app(ingested.settings, submit=lambda *a, **k: {}))
    client.__enter__()
    store = KeyStore(ingested.settings.storage.catalog_url)
    agency = batch.dossiers[0].code.rsplit("-", 2)[0]
    keys = {role: store.create(role, [agency]) for role in ("scanner", "processor", "auditor")}
    keys["other"] = store.create("processor", ["000.00.04.H40"])
    yield client, keys, batch.dossiers[0]
    client.__exit__(None, None, None)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_dossier_answer_lists_its_components(api, ingested) -> None:
    """Given a processor of the dossier's agency, when reading the dossier, then its components
    come with their copies' checksums and download paths, and whether it is complete."""
    client, keys, d = api
    body = client.get(f"/api/v1/dossiers/{d.code}", headers=auth(keys["processor"])).json()
    manifest = latest(ingested, d.code)
    assert [c["type"] for c in body["components"]] == [t.type for t in d.components]
    assert [c["sha256"] for c in body["components"]] == [
        manifest.objects[c["object"]].sha256 for c in manifest.components]
    assert body["components"][1]["pdf"] == f"/api/v1/dossiers/{d.code}/components/2/pdf"
    assert body["complete_by_components"] is (not d.missing)


def test_a_component_pdf_downloads_byte_exact_and_scoped(api, ingested) -> None:
    """Given a component, when an auditor downloads it, then the bytes are the stored copy with
    its SHA-256 as ETag; another agency's key gets 404, a scanner 403, a component that is not
    there 404 and a malformed number 422."""
    client, keys, d = api
    manifest = latest(ingested, d.code)
    stored = manifest.objects[manifest.components[1]["object"]]
    r = client.get(f"/api/v1/dossiers/{d.code}/components/2/pdf", headers=auth(keys["auditor"]))
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == stored.sha256
    assert r.headers["etag"] == f'"{stored.sha256}"'
    path = f"/api/v1/dossiers/{d.code}/components"
    assert client.get(f"{path}/2/pdf", headers=auth(keys["other"])).status_code == 404
    assert client.get(f"{path}/2/pdf", headers=auth(keys["scanner"])).status_code == 403
    assert client.get(f"{path}/99/pdf", headers=auth(keys["processor"])).status_code == 404
    for bad in ("0", "x", "99999999999999999999"):
        assert client.get(f"{path}/{bad}/pdf", headers=auth(keys["processor"])).status_code == 422


@pytest.mark.parametrize("body", [
    {},
    {"components": []},
    {"components": [{"start_page": 2, "type": "receipt", "title": "Giấy tiếp nhận"}]},
    {"components": [{"start_page": 1, "type": "receipt", "title": "A"},
                    {"start_page": 1, "type": "form", "title": "B"}]},
    {"components": [{"start_page": 1, "type": "receipt", "title": "A"},
                    {"start_page": 999, "type": "form", "title": "B"}]},
    {"components": [{"start_page": 1, "type": "hồ sơ", "title": "A"}]},
    {"components": [{"start_page": 1, "type": "letter", "title": "A"}]},
    {"components": [{"start_page": 1, "type": "receipt", "title": ""}]},
    {"components": [{"start_page": 1, "type": "receipt", "title": "A\u0000B"}]},
    {"components": [{"start_page": "một", "type": "receipt", "title": "A"}]},
    {"components": "1 | receipt | A"},
], ids=["empty", "none", "not-page-1", "not-increasing", "past-the-end", "type-chars",
        "type-unknown", "title-empty", "title-nul", "page-text", "not-a-list"])
def test_a_malformed_correction_is_refused_with_422_and_changes_nothing(api, ingested,
                                                                       body) -> None:
    """Given a correction that is not a valid list of components, then the answer is 422 (never
    a 5xx) and no version is stored."""
    client, keys, d = api
    before = len(ingested.dossiers.versions(d.code))
    r = client.post(f"/api/v1/dossiers/{d.code}/components", json=body,
                    headers=auth(keys["processor"]))
    assert r.status_code == 422, r.text
    assert len(ingested.dossiers.versions(d.code)) == before


def test_a_correction_by_a_wrong_role_or_agency_is_refused(api, ingested) -> None:
    """Given a valid correction, when an auditor sends it, then 403; when another agency's
    processor sends it, then 404 as for a dossier that does not exist; nothing is stored."""
    client, keys, d = api
    before = len(ingested.dossiers.versions(d.code))
    body = {"components": [{"start_page": 1, "type": "receipt", "title": "Giấy tiếp nhận"}]}
    path = f"/api/v1/dossiers/{d.code}/components"
    assert client.post(path, json=body, headers=auth(keys["auditor"])).status_code == 403
    assert client.post(path, json=body, headers=auth(keys["other"])).status_code == 404
    assert len(ingested.dossiers.versions(d.code)) == before


def test_a_person_moves_a_boundary_and_renames_a_component(api, ingested) -> None:
    """Given the machine's components, when a processor moves the second component's end one
    page back and renames the last, then a new version holds them with their copies made
    again, the change is audited, and the same request again stores nothing more."""
    client, keys, d = api
    before = latest(ingested, d.code)
    pages = len(before.pages)
    asked = [{"start_page": 1, "type": "receipt", "title": "Giấy tiếp nhận hồ sơ"},
             {"start_page": 2, "type": "id_card", "title": "Căn cước công dân"},
             {"start_page": pages, "type": "certificate", "title": "Bản sao giấy tờ khác"}]
    r = client.post(f"/api/v1/dossiers/{d.code}/components", json={"components": asked,
                                                                   "reason": "tách lại"},
                    headers=auth(keys["processor"]))
    assert r.status_code == 200, r.text
    after = latest(ingested, d.code)
    assert after.version == before.version + 1 == r.json()["version"]
    assert [(c["type"], c["title"], c["pages"][0], c["pages"][-1], c["confidence"])
            for c in after.components] == [
        ("receipt", "Giấy tiếp nhận hồ sơ", 1, 1, 1.0), ("id_card", "Căn cước công dân", 2,
                                                         pages - 1, 1.0),
        ("certificate", "Bản sao giấy tờ khác", pages, pages, 1.0)]
    last = ingested.store.get(after.objects[after.components[2]["object"]].key)
    with pikepdf.open(io.BytesIO(last)) as pdf:
        assert len(pdf.pages) == 1
    assert after.change["action"] == "components" and after.change["reason"] == "tách lại"
    assert ingested.audit is not None
    entries = ingested.audit.for_target(d.code, ("dossier.version.create",))
    assert entries[-1]["detail"]["change"]["components"] == asked
    again = client.post(f"/api/v1/dossiers/{d.code}/components", json={"components": asked},
                        headers=auth(keys["processor"]))
    assert again.json()["version"] == after.version
    assert latest(ingested, d.code).version == after.version


def test_the_dossier_web_page_lists_the_components_for_its_agency_only(api, ingested,
                                                                       tmp_path: Path) -> None:
    """Given processors signed in to the web app, when one of the dossier's agency opens the
    dossier page, then it lists the components with their download links and the correction
    form; one of another agency gets 404; a malformed form line gets 422 with a message."""
    client, _, d = api
    from api.web.users import UserStore

    users = UserStore(ingested.settings.storage.catalog_url)
    agency = d.code.rsplit("-", 2)[0]
    users.create("ngoc.tt", "mat-khau-dai-123", "processor", [agency])
    users.create("khac.nv", "mat-khau-dai-456", "processor", ["000.00.04.H40"])

    def login(username: str, password: str) -> TestClient:
        web = TestClient(client.app)
        form = web.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        web.post("/login", data={"username": username, "password": password,
                                 "csrf": token.group(1)})
        return web

    own = login("ngoc.tt", "mat-khau-dai-123")
    page = own.get(f"/dossiers/{d.code}")
    assert page.status_code == 200
    for c in latest(ingested, d.code).components:
        assert f'/api/v1/dossiers/{d.code}/components/{c["n"]}/pdf' in page.text
        assert f'id="component-{c["n"]}"' in page.text
    assert 'id="components-form"' in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    before = len(ingested.dossiers.versions(d.code))
    bad = own.post(f"/dossiers/{d.code}/components",
                   data={"csrf": token.group(1), "lines": "một | receipt | Giấy"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    assert len(ingested.dossiers.versions(d.code)) == before
    other = login("khac.nv", "mat-khau-dai-456")
    assert other.get(f"/dossiers/{d.code}").status_code == 404


def test_a_receipt_title_misread_at_its_end_names_the_component_as_the_form() -> None:
    """Given a receipt whose title's last word was misread (covered by the code at its top
    right), when its dossier is split, then the receipt's component has the form's own title,
    and so its copy's file name."""
    from ingest.dossier_stages import component_object

    page = PageInput(["ỦY BAN NHÂN DÂN QUẬN HOÀN KIẾM", "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUz:",
                      "Mã hồ sơ: 000.00.04.H40-230414-0002"], size=A4)

    first = split([page, prose()]).components[0]

    assert (first.type, first.title) == ("receipt", "Giấy tiếp nhận hồ sơ và hẹn trả kết quả")
    assert component_object(1, first.title) == \
        "components/01-giay-tiep-nhan-ho-so-va-hen-tra-ket-qua.pdf"


def test_another_receipt_form_keeps_the_title_it_was_read_with() -> None:
    """Given a receipt titled as another form ('PHIẾU TIẾP NHẬN HỒ SƠ'), when its dossier is
    split, then its component keeps that title, written as a person writes it."""
    page = PageInput(["BỘ PHẬN MỘT CỬA", "PHIẾU TIẾP NHẬN HỒ SƠ", "Mã hồ sơ: 000.00.04.H40-230414-0002"],
                     size=A4)

    first = split([page, prose()]).components[0]

    assert (first.type, first.title) == ("receipt", "Phiếu tiếp nhận hồ sơ")


def test_a_page_of_text_after_an_id_card_copy_starts_a_document_of_its_own() -> None:
    """Given a receipt, an ID-card copy, then two untitled pages of running text on the same
    paper, when the dossier is split, then the text pages are one component of their own, not
    the card's other side."""

    found = split([receipt_page(), id_card(), running_text(), running_text()]).components

    assert [(c.type, c.start, c.end) for c in found] == \
        [("receipt", 0, 0), ("id_card", 1, 1), ("other", 2, 3)]
    assert found[2].signal == "after_id_card"


def test_the_back_of_an_id_card_copy_stays_with_its_front() -> None:
    """Given an ID-card copy followed by its back (a few lines, no title, no QR), then a page of
    running text, when the dossier is split, then front and back are the one ID-card component
    and the text page starts another."""
    back = PageInput(["Đặc điểm nhân dạng: Nốt ruồi cách 2 cm trên đầu lông mày phải",
                      "Ngày, tháng, năm: 20/04/2021", "Ngón trỏ trái      Ngón trỏ phải"], size=A4)

    found = split([receipt_page(), id_card(), back, running_text()]).components

    assert [(c.type, c.start, c.end) for c in found] == \
        [("receipt", 0, 0), ("id_card", 1, 2), ("other", 3, 3)]
