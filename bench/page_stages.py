"""Median seconds per page stage on clean pages: what one change to the page stages costs.

    .venv/bin/python bench/page_stages.py --tree /path/to/checkout-before
    .venv/bin/python bench/page_stages.py --tree .

Runs the stages the pipeline runs on each page (barcodes, blank, straighten, barcodes again, OCR)
on three generated 300-dpi prose pages (grey JPEG, 0/3/-5 degrees, noise and blur as the
throughput batch), `--rounds` times, and prints the median of each stage as one JSON line. Give
two checkouts in turn, alternating, to compare them on the same pages (BENCHMARKS.md, "Office
scans": the clean path before and after).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]),
                    help="the checkout whose stages run (default: this one)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve()))
    from PIL import Image

    from ingest.page_stages import DetectBlank, ReadBarcodes, Recognize, Straighten
    from ingest.stages import PageWork
    from tests import synth

    paragraphs = synth.corpus_paragraphs()
    pages = []
    for k, skew in enumerate((0.0, 3.0, -5.0)):
        page, _ = synth.text_page(paragraphs[k * 7:k * 7 + 7], 300)
        img = synth.degrade(page, synth.Scan(skew=skew, noise=5, blur=0.7, seed=k))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
        pages.append(out.getvalue())
    stages = (ReadBarcodes(), DetectBlank(), Straighten(), ReadBarcodes(retry=True), Recognize())
    times: dict[str, list[float]] = {"total": [], **{s.name: [] for s in stages}}
    for _ in range(args.rounds):
        for data in pages:
            img = Image.open(io.BytesIO(data))
            img.load()
            work = PageWork("bench", 0, img, 300)
            start = time.perf_counter()
            for stage in stages:
                t = time.perf_counter()
                stage(work)
                times[stage.name].append(time.perf_counter() - t)
            times["total"].append(time.perf_counter() - start)
    print(json.dumps({"tree": args.tree, **{k: round(statistics.median(v), 4)
                                             for k, v in times.items()}}))


if __name__ == "__main__":
    main()
