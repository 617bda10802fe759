"""paperless-ngx's separator and ASN samples through the page stages and the splitter
(barcodes and blank detection only: these cases need no OCR)."""

from pathlib import Path

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings


def run(tmp_path: Path, sample: Path, **settings: object) -> dict:
    s = Settings(data_dir=tmp_path / "data", workers=1, **settings)
    pipeline = Pipeline.from_settings(s)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    return run_file(pipeline, sample)


CASES = [
    ("patch-code-t.pdf", [0], []),
    ("patch-code-t-middle.pdf", [1], [[0], [2]]),
    ("patch-code-t-middle.tiff", [1], [[0], [2]]),
    ("patch-code-t-middle-alpha.tiff", [1], [[0], [2]]),
    ("several-patcht-codes.pdf", [2, 5], [[0, 1], [3, 4], [6]]),
    ("patch-code-t-double.pdf", [1, 2], [[0], [3]]),
    ("patch-code-t-qr.pdf", [0], []),
    ("patch-code-t-middle-unreadable.pdf", [], [[0, 1, 2]]),
]


@pytest.mark.parametrize(("name", "separators", "documents"), CASES)
def test_separator_sheets_split_and_are_dropped(tmp_path: Path, samples: Path, name: str,
                                                separators: list[int],
                                                documents: list[list[int]]) -> None:
    record = run(tmp_path, samples / "paperless-ngx" / name)
    assert [d.page for d in record.dropped_pages if d.reason == "separator"] == separators
    assert record.unmatched_groups == documents
    assert record.dossiers == []


ASN_GRAMMAR = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"


def test_configured_grammar_splits_on_asn_codes(tmp_path: Path, samples: Path) -> None:
    record = run(tmp_path, samples / "paperless-ngx" / "split-by-asn-1.pdf",
                 dossier_code_grammar=ASN_GRAMMAR)
    # the pages between the barcoded ones are empty in this sample: dropped as blank
    assert [(d.dossier_id, d.pages) for d in record.dossiers] == [
        ("ASN00123", [0]), ("ASN00124", [2]), ("ASN00125", [3]), ("ASN00126", [6]),
        ("ASN00127", [8])]
    assert record.dropped_pages == [{"page": p, "reason": "blank"} for p in (1, 4, 5, 7, 9)]
    assert record.status == "done"


def test_code_that_fails_the_grammar_does_not_split(tmp_path: Path, samples: Path) -> None:
    record = run(tmp_path, samples / "paperless-ngx" / "barcode-39-asn-invalid.pdf",
                 dossier_code_grammar=ASN_GRAMMAR)
    assert record.dossiers == [] and record.unmatched_pages == [0]
    assert record.status == "needs_review"
