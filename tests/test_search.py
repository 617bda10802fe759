"""Ranked search of dossiers (storage/search.py) on both catalogs: SQLite's FTS5 and the machine's
PostgreSQL (a fresh database per module), the same answers from each.

The dossiers are the applicants of tests/synth.py, as the issue tried them: Phạm Thị Hồng Nhung's
text holds "Thái Nguyên" and "văn hóa", Lê Đức Thắng lives in xã Hưng Đạo and another dossier's
text mentions đường Trần Hưng Đạo."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from storage.catalog import Catalog
from storage.records import Correction, Manifest
from storage.search import COUNT_CAP, Filters, Position, Query, Results, snippet
from tests.synth import APPLICANTS

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
H40, H56 = "000.00.04.H40", "000.00.04.H56"
AN, NGOC, THANG, NHUNG, QUAN = (f"{H40}-230414-000{i}" for i in range(5))
OTHER = f"{H56}-230414-0009"  # Nguyễn Văn An again, of another agency
SCRIPT = f"{H40}-230414-0010"  # its OCR text holds markup
CITIZEN_IDS = {code: f"0010900000{i:02d}" for i, code in enumerate((AN, NGOC, THANG, NHUNG, QUAN))}
BODIES = {
    AN: ["Giấy chứng sinh số 15, Bệnh viện Phụ sản Hà Nội", "Người đi khai: cha, Nguyễn Văn Bình"],
    NGOC: ["Thửa đất số 102, tờ bản đồ số 7, đường Trần Hưng Đạo, phường Mường Thanh"],
    THANG: ["Ngành nghề kinh doanh: bán lẻ hàng tạp hóa", "Vốn kinh doanh: 50.000.000 đồng"],
    NHUNG: ["Sinh ngày 03 tháng 5 năm 1992 tại Thái Nguyên",
            "Nơi làm việc: Trung tâm văn hóa tỉnh", "Họ tên cha: Phạm Văn Hùng"],
    QUAN: ["Bản chính: bằng tốt nghiệp đại học", "Số vào sổ: 1234/2010"],
}
# Filler dossiers whose text says "đăng ký khai sinh" (paging) and nothing of the names above
FILLER = [f"{H40}-230501-{i:04d}" for i in range(23)]


def manifest(code: str, agency: str, version: int = 1) -> Manifest:
    pdf = {"key": f"dossiers/{code}/v{version:04d}/dossier.pdf", "sha256": "0" * 64, "size": 1}
    return Manifest.load({
        "dossier_id": code, "version": version, "agency": agency, "batch_id": f"b{version}",
        "code_source": "barcode", "pages": [0],
        "created_at": datetime(2023, 4, 14, version, tzinfo=UTC).isoformat(),
        "original": {"key": f"batches/b{version}/original.pdf", "sha256": "0" * 64, "size": 1},
        "objects": {"dossier.pdf": pdf}})


def values(**named: str) -> dict[str, dict]:
    return {n: {"value": v, "page": 0, "confidence": 0.9, "source": "ocr"} for n, v in named.items()}


def index(catalog: Catalog, code: str, agency: str, applicant: int, lines: list[str],
          version: int = 1, **extra: str) -> None:
    name, address, phone, email, procedure = APPLICANTS[applicant]
    fields = values(**{"applicant_name": name, "address": address, "phone": phone,
                       "email": email, "procedure": procedure, **extra})
    catalog.index_version(manifest(code, agency, version), fields, [{"page": 0, "lines": lines}])


def fill(catalog: Catalog) -> Catalog:
    for i, code in enumerate((AN, NGOC, THANG, NHUNG, QUAN)):
        index(catalog, code, H40, i, BODIES[code], citizen_id=CITIZEN_IDS[code])
    index(catalog, OTHER, H56, 0, ["Giấy chứng sinh số 99"])
    index(catalog, SCRIPT, H40, 4, ['Ghi chú: <script>alert("x")</script> & "trích dẫn"'],
          applicant_name="Vũ Minh Châu")
    for i, code in enumerate(FILLER):
        catalog.index_version(manifest(code, H40), values(procedure="Đăng ký khai sinh"),
                              [{"page": 0, "lines": [f"Tờ khai đăng ký khai sinh số {i}"]}])
    return catalog


@pytest.fixture(scope="module")
def postgresql_url() -> Iterator[str]:
    name = f"sohoa_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The dossiers above, indexed once per backend."""
    if request.param == "sqlite":
        return fill(Catalog(f"sqlite:///{tmp_path_factory.mktemp('search') / 'c.sqlite3'}"))
    return fill(Catalog(request.getfixturevalue("postgresql_url")))


def found(catalog: Catalog, q: str, agencies: tuple[str, ...] | None = None,
          limit: int = 50) -> Results:
    return catalog.search_dossiers(Filters(agencies), q, limit=limit)


def codes(catalog: Catalog, q: str, agencies: tuple[str, ...] | None = None) -> list[str]:
    return [h.code for h in found(catalog, q, agencies).hits]


# ranking


def test_a_name_as_a_phrase_comes_before_its_words_scattered(catalog: Catalog) -> None:
    """Given Nguyễn Văn An and Phạm Thị Hồng Nhung, whose text holds "Thái Nguyên" and "văn hóa",
    when staff search "nguyen van", then Nguyễn Văn An comes first and Nhung after him."""
    listed = codes(catalog, "nguyen van", (H40,))
    assert listed[0] == AN
    assert NHUNG in listed and listed.index(NHUNG) > listed.index(AN)


def test_an_address_comes_before_the_same_words_in_ocr_text(catalog: Catalog) -> None:
    """Given Lê Đức Thắng of xã Hưng Đạo and a land dossier whose text names đường Trần Hưng Đạo,
    when staff search "hung dao", then Thắng's dossier comes first."""
    assert codes(catalog, "hung dao")[:2] == [THANG, NGOC]


@pytest.mark.parametrize("applicant", range(5))
def test_a_full_name_typed_without_accents_brings_its_dossier_first(catalog: Catalog,
                                                                     applicant: int) -> None:
    name = APPLICANTS[applicant][0]
    assert codes(catalog, Query.parse(name).text(), (H40,))[0] == (AN, NGOC, THANG, NHUNG, QUAN)[applicant]


@pytest.mark.parametrize(("q", "first"), [
    ("001090000003", NHUNG),  # a citizen ID
    (THANG, THANG),  # a code, as typed or scanned
    ("230414-0002", THANG),  # the end of a code
    ("Trần Thị Bích Ngọc", NGOC),  # accented
    ("TRAN THI BICH", NGOC),  # the start of a name, capitals
    ("bich ng", NGOC),  # still typing
    ("luong ngoc quyen thai nguyen", NHUNG),  # an address
    ("quyen su dung dat", NGOC),  # a procedure
    ("nhung.pham@example.vn", NHUNG),  # an e-mail
])
def test_what_staff_type_brings_the_dossier_first(catalog: Catalog, q: str, first: str) -> None:
    assert codes(catalog, q, (H40,))[0] == first


@pytest.mark.parametrize(("q", "first"), [("tran thi bich ngok", NGOC), ("hoang minh quan", QUAN),
                                          ("Phạm Thị Hồng Nhunh", NHUNG), ("le duc thangg", THANG)])
def test_a_misspelled_name_still_finds_its_dossier(catalog: Catalog, q: str, first: str) -> None:
    """Given a name typed with a wrong letter, when no dossier holds every word, then the dossier
    whose name is most like it comes first."""
    assert codes(catalog, q, (H40,))[0] == first


def test_every_word_must_be_there_however_many_are_typed(catalog: Catalog) -> None:
    """Given "nguyen van binh", whose pairs "nguyen van" many dossiers hold, then only the dossier
    holding all three words is found (its text names the father, Nguyễn Văn Bình)."""
    results = found(catalog, "nguyen van binh")
    assert [h.code for h in results.hits] == [AN] and results.about == 1


def test_a_query_of_no_dossier_finds_nothing(catalog: Catalog) -> None:
    results = found(catalog, "xylophone zebra")
    assert (results.hits, results.about, results.next) == ([], 0, None)


# snippets


def test_a_result_carries_its_text_as_written_with_the_matched_words_marked(catalog: Catalog) -> None:
    (hit, *_) = found(catalog, "hung dao").hits
    assert "xã <mark>Hưng Đạo</mark>, thành phố Cao Bằng" in (hit.snippet or "")
    assert hit.item()["snippet"] == hit.snippet


def test_markup_in_a_dossiers_text_is_escaped_in_its_snippet(catalog: Catalog) -> None:
    """Given a dossier whose OCR text holds a <script> tag, quotes and an ampersand, when found,
    then its snippet shows them escaped; only the marks are markup."""
    (hit,) = found(catalog, "alert").hits
    assert hit.code == SCRIPT
    assert "&lt;script&gt;<mark>alert</mark>(&quot;x&quot;)&lt;/script&gt; &amp;" in (hit.snippet or "")
    assert (hit.snippet or "").replace("<mark>", "").replace("</mark>", "").count("<") == 0


def test_snippets_are_cut_around_the_matched_words() -> None:
    text = "mở đầu " * 60 + "xã Hưng Đạo, thành phố Cao Bằng" + " kết thúc" * 60
    shown = snippet("", text, Query.parse("hung dao"))
    assert shown.startswith("… ") and shown.endswith(" …") and "<mark>Hưng Đạo</mark>" in shown
    assert len(shown) < 260


# counts and pages


def test_results_are_counted_in_the_callers_scope_only(catalog: Catalog) -> None:
    """Given Nguyễn Văn An in H40 and his namesake in H56, when a user of H40 searches the name,
    then only H40's dossier is listed and counted."""
    mine = found(catalog, "nguyen van an", (H40,))
    assert OTHER not in [h.code for h in mine.hits]
    assert mine.about == len(mine.hits) and not mine.more
    everyone = found(catalog, "nguyen van an")
    assert OTHER in [h.code for h in everyone.hits] and everyone.about == mine.about + 1
    assert found(catalog, "nguyen van an", ()).about == 0


@pytest.mark.parametrize("q", ["dang ky khai sinh", "khai", ""])
def test_paging_through_ranked_results_repeats_and_skips_nothing(catalog: Catalog, q: str) -> None:
    """Given 24+ dossiers saying "đăng ký khai sinh", when they are read 5 at a time by cursor,
    then the pages together are the whole list in its order, each dossier once."""
    whole = found(catalog, q, (H40,), limit=100)
    assert whole.next is None and len(whole.hits) == whole.about > 20
    seen: list[str] = []
    after: Position | None = None
    while True:
        page = catalog.search_dossiers(Filters((H40,)), q, after, limit=5)
        assert 0 < len(page.hits) <= 5 and page.about == whole.about
        seen += [h.code for h in page.hits]
        if page.next is None:
            break
        after = Position.decode(page.next.encode())
    assert seen == [h.code for h in whole.hits]


def test_without_words_the_list_is_by_code(catalog: Catalog) -> None:
    listed = [h.code for h in found(catalog, "", (H40,)).hits]
    assert listed == sorted(listed) and AN in listed and OTHER not in listed
    assert all(h.snippet is None for h in found(catalog, "").hits)


def test_counts_stop_at_the_cap() -> None:
    assert COUNT_CAP == 1000  # "about 1000", then "more than 1000"


@pytest.mark.parametrize("q", ['"', "*", "NEAR(", "-", ":", "nguyen*", '"nguyen van', "a AND OR",
                               "names:an", "^an", "(x", ")", "'", "&", "|", "!", "<->", ":*",
                               "\\", "%", "_", "100%", "NOT", "đ", "ü ß 漢字", "\x00", " " * 50])
def test_query_syntax_characters_are_words_or_nothing_never_an_error(catalog: Catalog,
                                                                       q: str) -> None:
    results = found(catalog, q)
    assert results.about >= len(results.hits)


def test_a_cursor_of_another_kind_of_search_is_refused(catalog: Catalog) -> None:
    listed = catalog.search_dossiers(Filters((H40,)), "", limit=2)
    assert listed.next is not None
    with pytest.raises(ValueError):
        catalog.search_dossiers(Filters((H40,)), "khai sinh", listed.next)
    for cursor in ("rank|nan|X", "rank|1.0|", "best|1.0|X", "rank|abc|X"):
        with pytest.raises(ValueError):
            Position.decode(cursor)


# kept in step with the catalog


@pytest.fixture
def fresh(tmp_path) -> Catalog:
    return Catalog(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")


def test_a_new_version_replaces_what_is_found(fresh: Catalog) -> None:
    index(fresh, AN, H40, 0, ["bản cũ"])
    index(fresh, AN, H40, 1, ["bản mới"], version=2)
    assert codes(fresh, "ban moi") == [AN] and codes(fresh, "ban cu") == []
    assert codes(fresh, "tran thi bich ngoc") == [AN] and codes(fresh, "nguyen van an") == []


def test_a_corrected_field_is_found_by_its_new_value(fresh: Catalog) -> None:
    index(fresh, AN, H40, 0, ["Giấy chứng sinh"])
    fresh.index_correction(Correction.load({
        "dossier_id": AN, "seq": 1, "version": 1, "name": "applicant_name",
        "previous": "Nguyễn Văn An", "value": "Nguyễn Văn Ánh", "actor": "key-1", "reason": "",
        "at": datetime(2023, 4, 15, tzinfo=UTC).isoformat(), "page": 0}))
    (hit,) = found(fresh, "nguyen van anh").hits
    assert "<mark>Nguyễn Văn Ánh</mark>" in (hit.snippet or "")
    assert codes(fresh, "giay chung sinh") == [AN]  # the OCR text stays


def test_a_withdrawn_code_is_not_found(fresh: Catalog) -> None:
    index(fresh, AN, H40, 0, ["Giấy chứng sinh"])
    withdrawing = Manifest.load({**manifest(AN, H40, 2).as_dict(), "pages": [], "objects": {},
                                 "withdrawn": {"to": NGOC, "by": "key-1", "at": "2023-04-15",
                                               "from_version": 1}})
    fresh.index_version(withdrawing, {}, [])
    assert codes(fresh, "nguyen van an") == [] and found(fresh, "giay").about == 0


def test_a_catalog_made_before_the_search_gets_its_index_when_migrated(tmp_path) -> None:
    """Given a catalog at the migration before the search table, holding dossiers with fields
    and page text, when sohoa opens it, then the migration fills the search from them."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from storage import migrate
    from storage.catalog import Catalog

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    command.upgrade(migrate.config(url), "0007")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO batches VALUES ('b1', 'scan.pdf', :z, 'done', NULL, 1, "
                          "'2023-04-14 00:00:00', '{}')"), {"z": "0" * 64})
        conn.execute(text("INSERT INTO pages (batch_id, \"index\", status, dossier_code, role, "
                          "rotation, skew, confidence, text) VALUES ('b1', 0, 'ok', :c, "
                          "'dossier', 0, 0, 0.9, 'Xóm Đồng Tâm, xã Hưng Đạo')"), {"c": THANG})
        conn.execute(text("INSERT INTO dossiers (code, agency, latest_version, updated_at, "
                          "search) VALUES (:c, :a, 1, '2023-04-14 00:00:00', '')"),
                     {"c": THANG, "a": H40})
        conn.execute(text("INSERT INTO dossier_versions VALUES (:c, 1, 'b1', '', '', "
                          "'{\"pages\": [0]}', '2023-04-14 00:00:00')"), {"c": THANG})
        conn.execute(text("INSERT INTO fields VALUES (:c, 1, 'applicant_name', 'Lê Đức Thắng', "
                          "0, 0.9, 'ocr')"), {"c": THANG})
    engine.dispose()
    catalog = Catalog(url)
    assert codes(catalog, "le duc thang") == [THANG]
    (hit,) = found(catalog, "hung dao").hits
    assert "xã <mark>Hưng Đạo</mark>" in (hit.snippet or "")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_slip_that_makes_real_words_still_brings_the_name_first(backend: str,
                                                                  tmp_path: Path) -> None:
    """Given Nguyễn Thị Lan, and a dossier whose OCR text holds "Nguyễn", "thị trấn" and "lâm
    nghiệp" apart, when staff type "nguyen thi lam" (a slip: m for n), then Lan comes first,
    although only the other dossier holds every typed word."""
    from contextlib import ExitStack

    from tests.databases import fresh_postgres

    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'c.sqlite3'}" if backend == "sqlite" \
            else stack.enter_context(fresh_postgres())
        catalog = Catalog(url)
        lan, other = f"{H40}-230420-0001", f"{H40}-230420-0002"
        catalog.index_version(manifest(lan, H40), values(applicant_name="Nguyễn Thị Lan"),
                              [{"page": 0, "lines": ["Tờ khai đăng ký kết hôn"]}])
        catalog.index_version(manifest(other, H40), values(applicant_name="Trần Văn Bình"), [
            {"page": 0, "lines": ["Chủ rừng: ông Nguyễn Văn Tư, thị trấn Mường Tè",
                                  "Giấy phép khai thác lâm nghiệp"]}])
        assert found(catalog, "nguyen thi lam").hits[0].code == lan
        # typed right, the words held as a phrase in a field keep the ranked search
        assert [h.code for h in found(catalog, "nguyen thi lan").hits] == [lan]
        catalog.engine.dispose()
