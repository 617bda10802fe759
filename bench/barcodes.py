"""zxing-cpp vs pyzbar on the shared samples and on generated receipt / ID-card pages.

    .venv/bin/python bench/barcodes.py

For each engine alone: how many expected codes it decodes (and nothing else), and the mean time per
page. Generated pages: receipts with Code 128 or QR dossier codes (short and 35-character codes) and
ID-card copies with a Vietnamese UTF-8 QR, at 200 and 300 dpi, skew 0-8 degrees, noise, blur, JPEG.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr import barcodes  # noqa: E402
from ocr.decode import open_document  # noqa: E402
from tests import synth  # noqa: E402

P = synth.SAMPLES / "paperless-ngx"
SAMPLE_CASES = [  # (file, page, expected values)
    ("barcode-39-custom.pdf", 0, ["CUSTOM BARCODE"]),
    ("barcode-qr-custom.pdf", 0, ["CUSTOM BARCODE"]),
    ("barcode-128-custom.pdf", 0, ["CUSTOM BARCODE"]),
    ("barcode-39-asn-123.pdf", 0, ["ASN00123"]),
    ("barcode-39-asn-invalid.pdf", 0, ["ASNXYZXYZ"]),
    ("barcode-qr-asn-000123-upscale-dpi.pdf", 0, ["ASN 000123"]),
    ("patch-code-t.pdf", 0, ["PATCHT"]),
    ("patch-code-t-qr.pdf", 0, ["PATCHT"]),
    ("patch-code-t-middle.pdf", 1, ["PATCHT"]),
    ("patch-code-t-middle.tiff", 1, ["PATCHT"]),
    ("patch-code-t-middle-alpha.tiff", 1, ["PATCHT"]),
    ("patch-code-t-middle-unreadable.pdf", 1, []),
    ("several-patcht-codes.pdf", 2, ["PATCHT"]),
    ("several-patcht-codes.pdf", 5, ["PATCHT"]),
    ("patch-code-t-double.pdf", 1, ["PATCHT"]),
    ("patch-code-t-double.pdf", 2, ["PATCHT"]),
    ("split-by-asn-1.pdf", 0, ["ASN00123"]),
    ("split-by-asn-1.pdf", 2, ["ASN00124"]),
    ("split-by-asn-1.pdf", 3, ["ASN00125"]),
    ("split-by-asn-1.pdf", 6, ["ASN00126"]),
    ("split-by-asn-1.pdf", 8, ["ASN00127"]),
]


def sample_pages() -> list[tuple[str, np.ndarray, list[str]]]:
    out = []
    for name, page, expected in SAMPLE_CASES:
        doc = open_document(P / name)
        out.append((f"{name}#{page}", np.asarray(doc.page(page).image.convert("L")), expected))
        doc.close()
    return out


def generated_pages() -> list[tuple[str, np.ndarray, list[str]]]:
    out = []
    codes = ["000.00.04.H40-230414-0002", "000.701.18.G12-260314-2711000036943"]
    for dpi in (200, 300):
        for i, skew in enumerate((0.0, 2.5, 5.0, 8.0)):
            code = codes[i % 2]
            for sym in ("code128", "qr"):
                page = synth.receipt(code, synth.receipt_fields(i), dpi, sym)
                out.append((f"receipt {sym} {dpi}dpi {skew}°", scanned(page, skew, i), [code]))
            payload = f"00109001234{i}||Nguyễn Thị Ánh Tuyết|15031990|Nữ|Xã Đồng Tâm, Cao Bằng|20042021"
            card = synth.id_card_copy(payload, "Nguyễn Thị Ánh Tuyết", dpi)
            out.append((f"ID card QR {dpi}dpi {skew}°", scanned(card, skew, i), [payload]))
    return out


def scanned(page: synth.Page, skew: float, seed: int) -> np.ndarray:
    img = synth.degrade(page, synth.Scan(skew=skew, noise=6, blur=0.8, seed=seed))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return np.asarray(Image.open(buf).convert("L"))


def evaluate(engine: str, pages: list[tuple[str, np.ndarray, list[str]]]) -> tuple[int, list[str],
                                                                                   float]:
    ok, misses, times = 0, [], []
    for label, gray, expected in pages:
        t = time.perf_counter()
        values = [b.value for b in barcodes.ENGINES[engine](gray, barcodes.DEFAULT_FORMATS)]
        times.append(time.perf_counter() - t)
        if sorted(values) == sorted(expected):
            ok += 1
        else:
            misses.append(f"{label}: got {values}")
    return ok, misses, statistics.mean(times) * 1000


def main() -> None:
    sets = {"paperless-ngx samples": sample_pages(), "generated pages": generated_pages()}
    print("| engine | page set | exact | mean ms/page |")
    print("|---|---|---|---|")
    notes = []
    for engine in barcodes.ENGINES:
        for name, pages in sets.items():
            ok, misses, ms = evaluate(engine, pages)
            print(f"| {engine} | {name} | {ok}/{len(pages)} | {ms:.0f} |")
            notes += [f"- {engine}, {m}" for m in misses]
    print("\nMisses:\n" + ("\n".join(notes) or "none"))


if __name__ == "__main__":
    main()
