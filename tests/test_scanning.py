"""Scanning into batches: an eSCL scan becomes a stored, split batch; trouble at the scanner is kept
and told, never lost. The scanner is the emulator (tests/escl_emulator.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from scanners.devices import ScannerConfig, Scanners
from scanners.escl_xml import ScanRequest
from scanners.scan import ScanProgress, ScanService, run_scan
from scanners.spool import Spool
from tests import synth
from tests.escl_emulator import EmulatorConfig, EsclEmulator

SOHOA = Path(sys.executable).parent / "sohoa"


@pytest.fixture(scope="module")
def stack() -> synth.Batch:
    """Two dossiers, receipt + one prose page each, as the feeder's JPEG pages."""
    return synth.make_batch(n_dossiers=2, dpi=200, seed=5, text_pages=1, with_id_card=False)


def jpeg_pages(batch: synth.Batch) -> list[bytes]:
    return [synth.encode(synth.degrade(p, s), p.dpi, s) for p, s in batch.pages]


@pytest.fixture
def fast_pipeline(tmp_path: Path) -> Pipeline:
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1,
                                               scanner_discovery=False))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]  # the split, without OCR's seconds
    return pipeline


def scan_into(pipeline: Pipeline, emulator: EsclEmulator, request: ScanRequest | None = None):
    scanners = Scanners([ScannerConfig(url=emulator.url, name="MFP tầng 1")],
                        pipeline.settings.storage.data_dir, discovery=False)
    device, _ = scanners.find("MFP tầng 1")
    return run_scan(scanners, device, request or ScanRequest(), Spool(pipeline.settings.scanners.spool_dir),
                    partial(run_file, pipeline))


def test_a_scan_becomes_a_batch_split_into_its_dossiers(fast_pipeline: Pipeline, stack) -> None:
    """Given two dossiers in the feeder, when scanned, then one batch from that scanner holds both
    dossiers, and the original holds the scanner's JPEG pages byte for byte."""
    pages = jpeg_pages(stack)
    with EsclEmulator(EmulatorConfig(pages=pages)) as emulator:
        progress = scan_into(fast_pipeline, emulator)
    assert (progress.state, progress.pages) == ("done", 4)
    record = fast_pipeline.record(progress.batch_id)
    assert record.source == "escl" and record.device == emulator.config.uuid
    assert [d.dossier_id for d in record.dossiers] == [d.code for d in stack.dossiers]
    import pikepdf

    with fast_pipeline.store.local_path(record.original) as original:
        embedded = [bytes(p.Resources.XObject.Im0.read_raw_bytes()) for p in pikepdf.open(original).pages]
    assert embedded == pages
    assert list(Path(fast_pipeline.settings.scanners.spool_dir / "ready").iterdir()) == []


def test_a_jammed_scan_keeps_its_pages_in_a_batch_marked_incomplete(fast_pipeline: Pipeline,
                                                                     stack) -> None:
    """Given a jam after 3 of 4 pages (two dossiers of 2 pages), then the batch holds the 3
    pages, goes to review and says it is incomplete because of the jam; the first dossier, closed
    by the second receipt, is stored; the second, cut by the jam, waits for a person."""
    with EsclEmulator(EmulatorConfig(pages=jpeg_pages(stack), jam_after=3)) as emulator:
        progress = scan_into(fast_pipeline, emulator)
    assert (progress.state, progress.pages, progress.problem) == ("incomplete", 3, "jam")
    record = fast_pipeline.record(progress.batch_id)
    assert record.pages == 3 and record.status == "needs_review"
    assert "jam" in record.incomplete.lower()
    first, second = (d.code for d in stack.dossiers)
    assert [d.dossier_id for d in record.dossiers] == [first]
    assert [(r.code, r.pages, r.reason) for r in record.review if r.pages] == [
        (second, [2], "incomplete_scan")]
    assert fast_pipeline.dossiers.versions(second) == []
    assert {"pages": [], "code": None, "reason": "incomplete",
            "detail": record.incomplete} in record.review


def test_a_jammed_rescan_never_replaces_the_complete_version(fast_pipeline: Pipeline,
                                                              stack) -> None:
    """Given a dossier stored complete (2 pages), when it is scanned again and the feeder jams
    after its first page, then its current version stays v1, the rescan waits in review as an
    incomplete rescan, the feed says nothing of it, and the dossier says a version is waiting."""
    code = stack.dossiers[0].code
    pages = jpeg_pages(stack)[:2]
    with EsclEmulator(EmulatorConfig(pages=pages)) as emulator:
        assert scan_into(fast_pipeline, emulator).state == "done"
    assert [m.version for m in fast_pipeline.dossiers.versions(code)] == [1]
    with EsclEmulator(EmulatorConfig(pages=pages, jam_after=1)) as emulator:
        progress = scan_into(fast_pipeline, emulator)
    assert (progress.state, progress.pages) == ("incomplete", 1)
    record = fast_pipeline.record(progress.batch_id)
    assert record.status == "needs_review" and record.dossiers == []
    held = [r for r in record.review if r.pages]
    assert [(r.code, r.pages, r.reason, r.current_version, r.current_pages)
            for r in held] == [(code, [0], "incomplete_rescan", 1, 2)]
    assert [m.version for m in fast_pipeline.dossiers.versions(code)] == [1]
    catalog = fast_pipeline.catalog
    assert catalog is not None
    assert [(e["kind"], e["version"]) for e in catalog.events(None)] == [("created", 1)]
    dossier = catalog.dossier(code)
    assert dossier is not None and dossier["version"] == 1 and len(dossier["pages"]) == 2
    assert [(h["batch_id"], h["pages"], h["reason"]) for h in dossier["held"]] == [
        (record.batch_id, [0], "incomplete_rescan")]


def test_an_empty_feeder_is_told_and_makes_no_batch(fast_pipeline: Pipeline) -> None:
    with EsclEmulator(EmulatorConfig(pages=[], feeder_empty=True)) as emulator:
        progress = scan_into(fast_pipeline, emulator)
    assert (progress.state, progress.problem, progress.batch_id) == ("failed", "feeder_empty", None)
    assert "empty" in progress.message
    assert list(fast_pipeline.store.list("batches/")) == []


def test_sohoa_scan_scans_and_digitizes(tmp_path: Path, stack) -> None:
    """Given a configured scanner, when `sohoa scan NAME --json` runs, then it prints the batch with
    both dossiers and exits 0."""
    pages = jpeg_pages(stack)[:1] + jpeg_pages(stack)[2:3]  # the two receipts: little OCR
    with EsclEmulator(EmulatorConfig(pages=pages)) as emulator:
        env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
               "SOHOA_SCANNER_DISCOVERY": "false",
               "SOHOA_SCANNERS": json.dumps([{"url": emulator.url, "name": "quay-1"}])}
        listed = subprocess.run([str(SOHOA), "scanners", "list", "--json"], env=env,
                                capture_output=True, text=True, timeout=60)
        out = subprocess.run([str(SOHOA), "scan", "quay-1", "--json"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert json.loads(listed.stdout)["scanners"][0]["state"] == "ready"
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["scan"]["pages"] == 2
    assert [d["dossier_id"] for d in result["batch"]["dossiers"]] == [d.code for d in stack.dossiers]


# ---- the API of the scanning station ---------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path, stack):
    settings = Settings(data_dir=tmp_path / "data", workers=1, scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    shared = EsclEmulator(EmulatorConfig(pages=jpeg_pages(stack))).start()
    own = EsclEmulator(EmulatorConfig(pages=jpeg_pages(stack)[:2],
                                      uuid="0d6f2a8e-0000-4000-8000-000000000400")).start()
    scanners = Scanners([ScannerConfig(url=shared.url, name="shared"),
                         ScannerConfig(url=own.url, name="H40 only", agency="H40")],
                        settings.storage.data_dir, discovery=False)
    service = ScanService(scanners, Spool(settings.scanners.spool_dir), partial(run_file, pipeline),
                          settings.storage.data_dir / "scans")
    keys = KeyStore(settings.storage.catalog_url)
    headers = {name: {"Authorization": f"Bearer {keys.create(role, [agency])}"}
               for name, role, agency in [("scanner", "scanner", "H12"), ("processor", "processor", "H12"),
                                          ("h40", "scanner", "H40")]}
    with TestClient(create_app(settings, submit=partial(run_file, pipeline), scans=service)) as client:
        yield client, headers, shared, own
    shared.stop()
    own.stop()


def follow(client: TestClient, scan_id: str, headers: dict) -> dict:
    for _ in range(200):
        state = client.get(f"/api/v1/scans/{scan_id}", headers=headers).json()
        if state["state"] in ("done", "incomplete", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError("scan did not finish")


def test_staff_start_a_scan_and_follow_it_to_its_batch(station) -> None:
    client, headers, shared, _ = station
    listed = client.get("/api/v1/scanners", headers=headers["scanner"]).json()["scanners"]
    assert [s["name"] for s in listed] == ["shared"]  # the H40 scanner is not this agency's
    started = client.post(f"/api/v1/scanners/{listed[0]['id']}/scans", headers=headers["scanner"],
                          json={"source": "feeder"})
    assert started.status_code == 202
    final = follow(client, started.json()["id"], headers["scanner"])
    assert (final["state"], final["pages"], final["agency"]) == ("done", 4, "H12")
    batch = client.get(f"/api/v1/batches/{final['batch_id']}", headers=headers["scanner"]).json()
    assert batch["device"] == shared.config.uuid
    # The receipts carry codes of other agencies than H12, the scan's: writes are scoped like
    # reads, so their pages wait in review for those agencies instead of making dossiers.
    assert (batch["status"], batch["dossiers"], batch["unmatched_pages"]) == (
        "needs_review", [], [0, 1, 2, 3])


def test_another_agencys_scanner_and_scans_are_404(station) -> None:
    client, headers, _, own = station
    assert client.post(f"/api/v1/scanners/{own.config.uuid}/scans", headers=headers["scanner"],
                       json={}).status_code == 404
    started = client.post(f"/api/v1/scanners/{own.config.uuid}/scans", headers=headers["h40"], json={})
    assert started.status_code == 202
    assert client.get(f"/api/v1/scans/{started.json()['id']}",
                      headers=headers["scanner"]).status_code == 404
    assert follow(client, started.json()["id"], headers["h40"])["state"] == "done"


def test_scanner_routes_need_the_scanner_role_and_a_key(station) -> None:
    client, headers, _, _ = station
    assert client.get("/api/v1/scanners", headers=headers["processor"]).status_code == 403
    assert client.get("/api/v1/scanners").status_code == 401
    assert client.get("/api/v1/scans/nonexistent", headers=headers["scanner"]).status_code == 404


@pytest.mark.parametrize("body", [{"source": "roof"}, {"resolution": 5}, {"duplex": True, "source": "platen"},
                                  {"dossier": "not a code"}, {"agency": "../x"}])
def test_malformed_scan_requests_are_422(station, body: dict) -> None:
    client, headers, shared, _ = station
    answer = client.post(f"/api/v1/scanners/{shared.config.uuid}/scans", headers=headers["scanner"],
                         json=body)
    assert answer.status_code == 422


def test_a_scan_killed_midway_is_kept_and_ingested_once_after_restart(tmp_path: Path, stack) -> None:
    """Given `sohoa scan` killed (SIGKILL) after 2 of 4 pages arrived, when sohoa starts again,
    then the 2 pages are one batch marked incomplete, and starting once more adds nothing."""
    from scanners.receivers import start_receivers

    pages = jpeg_pages(stack)
    with EsclEmulator(EmulatorConfig(pages=pages, busy_before_page=1)) as emulator:
        env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"),
               "SOHOA_SCANNER_DISCOVERY": "false",
               "SOHOA_SCANNERS": json.dumps([{"url": emulator.url, "name": "quay-1"}])}
        scan = subprocess.Popen([str(SOHOA), "scan", "quay-1"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            incoming = tmp_path / "data" / "spool" / "incoming"
            deadline = time.monotonic() + 60
            while len(list(incoming.glob("*/pages/*.img"))) < 2:
                assert time.monotonic() < deadline and scan.poll() is None
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):  # SIGKILL mid-scan, all it started
                os.killpg(scan.pid, signal.SIGKILL)  # (also when the test fails)
            scan.wait()
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    for _ in range(2):  # two restarts
        spool = Spool(pipeline.settings.scanners.spool_dir)
        for receiver in start_receivers(spool, partial(run_file, pipeline)):
            receiver.stop()
    records = [json.loads(pipeline.store.get(k)) for k in pipeline.store.list("batches/")
               if k.endswith("batch.json")]
    assert len(records) == 1
    (record,) = records
    assert record["pages"] == 2 and record["status"] == "needs_review"
    assert "sohoa stopped while receiving; 2 page(s) kept" in record["incomplete"]
    assert record["device"] == emulator.config.uuid


def test_the_progress_of_month_old_scans_is_forgotten_at_start(tmp_path: Path) -> None:
    """Given saved progress of a scan finished 40 days ago and of one from today, when the scan
    service starts, then only today's is still listed (the station's list does not grow forever)."""
    state = tmp_path / "scans"
    state.mkdir()
    for scan_id, age_days in (("old", 40), ("new", 0)):
        path = state / f"{scan_id}.json"
        path.write_text(json.dumps(ScanProgress(scan_id, "dev", "MFP", "feeder", False,
                                                state="done").public()))
        stamp = time.time() - age_days * 86400
        os.utime(path, (stamp, stamp))
    service = ScanService(Scanners([], tmp_path, False), Spool(tmp_path / "spool"),
                          lambda *a, **k: {}, state)
    assert [p.id for p in service.recent()] == ["new"]
