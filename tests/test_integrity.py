"""`verify` proves stored dossiers unchanged, and finds the one byte that changed."""

from pathlib import Path

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from storage.integrity import verify


@pytest.fixture
def stored(tmp_path: Path, samples: Path) -> Pipeline:
    settings = Settings(data_dir=tmp_path / "data", workers=1,
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    run_file(pipeline, samples / "paperless-ngx" / "split-by-asn-1.pdf")
    return pipeline


def test_untouched_store_verifies_clean(stored: Pipeline) -> None:
    findings = verify(stored.store)
    assert len(findings) == 5 * 4  # 5 dossiers: pdf, text, fields, original
    assert {f.problem for f in findings} == {"ok"}


def test_a_changed_byte_is_found(stored: Pipeline, tmp_path: Path) -> None:
    pdf = tmp_path / "data" / "objects" / "dossiers" / "ASN00125" / "v0001" / "dossier.pdf"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 1
    pdf.write_bytes(bytes(data))
    bad = [f for f in verify(stored.store) if f.problem != "ok"]
    assert [(f.dossier_id, f.key, f.problem) for f in bad] == \
        [("ASN00125", "dossiers/ASN00125/v0001/dossier.pdf", "changed")]


def test_a_removed_object_is_found(stored: Pipeline, tmp_path: Path) -> None:
    (tmp_path / "data" / "objects" / "dossiers" / "ASN00124" / "v0001" / "fields.json").unlink()
    bad = [f for f in verify(stored.store, "ASN00124") if f.problem != "ok"]
    assert [(f.key, f.problem) for f in bad] == [("dossiers/ASN00124/v0001/fields.json", "missing")]
