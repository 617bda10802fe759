"""Proof that stored dossiers are unchanged: every object is re-hashed against its manifest.

Works from object storage alone (the catalog is not trusted for this): each version's manifest
lists the SHA-256 of the dossier PDF, text and fields and of the original scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from storage import layout
from storage.objects import ObjectMissing, ObjectStore


@dataclass(frozen=True)
class Finding:
    dossier_id: str
    version: int
    key: str
    problem: str  # ok | changed | missing
    expected: str
    actual: str | None

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def manifests(store: ObjectStore, code: str | None = None) -> Iterator[dict]:
    prefix = layout.dossier_prefix(code) if code else "dossiers/"
    for key in store.list(prefix):
        if key.endswith("/manifest.json"):
            yield json.loads(store.get(key))


def verify(store: ObjectStore, code: str | None = None) -> list[Finding]:
    """One finding per stored object of every version (of one dossier, or of all)."""
    findings = []
    for m in manifests(store, code):
        expected = [(o["key"], o["sha256"]) for o in m["objects"].values()]
        expected.append((m["original"]["key"], m["original"]["sha256"]))
        for key, sha in expected:
            try:
                actual: str | None = store.sha256(key)
            except ObjectMissing:
                actual = None
            problem = "missing" if actual is None else ("ok" if actual == sha else "changed")
            findings.append(Finding(m["dossier_id"], m["version"], key, problem, sha, actual))
    return findings
