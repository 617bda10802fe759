"""A version that may lack pages is held for a person: a rescan with fewer pages than the current
version, or the dossier a partial scan ends on, never becomes the current version by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.review import Review, ReviewError
from ingest.runner import run_file
from ingest.settings import Settings
from tests import synth


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> tuple[str, Path, Path]:
    """One dossier of 3 pages (receipt and 2 pages), and a rescan of its first 2 pages."""
    batch = synth.make_batch(n_dossiers=1, dpi=200, seed=21, text_pages=2, with_id_card=False)
    folder = tmp_path_factory.mktemp("held")
    whole = synth.write_pdf(batch.pages, folder / "whole.pdf")
    shorter = synth.write_pdf(batch.pages[:2], folder / "rescan.pdf")
    return batch.dossiers[0].code, whole, shorter


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]  # the split, without OCR's seconds
    return pipeline


@pytest.fixture
def held(pipeline: Pipeline, scans) -> tuple[str, dict]:
    """The dossier stored whole, then its shorter rescan, held."""
    code, whole, shorter = scans
    assert run_file(pipeline, whole).status == "done"
    return code, run_file(pipeline, shorter)


def feed(pipeline: Pipeline) -> list[tuple[str, int]]:
    assert pipeline.catalog is not None
    return [(e["kind"], e["version"]) for e in pipeline.catalog.events(None)]


def test_a_shorter_rescan_waits_and_the_current_version_stays(pipeline: Pipeline, held) -> None:
    """Given a dossier of 3 pages, when a rescan of 2 of them arrives (a complete file), then it
    waits in review as an incomplete rescan, the dossier stays v1 of 3 pages, and the feed has no
    event for it."""
    code, record = held
    assert record.status == "needs_review" and record.dossiers == []
    assert record.review == [{"pages": [0, 1], "code": code, "code_source": "barcode",
                                 "reason": "incomplete_rescan", "detail": "2 of 3 pages",
                                 "current_version": 1, "current_pages": 3}]
    assert [m.version for m in pipeline.dossiers.versions(code)] == [1]
    assert feed(pipeline) == [("created", 1)]


def test_replacing_makes_the_rescan_the_current_version(pipeline: Pipeline, held) -> None:
    """Given a held rescan, when a person replaces the current version with it, then v2 is made
    of exactly the rescan's pages, the feed announces it, and the batch leaves review."""
    code, record = held
    manifest = Review(pipeline).replace(record.batch_id, [0, 1], "user:lan", action_id="r1")
    assert (manifest.version, manifest.pages, manifest.batch_id) == (
        2, [0, 1], record.batch_id)
    assert manifest.change["action"] == "replace" and manifest.change["replaced_version"] == 1
    assert feed(pipeline) == [("created", 1), ("new_version", 2)]
    after = pipeline.record(record.batch_id)
    assert (after.status, after.unmatched_pages) == ("done", [])
    assert pipeline.catalog is not None and pipeline.catalog.dossier(code)["held"] == []


def test_the_same_replace_twice_makes_one_version(pipeline: Pipeline, held) -> None:
    code, record = held
    review = Review(pipeline)
    first = review.replace(record.batch_id, [0, 1], "user:lan", action_id="r1")
    again = review.replace(record.batch_id, [0, 1], "user:lan", action_id="r1")
    assert again.version == first.version == 2
    assert [m.version for m in pipeline.dossiers.versions(code)] == [1, 2]


def test_keeping_the_current_version_sets_the_rescan_aside(pipeline: Pipeline, held) -> None:
    """Given a held rescan, when a person keeps the current version, then the dossier stays v1,
    the rescan's pages are kept in their batch as `kept_current`, and the batch leaves review."""
    code, record = held
    after = Review(pipeline).keep_current(record.batch_id, [0, 1], "user:lan")
    assert after.status == "done"
    assert [(d.page, d.reason) for d in after.dropped_pages] == [
        (0, "kept_current"), (1, "kept_current")]
    assert [m.version for m in pipeline.dossiers.versions(code)] == [1]
    assert feed(pipeline) == [("created", 1)]
    assert pipeline.store.exists(after.original)


def test_only_a_held_rescan_can_be_replaced(pipeline: Pipeline, held) -> None:
    _, record = held
    with pytest.raises(ReviewError, match="not a rescan waiting"):
        Review(pipeline).replace(record.batch_id, [0], "user:lan")


def test_a_rescan_as_long_as_the_current_version_replaces_it(pipeline: Pipeline, scans) -> None:
    """Given a dossier of 3 pages, when all 3 are scanned again (another scan of the same
    paper), then that is its v2 at once: only a version that may lack pages is held."""
    code, whole, _ = scans
    run_file(pipeline, whole)
    again = whole.with_name("again.pdf")
    again.write_bytes(whole.read_bytes() + b"\n% scanned again\n")
    record = run_file(pipeline, again)
    assert record.status == "done"
    assert [m.version for m in pipeline.dossiers.versions(code)] == [1, 2]


def test_a_cut_upload_of_a_new_dossier_is_stored_only_when_a_person_confirms(
        pipeline: Pipeline, scans) -> None:
    """Given an upload cut short (its file says so) holding a dossier not seen before, then the
    dossier is held as `incomplete_scan`; confirming it stores v1 and checks the scan."""
    code, whole, _ = scans
    cut = whole.with_name("cut.pdf")
    cut.write_bytes(whole.read_bytes()[:-200])
    record = run_file(pipeline, cut)
    assert record.incomplete and record.status == "needs_review"
    assert [(r.code, r.reason) for r in record.review if r.pages] == [
        (code, "incomplete_scan")]
    assert pipeline.dossiers.versions(code) == []
    pages = next(r.pages for r in record.review if r.pages)
    manifest = Review(pipeline).replace(record.batch_id, pages, "user:lan")
    assert manifest.version == 1
    after = pipeline.record(record.batch_id)
    assert after.status == "done" and after.incomplete_checked["by"] == "user:lan"


def test_the_api_says_a_version_is_waiting(pipeline: Pipeline, held, tmp_path: Path) -> None:
    """Given a held rescan, then GET /api/v1/dossiers/{code} still answers v1 and lists the
    waiting rescan under `held`."""
    code, record = held
    key = KeyStore(pipeline.settings.storage.catalog_url).create("processor", ["*"])
    client = TestClient(create_app(pipeline.settings, submit=lambda *a, **k: {}))
    body = client.get(f"/api/v1/dossiers/{code}",
                      headers={"Authorization": f"Bearer {key}"}).json()
    assert body["version"] == 1 and len(body["pages"]) == 3
    assert [(h["batch_id"], h["pages"], h["reason"], h["detail"]) for h in body["held"]] == [
        (record.batch_id, [0, 1], "incomplete_rescan", "2 of 3 pages")]
