"""libtesseract in the worker (the default) reads exactly as the `tesseract` program does."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from rapidfuzz.distance import Levenshtein

from ingest.page_stages import Recognize
from ingest.settings import Settings
from ingest.stages import PageWork
from ocr import deskew, tesseract, tesseract_api
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


def test_the_engine_is_loaded_once_per_language_set() -> None:
    # When the same languages are asked for twice, then it is the same loaded engine
    assert tesseract_api.engine("vie") is tesseract_api.engine("vie")
    # and another language set gets its own
    assert tesseract_api.engine("vie+eng") is not tesseract_api.engine("vie")


def test_unknown_language_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="language data for 'xxq'"):
        tesseract_api.engine("xxq")


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


def _words_in_child(img: Image.Image, queue: multiprocessing.Queue) -> None:
    queue.put(len(tesseract.run(img, 300, "vie", 60, 200, engine="library").words))


def test_a_forked_worker_reads_with_its_own_engine(page) -> None:
    # Given an engine loaded in this process (as a CLI run in one process leaves it)
    parent_engine = tesseract_api.engine("vie")
    # When a forked child (ProcessPoolExecutor, Celery prefork) reads a page
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_words_in_child, args=(page, queue))
    child.start()
    words = queue.get(timeout=120)
    child.join(30)
    # Then it reads it, and the parent's engine is still there and usable
    assert child.exitcode == 0 and words > 100
    assert tesseract_api.engine("vie") is parent_engine


def test_the_cli_setting_reads_through_the_program_without_the_library(page, monkeypatch) -> None:
    # Given SOHOA_OCR_ENGINE=cli, and a library that would fail if used
    def no_library(languages: str) -> None:
        raise AssertionError("the library was used")

    monkeypatch.setattr(tesseract_api, "engine", no_library)
    work = PageWork("test", 0, page, 300, Settings(ocr_engine="cli"), {})
    # When the OCR stage runs, then the page is read (by the program)
    Recognize()(work)
    assert len(work.facts["ocr"]["words"]) > 100


def test_an_unknown_engine_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="ocr_engine"):
        Settings(ocr_engine="gpu")
