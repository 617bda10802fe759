"""A generated feeder batch end to end: splits, codes, fields, storage, PDF/A, idempotence, versions."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import pikepdf
import pytest

from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from ocr.text import fold
from tests import synth


@pytest.fixture(scope="module")
def batch() -> synth.Batch:
    """Leading page without a code, 3 dossiers (Code 128, QR, both), duplex blank backsides,
    skews up to 10 degrees, an upside-down sheet, mixed 200/300 dpi."""
    return synth.make_batch(n_dossiers=3, dpi=300, seed=11, text_pages=1,
                            skews=(0.0, 4.0, -7.0, 10.0, -2.5), duplex_blanks=True,
                            upside_down_every=6, leading_unmatched=1,
                            symbologies=("code128", "qr", "both"))


@pytest.fixture(scope="module")
def ingested(batch: synth.Batch, tmp_path_factory) -> tuple[Pipeline, dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("pipeline")
    path = batch.write_pdf(root / "scan.pdf")
    pipeline = Pipeline.from_settings(Settings(data_dir=root / "data", workers=2))
    return pipeline, run_file(pipeline, path), path


def test_batch_splits_exactly_into_its_dossiers(batch, ingested) -> None:
    _, record, _ = ingested
    assert [(d.dossier_id, d.pages) for d in record.dossiers] == \
        [(d.code, d.pages) for d in batch.dossiers]
    assert all(d.code_source == "barcode" for d in record.dossiers)


def test_pages_before_the_first_code_wait_for_review(batch, ingested) -> None:
    _, record, _ = ingested
    assert record.unmatched_pages == batch.unmatched
    assert record.status == "needs_review"


def test_blank_backsides_are_dropped_and_recorded(batch, ingested) -> None:
    _, record, _ = ingested
    assert record.dropped_pages == [{"page": p, "reason": r} for p, r in batch.dropped.items()]


def test_receipt_and_id_card_fields_are_extracted(batch, ingested) -> None:
    _, record, _ = ingested
    for truth, got in zip(batch.dossiers, record.dossiers, strict=True):
        fields = {k: v["value"] for k, v in got.fields.items()}
        receipt = truth.fields
        day, month_year = receipt["received_at"][6:8], "04/2023"
        assert month_year in receipt["received_at"]
        expected = {
            "dossier_id": truth.code,
            "applicant_name": receipt["applicant_name"], "address": receipt["address"],
            "phone": receipt["phone"], "email": receipt["email"],
            "procedure": receipt["procedure"],
            "received_at": f"2023-04-{day}T09:30:00+07:00",
            "due_at": f"2023-04-{int(day) + 1:02d}T16:00:00+07:00",
            # item 1 of the receipt (tests/synth.py receipt's two default documents)
            "components_listed": "Tờ khai theo mẫu (bản chính, 1); "
                                 "Bản sao Căn cước công dân (bản sao, 1)",
            **(truth.id_card or {}),
        }
        assert fields == expected
        assert got.fields["dossier_id"]["source"] == "barcode"
        assert got.fields["citizen_id"]["page"] == truth.pages[1]
        assert got.fields["applicant_name"]["source"] == "ocr"


def test_original_is_stored_byte_exact(ingested) -> None:
    pipeline, record, path = ingested
    assert pipeline.store.get(record.original) == path.read_bytes()
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dossier_pages_keep_the_scanners_jpeg_byte_for_byte(ingested) -> None:
    # given a batch scanned as JPEG pages, skewed up to 10 degrees
    pipeline, record, path = ingested
    with pikepdf.open(path) as original:
        scanned = {bytes(next(iter(p.get_images().values())).read_raw_bytes())
                   for p in original.pages}
    # when its dossiers are stored, straightened
    for d in record.dossiers:
        with pikepdf.open(io.BytesIO(pipeline.store.get(d.pdf))) as pdf:
            # then every page draws one of the scanner's own JPEGs, not a second generation
            for page in pdf.pages:
                (image,) = page.get_images().values()
                assert bytes(image.read_raw_bytes()) in scanned


def test_manifest_checksums_match_the_stored_objects(ingested) -> None:
    pipeline, record, _ = ingested
    for d in record.dossiers:
        manifest = pipeline.dossiers.versions(d.dossier_id)[-1]
        for obj in manifest.objects.values():
            assert hashlib.sha256(pipeline.store.get(obj.key)).hexdigest() == obj.sha256
        assert manifest.original.sha256 == record.sha256


def test_dossier_pdf_is_pdfa_2b_with_its_metadata(ingested) -> None:
    pipeline, record, _ = ingested
    d = record.dossiers[0]
    with pipeline.store.local_path(d.pdf) as path, pikepdf.open(path) as pdf:
        assert len(pdf.pages) == len(d.pages)
        meta = pdf.open_metadata()
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("2", "B")
        xmp = bytes(pdf.Root.Metadata.read_bytes()).decode()
        assert f"<sohoa:DossierCode>{d.dossier_id}</sohoa:DossierCode>" in xmp
        assert d.fields["procedure"]["value"] in xmp
        intent = pdf.Root.OutputIntents[0]
        assert intent.S == "/GTS_PDFA1" and len(intent.DestOutputProfile.read_bytes()) > 0
        assert not pdf.is_encrypted and pdf.trailer.ID
        fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
        assert all(line.split()[-5] == "yes" for line in fonts.splitlines()[2:])


def test_text_layer_copies_as_vietnamese(ingested) -> None:
    pipeline, record, _ = ingested
    d = record.dossiers[0]
    with pipeline.store.local_path(d.pdf) as path:
        text = subprocess.run(["pdftotext", "-raw", "-f", "1", "-l", "1", str(path), "-"],
                              capture_output=True, text=True).stdout
    ocr_lines = pipeline.page_facts_for(record.batch_id, d.pages[:1])[0].ocr.lines
    applicant_line = next(line for line in ocr_lines if line.startswith("Tiếp nhận hồ sơ của"))
    assert applicant_line in text  # copy and paste gives what OCR read, accents and all
    assert unicodedata.is_normalized("NFC", text)


def test_ingesting_the_same_file_again_creates_nothing(ingested) -> None:
    pipeline, record, path = ingested
    before = sorted(pipeline.store.list(""))
    again = run_file(pipeline, path)
    assert again.batch_id == record.batch_id and again.dossiers == record.dossiers
    assert sorted(pipeline.store.list("")) == before


def test_a_rescan_of_a_dossier_makes_a_new_version_and_keeps_the_old(batch, ingested,
                                                                     tmp_path) -> None:
    pipeline, record, _ = ingested
    first = batch.dossiers[0]
    rescan = [(page, synth.Scan(skew=1.0, seed=99)) for page, _ in
              [batch.pages[i] for i in first.pages]]
    path = synth.write_pdf(rescan, tmp_path / "rescan.pdf")
    second = run_file(pipeline, path)
    assert [(d.dossier_id, d.version) for d in second.dossiers] == [(first.code, 2)]
    versions = pipeline.dossiers.versions(first.code)
    assert [v.version for v in versions] == [1, 2]
    assert pipeline.store.exists(record.dossiers[0].pdf)
    assert pipeline.catalog.dossier(first.code)["version"] == 2
    feed = [(e["kind"], e["version"]) for e in pipeline.catalog.events(None)
            if e["dossier_id"] == first.code]
    assert feed == [("created", 1), ("new_version", 2)]


def without_position(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "position"}


def test_catalog_is_rebuilt_from_object_storage_alone(batch, ingested) -> None:
    pipeline, record, _ = ingested
    code = record.dossiers[1].dossier_id
    before, feed = pipeline.catalog.dossier(code), pipeline.catalog.events(None)
    pipeline.catalog.rebuild(pipeline.store)
    assert pipeline.catalog.dossier(code) == before
    rebuilt = pipeline.catalog.events(None)
    # the same changes, placed at their own times now (no longer when the catalog took them)
    assert sorted(map(without_position, rebuilt), key=str) == \
        sorted(map(without_position, feed), key=str)
    # a consumer's cursor from before still works, and hands out nothing it gave already
    assert pipeline.catalog.events(None, tuple(feed[-1]["position"])) == []
    assert pipeline.catalog.batch(record.batch_id).status == "needs_review"


def test_stored_page_facts_carry_orientation_and_skew(batch, ingested) -> None:
    pipeline, record, _ = ingested
    facts = pipeline.page_facts(record.batch_id, record.pages)
    for i, (_, scan) in enumerate(batch.pages):
        if i in batch.dropped:
            continue
        assert abs(facts[i].skew - scan.skew) < 0.3, i
        assert facts[i].rotation == (180 if scan.upside_down else 0), i


def test_search_key_of_stored_text_finds_unaccented_names(ingested) -> None:
    pipeline, record, _ = ingested
    d = record.dossiers[0]
    text = json.loads(pipeline.store.get(d.pdf.replace("dossier.pdf", "text.json")))
    assert fold(d.fields["applicant_name"]["value"]) in fold(json.dumps(text,
                                                                          ensure_ascii=False))


def test_the_pages_done_are_read_from_one_listing_of_the_store(ingested) -> None:
    """Given the ingested batch, its pages done are every page, counted from the facts objects
    alone (each page's PDF beside them is not counted twice)."""
    pipeline, record, _ = ingested
    assert pipeline.pages_done(record.batch_id) == set(range(record.pages))


class _Noting:
    """A page stage and a dossier stage that note when they are prepared, released and first
    called (in `seen`)."""

    def __init__(self, seen: list[str], name: str) -> None:
        self.seen, self.name = seen, name

    def prepare(self) -> None:
        self.seen.append(f"{self.name} prepared")

    def release(self) -> None:
        self.seen.append(f"{self.name} released")

    def __call__(self, work: object) -> None:
        if f"{self.name} called" not in self.seen:
            self.seen.append(f"{self.name} called")


def _noting_pipeline(tmp_path: Path) -> tuple[Pipeline, list[str], Path]:
    """A pipeline with a noting page stage and a noting dossier stage, and a one-dossier batch."""
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=2))
    seen: list[str] = []
    pipeline.page_stages = [*pipeline.page_stages, _Noting(seen, "page stage")]
    pipeline.dossiers.stages = [_Noting(seen, "dossier stage"), *pipeline.dossiers.stages]
    path = synth.make_batch(n_dossiers=1, dpi=200, seed=3, text_pages=1).write_pdf(
        tmp_path / "scan.pdf")
    return pipeline, seen, path


def test_a_batch_releases_its_page_stages_after_its_pages_and_before_its_dossiers(
        tmp_path: Path) -> None:
    # Given a pipeline with a page stage that holds something until released
    pipeline, seen, path = _noting_pipeline(tmp_path)
    # When the batch is run
    record = run_file(pipeline, path)
    # Then the page stage was released once, after every page and before the dossier
    assert record.status == "done"
    assert [e for e in seen if not e.endswith("prepared")] == [
        "page stage called", "page stage released", "dossier stage called"]


def test_a_batch_prepares_its_dossier_stages_once_its_first_page_is_read(tmp_path: Path) -> None:
    # Given a pipeline with a page stage and a dossier stage that both prepare something
    pipeline, seen, path = _noting_pipeline(tmp_path)
    # When the batch is run
    record = run_file(pipeline, path)
    # Then each stage was prepared once, the dossier stage only after a page was read (its
    # preparing runs beside the pages, on a thread of its own: waited for here)
    assert record.status == "done"
    deadline = time.monotonic() + 10
    while not {"page stage prepared", "dossier stage prepared"} <= set(seen) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.count("page stage prepared") == seen.count("dossier stage prepared") == 1
    assert seen.index("page stage called") < seen.index("dossier stage prepared")


ASN_CODES = [f"ASN0012{i}" for i in range(3, 8)]  # synth.ASN_BATCH's dossiers, in order


def asn_pipeline(tmp_path: Path) -> Pipeline:
    """A pipeline for synth.ASN_BATCH (five dossiers of Code 39 codes), barcodes only: no OCR."""
    from ingest.page_stages import DetectBlank, ReadBarcodes

    pipeline = Pipeline.from_settings(Settings(
        data_dir=tmp_path / "data", workers=2,
        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    return pipeline


def codes_heard(pipeline: Pipeline) -> list[str]:
    """The codes of the dossier changes the pipeline's listeners hear, as they hear them."""
    heard: list[str] = []
    pipeline.dossiers.listeners.append(lambda event: heard.append(event.code))
    return heard


class HoldsTheFirstBack:
    """A dossier stage that holds the batch's first dossier until the next two have reached it
    (at most 30 s): they are written beside it or not at all."""

    name = "holds-the-first-back"

    def __init__(self, first: str, others: set[str]) -> None:
        self.first, self.others, self.seen = first, others, set[str]()
        self.others_reached = threading.Event()
        self.first_waited_for_them = False

    def __call__(self, work: Any) -> None:
        if work.code == self.first:
            self.first_waited_for_them = self.others_reached.wait(30)
            return
        self.seen.add(work.code)
        if self.others <= self.seen:
            self.others_reached.set()


def test_a_batchs_dossiers_are_written_side_by_side_and_told_in_their_order(
        tmp_path: Path) -> None:
    # Given a batch of five dossiers whose first is held back until the next two are written
    codes = ASN_CODES
    pipeline = asn_pipeline(tmp_path)
    hold = HoldsTheFirstBack(codes[0], set(codes[1:3]))
    pipeline.dossiers.stages.insert(0, hold)
    heard = codes_heard(pipeline)
    # When it is ingested
    record = run_file(pipeline, synth.ASN_BATCH)
    # Then the first was written beside the next two, and the listeners heard of all five in
    # the batch's order, once each
    assert hold.first_waited_for_them
    assert [d.dossier_id for d in record.dossiers] == codes
    assert heard == codes


def test_a_batchs_dossiers_are_anchored_in_the_audit_log_in_one_append(tmp_path: Path) -> None:
    # Given a batch of five dossiers
    pipeline = asn_pipeline(tmp_path)
    # When it is ingested
    run_file(pipeline, synth.ASN_BATCH)
    # Then their versions' entries follow each other in the batch's order, each with its
    # manifest's checksum, and were copied to object storage as one object
    assert pipeline.audit is not None
    created = pipeline.audit.for_target(None, ("dossier.version.create",))
    assert [e["target"] for e in created] == ASN_CODES
    seqs = [e["seq"] for e in created]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert all(e["detail"]["manifest_sha256"] for e in created)
    assert f"audit/entries/{seqs[0]:012d}-{seqs[-1]:012d}.jsonl" in set(
        pipeline.store.list("audit/entries/"))
    assert pipeline.audit.verify() == []


class FailsFor:
    """A dossier stage that fails for one dossier code while `failing` is set."""

    name = "fails-for"

    def __init__(self, code: str) -> None:
        self.code, self.failing = code, True

    def __call__(self, work: Any) -> None:
        if self.failing and work.code == self.code:
            raise OSError("object storage down")


def test_a_dossier_that_cannot_be_written_leaves_those_before_it_told_and_a_rerun_tells_the_rest(
        tmp_path: Path) -> None:
    # Given a batch of five dossiers whose third cannot be written the first time
    codes = ASN_CODES
    pipeline = asn_pipeline(tmp_path)
    fails = FailsFor(codes[2])
    pipeline.dossiers.stages.insert(0, fails)
    heard = codes_heard(pipeline)
    batch_id = pipeline.receive(synth.ASN_BATCH, scope=["*"])
    for i in range(pipeline.inspect(batch_id).pages):
        pipeline.process_page(batch_id, i)
    # When the batch's end runs, the dossier's error reaches the caller, and the two before it
    # were told
    with pytest.raises(OSError):
        pipeline.finalize(batch_id)
    assert heard == codes[:2]
    assert pipeline.dossiers.versions(codes[2]) == []
    # Then run again once it can be written, every dossier has one version and was told once
    fails.failing = False
    record = pipeline.finalize(batch_id)
    assert [d.dossier_id for d in record.dossiers] == codes
    assert all(len(pipeline.dossiers.versions(c)) == 1 for c in codes)
    assert sorted(heard) == codes
    assert pipeline.audit is not None and pipeline.audit.verify() == []
    created = pipeline.audit.for_target(None, ("dossier.version.create",))
    assert sorted(e["target"] for e in created) == codes
