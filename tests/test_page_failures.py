"""A page the image code cannot handle is recorded as failed and sent to review; the batch goes on."""

import io
from pathlib import Path

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ingest.stages import PageWork
from tests.synth import ASN_BATCH

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-batch.pdf"


class BreaksOnPageTwo:
    """Stands for any bug or library error on one odd page."""

    name = "breaks"

    def __call__(self, work: PageWork) -> None:
        if work.index == 2:
            raise ValueError("cannot handle this page")


def test_unexpected_page_error_is_recorded_and_the_batch_finishes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1,
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [BreaksOnPageTwo(), ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, ASN_BATCH)
    assert record.status == "needs_review"
    assert record.failed_pages == [{"page": 2, "error": "unexpected: ValueError: cannot handle "
                                                           "this page"}]
    assert 2 in record.unmatched_pages
    assert [d.dossier_id for d in record.dossiers] == \
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


@pytest.mark.parametrize("kind", ["pdf", "tiff"])
def test_a_file_cut_short_is_marked_incomplete_by_its_own_structure(tmp_path: Path,
                                                                    kind: str) -> None:
    """Given a scan whose transfer ended "complete" but whose file is cut short (a PDF without
    its %%EOF, a TIFF whose page reaches past the end), when it is ingested, then the batch is
    marked incomplete with the reason and goes to review; the pages received are kept."""
    from PIL import Image

    from ingest.page_stages import DetectBlank, ReadBarcodes

    source = tmp_path / f"whole.{kind}"
    if kind == "pdf":
        source.write_bytes(SAMPLE.read_bytes())
    else:
        pages = [Image.new("L", (850, 1100), 255) for _ in range(3)]
        pages[0].save(source, save_all=True, append_images=pages[1:], dpi=(100, 100))
    data = source.read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[:-200])  # the last chunk of the transfer lost: still readable
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, cut)
    assert record.incomplete.startswith("the file is cut short: a ")
    assert record.status == "needs_review"
    assert {"pages": [], "code": None, "reason": "incomplete",
            "detail": record.incomplete} in record.review
    assert pipeline.store.get(record.original) == cut.read_bytes()


def test_the_same_bytes_sent_again_as_incomplete_mark_the_earlier_batch(tmp_path: Path) -> None:
    """Given a batch done from a file, when the same bytes arrive again from a scan that says it
    stopped early, then the batch carries the mark and goes back to review (never folded
    silently into a complete batch)."""
    from ingest.page_stages import DetectBlank, ReadBarcodes

    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    first = run_file(pipeline, SAMPLE)
    assert first.status == "done"
    again = run_file(pipeline, SAMPLE, incomplete="paper jam at sheet 8")
    assert again.batch_id == first.batch_id
    assert (again.status, again.incomplete) == ("needs_review", "paper jam at sheet 8")
    assert pipeline.catalog.batch(first.batch_id).status == "needs_review"


def corrupt_page_pdf(path: Path, filter_name: str, parms: dict | None = None) -> None:
    """A one-page PDF whose page is a full-page scan image with garbage in its stream."""
    import os

    import pikepdf

    pdf = pikepdf.new()
    w, h = 1700, 2200  # 200 dpi, letter
    stream = pikepdf.Stream(pdf, os.urandom(40_000))
    stream.Type, stream.Subtype = pikepdf.Name.XObject, pikepdf.Name.Image
    stream.Width, stream.Height, stream.BitsPerComponent = w, h, 1 if filter_name in (
        "JBIG2Decode", "CCITTFaxDecode") else 8
    stream.ColorSpace = pikepdf.Name.DeviceGray
    stream.Filter = pikepdf.Name("/" + filter_name)
    if parms:
        stream.DecodeParms = pikepdf.Dictionary(parms)
    page = pdf.add_blank_page(page_size=(w * 72 / 200, h * 72 / 200))
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=stream))
    page.Contents = pikepdf.Stream(pdf, f"q {w * 72 / 200} 0 0 {h * 72 / 200} 0 0 cm /Im0 Do Q"
                                   .encode())
    pdf.save(path)


@pytest.mark.parametrize("filter_name, parms", [
    ("DCTDecode", None), ("FlateDecode", None), ("JBIG2Decode", None),
])
def test_a_page_whose_image_stream_is_corrupt_fails_with_its_reason_not_as_blank(
        tmp_path: Path, filter_name: str, parms: dict | None) -> None:
    """Given a PDF page whose scan is garbage in a DCT, Flate or JBIG2 stream, when it is
    ingested, then the page is a failed page (`corrupt: ... stream cannot be decoded`), not a
    blank page dropped in silence, and the batch goes to review."""
    from ingest.page_stages import DetectBlank, ReadBarcodes

    source = tmp_path / "corrupt.pdf"
    corrupt_page_pdf(source, filter_name, parms)
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, source)
    short = filter_name.removesuffix("Decode")
    assert record.dropped_pages == []
    assert record.failed_pages == [
        {"page": 0, "error": f"corrupt: page 0: {short} stream cannot be decoded "
                             f"({record.failed_pages[0].error.rsplit('(', 1)[1]}"}]
    assert (record.status, record.error) == ("needs_review", "1 page could not be read")


def test_a_file_with_more_pages_than_allowed_fails_as_too_many_pages(tmp_path: Path) -> None:
    """Given SOHOA_MAX_PAGES of 5, when a 7-page file arrives, then its batch fails at once with
    `too_many_pages` and a reason staff can act on, and the original is kept."""
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1,
                                               max_pages=5))
    record = run_file(pipeline, SAMPLE)
    assert record.status == "failed"
    assert record.error == ("too_many_pages: the file has 7 pages; at most 5 are taken in one "
                               "batch (SOHOA_MAX_PAGES): split it")
    assert pipeline.store.get(record.original) == SAMPLE.read_bytes()


def test_a_cut_file_whose_pages_cannot_be_counted_is_an_interrupted_scan(tmp_path: Path) -> None:
    """Given the first 40% of a PDF whose page tree sits at its end (as img2pdf writes it: a
    client killed mid-upload), when it is ingested, then the batch is not a damaged file that
    failed but an incomplete scan in review, with the reason; its bytes are kept."""
    from ingest.page_stages import DetectBlank, ReadBarcodes
    from tests import synth

    batch = synth.make_batch(n_dossiers=1, dpi=150, seed=3, text_pages=2, with_id_card=False)
    whole = synth.write_pdf(batch.pages, tmp_path / "whole.pdf")
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 10])
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, cut)
    assert record.status == "needs_review"
    assert record.incomplete == "the file is cut short: a PDF without its end (%%EOF)"
    assert record.error.startswith("truncated: ")
    assert pipeline.store.get(record.original) == cut.read_bytes()


def test_a_page_whose_jpeg_was_cut_short_fails_and_its_batch_waits_for_review(
        tmp_path: Path) -> None:
    """Given a PDF whose page is a grey JPEG scan missing its last kilobytes (the file itself
    whole), when it is ingested, then the page is a failed page saying so (not the rows there
    are, drawn by poppler and passed for the page), and the batch goes to review."""
    import img2pdf
    from PIL import Image

    scan = Image.new("L", (1654, 2339), 250)
    for y in range(200, 2000, 120):
        scan.paste(30, (150, y, 1400, y + 25))
    buf = io.BytesIO()
    scan.save(buf, "JPEG", quality=85, dpi=(200, 200))
    source = tmp_path / "cut-jpeg.pdf"
    source.write_bytes(img2pdf.convert(buf.getvalue()[:-2000]))
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    record = run_file(pipeline, source)
    assert record.failed_pages == [
        {"page": 0, "error": "corrupt: page 0: DCT stream is cut short (its last rows are missing)"}]
    assert (record.status, record.error) == ("needs_review", "1 page could not be read")
