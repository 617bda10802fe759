"""The review queue's changes: every one is a new dossier version with an audit entry; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pikepdf
import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import PageRef, Pipeline
from ingest.review import Review, ReviewError
from ingest.runner import run_file
from ingest.settings import Settings
from ocr.pdf import page_jpeg
from storage.integrity import verify
from tests import synth


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> tuple[synth.Batch, Path]:
    """An unmatched page first (no code above it), then two dossiers of two pages."""
    batch = synth.make_batch(n_dossiers=2, dpi=200, seed=11, text_pages=1, with_id_card=False,
                             leading_unmatched=1)
    return batch, batch.write_pdf(tmp_path_factory.mktemp("review") / "stack.pdf")


@pytest.fixture
def done(tmp_path: Path, stack) -> tuple[Pipeline, dict, synth.Batch]:
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    batch, pdf = stack
    record = run_file(pipeline, pdf)
    assert record.status == "needs_review" and record.unmatched_pages == [0]
    return pipeline, record, batch


def pages_of(pipeline: Pipeline, code: str) -> list[tuple[int, int]]:
    return [(r.index, r.rotate) for r in Pipeline.page_refs(pipeline.dossiers.versions(code)[-1])]


def test_an_unmatched_page_assigned_to_a_dossier_makes_its_next_version(done) -> None:
    """Given page 1 unmatched, when staff assign it to the first dossier, then that dossier's
    version 2 ends with it, version 1 is kept, the batch leaves review, and the audit log says who."""
    pipeline, record, batch = done
    code = batch.dossiers[0].code
    manifest = Review(pipeline).assign(record.batch_id, [0], code, "user:lan")
    assert manifest.version == 2 and pages_of(pipeline, code) == [(1, 0), (2, 0), (0, 0)]
    assert [v.version for v in pipeline.dossiers.versions(code)] == [1, 2]
    after = pipeline.record(record.batch_id)
    assert (after.status, after.unmatched_pages) == ("done", [])
    entry = pipeline.audit.entries(limit=1000)[-1]
    assert (entry["actor"], entry["action"], entry["target"]) == ("user:lan", "dossier.version.create", code)
    assert entry["detail"]["change"]["action"] == "assign"
    assert pipeline.catalog.dossier(code)["version"] == 2


def test_the_same_action_twice_makes_one_version(done) -> None:
    pipeline, _, batch = done
    code = batch.dossiers[1].code
    review = Review(pipeline)
    review.rotate(code, 0, 90, "user:lan", action_id="a1")
    review.rotate(code, 0, 90, "user:lan", action_id="a1")
    assert [v.version for v in pipeline.dossiers.versions(code)] == [1, 2]


def test_a_page_not_waiting_for_review_cannot_be_assigned(done) -> None:
    pipeline, record, batch = done
    with pytest.raises(ReviewError, match="waiting for review"):
        Review(pipeline).assign(record.batch_id, [1], batch.dossiers[1].code, "user:lan")


def test_assigning_to_a_new_code_creates_that_dossier(done) -> None:
    pipeline, record, _ = done
    manifest = Review(pipeline).assign(record.batch_id, [0], "000.00.31.H40-230414-0777", "user:lan")
    assert (manifest.version, manifest.code_source, manifest.pages) == (1, "user", [0])


def test_a_malformed_code_is_refused(done) -> None:
    pipeline, record, _ = done
    with pytest.raises(ReviewError, match="not a dossier code"):
        Review(pipeline).assign(record.batch_id, [0], "hello", "user:lan")


def test_a_rotated_page_is_turned_in_the_pdf_and_its_preview(done) -> None:
    pipeline, _, batch = done
    code = batch.dossiers[0].code
    before = pipeline.dossiers.versions(code)[-1]
    manifest = Review(pipeline).rotate(code, 1, 90, "user:lan")
    with pipeline.store.local_path(manifest.objects["dossier.pdf"].key) as path:
        with pikepdf.open(path) as pdf:
            assert int(pdf.pages[1].Rotate) == 90
        turned = page_jpeg(path, 1)
    with pipeline.store.local_path(before.objects["dossier.pdf"].key) as path:
        upright = page_jpeg(path, 1)
    from io import BytesIO

    from PIL import Image

    w, h = Image.open(BytesIO(upright)).size
    assert Image.open(BytesIO(turned)).size == (h, w)


def test_move_and_drop_reorder_and_remove_pages(done) -> None:
    pipeline, _, batch = done
    code = batch.dossiers[0].code
    review = Review(pipeline)
    review.move(code, 1, 0, "user:lan")
    assert pages_of(pipeline, code) == [(2, 0), (1, 0)]
    review.drop(code, 0, "user:lan")
    assert pages_of(pipeline, code) == [(1, 0)]
    with pytest.raises(ReviewError, match="at least one page"):
        review.drop(code, 0, "user:lan")


def test_split_and_merge(done) -> None:
    """Given a two-page dossier, when split after page 1 into a new code and merged back, then the
    pages move between the dossiers and each change is a version."""
    pipeline, _, batch = done
    code = batch.dossiers[0].code
    new_code = code[:-4] + "9999"
    review = Review(pipeline)
    review.split(code, 1, new_code, "user:lan")
    assert pages_of(pipeline, code) == [(1, 0)] and pages_of(pipeline, new_code) == [(2, 0)]
    merged = review.merge(code, new_code, "user:lan")
    assert merged.version == 3 and pages_of(pipeline, code) == [(1, 0), (2, 0)]


def test_a_merged_dossier_is_withdrawn_in_favour_of_the_one_it_joined(done) -> None:
    """Given a dossier split in two, when the second part is merged back, then its pages are in
    the first only: the second gets a version without pages naming where they went, leaves
    listing, its feed says `withdrawn`, and it all verifies and reads the same from storage
    alone."""
    pipeline, _, batch = done
    code = batch.dossiers[0].code
    other = code[:-4] + "9998"
    review = Review(pipeline)
    review.split(code, 1, other, "user:lan")
    merged = review.merge(code, other.lower(), "user:lan", "m1")
    assert pages_of(pipeline, code) == [(1, 0), (2, 0)]
    gone = pipeline.dossiers.versions(other)[-1]
    assert (gone.version, gone.pages, gone.withdrawn.to) == (2, [], code)
    assert gone.change == merged.change == {"action": "merge", "from": other,
                                                  "from_version": 1}
    assert pipeline.catalog.dossier(other) is None
    assert pipeline.catalog.withdrawal(other)["to"] == code
    assert other not in listed(pipeline) and code in listed(pipeline)
    assert ("withdrawn", other, 2, code) in events_of(pipeline, other, code)
    assert [f for f in verify(pipeline.store) if f.problem != "ok"] == []
    before = pipeline.catalog.withdrawal(other)
    pipeline.catalog.rebuild(pipeline.store)
    assert pipeline.catalog.withdrawal(other) == before and pipeline.catalog.dossier(other) is None


def test_the_same_merge_sent_twice_changes_nothing_the_second_time(done) -> None:
    pipeline, _, batch = done
    code = batch.dossiers[0].code
    other = code[:-4] + "9997"
    review = Review(pipeline)
    review.split(code, 1, other, "user:lan")
    first = review.merge(code, other, "user:lan", action_id="m2")
    entries, events = pipeline.audit.entries(limit=10_000), events_of(pipeline, other, code)
    assert review.merge(code, other, "user:lan", action_id="m2") == first
    assert [m.version for m in pipeline.dossiers.versions(code)] == [1, 2, 3]
    assert [m.version for m in pipeline.dossiers.versions(other)] == [1, 2]
    assert pipeline.audit.entries(limit=10_000) == entries
    assert events_of(pipeline, other, code) == events


def test_review_versions_verify_and_survive_a_rebuild(done) -> None:
    pipeline, record, batch = done
    code = batch.dossiers[0].code
    Review(pipeline).assign(record.batch_id, [0], code, "user:lan")
    Review(pipeline).rotate(code, 2, 180, "user:lan")
    assert [f for f in verify(pipeline.store, code) if f.problem != "ok"] == []
    before = pipeline.catalog.dossier(code)
    pipeline.catalog.rebuild(pipeline.store)
    assert pipeline.catalog.dossier(code) == before



# ---- the code a person gives: confirm, recode; page changes keep the code's source ------------

def ocr_read(pipeline: Pipeline, record: dict, code: str, pages: list[int]) -> dict:
    """A dossier whose code the pipeline read by OCR (wrongly, in these tests)."""
    agency = pipeline.grammar.match(code).agency
    return pipeline.dossiers.store_version(code, agency, "ocr",
                                  [PageRef(record.batch_id, p) for p in pages],
                                  claim=f"ocr-test:{code}")


def events_of(pipeline: Pipeline, *codes: str) -> set[tuple[str, str, int, str | None]]:
    return {(e["kind"], e["dossier_id"], e["version"], e.get("to"))
            for e in pipeline.catalog.events(None, limit=1000) if e["dossier_id"] in codes}


def listed(pipeline: Pipeline, q: str = "") -> list[str]:
    return [d["dossier_id"] for d in pipeline.catalog.list_dossiers(None, q, limit=200)[0]]


def snapshot(pipeline: Pipeline, *codes: str) -> dict:
    """What the catalog says of these codes and in its listing and feed."""
    return {"listed": listed(pipeline),
            "events": [{k: v for k, v in e.items() if k != "position"}
                       for e in pipeline.catalog.events(None, limit=1000) if e["dossier_id"] in codes],
            "dossiers": [pipeline.catalog.dossier(c) for c in codes],
            "withdrawals": [pipeline.catalog.withdrawal(c) for c in codes]}


def test_turning_a_page_keeps_a_code_read_by_ocr_waiting_for_its_confirmation(done) -> None:
    """Given a dossier whose code was read by OCR, when a page is turned, then the new version
    still has its code from OCR (it still waits for a person); once confirmed, from a person."""
    pipeline, record, batch = done
    code = batch.dossiers[0].code[:-4] + "8001"
    ocr_read(pipeline, record, code, [1, 2])
    review = Review(pipeline)
    assert review.rotate(code, 0, 90, "user:lan").code_source == "ocr"
    assert pipeline.catalog.dossier(code)["fields"]["dossier_id"]["source"] == "ocr"
    assert review.confirm(code, "user:lan").code_source == "user"
    assert pipeline.catalog.dossier(code)["fields"]["dossier_id"]["source"] == "user"


def test_recoding_to_a_new_code_moves_the_pages_and_withdraws_the_old_code(done) -> None:
    """Given a dossier whose code was read wrong, when staff give its right code (which has no
    dossier yet), then the right code's version 1 holds its pages with the code from a person;
    the old code gets a version with no pages that says where they went, leaves listing and
    search, and its feed says `withdrawn`; the batch names the right code; everything verifies,
    and each of the two versions has its audit entry."""
    pipeline, record, batch = done
    wrong, right = batch.dossiers[1].code, batch.dossiers[1].code[:-4] + "8002"
    before = len(pipeline.audit.entries(limit=10_000))
    withdrawn, moved = Review(pipeline).recode(wrong, f" {right.lower()} ", "user:lan", "r1")
    assert (moved.dossier_id, moved.version, moved.code_source) == (right, 1, "user")
    assert pages_of(pipeline, right) == [(3, 0), (4, 0)]
    assert moved.change == {"action": "recode", "from": wrong, "to": right, "from_version": 1}
    assert (withdrawn.version, withdrawn.pages, withdrawn.objects) == (2, [], {})
    assert (withdrawn.withdrawn.to, withdrawn.withdrawn.by) == (right, "user:lan")
    assert pipeline.catalog.dossier(wrong) is None
    assert pipeline.catalog.withdrawal(wrong)["to"] == right
    assert pipeline.catalog.dossier(right)["fields"]["dossier_id"]["source"] == "user"
    assert wrong not in listed(pipeline) and right in listed(pipeline)
    assert listed(pipeline, wrong) == []
    assert events_of(pipeline, wrong, right) == {("created", wrong, 1, None),
                                                 ("created", right, 1, None),
                                                 ("withdrawn", wrong, 2, right)}
    after = pipeline.record(record.batch_id)
    assert [(d.dossier_id, d.pages) for d in after.dossiers] == \
        [(batch.dossiers[0].code, [1, 2]), (right, [3, 4])]
    assert after.renamed == [{"from": wrong, "to": right, "version": 1, "by": "user:lan"}]
    assert [f for f in verify(pipeline.store) if f.problem != "ok"] == []
    made = pipeline.audit.entries(limit=10_000)[before:]
    assert [(e["actor"], e["action"], e["target"]) for e in made] == [
        ("user:lan", "dossier.version.create", right), ("user:lan", "dossier.withdraw", wrong)]
    assert made[1]["detail"]["to"] == right


def test_recoding_into_an_existing_dossier_appends_the_pages_to_it(done) -> None:
    """Given a one-page dossier whose code OCR read wrong, when staff give the code of a dossier
    that exists, then that dossier's next version has the page appended (code from a person),
    and the wrong code is withdrawn in its favour."""
    pipeline, record, batch = done
    right, wrong = batch.dossiers[0].code, batch.dossiers[0].code[:-4] + "8003"
    ocr_read(pipeline, record, wrong, [3])
    withdrawn, moved = Review(pipeline).recode(wrong, right, "user:lan", "r2")
    assert (moved.version, moved.code_source) == (2, "user")
    assert pages_of(pipeline, right) == [(1, 0), (2, 0), (3, 0)]
    assert (withdrawn.version, withdrawn.withdrawn.to) == (2, right)
    assert pipeline.catalog.dossier(right)["version"] == 2 and pipeline.catalog.dossier(wrong) is None
    assert events_of(pipeline, wrong, right) >= {("new_version", right, 2, None),
                                                 ("withdrawn", wrong, 2, right)}


def test_the_same_recode_sent_twice_changes_nothing_the_second_time(done) -> None:
    """Given a recode made, when the same action comes again, then it answers the same versions
    and makes no version, audit entry or feed event."""
    pipeline, _, batch = done
    wrong, right = batch.dossiers[1].code, batch.dossiers[1].code[:-4] + "8004"
    review = Review(pipeline)
    first = review.recode(wrong, right, "user:lan", action_id="r3")
    entries, events = pipeline.audit.entries(limit=10_000), events_of(pipeline, wrong, right)
    assert review.recode(wrong, right, "user:lan", action_id="r3") == first
    assert [m.version for m in pipeline.dossiers.versions(wrong)] == [1, 2]
    assert [m.version for m in pipeline.dossiers.versions(right)] == [1]
    assert pipeline.audit.entries(limit=10_000) == entries
    assert events_of(pipeline, wrong, right) == events


def test_a_bad_or_foreign_code_is_refused_and_nothing_changes(done) -> None:
    """Given a dossier of a batch scanned by its agency, when it is recoded to a malformed code,
    to its own code, to a code of another agency, or a withdrawn or unknown code is recoded,
    then each is refused saying why, and no version, entry or listing changes."""
    pipeline, record, batch = done
    code, other = batch.dossiers[0].code, batch.dossiers[1].code
    record.agency = pipeline.grammar.match(code).agency
    pipeline.save_record(record)
    review = Review(pipeline)
    gone = ocr_read(pipeline, record, code[:-4] + "8005", [1]).dossier_id
    review.recode(gone, code[:-4] + "8006", "user:lan")
    before = (snapshot(pipeline, code, other, gone), len(pipeline.audit.entries(limit=10_000)))
    foreign = "000.00.99.H99-230414-0001"
    for args, message in [((code, "HS-123"), "not a dossier code"),
                          ((code, code.lower()), "recode to another dossier code"),
                          ((code, foreign), "belongs to another agency"),
                          ((gone, code[:-4] + "8007"), "was renamed to"),
                          ((code[:-4] + "8008", code), "no dossier")]:
        with pytest.raises(ReviewError, match=message):
            review.recode(*args, "user:lan")
    assert (snapshot(pipeline, code, other, gone), len(pipeline.audit.entries(limit=10_000))) == before
    assert [m.version for m in pipeline.dossiers.versions(code)] == [1]
    assert pipeline.dossiers.versions(foreign) == []


def test_a_recode_reads_the_same_after_the_catalog_is_rebuilt_from_storage(done) -> None:
    """Given a code recoded into a new one and another into an existing dossier, when the
    catalog is rebuilt from object storage alone, then listing, dossiers, withdrawals and feed
    are as they were."""
    pipeline, record, batch = done
    first, second = batch.dossiers[0].code, batch.dossiers[1].code
    new, wrong = first[:-4] + "8009", first[:-4] + "8010"
    review = Review(pipeline)
    review.recode(first, new, "user:lan")
    ocr_read(pipeline, record, wrong, [0])
    review.recode(wrong, second, "user:lan")
    before = snapshot(pipeline, first, second, new, wrong)
    assert first not in before["listed"] and wrong not in before["listed"]
    pipeline.catalog.rebuild(pipeline.store)
    after = snapshot(pipeline, first, second, new, wrong)
    # the feed's changes at their own times now, no longer where the catalog took them
    assert {**after, "events": sorted(after["events"], key=str)} == \
        {**before, "events": sorted(before["events"], key=str)}


def test_a_later_dossier_of_a_withdrawn_code_makes_it_live_again(done) -> None:
    """Given a code withdrawn as misread, when pages are later assigned to that code (a real
    dossier of it), then it is a dossier again of those pages only."""
    pipeline, record, batch = done
    code = batch.dossiers[1].code
    review = Review(pipeline)
    review.recode(code, code[:-4] + "8011", "user:lan")
    manifest = review.assign(record.batch_id, [0], code, "user:lan")
    assert (manifest.version, pages_of(pipeline, code)) == (3, [(0, 0)])
    assert pipeline.catalog.dossier(code)["version"] == 3 and code in listed(pipeline)
