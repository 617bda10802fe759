"""The `sohoa` command's entry point. For `sohoa ingest`, Tesseract's children are started before
the rest of sohoa is imported: the imports take most of a second on one core while the other
waits, and the children load their language data in that time instead of when the first pages
reach them (BENCHMARKS.md). Every other command goes straight to api/cli.py."""

from __future__ import annotations

import gc
import os
import sys

# sohoa reads pages in parallel over the cores itself; NumPy's BLAS would start a pool of its own,
# whose threads spin after each call (BENCHMARKS.md, "Page faults, BLAS threads"). OpenBLAS reads
# this when NumPy is first imported: here, before any of sohoa is.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    # The imports make ~160,000 objects that live as long as the process: collecting while they
    # are made finds almost nothing (~1,000 objects in cycles) and is a tenth of the imports'
    # time (BENCHMARKS.md, "The start"). Once made, they are left out of every collection.
    gc.disable()
    if sys.argv[1:2] == ["ingest"] and not {"-h", "--help"} & set(sys.argv[2:]):
        _start_readers()
    from api.cli import main as cli

    gc.freeze()
    gc.enable()
    cli()


def _start_readers() -> None:
    from pydantic import ValidationError

    from ingest.settings import Settings
    from ocr import tesseract_child  # not ocr.tesseract: OpenCV and pikepdf would come first

    try:
        settings = Settings()
    except ValidationError:
        return  # the command itself says what is wrong with the settings
    if settings.ocr.engine == "library":
        tesseract_child.start_ahead(settings.ocr.languages, settings.workers)
