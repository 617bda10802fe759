"""Peak memory of `sohoa ingest` with 2 workers on the benchmark mix (bench/ocr_throughput.py:
receipts, ID cards, prose pages skewed up to ±10°): the 24-page batch and a 300-page one.

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --pages 24 --variant "processes:SOHOA_PAGE_POOL=processes"
    .venv/bin/python bench/memory.py --pages 24 --office 2   # and two office dossiers (colour)

Reports wall time, the peak resident memory of the whole process tree (the sum of each process's
RSS, what issue 15 sets its limits on), the peak of the sum of PSS (each shared page counted once:
what the machine really gives), and each process's RSS and PSS at the RSS peak. The 300-page batch
repeats six 24-page parts of the mix (ocr_throughput.long_pdf). `--office K` adds K dossiers
scanned as office sheets come (colour, tinted paper, a seal; bench/ocr_throughput.py) to a batch
of up to 24 pages.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ocr_throughput import SKEWS, long_pdf, make_batch, mix_pdf  # noqa: E402
from procmon import compiled, run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pages", default="24,300", help="batch sizes, comma-separated")
    ap.add_argument("--office", type=int, default=0, help="office dossiers added (colour)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE,...",
                    help="also run with these environment settings")
    args = ap.parse_args()
    setups = {"sohoa": {}}
    for v in args.variant:
        name, _, assignments = v.partition(":")
        setups[name] = dict(a.split("=", 1) for a in assignments.split(",") if a)
    sohoa = str(Path(sys.executable).parent / "sohoa")
    compiled(ROOT)
    print("| set-up | pages | seconds | peak RSS MB (sum) | peak PSS MB (sum) | status | "
          "at the peak: process RSS/PSS MB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sohoa-mem-") as tmp:
        for count in (int(p) for p in args.pages.split(",")):
            if count <= 24 and args.office:
                pdf = make_batch(count, SKEWS, args.office).write_pdf(Path(tmp) / f"office{count}.pdf")
            elif count <= 24:
                pdf = mix_pdf(count)
            else:
                pdf = Path(tmp) / f"mix{count}.pdf"
                long_pdf(count, pdf)
            for name, env in setups.items():
                data = Path(tmp) / f"data-{name}-{count}"
                r = run([sohoa, "ingest", "--json", str(pdf)], detail=True,
                        env={"SOHOA_DATA_DIR": str(data), "SOHOA_WORKERS": "2", **env})
                if r.returncode:
                    raise SystemExit(f"sohoa failed: {r.stderr[-2000:]}")
                batch = json.loads(r.stdout)["batches"][0]
                parts = ", ".join(f"{_short(n)} {rss:.0f}/{pss:.0f}" for n, rss, pss
                                  in sorted(r.at_peak or [], key=lambda t: -t[1]))
                print(f"| {name} | {batch['pages']} | {r.seconds:.1f} | {r.peak_rss_mb:.0f} | "
                      f"{r.peak_pss_mb:.0f} | {batch['status']} | {parts} |", flush=True)


def _short(cmd: str) -> str:
    if "tesseract_child" in cmd:
        return "tesseract child"
    if "ingest" in cmd and "sohoa" in cmd:
        return "sohoa ingest"
    return cmd.split()[0].rsplit("/", 1)[-1] if cmd else "?"


if __name__ == "__main__":
    main()
