"""The `sohoa` command's entry point. For `sohoa ingest`, Tesseract's children are started before
the rest of sohoa is imported: the imports take most of a second on one core while the other
waits, and the children load their language data in that time instead of when the first pages
reach them, and the file's first pages are read and handed to them while the rest is imported
(ingest/ahead.py; BENCHMARKS.md); once done, it ends without tearing the interpreter down. Every
other command goes straight to api/cli.py."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

# sohoa reads pages in parallel over the cores itself; NumPy's BLAS would start a pool of its own,
# whose threads spin after each call (BENCHMARKS.md, "Page faults, BLAS threads"). OpenBLAS reads
# this when NumPy is first imported: here, before any of sohoa is.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    # The imports make ~160,000 objects that live as long as the process: collecting while they
    # are made finds almost nothing (~1,000 objects in cycles) and is a tenth of the imports'
    # time (BENCHMARKS.md, "The start, the hand-over and the end"). Once made, they are left out
    # of every collection.
    gc.disable()
    ingesting = sys.argv[1:2] == ["ingest"] and not {"-h", "--help"} & set(sys.argv[2:])
    if ingesting:
        _start_digests(sys.argv[2:])
        _start_readers(sys.argv[2:])
    from api.cli import main as cli

    gc.freeze()
    gc.enable()
    if not ingesting:
        cli()
        return
    try:
        cli()
    except SystemExit as e:
        _leave(e.code)
    _leave(0)


def _leave(code: object) -> NoReturn:
    """Ends `sohoa ingest` as any exit does, but for the interpreter's teardown: freeing module
    after module what the imports made took 50 ms of every command, after its work was done.
    The threads are waited for and the exit handlers run (logging flushed, temporary files
    removed) as at any exit; what the command stored is on disk already (objects synced, the
    catalog committed). A code other than a number is printed, and the status is 1, as
    `sys.exit` does."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    if (ahead := sys.modules.get("ingest.ahead")) is not None:
        ahead.drop_unclaimed()  # pages read ahead for a batch that never ran: not waited for
    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own first step
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader that went away (`| head`)
            stream.flush()
    os._exit(status)


def _start_digests(args: list[str]) -> None:
    """The files named on the command line hashed on a thread while sohoa is imported: receiving
    a batch starts with its digest (storage/objects.py digest_ahead)."""
    from storage.objects import digest_ahead

    for arg in args:
        if not arg.startswith("-"):
            digest_ahead(Path(arg))


def _start_readers(args: list[str]) -> None:
    """Tesseract's children loading, and the first pages of the first file read ahead
    (ingest/ahead.py), before the rest of sohoa is imported."""
    from pydantic import ValidationError

    from ingest.settings import Settings
    from ocr import tesseract_child  # not ocr.tesseract: OpenCV and pikepdf would come first

    try:
        settings = Settings()
    except ValidationError:
        return  # the command itself says what is wrong with the settings
    if settings.ocr.engine == "library":
        tesseract_child.start_ahead(settings.ocr.languages, settings.workers)
        if (path := _first_file(args)) is not None:
            from ingest import ahead

            try:
                ahead.start(path, settings, settings.workers)
            except Exception:  # a head start only: the command reads every page itself then
                logging.getLogger(__name__).debug("no pages read ahead", exc_info=True)


def _first_file(args: list[str]) -> Path | None:
    """The first file `sohoa ingest` is given (an option's value is not one)."""
    skip = False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = arg in ("--dossier", "--result")
            continue
        if (path := Path(arg)).is_file():
            return path
        return None
    return None
