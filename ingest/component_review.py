"""A person's correction of a dossier's components: a boundary moved, a component renamed or
retyped. The result is a new version of the dossier (same pages, its components as the person
set them, each component copy made again), audited like every version with the change.

Positions are 1-based pages of the dossier as people see them (the dossier PDF's pages).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ingest.dossier_stages import SplitComponents
from ingest.pipeline import Pipeline
from ocr.components import TYPES
from storage.records import Manifest

MAX_TITLE = 200


class ComponentsError(ValueError):
    """The components asked for cannot be made; `loc` says which entry, `field` which of its
    keys (the API answers 422 with both)."""

    def __init__(self, message: str, index: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.index, self.field = index, field


def check(components: list[dict[str, Any]], page_count: int) -> list[tuple[int, str, str]]:
    """(0-based start, type, title) of each component; the first must start at page 1, the
    starts increase, each is a page of the dossier, the type is known, the title is not empty."""
    if not components:
        raise ComponentsError("at least one component is needed")
    starts: list[tuple[int, str, str]] = []
    for k, c in enumerate(components):
        start, kind, title = c.get("start_page"), c.get("type"), str(c.get("title", "")).strip()
        if not isinstance(start, int) or isinstance(start, bool) or not 1 <= start <= page_count:
            raise ComponentsError(f"start_page must be a page of the dossier, 1 to {page_count}",
                                  k, "start_page")
        if k == 0 and start != 1:
            raise ComponentsError("the first component starts at page 1", k, "start_page")
        if starts and start - 1 <= starts[-1][0]:
            raise ComponentsError("start pages must increase", k, "start_page")
        if kind not in TYPES:
            raise ComponentsError(f"type must be one of {', '.join(TYPES)}", k, "type")
        if not title or len(title) > MAX_TITLE or not title.isprintable():
            raise ComponentsError(f"title must be 1 to {MAX_TITLE} printable characters", k,
                                  "title")
        starts.append((start - 1, str(kind), title))
    return starts


def correct_components(pipeline: Pipeline, code: str, components: list[dict[str, Any]],
                       actor: str, reason: str = "") -> Manifest:
    """A new version of dossier `code` with these components; the same correction sent again
    (a form posted twice) returns the version it made instead of making another."""
    versions = pipeline.dossiers.versions(code)
    if not versions or versions[-1].withdrawn:
        raise ComponentsError("the dossier has no pages")
    latest = versions[-1]
    refs = latest.refs()
    starts = check(components, len(refs))
    asked = [{"start_page": s + 1, "type": k, "title": t} for s, k, t in starts]
    change = latest.change or {}
    if change.get("action") == "components" and change.get("components") == asked:
        return latest
    stages = [SplitComponents(starts) if isinstance(s, SplitComponents) else s
              for s in pipeline.dossiers.stages]
    if not any(isinstance(s, SplitComponents) for s in stages):  # before the signer, if any
        at = next((i for i, s in enumerate(stages) if s.name == "sign"), len(stages))
        stages.insert(at, SplitComponents(starts))
    dossiers = dataclasses.replace(pipeline.dossiers, stages=stages)
    digest = hashlib.sha256(json.dumps([latest.version, asked], ensure_ascii=False)
                            .encode()).hexdigest()[:24]
    return dossiers.store_version(
        code, latest.agency, latest.code_source, refs, f"components:{digest}:{code}",
        registry=latest.registry, actor=actor,
        extra={"change": {"action": "components", "components": asked, "reason": reason,
                          "from_version": latest.version}})
