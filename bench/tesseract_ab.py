"""Tesseract options A/B: CPU seconds and CER of sohoa's OCR call with and without extra options.

    .venv/bin/python bench/tesseract_ab.py "-c load_system_dawg=0 -c load_freq_dawg=0"
    .venv/bin/python bench/tesseract_ab.py --no-pdf      # TSV only, no text-only PDF renderer
    .venv/bin/python bench/tesseract_ab.py --library     # the program (A) vs libtesseract (B)

Both variants read the same straightened pages of the benchmark batch (bench/ocr_throughput.py),
alternating A/B and B/A page by page over two rounds, so that the drift of a shared machine falls
on both alike. CPU is this process's and its children's (user + system), not wall time. A runs
the `tesseract` program per page (options apply to it); B too, unless `--library`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path

import numpy as np
import pytesseract

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["OMP_THREAD_LIMIT"] = "1"

from ocr_throughput import cer, make_batch  # noqa: E402

from ocr import deskew, tesseract, tesseract_child  # noqa: E402
from tests import synth  # noqa: E402


def cpu_seconds() -> float:
    """This process, its finished children, and the library's child (alive: not in RUSAGE)."""
    total = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    child = tesseract_child.reader().proc
    if child is not None and child.poll() is None:
        fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def without_pdf_renderer() -> None:
    """Tesseract writes TSV only (an empty PDF stands in for the text layer)."""
    original = pytesseract.pytesseract.run_tesseract

    def run(src: str, base: str, ext: str, lang: str, config: str, **kw: object) -> object:
        if "textonly_pdf" not in config:
            ext = "tsv"
            Path(base + ".pdf").write_bytes(b"")
        return original(src, base, ext, lang, config, **kw)

    pytesseract.pytesseract.run_tesseract = run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", nargs="?", default="", help="extra tesseract options for B")
    parser.add_argument("--no-pdf", action="store_true", help="B without the text-only PDF")
    parser.add_argument("--library", action="store_true", help="B through libtesseract")
    parser.add_argument("--pages", type=int, default=12)
    args = parser.parse_args()
    batch = make_batch(args.pages, (0, 2, -3, 5, -5, 7, -8, 10, -10))
    pages = []
    for page, scan in batch.pages:
        img = synth.degrade(page, scan)
        skew = deskew.detect(np.asarray(img.convert("L")), 300, 15)
        pages.append((page, deskew.rotate(img, -skew.angle)))
    config_b = tesseract.CONFIG + (" " + args.options if args.options else "")
    if args.no_pdf:
        config_b = config_b.replace(" -c textonly_pdf=1", "")
        without_pdf_renderer()
    configs = {"A": tesseract.CONFIG, "B": config_b}
    engines = {"A": "cli", "B": "library" if args.library else "cli"}
    cpu = {"A": 0.0, "B": 0.0}
    cers: dict[str, list[float]] = {"A": [], "B": []}
    for rnd in range(2):
        for k, (page, img) in enumerate(pages):
            for name in ("A", "B") if (k + rnd) % 2 == 0 else ("B", "A"):
                tesseract.CONFIG = configs[name]
                start = cpu_seconds()
                out = tesseract.run(img, 300, "vie", 300, 200, engines[name])
                cpu[name] += cpu_seconds() - start
                if page.kind == "text" and rnd == 0:
                    cers[name].append(cer(page.text, out.text))
    for name in "AB":
        shown = configs[name] if engines[name] == "cli" else "libtesseract, same options"
        print(f"{name}: {engines[name]} {shown}\n   Tesseract CPU {cpu[name]:.2f} s, CER median "
              f"{statistics.median(cers[name]):.4f}, worst {max(cers[name]):.4f}")
    print(f"B / A CPU: {cpu['B'] / cpu['A']:.3f}")


if __name__ == "__main__":
    main()
