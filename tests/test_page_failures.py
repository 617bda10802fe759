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


def test_a_page_too_small_to_read_fails_with_its_reason_and_no_traceback(tmp_path: Path) -> None:
    """Given images of 1x1 and 1x20000 pixels, when `sohoa ingest --json` reads them, then each
    batch goes to review with its page failed as `too_small`, the batch error sums it up, the
    originals are kept, and nothing prints a traceback."""
    import json
    import os
    import subprocess
    import sys

    from PIL import Image

    files = []
    for w, h in ((1, 1), (1, 20000)):
        path = tmp_path / f"tiny-{w}x{h}.png"
        Image.new("L", (w, h), 255).save(path)
        files.append(path)
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "1"}
    out = subprocess.run([str(Path(sys.executable).parent / "sohoa"), "ingest", "--json",
                          *map(str, files)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    batches = json.loads(out.stdout)["batches"]
    for batch, (w, h) in zip(batches, ((1, 1), (1, 20000)), strict=True):
        assert (batch["status"], batch["error"]) == ("needs_review", "1 page could not be read")
        assert batch["failed_pages"] == [
            {"page": 0, "error": f"too_small: page 0 is {w}x{h} pixels: too small to read"}]
    assert len(list((tmp_path / "data" / "objects").glob("batches/*/original.png"))) == 2
    text = subprocess.run([str(Path(sys.executable).parent / "sohoa"), "ingest", str(files[0])],
                          env=env, capture_output=True, text=True, timeout=120).stdout
    assert "page 1 could not be read: too_small: page 0 is 1x1 pixels" in text
    assert "no dossier code" not in text
