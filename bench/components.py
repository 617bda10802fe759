"""How well dossiers are split into their components, on generated dossiers with known ones.

    .venv/bin/python bench/components.py --dossiers 40 --batches 4

Generates `--dossiers` dossiers (tests/synth.py make_component_batch: a receipt listing 4-8
documents as numbered lines or a table, then ID-card copies with the citizen QR, forms with the
motto block and all-caps titles, certificates, decisions, plans, contracts; some of several pages,
some on A5 or A3 landscape paper, blank backs, now and then a listed document left out), 200 dpi,
light skew, noise and blur. Runs them through the real pipeline (`run_file`: page stages with
Tesseract, split, dossier stages) and compares each stored manifest with the truth:

- boundaries: a component start predicted at the right page (precision, recall; the receipt's
  start, always page 1, is left out), and the share of components whose page range is exact;
- types: a component with the exact range and the right type (precision, recall);
- the receipt's list: documents read with the right count, and `complete_by_components` /
  `missing_components` against what was left out.

`--from-data DIR` evaluates again the data of an earlier run (`--keep DIR`) with the current code
of ocr/components.py, without OCR. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.dossier_stages import page_input  # noqa: E402
from ingest.pipeline import Pipeline  # noqa: E402
from ingest.runner import run_file  # noqa: E402
from ingest.settings import Settings  # noqa: E402
from ocr import components as compmod  # noqa: E402
from ocr.fields import listed_components  # noqa: E402
from storage.records import Manifest, OcrFact, PageFacts  # noqa: E402
from tests import synth  # noqa: E402


def ratio(a: int, b: int) -> str:
    return f"{a / b:.1%} ({a}/{b})" if b else "n/a"


def recomputed(pipeline: Pipeline, manifest: Manifest) -> dict[str, Any]:
    """The components the current code finds on a stored version's page facts."""
    facts = [PageFacts.load(pipeline.store.get(f"batches/{manifest.batch_id}/pages/{i:05d}.json"))
             for i in manifest.pages]
    listed: list[compmod.Listed] = []
    for f in facts:
        o = f.ocr or OcrFact()
        found = listed_components(o.lines, o.line_confidence, 0, o.words)
        if found is not None:
            listed = [compmod.Listed(i["name"], i["form"], i["count"]) for i in found.items or ()]
            break
    result = compmod.split([page_input(f) for f in facts], listed)
    return {"components": [{"type": c.type, "pages": [p + 1 for p in c.pages],
                            "listed_as": c.listed_as} for c in result.components],
            "complete_by_components": result.complete,
            "missing_components": [{"name": m.name} for m in result.missing],
            "components_listed": [{"name": m.name, "count": m.count} for m in listed]}


def evaluate(truths: list[synth.ComponentDossier], found: dict[str, dict[str, Any]]) -> dict:
    c: dict[str, int] = dict.fromkeys(
        ("true_starts", "found_starts", "right_starts", "true_components", "found_components",
         "exact_ranges", "right_types", "listed_true", "listed_read", "complete_right",
         "missing_right", "dossiers", "dossiers_exact"), 0)
    wrong: list[str] = []
    for d in truths:
        m = found.get(d.code)
        c["dossiers"] += 1
        position = {page: n + 1 for n, page in enumerate(d.pages)}
        truth = [([position[p] for p in t.pages], t.type) for t in d.components]
        got = [(g["pages"], g["type"]) for g in (m or {}).get("components", [])]
        t_starts = {pages[0] for pages, _ in truth} - {1}
        g_starts = {pages[0] for pages, _ in got} - {1}
        c["true_starts"] += len(t_starts)
        c["found_starts"] += len(g_starts)
        c["right_starts"] += len(t_starts & g_starts)
        c["true_components"] += len(truth)
        c["found_components"] += len(got)
        ranges = {tuple(p): k for p, k in got}
        exact = [(p, k) for p, k in truth if tuple(p) in ranges]
        c["exact_ranges"] += len(exact)
        c["right_types"] += sum(1 for p, k in exact if ranges[tuple(p)] == k)
        c["dossiers_exact"] += truth == got
        if truth != got:
            wrong.append(f"{d.code}: truth {truth} found {got}")
        listed = (m or {}).get("components_listed", [])
        c["listed_true"] += len(d.listed)
        c["listed_read"] += sum(1 for (name, _, count), r in zip(d.listed, listed, strict=False)
                                if compmod.fold(name) == compmod.fold(r["name"])
                                and count == r["count"])
        c["complete_right"] += bool((m or {}).get("complete_by_components")) == (not d.missing)
        c["missing_right"] += [compmod.fold(x["name"]) for x in
                               (m or {}).get("missing_components", [])] == \
            [compmod.fold(x) for x in d.missing]
    return {"counts": c, "wrong": wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dossiers", type=int, default=40)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="keep the data directory here")
    ap.add_argument("--from-data", type=Path, help="evaluate a kept run again, without OCR")
    args = ap.parse_args()
    per = -(-args.dossiers // args.batches)
    batches = [synth.make_component_batch(min(per, args.dossiers - k * per), seed=args.seed + k)
               for k in range(args.batches) if args.dossiers - k * per > 0]
    truths = [d for b in batches for d in b.dossiers]
    pages = sum(len(b.pages) for b in batches)
    root = args.from_data or args.keep or Path(tempfile.mkdtemp(prefix="sohoa-components-"))
    pipeline = Pipeline.from_settings(Settings(data_dir=root / "data", workers=args.workers))
    seconds = 0.0
    if args.from_data is None:
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        for k, b in enumerate(batches):
            run_file(pipeline, b.write_pdf(root / f"batch-{k}.pdf"))
        seconds = time.perf_counter() - start
    found = {}
    for d in truths:
        versions = pipeline.dossiers.versions(d.code)
        if versions:
            found[d.code] = recomputed(pipeline, versions[-1]) if args.from_data \
                else versions[-1].as_dict()
    result = evaluate(truths, found)
    c = result["counts"]
    print(f"{len(truths)} dossiers, {c['true_components']} components, {pages} pages "
          f"(blank backs included), {args.batches} batches"
          + (f", {seconds:.0f} s with {args.workers} workers" if seconds else ""))
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| boundaries: precision | {ratio(c['right_starts'], c['found_starts'])} |")
    print(f"| boundaries: recall | {ratio(c['right_starts'], c['true_starts'])} |")
    print(f"| components with the exact page range | "
          f"{ratio(c['exact_ranges'], c['true_components'])} |")
    print(f"| types: precision | {ratio(c['right_types'], c['found_components'])} |")
    print(f"| types: recall | {ratio(c['right_types'], c['true_components'])} |")
    print(f"| dossiers split exactly | {ratio(c['dossiers_exact'], c['dossiers'])} |")
    print(f"| receipt list: documents read (name and count) | "
          f"{ratio(c['listed_read'], c['listed_true'])} |")
    print(f"| complete_by_components right | {ratio(c['complete_right'], c['dossiers'])} |")
    print(f"| missing_components exactly right | {ratio(c['missing_right'], c['dossiers'])} |")
    for line in result["wrong"]:
        print("wrong:", line, file=sys.stderr)


if __name__ == "__main__":
    main()
