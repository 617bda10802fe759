"""The first pages of `sohoa ingest`'s file, read while the rest of sohoa is still imported.

Why: for the first half second of the command one core imports the catalog and the dossier side
and stores the original, while Tesseract's children, loaded already, wait for a page and the other
core is idle (BENCHMARKS.md, "Pages read ahead"). The page path alone imports in a third of that
time. So the pages the runner would take first (heaviest first) are decoded and put through the
page stages (ingest/stages.py read_page, the pipeline's own way) on a thread each, and the command
goes on importing once each has been handed to a child; the runner then takes those pages as
read (`Pipeline.process_page(read_ahead=...)`) instead of reading them again. They are read on
the runner's own page threads, made here: threads of their own would each keep an allocator
arena of freed page buffers to the end (40 MB more on the benchmark's batch).

Nothing is stored ahead: the original is still stored first, and a page read ahead counts only
when the batch was received from the same, unchanged file (its identity: device, inode, size,
modification time, as storage.objects.digest_ahead), by a pipeline with the same page stages
and settings. Otherwise, or when a page failed ahead, the pipeline reads it again as any page,
and records what is wrong with it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingest.page_stages import decode_limits, page_stages
from ingest.settings import Settings
from ingest.stages import PageStage, PageWork, read_page
from ocr import tesseract_child
from ocr.decode import page_weights
from storage.objects import file_identity
from storage.records import PageFacts

log = logging.getLogger(__name__)

HAND_OVER_S = 2.0  # the longest the command waits for a page read ahead to reach Tesseract


class _Page:
    """One page read ahead, on a thread of the pool, with a reader borrowed until it is read."""

    def __init__(self, path: Path, index: int, stages: Sequence[PageStage], settings: Settings
                 ) -> None:
        self.path, self.index, self.stages, self.settings = path, index, stages, settings
        self.handed = threading.Event()  # in Tesseract's hands, or ended
        self.reader: tesseract_child.Reader | None = None
        self.work: PageWork | None = None
        self.ended: Future[None] | None = None

    def read(self) -> None:
        try:
            with tesseract_child.borrowed(on_handing=self.handed.set):
                self.reader = tesseract_child.reader()
                self.work = read_page(self.path, PageFacts(index=self.index, status="ok"),
                                      self.stages, decode_limits(self.settings.ocr))
        except Exception:  # read again by the pipeline, which records what is wrong
            log.debug("page %d of %s: reading ahead failed", self.index, self.path,
                      exc_info=True)
        finally:
            self.reader = None
            self.handed.set()

    def take(self) -> PageWork | None:
        """The page as read, once (its memory goes with the caller), after its reading ends."""
        assert self.ended is not None
        self.ended.result()
        work, self.work = self.work, None
        return work

    def stop(self) -> None:
        """Its Tesseract child killed if it is still reading: the page is not wanted."""
        reader = self.reader
        if reader is not None and reader.proc is not None:
            with contextlib.suppress(OSError):
                reader.proc.kill()


@dataclass
class ReadAhead:
    """The pages of one file being read ahead, on the threads that go on to read the rest."""

    path: Path
    identity: tuple[int, int, int, int]
    settings: Settings
    stage_names: list[str]
    pool: ThreadPoolExecutor  # the runner's page threads: no others, no other allocator arenas
    pages: dict[int, _Page]

    def order(self, todo: list[int]) -> list[int]:
        """`todo` with the pages read ahead first: the pool's threads take them before any
        other, whose reading would want a child of its own while these hold theirs. Pages
        read ahead that are not to do (stored by an earlier run of the batch) are stopped."""
        for index in set(self.pages) - set(todo):
            self.pages.pop(index).stop()
        return [i for i in todo if i in self.pages] + [i for i in todo if i not in self.pages]

    def page(self, index: int) -> _PageTaker | None:
        """For Pipeline.process_page: the page read ahead, or None to read it there."""
        found = self.pages.get(index)
        return None if found is None else _PageTaker(self, found)

    def drop(self) -> None:
        """What is read ahead is no longer wanted (the batch is run, or was done before, or the
        command failed): the pages still reading are stopped, and the threads end once they
        have."""
        for page in self.pages.values():
            page.stop()
        self.pages = {}
        self.pool.shutdown(wait=False)


@dataclass
class _PageTaker:
    ahead: ReadAhead
    page: _Page

    def __call__(self) -> PageWork | None:
        work = self.page.take()
        if work is not None and file_identity(self.ahead.path) != self.ahead.identity:
            log.warning("%s changed while it was read: page %d is read again",
                        self.ahead.path, self.page.index)
            return None
        return work


_started: ReadAhead | None = None
_lock = threading.Lock()


def start(path: Path, settings: Settings, count: int) -> None:
    """Reads the `count` heaviest pages of the PDF at `path` ahead, a thread each, and returns
    once each is in Tesseract's hands (or failed, or HAND_OVER_S passed): the imports that
    follow would otherwise hold the interpreter from the pages' decoding and straightening.
    Files other than PDFs, and PDFs whose pages cannot be weighed, are not read ahead."""
    global _started
    identity = file_identity(path)
    if identity is None or count < 1:
        return
    try:
        weights = page_weights(path)
    except Exception:  # whatever is wrong with the file, receiving it says so
        log.debug("%s: not read ahead", path, exc_info=True)
        return
    if not weights:
        return
    stages = page_stages(settings)
    first = sorted(range(len(weights)), key=lambda i: -weights[i])[:count]
    pages = {i: _Page(path, i, stages, settings) for i in first}
    pool = ThreadPoolExecutor(count, thread_name_prefix="page")
    with _lock:
        _started = ReadAhead(path, identity, settings, [s.name for s in stages], pool, pages)
    for page in pages.values():
        page.ended = pool.submit(page.read)
    deadline = time.monotonic() + HAND_OVER_S
    for page in pages.values():
        page.handed.wait(max(0.0, deadline - time.monotonic()))


def claim(path: Path, settings: Settings, stages: Sequence[PageStage]) -> ReadAhead | None:
    """The pages read ahead from `path`, to the first caller only, if the file is the one read
    and unchanged, and the caller reads pages with the same stages and settings."""
    global _started
    with _lock:
        found, _started = _started, None
    if found is None:
        return None
    same = (file_identity(path) == found.identity and settings.ocr == found.settings.ocr
            and settings.barcodes == found.settings.barcodes
            and [s.name for s in stages] == found.stage_names)
    if not same:
        found.drop()
        return None
    return found


def drop_unclaimed() -> None:
    """Pages read ahead that no batch claimed are stopped: the command ends without waiting
    for them (api/launch.py, before the threads are joined at exit)."""
    global _started
    with _lock:
        found, _started = _started, None
    if found is not None:
        found.drop()
