"""Writes ocr/data/units-before-2025.json.gz: Viet Nam's administrative units as they were before
the reorganization of 1 July 2025 (63 provinces, their districts and wards, with the statistics
office's codes), for ocr/places.py to recognise addresses written before it.

The current list comes from the maintained `vietnam-provinces` package at run time; the former one
is frozen, so it is kept here, taken from that package's last release before the reorganization:

    pip download vietnam-provinces==0.6.0 --no-deps -d /tmp/vp && unzip -o /tmp/vp/*.whl -d /tmp/vp
    python scripts/units_before_2025.py /tmp/vp/vietnam_provinces/data/nested-divisions.json

Format: [[province, code, [[district, code, [[ward, code], ...]], ...]], ...], names as published.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "ocr" / "data" / "units-before-2025.json.gz"


def main(source: str) -> None:
    nested = json.loads(Path(source).read_text(encoding="utf-8"))
    compact = [[p["name"], p["code"],
                [[d["name"], d["code"], [[w["name"], w["code"]] for w in d["wards"]]]
                 for d in p["districts"]]]
               for p in nested]
    data = json.dumps(compact, ensure_ascii=False, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(data, mtime=0))
    wards = sum(len(d[2]) for p in compact for d in p[2])
    print(f"{OUT}: {len(compact)} provinces, {sum(len(p[2]) for p in compact)} districts, "
          f"{wards} wards, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
