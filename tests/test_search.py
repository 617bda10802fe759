"""Accent-insensitive search over fields and OCR text in the catalog."""

from datetime import UTC, datetime

import pytest

from storage.catalog import Catalog
from storage.records import Manifest


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    c = Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    for i, (name, agency) in enumerate([("Nguyễn Văn An", "H40"), ("Đỗ Thị Đào", "H40"),
                                        ("Trần Văn Bình", "H56")]):
        code = f"000.00.04.{agency}-230414-000{i}"
        pdf = {"key": f"dossiers/{code}/v0001/dossier.pdf", "sha256": "0" * 64, "size": 1}
        manifest = Manifest.load({
            "dossier_id": code, "version": 1, "agency": f"000.00.04.{agency}", "batch_id": "b1",
            "code_source": "barcode", "pages": [0],
            "created_at": datetime(2023, 4, 14, tzinfo=UTC).isoformat(),
            "original": {"key": "batches/b1/original.pdf", "sha256": "0" * 64, "size": 1},
            "objects": {"dossier.pdf": pdf}})
        fields = {"applicant_name": {"value": name, "page": 0, "confidence": 0.9, "source": "ocr"}}
        c.index_version(manifest, fields, [{"page": 1, "lines": ["Đăng ký khai sinh 100% online"]}])
    return c


def names(catalog: Catalog, q: str, agencies=None) -> list[str]:
    items, _ = catalog.list_dossiers(agencies, q)
    return [i["dossier_id"][-1] for i in items]


def test_unaccented_query_finds_accented_name(catalog) -> None:
    assert names(catalog, "nguyen van an") == ["0"]


def test_d_finds_d_stroke(catalog) -> None:
    assert names(catalog, "do thi dao") == ["1"]


def test_accented_query_works_too(catalog) -> None:
    assert names(catalog, "Trần Văn") == ["2"]


def test_ocr_text_is_searched_and_like_wildcards_are_literal(catalog) -> None:
    assert names(catalog, "dang ky khai sinh") == ["0", "1", "2"]
    assert names(catalog, "100%") == ["0", "1", "2"]
    assert names(catalog, "10_%") == []


def test_agency_scope_filters_results(catalog) -> None:
    assert names(catalog, "van", ("000.00.04.H56",)) == ["2"]
