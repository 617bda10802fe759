"""`sohoa serve` as an office runs it: API, worker and the configured push receivers, on embedded
defaults (local disk, SQLite, SQLite broker)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SOHOA = Path(sys.executable).parent / "sohoa"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_batches(objects: Path, count: int, log: Path, timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [json.loads(p.read_text()) for p in objects.glob("batches/*/batch.json")]
        finished = [r for r in records if r["status"] in ("done", "needs_review", "failed")]
        if len(finished) >= count:
            return finished
        time.sleep(0.5)
    states = {p.parent.name: json.loads(p.read_text())["status"]
              for p in objects.glob("batches/*/batch.json")}
    raise AssertionError(f"{count} batch(es) not finished in {timeout}s: {states}\n"
                         + log.read_text(errors="replace")[-6000:])


def test_serve_digitizes_what_scanners_push_to_its_folder_and_ftp(tmp_path: Path) -> None:
    """Given `sohoa serve` with a watched folder and an FTP account configured, when a scanner drops
    a batch in its folder and another uploads one over FTP, then both become digitized batches
    recording their device, and the API answers meanwhile."""
    folder, ftp_port, api_port = tmp_path / "mfp-1", free_port(), free_port()
    folder.mkdir()
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
           "SOHOA_SCANNER_DISCOVERY": "false",
           "SOHOA_FOLDER": json.dumps({"devices": {"mfp-1": str(folder)}, "poll_seconds": 0.5,
                                       "settle_seconds": 0.5}),
           "SOHOA_FTP": json.dumps({"accounts": [{"device": "mfp-2", "username": "mfp2",
                                                  "password": "s3cret"}], "port": ftp_port})}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(SOHOA), "serve", "--port", str(api_port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/api/v1/batches/x").status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, \
                (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        sample = ROOT / "examples" / "sample-batch.pdf"
        shutil.copyfile(sample, folder / "scan-0001.pdf")
        other = tmp_path / "other.pdf"  # another scan of the same stack: other bytes, another batch
        other.write_bytes(sample.read_bytes() + b"\n% scanned again\n")
        upload = subprocess.run(["curl", "-sS", "-T", str(other), "--user", "mfp2:s3cret",
                                 f"ftp://127.0.0.1:{ftp_port}/tờ-khai.pdf"], capture_output=True, text=True)
        assert upload.returncode == 0, upload.stderr
        records = wait_for_batches(tmp_path / "data" / "objects", 2, tmp_path / "serve.log")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)  # nothing of it may outlive the test
    by_device = {r["device"]: r for r in records}
    assert set(by_device) == {"mfp-1", "mfp-2"}
    assert (by_device["mfp-1"]["source"], by_device["mfp-2"]["source"]) == ("folder", "ftp")
    assert all(len(r["dossiers"]) == 2 for r in records), (tmp_path / "serve.log").read_text()[-3000:]
    assert (folder / ".sohoa-done" / "scan-0001.pdf").exists()


def test_serve_names_each_part_on_one_line_without_celerys_banner(tmp_path: Path) -> None:
    """Given `sohoa serve` with a watched folder, when it has started, then its console names the
    web app's address, the worker and the receiver in a line each, and shows neither Celery's
    banner nor its multi-line warning about running as root."""
    folder, api_port = tmp_path / "mfp-1", free_port()
    folder.mkdir()
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "1",
           "SOHOA_SCANNER_DISCOVERY": "false",
           "SOHOA_FOLDER": json.dumps({"devices": {"mfp-1": str(folder)}})}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([str(SOHOA), "serve", "--port", str(api_port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()
            time.sleep(0.3)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
    console = log_path.read_text()
    assert f"web app and API: http://127.0.0.1:{api_port}/" in console
    assert "receiving scans: FolderReceiver" in console
    assert "worker sohoa-" in console and ": 1 process, queue sohoa on sqla+sqlite" in console
    assert "[queues]" not in console and "SecurityWarning" not in console


def test_serve_counts_the_workers_pages_on_its_metrics_port_and_logs_json(tmp_path: Path) -> None:
    """Given `sohoa serve` with JSON logs and a metrics port, when a scanner drops a batch in its
    folder, then the metrics (summed over the worker's pool processes) count its pages and show
    one worker alive, and the worker's log lines are JSON naming the batch and the page."""
    from prometheus_client.parser import text_string_to_metric_families

    folder, api_port, metrics_port = tmp_path / "mfp-1", free_port(), free_port()
    folder.mkdir()
    env = {**os.environ, "SOHOA_DATA_DIR": str(tmp_path / "data"), "SOHOA_WORKERS": "2",
           "SOHOA_SCANNER_DISCOVERY": "false", "SOHOA_LOG_FORMAT": "json",
           "SOHOA_METRICS_PORT": str(metrics_port),
           "SOHOA_FOLDER": json.dumps({"devices": {"mfp-1": str(folder)}, "poll_seconds": 0.5,
                                       "settle_seconds": 0.5})}
    log_path = tmp_path / "serve.log"

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    with log_path.open("w") as log:
        server = subprocess.Popen([str(SOHOA), "serve", "--port", str(api_port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()
            time.sleep(0.3)
        while scrape().get(("sohoa_workers_alive", ()), 0) != 1:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        shutil.copyfile(ROOT / "examples" / "sample-batch.pdf", folder / "scan-0001.pdf")
        [record] = wait_for_batches(tmp_path / "data" / "objects", 1, log_path)
        found = scrape()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
    processed = sum(v for (name, _), v in found.items() if name == "sohoa_pages_processed_total")
    assert processed == record["pages"]
    assert found[("sohoa_page_stage_seconds_count", (("stage", "ocr"),))] > 0
    assert found[("sohoa_batches", (("status", record["status"]),))] == 1
    console = log_path.read_text()
    assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in console
    lines = [json.loads(line) for line in console.splitlines() if line.startswith("{")]
    pages = {line["page"] for line in lines if line.get("batch_id") == record["batch_id"]
             and "page" in line}
    assert pages == set(range(record["pages"]))
