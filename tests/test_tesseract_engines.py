"""libtesseract kept loaded (the default engine) reads exactly as the `tesseract` program does, and
a crash in it costs one page, not the worker."""

from __future__ import annotations

import multiprocessing
import re
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from rapidfuzz.distance import Levenshtein

from ingest.page_stages import Recognize
from ingest.settings import Settings
from ingest.stages import PageWork
from ocr import deskew, tesseract, tesseract_child
from ocr.errors import ToolError
from tests import synth


@pytest.fixture(scope="module")
def page() -> Image.Image:
    """A straightened, noisy 300-dpi page of Vietnamese prose."""
    text_page, _ = synth.text_page(synth.corpus_paragraphs()[40:44], 300)
    img = synth.degrade(text_page, synth.Scan(skew=4.0, noise=5, blur=0.7, seed=3))
    return deskew.rotate(img, -deskew.detect(np.asarray(img.convert("L")), 300, 15).angle)


def pdf_text(pdf: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_library_and_program_give_the_same_words_and_text_layer(page, tmp_path) -> None:
    # Given a page, when both engines read it
    lib = tesseract.run(page, 300, "vie", 60, 200, engine="library")
    cli = tesseract.run(page, 300, "vie", 60, 200, engine="cli")
    # Then words, boxes, confidences and lines are identical, and so is the PDF's text
    assert len(lib.words) > 100
    assert lib.words == cli.words and lib.lines == cli.lines
    assert pdf_text(lib.text_pdf, tmp_path, "lib.pdf") == pdf_text(cli.text_pdf, tmp_path, "cli.pdf")


def test_the_child_with_the_library_is_reused_page_after_page(page) -> None:
    # Given a page read once
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    child = tesseract_child.reader().proc
    # When another is read, then by the same child process
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    assert child is not None and tesseract_child.reader().proc is child and child.poll() is None


def test_unknown_language_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="language data for 'xxq'"):
        tesseract.run(Image.new("L", (100, 100), 255), 300, "xxq", 60, engine="library")


def test_a_crash_on_one_page_is_a_tool_error_and_the_next_page_reads(page) -> None:
    # Given a child that dies while it reads a page (as on a Tesseract assertion: abort())
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    child = tesseract_child.reader().proc
    assert child is not None
    threading.Timer(0.3, child.send_signal, [signal.SIGABRT]).start()
    # When the page is read, then a ToolError says so, and this process goes on
    with pytest.raises(ToolError, match=re.escape("crashed on this page (signal SIGABRT)")):
        tesseract.run(page, 300, "vie", 60, 200, engine="library")
    # And the next page is read by a new child
    assert len(tesseract.run(page, 300, "vie", 60, 200, engine="library").words) > 100
    assert tesseract_child.reader().proc is not child


def test_a_child_that_hangs_is_stopped_at_the_time_limit(page, monkeypatch) -> None:
    # Given a child that stops answering (SIGSTOP: not even Tesseract's own deadline can fire)
    monkeypatch.setattr(tesseract_child, "_KILL_GRACE_S", 0.5)
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    child = tesseract_child.reader().proc
    assert child is not None
    child.send_signal(signal.SIGSTOP)
    # When a page with a 1-second limit is read, then a ToolError, and the child is gone
    with pytest.raises(ToolError, match="time limit"):
        tesseract.run(page, 300, "vie", 1, 200, engine="library")
    assert child.poll() is not None
    # And the next page is read by a new child
    assert len(tesseract.run(page, 300, "vie", 60, 200, engine="library").words) > 100


def test_a_child_gone_between_pages_is_replaced_silently(page) -> None:
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    child = tesseract_child.reader().proc
    assert child is not None
    child.kill()
    child.wait()
    assert len(tesseract.run(page, 300, "vie", 60, 200, engine="library").words) > 100


def test_a_page_without_text_gives_no_words_and_an_empty_text_layer(page, tmp_path) -> None:
    # Given a white page
    white = Image.new("L", (1654, 2339), 255)
    # When the engine reads it, then no words, and a text-layer page with nothing on it
    result = tesseract.run(white, 200, "vie", 60, 200, engine="library")
    assert result.words == [] and result.lines == []
    assert pdf_text(result.text_pdf, tmp_path, "white.pdf").strip() == ""
    # And the next page reads as usual
    assert len(tesseract.run(page, 300, "vie", 60, 200, engine="library").words) > 100


def test_a_colour_page_reads_like_its_grey_copy(page) -> None:
    colour = tesseract.run(page.convert("RGB"), 300, "vie", 60, 200, engine="library")
    grey = tesseract.run(page, 300, "vie", 60, 200, engine="library")
    assert len(colour.words) > 100
    assert Levenshtein.normalized_distance(colour.text, grey.text) < 0.01


def test_a_page_over_its_time_limit_is_a_tool_error(page) -> None:
    with pytest.raises(ToolError, match="time limit"):
        tesseract.run(page, 300, "vie", 0.001, 200, engine="library")


def _words_in_forked_worker(img: Image.Image, queue: multiprocessing.Queue) -> None:
    queue.put((len(tesseract.run(img, 300, "vie", 60, 200, engine="library").words),
               tesseract_child.reader().proc.pid))


def test_a_forked_worker_reads_through_a_child_of_its_own(page) -> None:
    # Given a child started by this process (as a CLI run in one process leaves it)
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    ours = tesseract_child.reader().proc
    # When a forked worker (ProcessPoolExecutor, Celery prefork) reads a page
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    worker = ctx.Process(target=_words_in_forked_worker, args=(page, queue))
    worker.start()
    try:
        words, child_pid = queue.get(timeout=120)
        worker.join(30)
    finally:
        if worker.is_alive():  # it hung: not left running (its own child ends with its pipe)
            worker.kill()
            worker.join(10)
    # Then it reads it through its own child, and ours is still there and usable
    assert worker.exitcode == 0 and words > 100 and child_pid != ours.pid
    assert tesseract_child.reader().proc is ours and ours.poll() is None


def test_the_cli_setting_reads_through_the_program_without_the_library(page, monkeypatch) -> None:
    # Given SOHOA_OCR_ENGINE=cli, and a library that would fail if used
    def no_library() -> None:
        raise AssertionError("the library was used")

    monkeypatch.setattr(tesseract_child, "reader", no_library)
    work = PageWork("test", 0, page, 300)
    # When the OCR stage built with that setting runs, then the page is read (by the program)
    Recognize(Settings(ocr_engine="cli").ocr)(work)
    assert len(work.facts.ocr.words) > 100


def test_an_unknown_engine_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="ocr_engine"):
        Settings(ocr_engine="gpu")


def _read_in_thread(img: Image.Image) -> tuple[int, int]:
    """(words read, pid of the child that read them) from a new thread, as a page worker."""
    out: list[tuple[int, int]] = []

    def work() -> None:
        words = len(tesseract.run(img, 300, "vie", 60, 200, engine="library").words)
        out.append((words, tesseract_child.reader().proc.pid))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    return out[0]


def test_children_started_ahead_read_the_first_pages_of_new_threads(page) -> None:
    # Given two children started ahead, their engine loading
    tesseract_child.start_ahead("vie", 2)
    ahead = {r.proc.pid for r in tesseract_child._ahead}
    assert len(ahead) == 2
    # When two new page threads read a page each
    first, second = _read_in_thread(page), _read_in_thread(page)
    # Then each read it through one of those children, in full, and none is left waiting
    assert {first[1], second[1]} == ahead
    assert first[0] > 100 and second[0] == first[0]
    assert tesseract_child._ahead == []


def test_starting_ahead_again_starts_nothing_more(page) -> None:
    # Given a child started ahead and not yet taken
    tesseract_child.start_ahead("vie", 1)
    waiting = list(tesseract_child._ahead)
    # When a batch's stages are prepared again, then the same child waits, and no other
    tesseract_child.start_ahead("vie", 1)
    assert tesseract_child._ahead == waiting
    _read_in_thread(page)  # taken, not left behind for other tests


def test_a_child_started_ahead_with_unknown_languages_fails_its_first_page_clearly(page) -> None:
    # Given a child started ahead for a language set that has no data
    tesseract_child.start_ahead("xxx_nonexistent", 1)
    # When a thread reads a page through it, then a ToolError names the languages
    errors: list[ToolError] = []

    def work() -> None:
        try:
            tesseract.run(page, 300, "xxx_nonexistent", 60, 200, engine="library")
        except ToolError as e:
            errors.append(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert errors and "xxx_nonexistent" in str(errors[0])
    assert tesseract_child._ahead == []


def test_the_ocr_stage_prepares_children_for_its_workers_only_with_the_library(page) -> None:
    # Given the OCR stage for two workers
    settings = Settings(workers=2)
    # When prepared with the program as engine, then no child is started
    Recognize(Settings(ocr_engine="cli").ocr, 2).prepare()
    assert tesseract_child._ahead == []
    # When prepared with the library, then two children are waiting for the pages
    Recognize(settings.ocr, settings.workers).prepare()
    assert len(tesseract_child._ahead) == 2
    _read_in_thread(page), _read_in_thread(page)
    assert tesseract_child._ahead == []


def test_sohoa_ingest_starts_its_children_before_importing_the_rest(page, monkeypatch) -> None:
    # Given `sohoa ingest` with two workers and the library as engine
    from api import launch
    monkeypatch.setenv("SOHOA_WORKERS", "2")
    # When the command's entry point starts the readers, then two children wait for the pages
    launch._start_readers([])
    assert len(tesseract_child._ahead) == 2
    _read_in_thread(page), _read_in_thread(page)
    # And with the program as engine, or settings that do not validate, none is started
    monkeypatch.setenv("SOHOA_OCR_ENGINE", "cli")
    launch._start_readers([])
    monkeypatch.setenv("SOHOA_OCR_ENGINE", "library")
    monkeypatch.setenv("SOHOA_WORKERS", "0")
    launch._start_readers([])
    assert tesseract_child._ahead == []


def test_stopping_the_readers_ends_every_child_and_a_reader_used_again_starts_one(page) -> None:
    # Given a child reading pages for this thread and one waiting ahead
    tesseract.run(page, 300, "vie", 60, 200, engine="library")
    working = tesseract_child.reader().proc
    tesseract_child.start_ahead("vie", 1)
    waiting = tesseract_child._ahead[0].proc
    # When the readers are stopped (a batch's pages are all read)
    tesseract.stop_readers()
    # Then both children have ended and none waits
    assert working.poll() is not None and waiting.poll() is not None
    assert tesseract_child._ahead == []
    # And the next page is read by a new child
    assert len(tesseract.run(page, 300, "vie", 60, 200, engine="library").words) > 100
    assert tesseract_child.reader().proc not in (None, working)


def test_a_child_killed_while_it_waits_ahead_is_replaced_for_the_first_page(page) -> None:
    # Given a child started ahead, killed (-9) before any page reached it
    tesseract_child.start_ahead("vie", 1)
    waiting = tesseract_child._ahead[0].proc
    waiting.kill()
    waiting.wait()
    # When a page thread reads a page, then a new child reads it in full
    words, pid = _read_in_thread(page)
    assert words > 100 and pid != waiting.pid


def test_a_child_that_cannot_be_started_ahead_leaves_the_first_page_to_start_one(
        page, monkeypatch) -> None:
    # Given a machine where no process can be started just now
    def no_process(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(tesseract_child.subprocess, "Popen", no_process)
    # When children are started ahead, then nothing fails and nothing waits with a dead pipe
    tesseract_child.start_ahead("vie", 1)
    monkeypatch.undo()
    # And the first page starts its own child and is read
    assert _read_in_thread(page)[0] > 100
    assert tesseract_child._ahead == []


def test_the_reading_child_starts_on_the_standard_library_alone() -> None:
    """Given the command a reader starts its child with, when the child's module loads that way,
    then neither site-packages nor NumPy is loaded: the two children start beside the batch's
    first pages, on the same cores, and NumPy alone was half their start."""
    root = str(Path(tesseract_child.__file__).resolve().parents[1])
    probe = ("import sys, ocr.tesseract_child; "
             "print(any('site-packages' in p for p in sys.path), "
             "sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'cv2')))")
    out = subprocess.run([*tesseract_child._CHILD[:2], "-c", probe], capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
    assert out.stdout.split(maxsplit=1) == ["False", "[]\n"]


def test_a_page_handed_over_as_a_view_is_read_as_the_page_itself(page) -> None:
    """Given a page and a view of it that is not contiguous in memory (every other column of
    a page twice as wide), when the reader takes each, then both read the same words."""
    grey = np.asarray(page.convert("L").resize((page.width // 2, page.height // 2)))
    wide = np.zeros((grey.shape[0], grey.shape[1] * 2), np.uint8)
    wide[:, ::2] = grey
    view = wide[:, ::2]
    assert not view.flags.c_contiguous
    first = tesseract_child.reader().read("vie", grey, 150, tesseract.VARIABLES, 60)
    again = tesseract_child.reader().read("vie", view, 150, tesseract.VARIABLES, 60)
    assert first[0] == again[0] and len(first[0]) > 50


def test_a_request_cut_short_ends_the_child_without_an_answer() -> None:
    """Given a child's loop fed a whole 10 x 10 request, then one cut after 50 of its 100
    pixels (the worker died while handing it over), when it serves them, then the first is
    answered, and the loop ends quietly at the cut: no page is read from bytes that are not
    all there."""
    import io
    import json
    import struct

    def request(shape: list[int], body: bytes) -> bytes:
        head = json.dumps({"languages": "vie", "dpi": 300, "variables": {}, "timeout": 10,
                           "shape": shape}).encode()
        return struct.pack("<I", len(head)) + head + body

    answers = io.BytesIO()
    tesseract_child.serve(io.BytesIO(request([10, 10], bytes([255]) * 100)
                                     + request([10, 10], bytes([255]) * 50)), answers)
    data = answers.getvalue()
    size = struct.unpack("<I", data[:4])[0]
    first = json.loads(data[4:4 + size])
    assert first["words"] == [] and "error" not in first
    assert len(data) == 4 + size + first["pdf"]  # one answer: the cut request got none


def test_an_engine_given_pixels_that_do_not_fill_the_shape_refuses_them() -> None:
    """Given an engine, when it is handed 50 bytes for a 10 x 10 page, then it raises a clear
    error instead of reading past them."""
    from ocr.tesseract_api import Engine
    with pytest.raises(ValueError, match="50 bytes for a page of shape"):
        Engine("vie").read(bytes(50), (10, 10), 300, {}, 10)
