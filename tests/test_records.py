"""The stored records, typed (storage/records.py; issue 12, point 2): every record the current code
writes loads and dumps back byte for byte; a record of an earlier writer loads with defaults; a
malformed one says what is wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pikepdf
import pytest

from ingest.dossier_stages import BuildPdfA, ExtractFields
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.review import Review
from ingest.runner import run_file
from ingest.settings import Settings
from storage.records import (
    BatchRecord,
    Correction,
    Manifest,
    PageFacts,
    PageRef,
    RecordError,
    ResultManifest,
    ReviewEntry,
)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-batch.pdf"
# Records as the code before the typed records wrote them (the scenario of `written`, below):
# whatever writes them now, these stay readable and dump back as they are.
EARLIER = Path(__file__).resolve().parent / "data" / "records"


def kind_of(key: str) -> type | None:
    if key.endswith("/batch.json"):
        return BatchRecord
    if "/pages/" in key and key.endswith(".json"):
        return PageFacts
    if key.startswith("results/") and key.endswith("/manifest.json"):
        return ResultManifest
    if key.endswith("/manifest.json"):
        return Manifest
    if "/corrections/" in key:
        return Correction
    return None


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Pipeline, dict[str, bytes]]:
    """The sample batch run, a shorter rescan of its first dossier held then put in place of it,
    its second dossier recoded (a withdrawal), a field corrected and two results of the first
    dossier stored: every record kind stored."""
    folder = tmp_path_factory.mktemp("records")
    pipeline = Pipeline.from_settings(Settings(data_dir=folder / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    # the dossier stages of the code that wrote tests/data/records (no components, no signer:
    # their keys are new in manifests, checked by their own tests)
    pipeline.dossiers.stages = [ExtractFields(), BuildPdfA()]
    record = run_file(pipeline, SAMPLE)
    assert record.status == "done" and len(record.dossiers) == 2
    first, second = (d.dossier_id for d in record.dossiers)
    rescan = folder / "rescan.pdf"
    with pikepdf.open(SAMPLE) as pdf, pikepdf.new() as out:
        out.pages.extend(pdf.pages[:2])
        out.save(rescan, deterministic_id=True)  # the same batch on every run
    held = run_file(pipeline, rescan)
    assert held.status == "needs_review" and held.review[0].reason == "incomplete_rescan"
    Review(pipeline).replace(held.batch_id, [0, 1], "user:lan", action_id="r1")
    Review(pipeline).recode(second, second[:-4] + "8006", "user:lan", action_id="r2")
    pipeline.dossiers.correct(first, "phone", "0203851235", "user:lan", "a digit misread")
    # two results of the first dossier: one of a batch's pages, one of a page turned by a person
    pipeline.dossiers.store_result(first, [PageRef(held.batch_id, i) for i in (0, 1)],
                                   claim="result-1")
    pipeline.dossiers.store_result(first, [PageRef(record.batch_id, 0, rotate=90)],
                                   claim="result-2", actor="user:lan")
    stored = {key: pipeline.store.get(key) for prefix in ("batches/", "dossiers/", "results/")
              for key in pipeline.store.list(prefix) if kind_of(key)}
    return pipeline, stored


def test_every_record_written_loads_and_dumps_back_byte_for_byte(written) -> None:
    _, stored = written
    kinds = {kind_of(key) for key in stored}
    assert kinds == {BatchRecord, PageFacts, Manifest, Correction, ResultManifest}
    assert any(b'"withdrawn"' in data for data in stored.values())
    assert any(b'"replace"' in data for data in stored.values())
    for key, data in stored.items():
        record = kind_of(key).load(data)  # type: ignore[union-attr]
        assert record.dump() == data, key
        assert record.as_dict() == json.loads(data), key


@pytest.mark.parametrize(("name", "kind"), [
    ("batch-done.json", BatchRecord), ("batch-rescan-replaced.json", BatchRecord),
    ("page-facts.json", PageFacts), ("page-facts-blank.json", PageFacts),
    ("manifest.json", Manifest), ("manifest-replace.json", Manifest),
    ("manifest-withdrawn.json", Manifest), ("correction.json", Correction),
    ("result.json", ResultManifest), ("result-page-refs.json", ResultManifest)])
def test_a_record_written_by_the_earlier_code_loads_and_dumps_back_byte_for_byte(
        name: str, kind: type) -> None:
    data = (EARLIER / name).read_bytes()
    record = kind.load(data)
    assert record.dump() == data
    assert record.as_dict() == json.loads(data)


def test_the_records_written_now_are_those_the_earlier_code_wrote(written) -> None:
    """The same scenario writes the same bytes as before the records were typed, but for the
    times it ran at, the seconds each stage took and the digests and sizes of the PDFs made
    (which carry the time they were made)."""
    _, stored = written

    def steady(data: bytes) -> bytes:
        data = re.sub(rb'"\d{4}-\d\d-\d\dT[0-9:]+\+00:00"', b'"(a time)"', data)
        data = re.sub(rb'"(sha256|size)": ("[0-9a-f]{64}"|\d+)', rb'"\1": 0', data)
        return re.sub(rb'"seconds": \{[^}]*\}', b'"seconds": {}', data)

    now = {steady(data) for data in stored.values()}
    for path in EARLIER.iterdir():
        assert steady(path.read_bytes()) in now, path.name


def test_a_record_built_keeps_its_keys_in_the_order_written() -> None:
    """Built, then changed: keys given first, keys set later after them, a key taken out gone
    (what the dicts did), so a record built now dumps as the dict written before."""
    record = BatchRecord(format=1, batch_id="b1", status="received", pages=0)
    record.waiting_for = {"tries": 1}
    record.status = "done"
    record.review = [ReviewEntry(pages=[2], code=None, code_source="user", reason="no_code")]
    assert record.unset("waiting_for") == {"tries": 1} and record.waiting_for is None
    assert record.dump() == json.dumps(
        {"format": 1, "batch_id": "b1", "status": "done", "pages": 0,
         "review": [{"pages": [2], "code": None, "code_source": "user", "reason": "no_code"}]},
        indent=1).encode()


def test_the_typed_attributes_read_what_was_stored(written) -> None:
    pipeline, stored = written
    batch = next(BatchRecord.load(d) for k, d in stored.items()
                 if k.endswith("/batch.json") and b'"sample-batch.pdf"' in d
                 and b'"incomplete_rescan"' not in d)
    assert batch.format == 1 and batch.pages == 7
    assert batch.dossiers[0].pages == [0, 1, 2]
    assert [(p.page, p.reason) for p in batch.dropped_pages] == [(3, "blank")]
    facts = PageFacts.load(stored[f"batches/{batch.batch_id}/pages/00000.json"])
    assert facts.barcodes[0].symbology and facts.blank is False and facts.ink is not None
    code = batch.dossiers[0].dossier_id
    manifest = Manifest.load(stored[f"dossiers/{code}/v0001/manifest.json"])
    assert manifest.refs() == [PageRef(batch.batch_id, i) for i in (0, 1, 2)]
    assert manifest.objects["dossier.pdf"].size > 0
    assert pipeline.record(batch.batch_id).as_dict() == json.loads(
        stored[f"batches/{batch.batch_id}/batch.json"])


def test_a_result_manifest_reads_as_its_record(written) -> None:
    """A result's manifest (results/{code}/r{n}/) reads as a ResultManifest: its document, the
    dossier version it answers, its pages (turned ones by their page refs); a dossier version's
    manifest is not a result's."""
    pipeline, stored = written
    first, second = (ResultManifest.load(d) for k, d in sorted(stored.items())
                     if k.startswith("results/"))
    assert (first.kind, first.version, second.version) == ("result", 1, 2)
    assert first.dossier_version == pipeline.dossiers.versions(first.dossier_id)[-1].version
    assert first.pdf.key == f"results/{first.dossier_id}/r0001/result.pdf"
    assert first.signature == {"status": "unsigned"} and first.title is None
    assert first.refs() == [PageRef(first.batch_id, 0), PageRef(first.batch_id, 1)]
    assert second.refs() == [PageRef(second.batch_id, 0, 90)]
    assert pipeline.dossiers.results(first.dossier_id) == [first, second]
    version = next(d for k, d in stored.items() if k.endswith("/v0001/manifest.json"))
    with pytest.raises(RecordError, match="ResultManifest: kind: Field required"):
        ResultManifest.load(version)


def test_a_batch_record_of_an_earlier_writer_loads_with_defaults() -> None:
    """Earlier code wrote no `format`, `scope`, `failed_pages` or `review`: such a record loads,
    its attributes read as none, and it dumps back as it was."""
    old = {"batch_id": "b0123", "file": "old.pdf", "sha256": "ab", "size": 3,
           "original": "batches/b0123/original.pdf", "source": "upload", "dossier_hint": None,
           "agency": None, "device": None, "received_at": "2024-01-02T03:04:05+00:00",
           "status": "done", "error": None, "pages": 1, "dossiers": [],
           "unmatched_pages": [], "dropped_pages": []}
    data = json.dumps(old, ensure_ascii=False, indent=1).encode()
    record = BatchRecord.load(data)
    assert (record.format, record.scope, record.failed_pages, record.review) == (1, None, [], [])
    assert record.incomplete is None and record.page_order is None
    assert record.dump() == data and record.as_dict() == old


def test_a_malformed_record_says_what_is_wrong() -> None:
    with pytest.raises(RecordError, match=r"BatchRecord: pages: .*integer"):
        BatchRecord.load(b'{"format": 1, "batch_id": "b1", "status": "done", "pages": "seven"}')
    with pytest.raises(RecordError, match=r"BatchRecord: status: Field required"):
        BatchRecord.load(b'{"format": 1, "batch_id": "b1"}')
    with pytest.raises(RecordError, match="Manifest: not JSON"):
        Manifest.load(b'{"format": 1,')
    with pytest.raises(RecordError, match="PageFacts: a JSON object expected, not list"):
        PageFacts.load(b"[]")
    with pytest.raises(RecordError, match="format 2 was written by a newer sohoa"):
        Correction.load(b'{"format": 2}')
