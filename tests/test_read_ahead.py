"""`sohoa ingest` reads the first pages of its file while the rest of sohoa is imported
(ingest/ahead.py): the runner takes them as read, and they come out as the pipeline reads them;
a file changed since, a page that failed ahead, or other page stages, and the pipeline reads the
page itself."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from api.launch import _first_file
from ingest import ahead
from ingest import pipeline as pipeline_module
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ocr import tesseract_child
from ocr.decode import page_weights
from tests import synth


@pytest.fixture(autouse=True)
def nothing_left_ahead() -> Any:
    yield
    ahead.drop_unclaimed()
    tesseract_child.stop_all()


def batch_file(tmp_path: Path) -> Path:
    """The ten-page ASN batch (five Code 39 codes, a line of text on each page), as a file of
    the test's own."""
    path = tmp_path / "in" / "batch.pdf"
    path.parent.mkdir()
    shutil.copyfile(synth.ASN_BATCH, path)
    return path


def asn_settings(tmp_path: Path, name: str) -> Settings:
    return Settings(data_dir=tmp_path / name, workers=2,
                    dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")


def pages_read_by(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pages the pipeline decodes and puts through its stages itself, from now on."""
    read: list[int] = []
    real = pipeline_module.read_page

    def counting(path: Path, facts: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(facts.index)
        return real(path, facts, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "read_page", counting)
    return read


def facts_without_timings(pipeline: Pipeline, batch_id: str) -> list[dict[str, Any]]:
    return [f.model_dump(exclude={"seconds"})
            for f in pipeline.page_facts(batch_id, pipeline.record(batch_id).pages)]


def heaviest(path: Path, count: int) -> list[int]:
    weights = page_weights(path)
    return sorted(range(len(weights)), key=lambda i: -weights[i])[:count]


def test_pages_read_ahead_are_taken_as_read_and_come_out_as_the_pipeline_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch file whose two heaviest pages were read ahead, OCR included
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "ahead")
    ahead.start(path, settings, 2)
    # When the batch is run from that file
    read = pages_read_by(monkeypatch)
    started = children_started(monkeypatch)
    pipeline = Pipeline.from_settings(settings)
    record = run_file(pipeline, path)
    # Then the pipeline read every other page itself, and those two not again
    early = heaviest(path, 2)
    assert sorted(read) == [i for i in range(10) if i not in early]
    # and Tesseract's children read for both: no third child was started beside them
    assert started == []
    # and the batch is what it is without reading ahead: the same five dossiers, page facts
    # for page facts (barcodes, blank, skew, OCR words)
    monkeypatch.undo()
    plain = Pipeline.from_settings(asn_settings(tmp_path, "plain"))
    plain_record = run_file(plain, synth.ASN_BATCH)
    assert [(d.dossier_id, d.pages) for d in record.dossiers] == \
        [(d.dossier_id, d.pages) for d in plain_record.dossiers]
    assert [d.dossier_id for d in record.dossiers] == [f"ASN0012{i}" for i in range(3, 8)]
    assert facts_without_timings(pipeline, record.batch_id) == \
        facts_without_timings(plain, plain_record.batch_id)


def children_started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Tesseract children started from now on (not those started ahead before)."""
    started: list[int] = []
    real = tesseract_child.Reader._child

    def counting(self: tesseract_child.Reader) -> None:
        if self.proc is None:
            started.append(1)
        real(self)

    monkeypatch.setattr(tesseract_child.Reader, "_child", counting)
    return started


def test_a_file_written_again_after_it_was_read_ahead_is_read_from_its_new_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch file read ahead, then written again with other pages (one page of text)
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "data")
    ahead.start(path, settings, 2)
    shutil.copyfile(synth.DATA / "scan-text.pdf", path.with_suffix(".new"))
    path.with_suffix(".new").replace(path)
    # When the batch is run from the file
    read = pages_read_by(monkeypatch)
    pipeline = Pipeline.from_settings(settings)
    record = run_file(pipeline, path)
    # Then nothing read ahead is taken: the batch is the new file's one page, read here
    assert record.pages == 1
    assert read == [0]
    assert pipeline.page_facts(record.batch_id, 1)[0].ocr is not None


def test_a_page_that_failed_ahead_is_read_again_by_the_pipeline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch file whose heaviest page fails when read ahead (its reading raises)
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "data")
    failing = heaviest(path, 1)[0]
    real = ahead.read_page

    def fails_once(path: Path, facts: Any, *args: Any, **kwargs: Any) -> Any:
        if facts.index == failing:
            raise RuntimeError("a stage broke")
        return real(path, facts, *args, **kwargs)

    monkeypatch.setattr(ahead, "read_page", fails_once)
    ahead.start(path, settings, 2)
    # When the batch is run from it
    read = pages_read_by(monkeypatch)
    pipeline = Pipeline.from_settings(settings)
    record = run_file(pipeline, path)
    # Then the pipeline read that page itself, and it is as good as any
    assert failing in read and heaviest(path, 2)[1] not in read
    assert record.failed_pages == []
    assert len(record.dossiers) == 5


def test_pages_read_ahead_are_not_taken_by_a_pipeline_with_other_stages(
        tmp_path: Path) -> None:
    # Given a batch file read ahead with the settings' page stages
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "data")
    ahead.start(path, settings, 1)
    # When a pipeline with other stages claims them, then it gets none; nor does a second
    # claim by a pipeline of the same stages: the pages went to the first caller
    assert ahead.claim(path, settings, [ReadBarcodes(), DetectBlank()]) is None
    assert ahead.claim(path, settings, Pipeline.from_settings(settings).page_stages) is None


def test_pages_read_ahead_are_not_taken_with_other_ocr_settings(tmp_path: Path) -> None:
    # Given a batch file read ahead
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "data")
    ahead.start(path, settings, 1)
    # When a pipeline reading at another resolution claims them, then it gets none
    other = Settings(data_dir=tmp_path / "data", workers=2, ocr_max_dpi=300)
    assert ahead.claim(path, other, Pipeline.from_settings(other).page_stages) is None


def test_files_other_than_pdfs_are_not_read_ahead(tmp_path: Path) -> None:
    # Given a JPEG scan, when `sohoa ingest` would read it ahead, then nothing is started
    path = tmp_path / "scan.jpg"
    shutil.copyfile(synth.DATA / "scan-photo.jpg", path)
    ahead.start(path, asn_settings(tmp_path, "data"), 2)
    assert ahead._started is None


def test_a_borrowed_reader_is_given_back_and_counts_as_started_meanwhile() -> None:
    # Given one reader started ahead
    tesseract_child.start_ahead("vie", 1)
    waiting = list(tesseract_child._ahead)
    handed = threading.Event()
    # When a thread borrows it, then while it is borrowed, asking for one reader ahead starts
    # none, and the thread reads with that reader, told before its page is written
    with tesseract_child.borrowed(on_handing=handed.set):
        tesseract_child.start_ahead("vie", 1)
        assert tesseract_child._ahead == []
        assert tesseract_child.reader() is waiting[0]
        import numpy as np

        tesseract_child.reader().read("vie", np.full((200, 400), 255, np.uint8), 200, {}, 30)
        assert handed.is_set()
    # and once done it waits for the next thread again
    assert tesseract_child._ahead == waiting


@pytest.mark.parametrize(("args", "first"), [
    (["batch.pdf"], "batch.pdf"),
    (["--dossier", "other.pdf", "batch.pdf"], "batch.pdf"),
    (["--result", "H1", "--json", "batch.pdf", "other.pdf"], "batch.pdf"),
    (["--json"], None),
    (["missing.pdf", "batch.pdf"], None),
])
def test_the_first_file_read_ahead_is_the_commands_first_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], first: str | None
        ) -> None:
    # Given files batch.pdf and other.pdf, when the command's first file is looked for, then it
    # is the first argument that is no option's value, if that is a file
    monkeypatch.chdir(tmp_path)
    for name in ("batch.pdf", "other.pdf"):
        (tmp_path / name).write_bytes(b"%PDF-1.4")
    assert _first_file(args) == (Path(first) if first else None)


def test_pages_read_ahead_for_a_batch_done_before_are_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch file ingested once, then read ahead again
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "data")
    pipeline = Pipeline.from_settings(settings)
    run_file(pipeline, path)
    ahead.start(path, settings, 2)
    started = ahead._started
    assert started is not None
    pages = list(started.pages.values())
    # When it is run again from that file
    record = run_file(Pipeline.from_settings(settings), path)
    # Then it is the batch done before, and the pages read ahead were stopped: their threads
    # end (their Tesseract children killed mid-page, or done), nothing left reading
    assert record.already_ingested
    for page in pages:
        assert page.ended is not None
        page.ended.result(timeout=60)
    started.pool.shutdown(wait=True)
    assert tesseract_child._lent == []


def test_sohoa_ingest_records_a_corrupt_page_it_read_first_as_any_corrupt_page(
        tmp_path: Path) -> None:
    """Given a batch whose heaviest page, the first read ahead, is a grey JPEG scan cut short,
    followed by the ten ASN pages, when `sohoa ingest --json` runs it, then that page fails as
    corrupt with its reason, as the pipeline records it, and the other pages make their
    dossiers."""
    import json
    import os
    import subprocess
    import sys

    import pikepdf

    from tests.test_decode import _grey_jpeg_pdf

    _grey_jpeg_pdf(tmp_path / "cut.pdf", cut=2000)
    path = tmp_path / "batch.pdf"
    with pikepdf.open(tmp_path / "cut.pdf") as cut, pikepdf.open(synth.ASN_BATCH) as asn:
        cut.pages.extend(asn.pages)
        cut.save(path)
    assert heaviest(path, 1) == [0]
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
           "SOHOA_DOSSIER_CODE_GRAMMAR": r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"}
    out = subprocess.run([str(Path(sys.executable).parent / "sohoa"), "ingest", "--json",
                          str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (batch,) = json.loads(out.stdout)["batches"]
    assert [f["page"] for f in batch["failed_pages"]] == [0]
    assert batch["failed_pages"][0]["error"].startswith("corrupt: page 0: DCT stream is cut short")
    assert [d["dossier_id"] for d in batch["dossiers"]] == [f"ASN0012{i}" for i in range(3, 8)]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sohoa_ingest_killed_while_it_reads_ahead_leaves_no_reader_and_runs_again_whole(
        tmp_path: Path) -> None:
    """Given `sohoa ingest` killed with -9 as soon as it reads its first pages ahead (its
    Tesseract children and its page threads running), then its children end on their own, and the same command
    run again makes the batch's five dossiers, every page in one or dropped as blank."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    path = batch_file(tmp_path)
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
           "SOHOA_DOSSIER_CODE_GRAMMAR": r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"}
    command = [str(Path(sys.executable).parent / "sohoa"), "ingest", "--json", str(path)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # Its page threads (two, beside the main thread) exist once it reads ahead
        deadline = time.monotonic() + 60
        while (len(children := _children(proc.pid)) < 2
               or len(list(Path(f"/proc/{proc.pid}/task").iterdir())) < 3):
            assert proc.poll() is None and time.monotonic() < deadline, "no reading ahead seen"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(c) for c in children):
        assert time.monotonic() < deadline, "a Tesseract child outlived its command"
        time.sleep(0.05)
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (batch,) = json.loads(out.stdout)["batches"]
    assert batch["status"] == "done" and batch["failed_pages"] == []
    assert [d["dossier_id"] for d in batch["dossiers"]] == [f"ASN0012{i}" for i in range(3, 8)]
    assert [d["pages"] for d in batch["dossiers"]] == [[0], [2], [3], [6], [8]]
    assert [p["page"] for p in batch["dropped_pages"]] == [1, 4, 5, 7, 9]  # blank backs


def test_pages_read_ahead_that_an_earlier_run_stored_are_stopped_not_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch received once whose two heaviest pages an earlier run stored (it stopped
    # there), then the same file read ahead again
    path = batch_file(tmp_path)
    settings = asn_settings(tmp_path, "data")
    earlier = Pipeline.from_settings(settings)
    batch_id = earlier.receive(path)
    for index in heaviest(path, 2):
        earlier.process_page(batch_id, index)
    ahead.start(path, settings, 2)
    started = ahead._started
    assert started is not None
    pages = list(started.pages.values())
    # When the batch is run again from that file
    read = pages_read_by(monkeypatch)
    record = run_file(Pipeline.from_settings(settings), path)
    # Then those two pages were read by no one again: their reading ahead ended (stopped), the
    # pipeline read the eight others, and the batch is whole
    for page in pages:
        assert page.ended is not None
        page.ended.result(timeout=60)
    assert sorted(read) == sorted(set(range(10)) - set(heaviest(path, 2)))
    assert record.status == "done"
    assert [d.dossier_id for d in record.dossiers] == [f"ASN0012{i}" for i in range(3, 8)]
