"""Proof that the archive is unchanged and complete: one verification, used by `sohoa verify`,
`GET /api/v1/dossiers/{code}/verify` and the web's "verify now".

Three checks, each from a source the others cannot rewrite:
- content: every object a version's manifest lists is re-hashed against the manifest;
- the manifest itself: its own SHA-256 was written, when the version was made, into the
  hash-chained audit log (which is anchored in object storage, storage/audit.py), so a manifest
  rewritten with fresh hashes to match a changed object is CHANGED;
- completeness: every version that the catalog or the audit log knows must still have its
  manifest in object storage, so a dossier deleted from storage is MISSING.
Versions made before manifests were anchored are checked against the PDF checksum their audit
entry recorded.
A fourth check for versions the agency signed (manifest `signature.status` = signed): each signed
PDF's signatures are validated (storage/signatures.py: integrity, chain to the trust roots,
validity at signing time), one finding per PDF keyed `<object key>#signature`.
A dossier's results (results/{code}/r{n}/) are checked the same way: their
objects and original against their manifest, the manifest against its `dossier.result.create`
entry, and every result the catalog or audit log knows must be stored (findings on keys under
results/).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage import layout
from storage.objects import ObjectMissing, ObjectStore
from storage.records import Manifest, ResultManifest

if TYPE_CHECKING:
    from storage.audit import AuditLog
    from storage.catalog import Catalog

# Audit actions that make a version (their detail names it: version, manifest_sha256, pdf_sha256).
VERSION_ACTIONS = ("dossier.version.create", "dossier.withdraw")
RESULT_ACTIONS = ("dossier.result.create",)  # ingest/versions.py RESULT_ACTION


@dataclass(frozen=True)
class Finding:
    dossier_id: str
    version: int
    key: str
    # ok | changed | missing | signature_broken | signature_untrusted | unsigned
    problem: str
    expected: str
    actual: str | None

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def manifests(store: ObjectStore, code: str | None = None) -> Iterator[Manifest]:
    """The stored manifests of a dossier's versions (or of every dossier's)."""
    for _, manifest in _stored(store, code):
        assert isinstance(manifest, Manifest)
        yield manifest


def _stored(store: ObjectStore, code: str | None,
            results: bool = False) -> Iterator[tuple[bytes, Manifest | ResultManifest]]:
    """Each stored manifest as stored and as read: the versions', or the results'."""
    dossiers = layout.dossier_prefix(code) if code else "dossiers/"
    prefix = layout.results_prefix(code) if results else dossiers
    record = ResultManifest if results else Manifest
    for key in store.list(prefix):
        if key.endswith("/manifest.json"):
            data = store.get(key)
            yield data, record.load(data)


def verify(store: ObjectStore, code: str | None = None, catalog: Catalog | None = None,
           audit: AuditLog | None = None, trust_roots: list[Path] | None = None
           ) -> list[Finding]:
    """One finding per stored object and per manifest of every version (of one dossier, or of
    all), plus one MISSING finding per version the catalog or the audit log knows that storage
    lacks. Without a catalog and an audit log, only the content check can be made. Then the
    same of every stored result."""
    roots = trust_roots or []
    return (_verify(store, code, catalog, audit, roots, False)
            + _verify(store, code, catalog, audit, roots, True))


def _verify(store: ObjectStore, code: str | None, catalog: Catalog | None,
            audit: AuditLog | None, trust_roots: list[Path], results: bool) -> list[Finding]:
    anchors = _anchors(audit, code, RESULT_ACTIONS if results else VERSION_ACTIONS)
    prefix = layout.result_prefix if results else layout.version_prefix
    findings: list[Finding] = []
    stored: set[tuple[str, int]] = set()
    for data, m in _stored(store, code, results):
        dossier, version = m.dossier_id, m.version
        stored.add((dossier, version))
        expected = [(o.key, o.sha256) for o in m.objects.values()]
        expected.append((m.original.key, m.original.sha256))
        for key, sha in expected:
            try:
                actual: str | None = store.sha256(key)
            except ObjectMissing:
                actual = None
            problem = "missing" if actual is None else ("ok" if actual == sha else "changed")
            findings.append(Finding(dossier, version, key, problem, sha, actual))
        findings += _signature_findings(store, m, trust_roots)
        if (anchor := anchors.get((dossier, version))) is not None:
            findings.append(_manifest_finding(data, m, anchor, prefix))
    for dossier, version in sorted(_known(catalog, code, results) | set(anchors)):
        if (dossier, version) not in stored:
            key = prefix(dossier, version) + "manifest.json"
            findings.append(Finding(dossier, version, key, "missing",
                                    anchors.get((dossier, version), {}).get("manifest_sha256")
                                    or "manifest.json", None))
    return findings


def _signature_findings(store: ObjectStore, manifest: Manifest | ResultManifest,
                        trust_roots: list[Path]) -> list[Finding]:
    """For a signed version: each of its signed PDFs must hold an intact signature of the
    registered certificate, trusted when trust roots are configured."""
    signature = manifest.signature or {}
    if signature.get("status") != "signed":
        return []
    from storage.signatures import check_pdf, load_trust_roots

    roots = load_trust_roots(trust_roots)
    dossier, version = manifest.dossier_id, manifest.version
    names = signature.get("documents") or [n for n in manifest.objects if n.endswith(".pdf")]
    expected = f"signed by {signature.get('signer', '')}"
    found = []
    for name in names:
        obj = manifest.objects.get(name)
        if obj is None:
            continue
        key = obj.key + "#signature"
        try:
            checks = check_pdf(store.get(obj.key), roots)
        except ObjectMissing:
            continue  # the content check already reports it missing
        except ValueError as e:
            found.append(Finding(dossier, version, key, "signature_broken", expected, str(e)))
            continue
        ours = [c for c in checks if c.signer == signature.get("signer")]
        if not ours:
            found.append(Finding(dossier, version, key, "unsigned", expected,
                                 "no signature of the registered certificate"))
            continue
        worst = next((c for c in ours if c.problem != "ok"), ours[-1])
        found.append(Finding(dossier, version, key, worst.problem, expected,
                             f"{worst.detail}; signed at {worst.signed_at}"))
    return found


def _manifest_finding(data: bytes, manifest: Manifest | ResultManifest, anchor: dict[str, Any],
                      prefix: Callable[[str, int], str] = layout.version_prefix) -> Finding:
    """The manifest against what the audit log recorded when its version was made."""
    dossier, version = manifest.dossier_id, manifest.version
    key = prefix(dossier, version) + "manifest.json"
    if recorded := anchor.get("manifest_sha256"):
        actual = hashlib.sha256(data).hexdigest()
        return Finding(dossier, version, key, "ok" if actual == recorded else "changed",
                       recorded, actual)
    pdf = manifest.objects["dossier.pdf"].sha256 if "dossier.pdf" in manifest.objects else None
    recorded = anchor.get("pdf_sha256")
    if not recorded or pdf is None:  # a withdrawal made before anchoring: nothing recorded
        return Finding(dossier, version, key, "ok", recorded or "", pdf)
    return Finding(dossier, version, key, "ok" if pdf == recorded else "changed", recorded, pdf)


def _anchors(audit: AuditLog | None, code: str | None,
             actions: tuple[str, ...] = VERSION_ACTIONS) -> dict[tuple[str, int], dict[str, Any]]:
    """(code, version) -> what the audit log recorded when that version was made (the last
    entry wins: a version made again after a crash records the manifest as it stands)."""
    if audit is None:
        return {}
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in audit.for_target(code, actions):
        version = entry["detail"].get("version")
        if isinstance(version, int):
            found[(entry["target"], version)] = entry["detail"]
    return found


def _known(catalog: Catalog | None, code: str | None,
           results: bool = False) -> set[tuple[str, int]]:
    if catalog is None:
        return set()
    return set(catalog.known_results(code) if results else catalog.known_versions(code))


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.problem != "ok"]
