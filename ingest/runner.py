"""Runs a batch on this machine: pages in parallel over the cores, one decoded page per worker.

The steps are the same ones a task queue runs (ingest/pipeline.py); this runner only orders them.
The workers are threads of this process: what a page costs in CPU is spent in code that lets go
of the interpreter (Tesseract in its child process, one per thread; OpenCV, the barcode readers,
image decoding), and threads share the libraries and the pipeline that forked processes would
each count again (BENCHMARKS.md, "Memory"). Tesseract, the one tool known to abort, stays in a
process of its own (ocr/tesseract_child.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ingest import ahead
from ingest.ahead import ReadAhead
from ingest.pipeline import FINAL, Pipeline
from storage.errors import TRANSIENT
from storage.leases import Leases, batch_key, this_process
from storage.records import BatchRecord


def _process_page(pipeline: Pipeline, batch_id: str, index: int,
                  early: ReadAhead | None) -> None:
    """A page, its facts left in the store: the futures of a batch are kept to its end, and with
    the facts as their results they would keep every page's OCR words with them."""
    pipeline.process_page(batch_id, index, early.page(index) if early else None)


def run_file(pipeline: Pipeline, path: Path, dossier: str | None = None, source: str = "cli",
             progress: Callable[[int, int], None] | None = None, file_name: str | None = None,
             agency: str | None = None, device: str | None = None,
             incomplete: str | None = None, scope: list[str] | None = None,
             result: bool = False) -> BatchRecord:
    """Ingests one file and waits; returns the batch record. Same file again: same record.
    With `result`, the file is the result of dossier `dossier`."""
    batch_id = pipeline.receive(path, source=source, dossier=dossier, file_name=file_name,
                                agency=agency, device=device, incomplete=incomplete, scope=scope,
                                result=result)
    early = ahead.claim(path, pipeline.settings, pipeline.page_stages)  # `sohoa ingest`'s
    try:
        # Held while this process runs the batch, so that a server's watchdog on the same data
        # leaves it alone, and takes it over if this process dies.
        leases = Leases(pipeline.settings.storage.catalog_url)
        with leases.holding(batch_key(batch_id), pipeline.settings.recovery.lease_s,
                            holder=f"cli@{this_process()}", batch_id=batch_id):
            try:
                return _run(pipeline, batch_id, progress, early)
            except TRANSIENT as e:  # told to the user; a server on the same data resumes it
                with contextlib.suppress(Exception):
                    pipeline.wait(batch_id, e)
                raise
    finally:
        if early:  # pages read ahead that the batch did not take (done before, an error)
            early.drop()


def _run(pipeline: Pipeline, batch_id: str, progress: Callable[[int, int], None] | None,
         early: ReadAhead | None = None) -> BatchRecord:
    pipeline.resume(batch_id)  # a batch that waited for a dependency: now, by this process
    record = pipeline.inspect(batch_id)
    if record.status in FINAL:
        record.already_ingested = True
        return record
    total = record.pages
    done = pipeline.pages_done(batch_id)
    todo = pipeline.heaviest_first(batch_id, [i for i in range(total) if i not in done])
    if early:
        todo = early.order(todo)
    if progress:
        progress(total - len(todo), total)
    workers = min(pipeline.settings.workers, max(1, len(todo)))
    threading.Thread(target=pipeline.prepare_pages, name="prepare", daemon=True).start()
    preparing: threading.Thread | None = None
    # The page threads that read pages ahead, if any, read the rest (ingest/ahead.py).
    pool = early.pool if early else ThreadPoolExecutor(workers, thread_name_prefix="page")
    with pool:
        for future in as_completed(pool.submit(_process_page, pipeline, batch_id, i, early)
                                   for i in todo):
            future.result()
            if preparing is None:
                # What the dossier stages load once (the address lists) is loaded while the
                # other pages are read: not beside the first ones, whose decoding and
                # straightening it would hold up for the interpreter (BENCHMARKS.md).
                preparing = threading.Thread(target=pipeline.prepare_dossiers, name="prepare",
                                             daemon=True)
                preparing.start()
            if progress:
                progress(1, total)
    pipeline.release()  # what the page stages hold (Tesseract's children) goes before the dossiers
    return pipeline.finalize(batch_id)


def public_view(record: BatchRecord) -> dict[str, Any]:
    """The batch as `sohoa ingest --json` promises it; `results` only for a batch that carried
    results (sent as one, or scanned after a result sheet)."""
    view: dict[str, Any] = {
        "batch_id": record.batch_id, "file": record.file, "status": record.status,
        "error": record.error, "pages": record.pages,
        "dossiers": [{"dossier_id": d.dossier_id, "pages": d.pages, "pdf": d.pdf,
                      "fields": d.fields} for d in record.dossiers],
        "unmatched_pages": record.unmatched_pages,
        "dropped_pages": [p.as_dict() for p in record.dropped_pages],
        "failed_pages": [p.as_dict() for p in record.failed_pages],
    }
    if record.results or record.result_for:  # results stored (or refused)
        view["results"] = record.results or []
    return view
