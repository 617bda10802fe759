"""A page the image code cannot handle is recorded as failed and sent to review; the batch goes on."""

from pathlib import Path

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ingest.stages import PageWork


class BreaksOnPageTwo:
    """Stands for any bug or library error on one odd page."""

    name = "breaks"

    def __call__(self, work: PageWork) -> None:
        if work.index == 2:
            raise ValueError("cannot handle this page")


def test_unexpected_page_error_is_recorded_and_the_batch_finishes(tmp_path: Path,
                                                                   samples: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1,
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [BreaksOnPageTwo(), ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, samples / "paperless-ngx" / "split-by-asn-1.pdf")
    assert record["status"] == "needs_review"
    assert record["failed_pages"] == [{"page": 2, "error": "unexpected: ValueError: cannot handle "
                                                           "this page"}]
    assert 2 in record["unmatched_pages"]
    assert [d["dossier_id"] for d in record["dossiers"]] == \
        ["ASN00123", "ASN00125", "ASN00126", "ASN00127"]
