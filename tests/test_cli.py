"""The `sohoa` command as a user runs it (a real subprocess, the console script of .venv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOHOA = Path(sys.executable).parent / "sohoa"
SAMPLE = ROOT / "examples" / "sample-batch.pdf"


def sohoa(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SOHOA), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SOHOA_DATA_DIR": str(data), **env})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli") / "data"


@pytest.fixture(scope="module")
def sample_run(data: Path) -> dict:
    result = sohoa(data, "ingest", str(SAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # exactly one JSON document


def test_ingest_json_reports_the_batch(sample_run: dict) -> None:
    (batch,) = sample_run["batches"]
    assert set(batch) == {"batch_id", "file", "status", "error", "pages", "dossiers",
                          "unmatched_pages", "dropped_pages", "failed_pages"}
    assert (batch["file"], batch["status"], batch["error"], batch["pages"]) == \
        ("sample-batch.pdf", "done", None, 7)
    assert [d["pages"] for d in batch["dossiers"]] == [[0, 1, 2], [4, 5, 6]]
    assert batch["dropped_pages"] == [{"page": 3, "reason": "blank"}]
    for d in batch["dossiers"]:
        assert set(d) == {"dossier_id", "pages", "pdf", "fields"}
        assert set(d["fields"]["dossier_id"]) == {"value", "page", "confidence", "source"}


def test_dossier_show_gives_fields_and_versions(data: Path, sample_run: dict) -> None:
    code = sample_run["batches"][0]["dossiers"][1]["dossier_id"]
    shown = json.loads(sohoa(data, "dossier", "show", code, "--json").stdout)
    assert shown["dossier_id"] == code and shown["version"] == 1
    assert shown["fields"]["dossier_id"]["value"] == code


def test_dossier_pdf_writes_the_document(data: Path, sample_run: dict, tmp_path: Path) -> None:
    code = sample_run["batches"][0]["dossiers"][0]["dossier_id"]
    out = tmp_path / "d.pdf"
    assert sohoa(data, "dossier", "pdf", code, "-o", str(out)).returncode == 0
    with pikepdf.open(out) as pdf:
        assert len(pdf.pages) == 3


def test_unknown_dossier_is_a_clear_error(data: Path) -> None:
    result = sohoa(data, "dossier", "show", "000.00.04.H40-230414-9999")
    assert result.returncode == 1 and "no dossier 000.00.04.H40-230414-9999" in result.stderr


def test_encrypted_file_fails_its_batch_and_keeps_the_original(data: Path, samples: Path) -> None:
    src = samples / "paperless-ngx" / "password-is-test.pdf"
    result = sohoa(data, "ingest", str(src), "--json")
    (batch,) = json.loads(result.stdout)["batches"]
    assert result.returncode == 1
    assert batch["status"] == "failed" and batch["error"].startswith("encrypted:")
    kept = data / "objects" / "batches" / batch["batch_id"] / "original.pdf"
    assert kept.read_bytes() == src.read_bytes()


def test_one_bad_file_does_not_stop_the_others(data: Path, samples: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"\x00" * 100)
    result = sohoa(data, "ingest", str(junk), str(samples / "paperless-ngx" / "patch-code-t.pdf"),
                   "--json")
    statuses = [(b["file"], b["status"]) for b in json.loads(result.stdout)["batches"]]
    assert statuses == [("junk.pdf", "failed"), ("patch-code-t.pdf", "done")]


def test_malformed_dossier_option_is_refused(data: Path) -> None:
    result = sohoa(data, "ingest", str(SAMPLE), "--dossier", "not a code")
    assert result.returncode == 2 and "not a dossier code" in result.stderr


def test_invalid_configuration_is_reported(data: Path) -> None:
    result = sohoa(data, "ingest", str(SAMPLE), SOHOA_WORKERS="0")
    assert result.returncode == 1 and "SOHOA" not in result.stdout
    assert "workers" in result.stderr


def test_unreachable_database_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = sohoa(tmp_path / "data", "ingest", str(SAMPLE),
                   SOHOA_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "database unavailable: " in result.stderr and "Traceback" not in result.stderr


def test_verify_reports_all_unchanged(data: Path, sample_run: dict) -> None:
    result = sohoa(data, "verify")
    assert result.returncode == 0 and "all unchanged" in result.stdout


def test_audit_log_of_cli_reads_verifies(data: Path, sample_run: dict) -> None:
    code = sample_run["batches"][0]["dossiers"][0]["dossier_id"]
    sohoa(data, "dossier", "show", code)
    result = sohoa(data, "audit", "verify")
    assert result.returncode == 0 and "audit log intact" in result.stdout


def test_a_lost_database_is_rebuilt_from_object_storage_audit_log_included(
        data: Path, sample_run: dict, tmp_path: Path) -> None:
    """Given the catalog database deleted outright, when `sohoa reindex` runs, then dossiers answer
    as before and the audit log is back and verifies."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    code = sample_run["batches"][0]["dossiers"][0]["dossier_id"]
    before = json.loads(sohoa(copy, "dossier", "show", code, "--json").stdout)
    (copy / "catalog.sqlite3").unlink()
    rebuilt = sohoa(copy, "reindex")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "restored" in rebuilt.stdout and "audit log entries" in rebuilt.stdout
    assert json.loads(sohoa(copy, "dossier", "show", code, "--json").stdout) == before
    verified = sohoa(copy, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
