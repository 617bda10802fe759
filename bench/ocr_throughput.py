"""sohoa vs OCRmyPDF and vs the floor (Tesseract alone) on the same generated batch, in one run.

    .venv/bin/python bench/ocr_throughput.py --pages 24

Generates a feeder batch (receipts with Code 128/QR, ID-card copies, Vietnamese prose pages; skews
cycling through 0..±10 degrees, noise, blur, JPEG), runs `sohoa ingest` and
`ocrmypdf -l vie --deskew --rotate-pages --jobs 2` on it, and reports pages per minute, median CER on
the prose pages (text extracted from each output PDF with pdftotext), pages that came out with no
text, the peak memory and CPU time of each tool's process tree (the floor's: its readings'), and for
sohoa the dossiers split right and the receipts whose code was read by barcode (the split falls
back on a receipt's text without it). Prints a Markdown table.

The floor is Tesseract alone doing only what sohoa cannot avoid: the same engine sohoa uses
(libtesseract, loaded once per process), two pages at a time with OMP_THREAD_LIMIT=1, on the batch's
pages already straightened and downscaled as sohoa reads them (SOHOA_OCR_MAX_DPI, 200 dpi), blank
pages skipped. Its time counts the readings only; the straightening is done before its clock starts.
`sohoa / floor` is what everything else costs (decoding, straightening, barcodes, blank detection,
hand-over, text layer, PDF/A, idle cores). `--no-ocrmypdf` leaves the peer out.

`--office K` adds K dossiers scanned as office sheets come (tests/synth.py office(): colour, tinted
paper, a red seal over a blue signature near the last lines, punch holes, the copier lid's shadow
along an edge, uneven light; each receipt followed by its blank back) and reports them apart: CER
on office vs clean prose pages, office blanks dropped, receipts matched and their fields:

    nice .venv/bin/python bench/ocr_throughput.py --pages 24 --office 2 --no-ocrmypdf

`--variant NAME:SOHOA_X=1,SOHOA_Y=2` adds a sohoa run with those settings to every round (same batch,
same alternation), to measure what one setting buys:

    .venv/bin/python bench/ocr_throughput.py --variant "ocr at 300 dpi:SOHOA_OCR_MAX_DPI=0"

`PYTHON=/path/to/python` in a variant runs that variant's sohoa on that interpreter (a virtual
environment's python, with sohoa installed in it): the same code on another interpreter build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procmon import Run, compiled, run  # noqa: E402

from ocr import deskew, tesseract, tesseract_api  # noqa: E402
from tests import synth  # noqa: E402

VENV = Path(sys.executable).parent


def norm(s: str) -> str:
    return " ".join(unicodedata.normalize("NFC", s).split())


def cer(truth: str, text: str) -> float:
    return Levenshtein.distance(norm(truth), norm(text)) / max(1, len(norm(truth)))


def pdf_page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-raw", "-f", str(page + 1), "-l", str(page + 1), str(pdf),
                           "-"], capture_output=True, text=True, check=True).stdout


def make_batch(pages: int, skews: tuple[float, ...], office: int = 0, seed: int = 5) -> synth.Batch:
    """`pages // 4` dossiers (receipt, ID card, two prose pages), then `office` office ones."""
    clean = max(1, pages // 4)
    return synth.make_batch(n_dossiers=clean + office, dpi=300, seed=seed, text_pages=2,
                            skews=skews, noise=5.0, blur=0.7, symbologies=("code128", "qr"),
                            office_dossiers=tuple(range(clean, clean + office)))


SKEWS = (0.0, 2.0, -3.0, 5.0, -5.0, 7.0, -8.0, 10.0, -10.0)  # the benchmark's, cycled


CACHE = Path(__file__).resolve().parent / "out" / "cache"  # bench/out is not in git


def mix_pdf(pages: int, seed: int = 5) -> Path:
    """The mix of `pages` pages drawn with `seed`, as a PDF kept in bench/out/cache: drawing takes
    a few seconds a page, and the benchmarks that only feed it to sohoa need its pages, not its
    ground truth. Keyed by the generator's source and the prose it draws, so a change to either
    draws it anew."""
    key = hashlib.sha256(Path(synth.__file__).read_bytes() + synth.PROSE.read_bytes()
                         + repr((pages, seed, SKEWS)).encode()).hexdigest()[:16]
    path = CACHE / f"mix-{pages}-{seed}-{key}.pdf"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        drawn = make_batch(pages, SKEWS, seed=seed).write_pdf(path.with_suffix(".part"))
        drawn.replace(path)  # whole or not at all: a run stopped while drawing leaves no cache
    return path


def long_pdf(pages: int, out: Path, distinct: int = 6) -> int:
    """The mix at least `pages` pages long, as a PDF: `distinct` parts of 24 pages (each with codes of its
    own) repeated in turn, so that a code seen again continues its dossier. Drawing every page
    anew would take a minute per part; the work per page is the same, and the parts are kept
    (mix_pdf). Returns its page count."""
    import contextlib

    import pikepdf

    count = -(-pages // 24)  # parts: at least `pages` pages
    made = [mix_pdf(24, seed=100 + k) for k in range(min(distinct, count))]
    with contextlib.ExitStack() as parts, pikepdf.new() as whole:
        for k in range(count):  # each part opened anew: its streams copied
            whole.pages.extend(parts.enter_context(pikepdf.open(made[k % len(made)])).pages)
        whole.save(out)
        return len(whole.pages)


RECEIPT_FIELDS = ("applicant_name", "address", "phone", "email", "procedure")


def bench_sohoa(pdf: Path, batch: synth.Batch, work: Path, env: dict[str, str] | None = None) -> dict:
    env = dict(env or {})
    python = env.pop("PYTHON", None)
    command = [python, "-c", "from api.launch import main; main()"] if python \
        else [str(VENV / "sohoa")]
    r = run([*command, "ingest", "--json", str(pdf)],
            env={**env, "SOHOA_DATA_DIR": str(work / "sohoa-data")})
    if r.returncode:
        raise SystemExit(f"sohoa failed: {r.stderr}")
    out = json.loads(r.stdout)["batches"][0]
    located: dict[int, tuple[Path, int]] = {}
    for d in out["dossiers"]:
        for k, p in enumerate(d["pages"]):
            located[p] = (work / "sohoa-data" / "objects" / d["pdf"], k)
    texts = {i: pdf_page_text(*located[i]) if i in located else "" for i in range(len(batch.pages))}
    stage_seconds: dict[str, float] = {}
    extra_readings = 0  # OCR readings past the first (upside down, second languages)
    barcodes: dict[int, set[str]] = {}  # page -> the values of the codes read on it
    for facts_file in (work / "sohoa-data" / "objects" / "batches").glob("*/pages/*.json"):
        facts = json.loads(facts_file.read_text())
        barcodes[facts["index"]] = {b["value"] for b in facts.get("barcodes", [])}
        for stage, sec in facts.get("seconds", {}).items():
            stage_seconds[stage] = stage_seconds.get(stage, 0.0) + sec
        extra_readings += max(0, len(facts.get("ocr", {}).get("readings", [])) - 1)
    truth_codes = [d.code for d in batch.dossiers]
    matched = sum(1 for d in out["dossiers"] if d["dossier_id"] in truth_codes
                  and d["pages"] == next(t.pages for t in batch.dossiers if t.code == d["dossier_id"]))
    found = {d["dossier_id"]: d for d in out["dossiers"]}
    dossiers = {}  # code -> (split right, receipt fields right)
    for t in batch.dossiers:
        got = found.get(t.code)
        fields = {k: v["value"] for k, v in got["fields"].items()} if got else {}
        dossiers[t.code] = (bool(got) and got["pages"] == t.pages,
                            sum(fields.get(k) == t.fields[k] for k in RECEIPT_FIELDS))
    # The split can take a code from a receipt's text when its barcode is not read: how many
    # receipts gave theirs by barcode.
    by_barcode = sum(d.code in barcodes.get(d.pages[0], set()) for d in batch.dossiers)
    return {"run": r, "texts": texts, "receipts_matched": f"{matched}/{len(truth_codes)}",
            "codes_by_barcode": f"{by_barcode}/{len(truth_codes)}",
            "stage_seconds": stage_seconds, "extra_readings": extra_readings,
            "dropped": {p["page"] for p in out["dropped_pages"]}, "dossiers": dossiers}


def bench_ocrmypdf(pdf: Path, batch: synth.Batch, work: Path) -> dict:
    out = work / "ocrmypdf.pdf"
    r = run([str(VENV / "ocrmypdf"), "-l", "vie", "--deskew", "--rotate-pages", "--jobs", "2",
             str(pdf), str(out)])
    if r.returncode:
        raise SystemExit(f"ocrmypdf failed: {r.stderr[-2000:]}")
    texts = {i: pdf_page_text(out, i) for i in range(len(batch.pages))}
    return {"run": r, "texts": texts, "receipts_matched": "n/a (no splitting)"}


_engine: tesseract_api.Engine | None = None


def _load_engine(languages: str) -> None:
    global _engine
    os.environ["OMP_THREAD_LIMIT"] = "1"
    _engine = tesseract_api.Engine(languages)


def _read(job: tuple[bytes, tuple[int, ...], int]) -> tuple[str, float]:
    """The page's text, and the CPU seconds its reading took."""
    assert _engine is not None
    pixels, shape, dpi = job
    cpu = time.process_time()
    raw, _ = _engine.read(pixels, shape, dpi, tesseract.VARIABLES, 300)
    _, lines = tesseract.group_lines((w.line, w.text, w.confidence, w.box) for w in raw)
    return "\n".join(lines), time.process_time() - cpu


def straightened(batch: synth.Batch, max_dpi: int) -> list[tuple[int, np.ndarray, int]]:
    """The pages the floor reads: (index, greyscale pixels, dpi), straightened and downscaled
    as sohoa reads them, blank pages left out (sohoa skips them too)."""
    jobs = []
    for i, (page, scan) in enumerate(batch.pages):
        if page.kind == "blank":
            continue
        img = synth.degrade(page, scan).convert("L")
        skew = deskew.detect(np.asarray(img), 300, 15)
        img, scale = tesseract.downscale(deskew.rotate(img, -skew.angle), 300, max_dpi)
        jobs.append((i, np.asarray(img), max_dpi if scale != 1 else 300))
    return jobs


def bench_floor(jobs: list[tuple[int, np.ndarray, int]], batch: synth.Batch,
                languages: str = "vie") -> dict:
    """Tesseract alone on `jobs`, two processes with the engine loaded before the clock starts."""
    context = multiprocessing.get_context("fork")
    with context.Pool(2, initializer=_load_engine, initargs=(languages,)) as pool:
        pages = [(pixels.tobytes(), pixels.shape, dpi) for _, pixels, dpi in jobs]
        pool.map(_read, pages[:1] * 2)  # both engines loaded and warm
        start = time.perf_counter()
        read = pool.map(_read, pages, chunksize=1)
        seconds = time.perf_counter() - start
    found = dict.fromkeys(range(len(batch.pages)), "")
    found.update({i: text for (i, _, _), (text, _) in zip(jobs, read, strict=True)})
    cpu = sum(cpu for _, cpu in read)
    return {"run": Run(seconds, 0.0, 0, "", "", cpu_seconds=cpu), "texts": found,
            "receipts_matched": "n/a (no barcodes)"}


def summarize(name: str, result: dict, batch: synth.Batch) -> dict:
    prose = [i for i, (p, _) in enumerate(batch.pages) if p.kind == "text"]
    rates = [cer(batch.pages[i][0].text, result["texts"][i]) for i in prose]
    empty = [i for i, t in result["texts"].items()
             if batch.pages[i][0].kind in ("text", "receipt") and len(norm(t)) < 20]
    r = result["run"]
    return {"tool": name, "pages": len(batch.pages), "seconds": round(r.seconds, 2),
            "cpu_seconds": round(r.cpu_seconds, 1),
            "pages_per_minute": round(len(batch.pages) / r.seconds * 60, 1),
            "median_cer": round(statistics.median(rates), 4), "max_cer": round(max(rates), 4),
            "pages_without_text": len(empty), "peak_rss_mb": round(r.peak_rss_mb),
            "empty_pages": [(i, batch.pages[i][0].kind, batch.pages[i][1].skew) for i in empty],
            "receipts_matched": result["receipts_matched"],
            "codes_by_barcode": result.get("codes_by_barcode", "n/a"),
            "extra_readings": result.get("extra_readings", "n/a"),
            "stage_seconds": result.get("stage_seconds", {}), **apart(result, batch)}


def apart(result: dict, batch: synth.Batch) -> dict:
    """Office pages and clean ones, each on their own: CER on prose pages, blank backs dropped,
    dossiers split right and receipt fields right (these two where the tool splits)."""
    out: dict[str, object] = {}
    for label, office in (("clean", False), ("office", True)):
        prose = [i for i, (p, _) in enumerate(batch.pages) if p.kind == "text" and p.office == office]
        rates = [cer(batch.pages[i][0].text, result["texts"][i]) for i in prose]
        out[f"{label}_cer"] = (f"{statistics.median(rates):.4f} / {max(rates):.4f} ({len(rates)})"
                               if rates else "-")
        blanks = [i for i, (p, _) in enumerate(batch.pages) if p.kind == "blank" and p.office == office]
        out[f"{label}_blanks_dropped"] = (f"{len(set(blanks) & result['dropped'])}/{len(blanks)}"
                                          if "dropped" in result and blanks else "n/a")
        codes = [d.code for d in batch.dossiers if batch.pages[d.pages[0]][0].office == office]
        if "dossiers" in result and codes:
            split = sum(result["dossiers"][c][0] for c in codes)
            fields = sum(result["dossiers"][c][1] for c in codes)
            out[f"{label}_receipts_matched"] = f"{split}/{len(codes)}"
            out[f"{label}_receipt_fields"] = f"{fields}/{len(codes) * len(RECEIPT_FIELDS)}"
        else:
            out[f"{label}_receipts_matched"] = out[f"{label}_receipt_fields"] = "n/a"
    return out


def median_run(runs: list[dict]) -> dict:
    """The runs' median time (of an even number of runs, the mean of the two middle ones: until
    2026-12-05 the upper of them was reported), with the other figures of the run at or just
    above it; 'seconds_all' lists every run's time."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    seconds = round(statistics.median(r["seconds"] for r in runs), 3)
    middle = ordered[len(ordered) // 2]
    return {**middle, "seconds": seconds,
            "pages_per_minute": round(middle["pages"] / seconds * 60, 1),
            "seconds_all": [r["seconds"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--skews", default="0,2,-3,5,-5,7,-8,10,-10",
                    help="skew angles (degrees) cycled over the pages")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each tool; the median counts")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE,...",
                    help="an extra sohoa run per round with these environment settings")
    ap.add_argument("--no-ocrmypdf", action="store_true", help="leave the peer out")
    ap.add_argument("--office", type=int, default=0, metavar="K",
                    help="add K dossiers of office scans, reported apart")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    skews = tuple(float(s) for s in args.skews.split(","))
    variants: dict[str, dict[str, str]] = {}
    for v in args.variant:
        name, _, assignments = v.partition(":")
        variants[f"sohoa, {name}"] = dict(a.split("=", 1) for a in assignments.split(",") if a)
    compiled(ROOT, *(env["PYTHONPATH"] for env in variants.values() if "PYTHONPATH" in env))
    batch = make_batch(args.pages, skews, args.office)
    with tempfile.TemporaryDirectory(prefix="sohoa-bench-") as tmp:
        work = Path(tmp)
        pdf = batch.write_pdf(work / "batch.pdf")
        jobs = straightened(batch, int(os.environ.get("SOHOA_OCR_MAX_DPI", "200")))
        runs: dict[str, list[dict]] = {"sohoa": [], "floor (Tesseract alone)": [],
                                       **({} if args.no_ocrmypdf else {"OCRmyPDF": []}),
                                       **{n: [] for n in variants}}
        for i in range(args.repeat):  # alternate, so that load on the machine hits all alike
            trial = work / f"run{i}"
            trial.mkdir()
            runs["sohoa"].append(summarize("sohoa", bench_sohoa(pdf, batch, trial), batch))
            runs["floor (Tesseract alone)"].append(
                summarize("floor (Tesseract alone)", bench_floor(jobs, batch), batch))
            if not args.no_ocrmypdf:
                runs["OCRmyPDF"].append(summarize("OCRmyPDF", bench_ocrmypdf(pdf, batch, trial),
                                                  batch))
            for k, (name, env) in enumerate(variants.items()):
                (trial / f"v{k}").mkdir()
                runs[name].append(summarize(name, bench_sohoa(pdf, batch, trial / f"v{k}", env),
                                            batch))
        rows = [median_run(r) for r in runs.values()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    cols = ["tool", "pages", "seconds", "seconds_all", "cpu_seconds", "pages_per_minute",
            "median_cer", "max_cer",
            "pages_without_text", "peak_rss_mb", "receipts_matched", "codes_by_barcode",
            "extra_readings"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    by_tool = {row["tool"]: row for row in rows}
    floor = by_tool["floor (Tesseract alone)"]
    print(f"\nsohoa time / floor time: {by_tool['sohoa']['seconds'] / floor['seconds']:.3f}"
          " (1.15 is the goal)")
    if "OCRmyPDF" in by_tool:
        peer = by_tool["OCRmyPDF"]["pages_per_minute"]
        print(f"sohoa / OCRmyPDF throughput: {by_tool['sohoa']['pages_per_minute'] / peer:.2f}x")
    for row in rows[3 if "OCRmyPDF" in by_tool else 2:]:
        print(f"{row['tool']} time / floor time: {row['seconds'] / floor['seconds']:.3f}")
    if args.office:
        cols = ["tool", "clean_cer", "office_cer", "clean_blanks_dropped", "office_blanks_dropped",
                "clean_receipts_matched", "office_receipts_matched", "clean_receipt_fields",
                "office_receipt_fields"]
        print("\nOffice pages apart (CER: median / worst (prose pages)):\n")
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    for row in rows:
        if row["empty_pages"]:
            print(f"\n{row['tool']} pages without text (index, kind, skew): {row['empty_pages']}")
    for row in rows:
        if stages := row["stage_seconds"]:
            print(f"\n{row['tool']} CPU seconds per stage, all pages: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
