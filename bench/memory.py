"""Peak memory does not grow with the batch: sohoa on 10-page and 300-page scans.

    .venv/bin/python bench/memory.py

The pages are duplex backsides (paper tone, bleed-through, specks) at 300 dpi: every page is decoded,
barcode-read and blank-tested, none is OCR'd, so the run is quick and any page held in memory
would show. Reports wall time and the peak resident memory of the whole process tree.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procmon import run  # noqa: E402

from tests import synth  # noqa: E402


def main() -> None:
    print("| pages | decoded size | seconds | peak RSS MB | status |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sohoa-mem-") as tmp:
        sheets = [(synth.blank(300, seed=s), synth.Scan(seed=s)) for s in range(5)]
        for count in (10, 300):
            pdf = synth.write_pdf([sheets[i % 5] for i in range(count)], Path(tmp) / f"{count}.pdf")
            r = run([str(Path(sys.executable).parent / "sohoa"), "ingest", "--json", str(pdf)],
                    env={"SOHOA_DATA_DIR": f"{tmp}/data{count}"})
            batch = json.loads(r.stdout)["batches"][0]
            decoded_mb = count * 2481 * 3508 / 2**20
            print(f"| {count} | {decoded_mb:.0f} MB | {r.seconds:.1f} | {r.peak_rss_mb:.0f} | "
                  f"{batch['status']}, {len(batch['dropped_pages'])} dropped |")


if __name__ == "__main__":
    main()
