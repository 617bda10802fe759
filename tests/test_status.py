"""What the system is doing, for admins: the status (API and web page), Prometheus metrics and
JSON logs, after a real batch and a bad file."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.keys import KeyStore
from ingest import logs
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from storage.leases import Leases, worker_key
from tests.synth import ASN_BATCH

ASN = r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    settings = Settings(data_dir=tmp / "data", workers=1, dossier_code_grammar=ASN,
                        scanner_discovery=False)
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    keys = KeyStore(settings.storage.catalog_url)
    made = {"admin": keys.create("admin", ["*"]), "agency_admin": keys.create("admin", ["H40"]),
            "processor": keys.create("processor", ["ASN"]), "auditor": keys.create("auditor", ["*"])}
    with TestClient(create_app(settings, submit=lambda *a, **k: None)) as client:
        before = samples(client.get("/metrics", headers=auth(made["admin"])).text)
        # Given a good batch sent by a watched folder's device, and a file that is no image
        good = run_file(pipeline, ASN_BATCH, source="folder", device="mfp-1", agency="ASN")
        bad_file = tmp / "giay-hong.pdf"
        bad_file.write_bytes(b"%PDF-1.4 cut short")
        bad = run_file(pipeline, bad_file, source="ftp", device="mfp-2", agency="ASN")
        yield client, made, pipeline, before, good, bad


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_metrics_count_the_batchs_pages_by_outcome_and_time_each_stage(env) -> None:
    client, keys, _, before, good, _ = env
    r = client.get("/metrics", headers=auth(keys["admin"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = samples(r.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    dropped = {d.reason for d in good.dropped_pages}
    outcomes = {o: grew("sohoa_pages_processed_total", outcome=o)
                for o in ("ok", "blank", "separator", "failed")}
    assert sum(outcomes.values()) == good.pages  # the broken file has no page to process
    assert outcomes["ok"] >= good.pages - len(good.dropped_pages)
    assert ("blank" in dropped) == (outcomes["blank"] > 0)
    assert grew("sohoa_page_stage_seconds_count", stage="barcodes") == good.pages
    assert grew("sohoa_batches_finished_total", status="done") == 1


def test_metrics_show_the_state_read_at_scrape_time(env) -> None:
    client, keys, _, _, _, bad = env
    after = samples(client.get("/metrics", headers=auth(keys["admin"])).text)
    assert after[("sohoa_batches", (("status", "done"),))] == 1
    assert after[("sohoa_batches", (("status", bad.status),))] >= 1
    assert ("sohoa_workers_alive", ()) in after and ("sohoa_broker_up", ()) in after


@pytest.mark.parametrize("who", ["agency_admin", "processor", "auditor"])
def test_metrics_are_only_for_an_admin_of_every_agency(env, who: str) -> None:
    client, keys, *_ = env
    assert client.get("/metrics", headers=auth(keys[who])).status_code == 403


def test_metrics_without_a_key_are_refused(env) -> None:
    client, *_ = env
    assert client.get("/metrics").status_code in (401, 303)
    assert client.get("/metrics", headers=auth("sohoa_not-a-key")).status_code == 401


def test_status_shows_each_channels_last_file_and_last_failure(env) -> None:
    """Given a good batch from a folder device and a broken file from an FTP device, the status
    names both channels, the folder's last file, and the FTP's failure with its file."""
    client, keys, _, _, _, bad = env
    status = client.get("/api/v1/status", headers=auth(keys["admin"])).json()
    channels = {(c["source"], c["device"]): c for c in status["channels"]}
    folder, ftp = channels[("folder", "mfp-1")], channels[("ftp", "mfp-2")]
    assert (folder["last_file"], folder["last_status"], folder["last_error"]) == \
        (ASN_BATCH.name, "done", None)
    assert ftp["last_error_file"] == "giay-hong.pdf" and ftp["last_error"] == bad.error
    assert status["batches"]["done"] == 1


def test_status_counts_failed_pages_and_lists_live_workers(env) -> None:
    client, keys, pipeline, *_ = env
    leases = Leases(pipeline.settings.storage.catalog_url)
    with leases.holding(worker_key("sohoa-1@may-chu"), 30, "sohoa-1@may-chu (2 processes)"):
        status = client.get("/api/v1/status", headers=auth(keys["admin"])).json()
    assert [w["node"] for w in status["workers"]] == ["sohoa-1@may-chu"]
    gone = client.get("/api/v1/status", headers=auth(keys["admin"])).json()
    assert gone["workers"] == []
    assert isinstance(status["failed_pages_waiting"], int)
    assert "queue_depth" in status and status["queue"] == pipeline.settings.broker.queue


def test_status_of_an_agency_admin_shows_only_that_agencys_batches(env) -> None:
    client, keys, *_ = env
    status = client.get("/api/v1/status", headers=auth(keys["agency_admin"])).json()
    assert status["batches"] == {} and status["channels"] == []


def test_status_is_for_admins(env) -> None:
    client, keys, *_ = env
    assert client.get("/api/v1/status", headers=auth(keys["processor"])).status_code == 403


def test_json_logs_carry_the_batch_page_and_dossier(env, tmp_path: Path) -> None:
    """Given JSON logging, when a batch runs, then its lines are JSON objects naming the batch,
    each page line its page, and each stored dossier's line its code."""
    _, _, pipeline, *_ = env
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.apply(handler, "json")
    logger = logging.getLogger("ingest.pipeline")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        copy = tmp_path / "again.pdf"
        copy.write_bytes(ASN_BATCH.read_bytes() + b"\n")  # another file: a new batch
        record = run_file(pipeline, copy, agency="ASN")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines and all(line["batch_id"] == record.batch_id for line in lines)
    assert {line["page"] for line in lines if "page" in line} == set(range(record.pages))
    stored = {line["dossier"] for line in lines if "dossier" in line}
    assert stored == {d.dossier_id for d in record.dossiers}
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)


def test_the_status_page_shows_admins_the_channels_queue_and_workers(live_app, page,
                                                                       tmp_path: Path) -> None:
    """Given an admin signed in, the status page (in the admin menu) shows the intake channels
    and a refused file's failure, the queue, and that no worker runs."""
    from tests.browser import login, shot

    bad = tmp_path / "hong.pdf"
    bad.write_bytes(b"%PDF-1.4 cut short")
    run_file(live_app.pipeline, bad, source="email", device="mfp-3", agency="H40")
    username, password = live_app.user("admin", ["*"])
    login(page, live_app.url, username, password)
    page.click("nav >> text=Tình trạng hệ thống")
    shot(page, "status")
    assert page.url.endswith("/admin/status")
    channel = page.locator("#channels tr", has_text="Thư điện tử · mfp-3")
    assert channel.locator("code").first.inner_text() == "hong.pdf"
    assert "Không có tiến trình xử lý nào" in page.locator("#workers").inner_text()


def test_the_status_page_is_refused_to_other_roles(live_app) -> None:
    from tests.browser import http_login

    client, _ = http_login(live_app.url, *live_app.user("processor", ["*"]))
    try:
        assert client.get("/admin/status").status_code == 403
    finally:
        client.close()
