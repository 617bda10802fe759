"""Where each object lives. The original, each dossier version and its manifest are separate objects:

    batches/{batch_id}/original{.ext}     the scan exactly as received (stored before anything else)
    batches/{batch_id}/batch.json         the batch record: file, sha256, status, error, split result
    batches/{batch_id}/pages/{n}.json     what page n yielded (barcodes, skew, OCR words, ...)
    batches/{batch_id}/pages/{n}.pdf      page n as a searchable PDF page
    dossiers/{code}/v{n}/dossier.pdf      the dossier as PDF/A-2b
    dossiers/{code}/v{n}/text.json        its per-page text
    dossiers/{code}/v{n}/fields.json      its fields
    dossiers/{code}/v{n}/manifest.json    SHA-256 of each object above and of the original scan
    dossiers/{code}/corrections/{n}.json  a field corrected by a person (who, when, why, old, new)
    results/{code}/r{n}/result.pdf        result n of the dossier (the decision, certificate or
    results/{code}/r{n}/text.json         licence issued) as PDF/A-2b, its text, and its manifest;
    results/{code}/r{n}/manifest.json     outside dossiers/ so a version's readers never see them
"""

from __future__ import annotations


def batch_prefix(batch_id: str) -> str:
    return f"batches/{batch_id}/"


def original(batch_id: str, suffix: str) -> str:
    return f"batches/{batch_id}/original{suffix}"


def batch_record(batch_id: str) -> str:
    return f"batches/{batch_id}/batch.json"


def page_facts(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/pages/{index:05d}.json"


def pages_prefix(batch_id: str) -> str:
    return f"batches/{batch_id}/pages/"


def page_of_facts(key: str) -> int | None:
    """The page index of a page_facts key; None for any other key."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "json" and stem.isdigit() else None


def page_pdf(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/pages/{index:05d}.pdf"


def dossier_prefix(code: str) -> str:
    return f"dossiers/{code}/"


def version_prefix(code: str, version: int) -> str:
    return f"dossiers/{code}/v{version:04d}/"


def version_of(key: str) -> int | None:
    """The version number in a dossier key, e.g. dossiers/X/v0002/manifest.json -> 2."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "dossiers" and parts[2].startswith("v"):
        try:
            return int(parts[2][1:])
        except ValueError:
            return None
    return None


def correction(code: str, seq: int) -> str:
    return f"dossiers/{code}/corrections/{seq:06d}.json"


def is_correction(key: str) -> bool:
    parts = key.split("/")
    return len(parts) == 4 and parts[0] == "dossiers" and parts[2] == "corrections" \
        and parts[3].endswith(".json")


def result_prefix(code: str, version: int) -> str:
    """Where result `version` of dossier `code` lives (results/{code}/r{n}/)."""
    return f"results/{code}/r{version:04d}/"


def results_prefix(code: str | None = None) -> str:
    return f"results/{code}/" if code else "results/"
