"""The review queue's changes: every one is a new dossier version with an audit entry; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pikepdf
import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
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
    assert record["status"] == "needs_review" and record["unmatched_pages"] == [0]
    return pipeline, record, batch


def pages_of(pipeline: Pipeline, code: str) -> list[tuple[int, int]]:
    return [(r.index, r.rotate) for r in Pipeline.page_refs(pipeline.versions(code)[-1])]


def test_an_unmatched_page_assigned_to_a_dossier_makes_its_next_version(done) -> None:
    """Given page 1 unmatched, when staff assign it to the first dossier, then that dossier's
    version 2 ends with it, version 1 is kept, the batch leaves review, and the audit log says who."""
    pipeline, record, batch = done
    code = batch.dossiers[0].code
    manifest = Review(pipeline).assign(record["batch_id"], [0], code, "user:lan")
    assert manifest["version"] == 2 and pages_of(pipeline, code) == [(1, 0), (2, 0), (0, 0)]
    assert [v["version"] for v in pipeline.versions(code)] == [1, 2]
    after = pipeline.record(record["batch_id"])
    assert (after["status"], after["unmatched_pages"]) == ("done", [])
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
    assert [v["version"] for v in pipeline.versions(code)] == [1, 2]


def test_a_page_not_waiting_for_review_cannot_be_assigned(done) -> None:
    pipeline, record, batch = done
    with pytest.raises(ReviewError, match="waiting for review"):
        Review(pipeline).assign(record["batch_id"], [1], batch.dossiers[1].code, "user:lan")


def test_assigning_to_a_new_code_creates_that_dossier(done) -> None:
    pipeline, record, _ = done
    manifest = Review(pipeline).assign(record["batch_id"], [0], "000.00.31.H40-230414-0777", "user:lan")
    assert (manifest["version"], manifest["code_source"], manifest["pages"]) == (1, "user", [0])


def test_a_malformed_code_is_refused(done) -> None:
    pipeline, record, _ = done
    with pytest.raises(ReviewError, match="not a dossier code"):
        Review(pipeline).assign(record["batch_id"], [0], "hello", "user:lan")


def test_a_rotated_page_is_turned_in_the_pdf_and_its_preview(done) -> None:
    pipeline, _, batch = done
    code = batch.dossiers[0].code
    before = pipeline.versions(code)[-1]
    manifest = Review(pipeline).rotate(code, 1, 90, "user:lan")
    with pipeline.store.local_path(manifest["objects"]["dossier.pdf"]["key"]) as path:
        with pikepdf.open(path) as pdf:
            assert int(pdf.pages[1].Rotate) == 90
        turned = page_jpeg(path, 1)
    with pipeline.store.local_path(before["objects"]["dossier.pdf"]["key"]) as path:
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
    assert merged["version"] == 3 and pages_of(pipeline, code) == [(1, 0), (2, 0)]


def test_review_versions_verify_and_survive_a_rebuild(done) -> None:
    pipeline, record, batch = done
    code = batch.dossiers[0].code
    Review(pipeline).assign(record["batch_id"], [0], code, "user:lan")
    Review(pipeline).rotate(code, 2, 180, "user:lan")
    assert [f for f in verify(pipeline.store, code) if f.problem != "ok"] == []
    before = pipeline.catalog.dossier(code)
    pipeline.catalog.rebuild(pipeline.store)
    assert pipeline.catalog.dossier(code) == before
