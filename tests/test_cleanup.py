"""Crash leftovers (uploads, objects and cache copies cut short by a killed process, unfinished S3
multipart uploads) are removed when `sohoa serve` or `sohoa worker` starts, once older than an hour,
each logged; younger ones and real data are left alone."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.cleanup import remove_leftovers
from storage.objects import LocalObjectStore

SOHOA = Path(sys.executable).parent / "sohoa"
TWO_HOURS_AGO = time.time() - 7200


def aged(path: Path, data: bytes, when: float | None = TWO_HOURS_AGO) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if when is not None:
        os.utime(path, (when, when))
    return path


def session(sid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == sid:
                found.append(int(entry.name))
    return found


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """Runs a sohoa command in a session of its own until `ready` is in its log, then stops it
    (SIGTERM; SIGKILL to the whole session as a last resort, even if the test fails)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([str(SOHOA), *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while ready not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.2)
        yield
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-4000:]
    finally:
        for _ in range(3):
            for pid in session(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if not session(proc.pid):
                break


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_leftovers_older_than_an_hour_are_removed_at_start_up_and_logged(
        tmp_path: Path, command: str) -> None:
    """Given a data directory holding real objects and what killed processes left (an upload in
    incoming/, a `.tmp-*` object, a half-copied cache file, a half-downloaded S3 object in the
    system temporary directory), some older than an hour and some not,
    when `sohoa worker` (or `sohoa serve`) starts, then the old leftovers are gone, each logged with
    its size and followed by a summary, the young ones are kept, and every real object is unchanged,
    byte for byte, even those older than an hour."""
    data = tmp_path / "data"
    store = LocalObjectStore(data / "objects")
    originals = {"batches/b1/original.pdf": os.urandom(5000), "batches/b1/batch.json": b"{}",
                 "dossiers/X/v0001/dossier.pdf": os.urandom(3000)}
    for key, body in originals.items():
        store.put(key, body)
        os.utime(data / "objects" / key, (TWO_HOURS_AGO, TWO_HOURS_AGO))  # old data is data
    cached = aged(data / "cache" / "b1.pdf", b"a finished cache copy")
    system_tmp = tmp_path / "tmp"  # TMPDIR of the command
    old = [aged(data / "incoming" / "tmpk3j9x_2a.pdf", b"x" * 1234),
           aged(data / "objects" / "batches" / "b1" / ".tmp-abc123", b"y" * 77),
           aged(data / "cache" / ".b2.pdf.4242", b"z" * 500),
           aged(system_tmp / "sohoa-s3-q8w7e6r5.pdf", b"s" * 100)]
    young = [aged(data / "incoming" / "tmpyoung000.pdf", b"still arriving", when=None),
             aged(data / "objects" / "batches" / "b1" / ".tmp-young", b"being written",
                  when=time.time() - 1800)]
    assert sorted(store.list("")) == sorted(originals)  # a leftover is never listed as data

    env = {**os.environ, "SOHOA_DATA_DIR": str(data), "SOHOA_WORKERS": "1",
           "SOHOA_SCANNER_DISCOVERY": "false", "TMPDIR": str(system_tmp)}
    env.pop("SOHOA_BROKER_URL", None)
    log = tmp_path / f"{command}.log"
    args = ["worker"] if command == "worker" else ["serve", "--port", str(free_port())]
    with started(args, env, log, " ready." if command == "worker" else "Uvicorn running"):
        pass

    text = log.read_text(errors="replace")
    assert [p for p in old if p.exists()] == []
    assert all(p.exists() for p in young) and cached.exists()
    assert {key: store.get(key) for key in originals} == originals
    assert sorted(store.list("")) == sorted(originals)
    assert f"removed crash leftover {old[0]} (1234 bytes" in text
    assert f"removed crash leftover {old[1]} (77 bytes" in text
    assert f"removed crash leftover {old[2]} (500 bytes" in text
    assert f"removed crash leftover {old[3]} (100 bytes" in text
    assert "4 crash leftovers removed, 1911 bytes freed" in text
    assert "young" not in text


def test_unfinished_multipart_uploads_on_s3_are_aborted_once_old_enough(tmp_path: Path,
                                                                          caplog) -> None:
    """Given an S3 bucket (moto's server) holding a complete object and a multipart upload whose
    uploader died (moto dates every upload in 2010), when leftovers are cleaned with an age limit
    above the upload's age, then it is kept; when cleaned with the default hour, then it is aborted
    and logged with its size, and the complete object is unchanged."""
    from moto.server import ThreadedMotoServer

    from storage.s3 import S3ObjectStore

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        store = S3ObjectStore.connect(f"{host}:{port}", "test", "test",
                                      f"sohoa-{uuid.uuid4().hex[:12]}", secure=False,
                                      region="us-east-1")
        body = os.urandom(2000)
        store.put("batches/b1/original.pdf", body)
        client = store.client
        upload_id = client._create_multipart_upload(store.bucket, "batches/b2/original.tiff", {})
        client._upload_part(store.bucket, "batches/b2/original.tiff", b"p" * 6000, None,
                            upload_id, 1)

        def unfinished() -> list:
            return client._list_multipart_uploads(store.bucket).uploads

        age = time.time() - unfinished()[0].initiated_time.timestamp()
        caplog.set_level(logging.INFO, logger="sohoa.cleanup")
        assert remove_leftovers(store, tmp_path, older_than=age + 86400) == []
        assert [u.upload_id for u in unfinished()] == [upload_id]

        removed = remove_leftovers(store, tmp_path)
        assert [(r.name, r.size) for r in removed] == [
            (f"s3://{store.bucket}/batches/b2/original.tiff?uploadId={upload_id}", 6000)]
        assert unfinished() == []
        assert store.get("batches/b1/original.pdf") == body
        assert list(store.list("")) == ["batches/b1/original.pdf"]
        assert f"?uploadId={upload_id} (6000 bytes" in caplog.text
        assert "1 crash leftovers removed, 6000 bytes freed" in caplog.text
    finally:
        server.stop()
