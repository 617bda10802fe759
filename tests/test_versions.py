"""Dossier versions on their own (ingest/versions.py): idempotent claims, and one DossierChanged per
change that every listener hears of, without a listener able to undo what was stored."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from ingest import services
from ingest.settings import Settings
from ingest.stages import DossierWork
from ingest.versions import Announcer, DossierChanged, Dossiers, PageRef
from storage import layout
from storage.objects import LocalObjectStore

CODE = "000.00.04.H40-230414-0002"
AGENCY = "000.00.04.H40"
BATCH = "b0123456789abcdef01234567"


class JoinPages:
    """A dossier stage that stands in for fields and PDF/A: the dossier's PDF is its pages."""

    name = "join"

    def __call__(self, work: DossierWork) -> None:
        work.pdf = b"".join(work.page_pdfs)


class Recorder:
    def __init__(self) -> None:
        self.heard: list[DossierChanged] = []

    def __call__(self, event: DossierChanged) -> None:
        self.heard.append(event)


class Broken:
    def __init__(self, required: bool = False) -> None:
        self.required = required

    def __call__(self, event: DossierChanged) -> None:
        raise RuntimeError("listener down")


def with_batch(store: LocalObjectStore, pages: int = 2) -> None:
    """A finished batch as the pipeline leaves it: its record, and each page's facts and PDF."""
    store.put(layout.batch_record(BATCH), json.dumps({
        "batch_id": BATCH, "original": f"batches/{BATCH}/original.pdf", "sha256": "0" * 64,
        "size": 10, "file": "scan.pdf", "received_at": "2026-12-01T08:00:00+00:00",
        "status": "done"}).encode())
    for i in range(pages):
        store.put(layout.page_facts(BATCH, i), json.dumps({"index": i, "status": "ok"}).encode())
        store.put(layout.page_pdf(BATCH, i), f"%page {i}\n".encode())


@pytest.fixture
def dossiers(tmp_path: Path) -> Dossiers:
    store = LocalObjectStore(tmp_path / "objects")
    with_batch(store)
    return Dossiers(store, stages=[JoinPages()])


def store(d: Dossiers, claim: str, pages: tuple[int, ...] = (0, 1), **kw: Any) -> dict[str, Any]:
    return d.store_version(CODE, AGENCY, "barcode", [PageRef(BATCH, i) for i in pages], claim,
                           **kw)


def test_a_version_made_twice_with_the_same_claim_is_one_version(dossiers: Dossiers) -> None:
    """Given a version stored under a claim, when the same claim stores it again (a retried
    step), then there is still one version, numbered as before; another claim makes the next."""
    first = store(dossiers, "batch:1")
    again = store(dossiers, "batch:1")
    assert first.version == again.version == 1
    assert [m.version for m in dossiers.versions(CODE)] == [1]
    assert store(dossiers, "review:x", pages=(1,)).version == 2
    assert [m.version for m in dossiers.versions(CODE)] == [1, 2]
    assert dossiers.page_refs(dossiers.versions(CODE)[-1]) == [PageRef(BATCH, 1)]


def test_each_change_emits_exactly_one_dossier_changed_to_every_listener(
        dossiers: Dossiers) -> None:
    """Given two listeners, when a dossier is created, versioned, corrected and withdrawn, then
    each listener hears of each change once, in order, with its kind, version and anchor."""
    one, two = Recorder(), Recorder()
    dossiers.listeners = [one, two]
    store(dossiers, "c1")
    store(dossiers, "c2", pages=(0,), extra={"change": {"action": "drop"}})
    dossiers.correct(CODE, "applicant", "Nguyễn Văn An", "user:staff", "typo", "10.0.0.1")
    dossiers.withdraw(CODE, "000.00.04.H40-230414-0003", "w1", "user:staff")
    assert one.heard == two.heard
    assert [(e.kind, e.version) for e in one.heard] == [
        ("created", 1), ("new_version", 2), ("field_corrected", 2), ("withdrawn", 3)]
    for event in one.heard:
        if event.manifest is not None:  # the anchor is the stored manifest's checksum
            key = layout.version_prefix(CODE, event.version) + "manifest.json"
            assert event.anchor == hashlib.sha256(dossiers.store.get(key)).hexdigest()
    assert one.heard[2].correction is not None and one.heard[2].remote == "10.0.0.1"


def test_a_listener_that_raises_does_not_undo_the_stored_version_and_is_logged(
        dossiers: Dossiers, caplog: pytest.LogCaptureFixture) -> None:
    """Given a listener that fails, when a version is stored, then the version is there, the
    other listeners heard of it, and the failure is in the log. A required listener (catalog,
    audit) fails the step too, after every listener heard of the change."""
    after = Recorder()
    dossiers.listeners = [Broken(), after]
    with caplog.at_level(logging.ERROR, logger="ingest.versions"):
        manifest = store(dossiers, "c1")
    assert [m.version for m in dossiers.versions(CODE)] == [manifest.version] == [1]
    assert [e.kind for e in after.heard] == ["created"]
    assert any("Broken" in r.getMessage() and CODE in r.getMessage() for r in caplog.records)

    dossiers.listeners = [Broken(required=True), after]
    with pytest.raises(RuntimeError, match="listener down"):
        store(dossiers, "c2")
    assert [m.version for m in dossiers.versions(CODE)] == [1, 2]
    assert [e.kind for e in after.heard] == ["created", "new_version"]


def test_the_listeners_built_from_settings_index_audit_and_announce_as_before(
        tmp_path: Path) -> None:
    """Given the services built from settings, plus an announcer, when a dossier changes, then
    the audit log has the same actions and detail keys as ever (a version's manifest checksum
    among them), webhooks get the feed's shape, and the feed lists every change."""
    built = services.build(Settings(data_dir=tmp_path / "data"))
    dossiers = built.dossiers
    with_batch(dossiers.store)
    dossiers.stages = [JoinPages()]
    sent: list[dict[str, Any]] = []
    dossiers.listeners.append(Announcer(sent.append))
    first = store(dossiers, "c1")
    store(dossiers, "c2", pages=(1,), actor="user:staff", extra={"change": {"action": "drop"}})
    dossiers.correct(CODE, "applicant", "Nguyễn Văn An", "user:staff", "typo", "10.0.0.1")
    dossiers.withdraw(CODE, "000.00.04.H40-230414-0003", "w1", "user:staff",
                      extra={"change": {"action": "recode"}})

    assert built.audit is not None and built.catalog is not None
    entries = sorted(built.audit.stored_entries().values(), key=lambda e: e["seq"])
    assert [(e["action"], e["actor"], sorted(e["detail"])) for e in entries] == [
        ("dossier.version.create", "pipeline",
         ["batch_id", "manifest_sha256", "pdf_sha256", "version"]),
        ("dossier.version.create", "user:staff",
         ["batch_id", "change", "manifest_sha256", "pdf_sha256", "version"]),
        ("dossier.field.correct", "user:staff",
         ["correction", "field", "previous", "reason", "value", "version"]),
        ("dossier.withdraw", "user:staff", ["change", "manifest_sha256", "to", "version"]),
    ]
    assert entries[2]["remote"] == "10.0.0.1"
    manifest_key = layout.version_prefix(CODE, 1) + "manifest.json"
    assert entries[0]["detail"]["manifest_sha256"] == hashlib.sha256(
        dossiers.store.get(manifest_key)).hexdigest()

    assert sent[0] == {"kind": "created", "dossier_id": CODE, "agency": AGENCY, "version": 1,
                       "batch_id": BATCH, "pdf": first.objects["dossier.pdf"].key,
                       "at": first.created_at}
    assert [e["kind"] for e in sent] == ["created", "new_version", "field_corrected", "withdrawn"]
    assert sent[2] == {"kind": "field_corrected", "dossier_id": CODE, "agency": AGENCY,
                       "version": 2, "field": "applicant", "value": "Nguyễn Văn An",
                       "previous": None, "at": sent[2]["at"]}
    assert sent[3]["pdf"] is None and sent[3]["to"] == "000.00.04.H40-230414-0003"
    feed = built.catalog.events(None)
    assert sorted(e["kind"] for e in feed) == sorted(e["kind"] for e in sent)


def test_a_version_whose_audit_entry_was_lost_is_anchored_by_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the audit log failing while a batch's versions are stored (the run fails after the
    versions are in storage), when the batch is finished again, then each version gets its audit
    entry with its manifest's checksum, and verify finds the archive whole."""
    from ingest.page_stages import DetectBlank, ReadBarcodes
    from ingest.pipeline import Pipeline
    from storage.audit import AuditLog
    from storage.integrity import problems, verify

    sample = Path(__file__).resolve().parents[1] / "examples" / "sample-batch.pdf"
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    batch_id = pipeline.receive(sample, scope=["*"])
    for i in range(pipeline.inspect(batch_id).pages):
        pipeline.process_page(batch_id, i)
    real = AuditLog.append_many

    def down(self: AuditLog, events: list[Any]) -> Any:
        if any(e.action == "dossier.version.create" for e in events):
            raise OSError("audit database unreachable")
        return real(self, events)

    monkeypatch.setattr(AuditLog, "append_many", down)
    with pytest.raises(OSError):
        pipeline.finalize(batch_id)
    monkeypatch.setattr(AuditLog, "append_many", real)
    record = pipeline.finalize(batch_id)
    codes = [d.dossier_id for d in record.dossiers]
    assert len(codes) == 2 and all(len(pipeline.dossiers.versions(c)) == 1 for c in codes)
    assert pipeline.audit is not None and pipeline.catalog is not None
    for code in codes:
        (entry,) = pipeline.audit.for_target(code, ("dossier.version.create",))
        stored = pipeline.store.get(layout.version_prefix(code, 1) + "manifest.json")
        assert entry["detail"]["manifest_sha256"] == hashlib.sha256(stored).hexdigest()
    findings = verify(pipeline.store, None, pipeline.catalog, pipeline.audit)
    # + original, manifest
    expected = sum(len(pipeline.dossiers.versions(c)[-1].objects) + 2 for c in codes)
    assert problems(findings) == [] and len(findings) == expected


def test_the_stages_built_from_settings_take_their_sections(tmp_path: Path) -> None:
    """Given settings with their own barcodes, OCR, grammar, components, storage and signing,
    when the services are built, then each page stage holds its section (or its value of it),
    each dossier and result stage and the dossier versions theirs, and the signing service the
    signing section and the agencies' time."""
    from ingest.dossier_stages import CheckAddresses, ExtractFields, SplitComponents
    from ingest.page_stages import (
        DetectBlank,
        HideCodes,
        ReadBarcodes,
        Recognize,
        Straighten,
        page_stages,
    )
    from ingest.results import SignResult
    from ingest.signing import Sign

    settings = Settings(data_dir=tmp_path / "data", barcode_formats=["qrcode"],
                        blank_ink_threshold=0.01, max_skew_degrees=5, ocr_languages="eng",
                        dossier_code_grammar="strict", components_enabled=False,
                        retention_days=30, tsa_url="http://tsa.example",
                        timezone_offset="+08:00")
    built = services.build(settings)
    pages = page_stages(settings)
    assert [type(s) for s in pages] == [ReadBarcodes, DetectBlank, Straighten, ReadBarcodes,
                                        HideCodes, Recognize]
    assert pages[0].config is settings.barcodes and pages[3].config is settings.barcodes
    assert (pages[1].ink_threshold, pages[2].max_skew_degrees) == (0.01, 5)
    assert pages[5].config.languages == "eng"
    fields, addresses, _, components, sign = built.dossiers.stages
    assert isinstance(addresses, CheckAddresses)
    assert isinstance(fields, ExtractFields) and fields.timezone_offset == "+08:00"
    assert fields.grammar._regex.pattern == settings.barcodes.dossier_code_pattern
    assert isinstance(components, SplitComponents) and components.enabled is False
    assert isinstance(sign, Sign) and sign.signing.config is settings.signing
    assert sign.signing.timezone_offset == "+08:00"
    assert isinstance(built.dossiers.result_stages[-1], SignResult)
    assert built.dossiers.storage.retention_for(None) == 30


class FailsOnce(LocalObjectStore):
    """A store that goes down for one write of a version's objects (its text), then comes back."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.down = True

    def put(self, key: str, data: bytes, overwrite: bool = False,
            retention_days: int | None = None):  # type: ignore[no-untyped-def]
        if self.down and key.endswith("/text.json"):
            self.down = False
            raise ConnectionError("object storage down")
        return super().put(key, data, overwrite, retention_days)


def test_a_version_whose_object_could_not_be_written_has_no_manifest_until_retried(
        tmp_path: Path) -> None:
    # Given a store that fails one of a version's objects, written side by side with the others
    store_ = FailsOnce(tmp_path / "objects")
    with_batch(store_)
    heard = Recorder()
    d = Dossiers(store_, stages=[JoinPages()], listeners=[heard])
    # When the version is stored, the failure reaches the caller: no manifest, nobody told
    with pytest.raises(ConnectionError):
        store(d, "batch:1")
    assert not store_.exists(layout.version_prefix(CODE, 1) + "manifest.json")
    assert d.versions(CODE) == [] and heard.heard == []
    # Then the same step run again makes the whole version, under the same number
    manifest = store(d, "batch:1")
    assert manifest.version == 1 and set(manifest.objects) == {"dossier.pdf", "text.json",
                                                               "fields.json"}
    assert [e.version for e in heard.heard] == [1]


class SlowBesideAFailure(LocalObjectStore):
    """A store on which a version's text fails at once while its fields (written after it)
    take a while."""

    def put(self, key: str, data: bytes, overwrite: bool = False,
            retention_days: int | None = None):  # type: ignore[no-untyped-def]
        if key.endswith("/text.json"):
            raise ConnectionError("object storage down")
        if key.endswith("/fields.json"):
            time.sleep(0.5)
        return super().put(key, data, overwrite, retention_days)


def test_a_failed_write_is_raised_only_once_the_writes_beside_it_have_ended(
        tmp_path: Path) -> None:
    # Given a store that fails a version's text while its fields are still being written
    store_ = SlowBesideAFailure(tmp_path / "objects")
    with_batch(store_)
    d = Dossiers(store_, stages=[JoinPages()])
    # When the version is stored, the failure reaches the caller
    with pytest.raises(ConnectionError):
        store(d, "batch:1")
    # Then nothing of it is still being written: the fields beside the failure are there
    # already (a retry does not race a write left running), and no manifest names them
    prefix = layout.version_prefix(CODE, 1)
    assert store_.exists(prefix + "fields.json")
    assert not store_.exists(prefix + "manifest.json")
