"""Files that arrive in pieces (issue 10): a watched-folder file is taken once and whole, however
its writer pauses or reopens it, and one that stays cut short is kept marked incomplete; an FTP
client killed mid-file leaves a batch marked incomplete holding what arrived.

Every write is made by a separate `python -c` process into a real folder watched by a running
FolderReceiver, with real PDF, JPEG, PNG and TIFF files made by Pillow."""

# The fixtures of test_push_receivers (drop, spool, pipe, accept, ftp) are imported to be reused:
# the tests' parameters of the same names are them, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ingest.pipeline import Pipeline
from ocr.decode import cut_short
from scanners.folder import DONE
from scanners.ftp import FtpReceiver
from scanners.spool import Spool
from tests.test_push_receivers import (  # noqa: F401 - fixtures are used by name
    Recording,
    accept,
    drop,
    finished,
    folder_receiver,
    ftp,
    pipe,
    sha256,
    spool,
    stored_original,
    wait_for,
)

KINDS = ["pdf", "jpg", "png", "tif"]
SETTLE = 0.3  # seconds a file must stop changing; every writer below pauses longer than this
PAUSE = 0.5
# What cut_short names for each kind; the incomplete reason must say it.
STRUCTURE = {"pdf": "%%EOF", "jpg": "EOI", "png": "IEND", "tif": "TIFF"}

# A scanner writing a file: "slow" writes half, pauses, then the rest through the same open file;
# "chunked" appends a quarter at a time, each in its own open/write/close; "cut" writes 60% and
# stops for good. Prints the monotonic time (system-wide on Linux) its last byte was written.
WRITER = r"""
import sys, time
source, target, how, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
data = open(source, "rb").read()
if how == "slow":
    with open(target, "wb", buffering=0) as f:
        f.write(data[:len(data) // 2])
        time.sleep(pause)
        f.write(data[len(data) // 2:])
elif how == "chunked":
    cuts = [len(data) * i // 4 for i in range(5)]
    for i in range(4):
        if i:
            time.sleep(pause)
        with open(target, "ab", buffering=0) as f:
            f.write(data[cuts[i]:cuts[i + 1]])
elif how == "cut":
    with open(target, "wb", buffering=0) as f:
        f.write(data[:len(data) * 6 // 10])
print(time.monotonic())
"""


def cut_points(how: str, size: int) -> list[int]:
    """The lengths the file has between the writer's steps (the moments a receiver could err)."""
    if how == "slow":
        return [size // 2]
    if how == "chunked":
        return [size * i // 4 for i in (1, 2, 3)]
    return [size * 6 // 10]


def scan_file(kind: str) -> bytes:
    """A real file of the kind: noisy grayscale pages (so none compresses to nothing); PDF and
    TIFF have three pages."""
    rng = random.Random(kind)
    pages = [Image.frombytes("L", (320, 240), rng.randbytes(320 * 240)) for _ in range(3)]
    out = io.BytesIO()
    if kind in ("pdf", "tif"):
        fmt = "PDF" if kind == "pdf" else "TIFF"
        pages[0].save(out, fmt, save_all=True, append_images=pages[1:], resolution=150)
    else:
        pages[0].save(out, {"jpg": "JPEG", "png": "PNG"}[kind], dpi=(150, 150))
    return out.getvalue()


def assert_cut_short_at(data: bytes, points: list[int], where: Path) -> None:
    """The test's premise: the file is cut short by its own structure at every step (else no
    receiver could tell it is not whole, and the test would prove nothing)."""
    probe = where / "probe"
    for point in points:
        probe.write_bytes(data[:point])
        assert cut_short(probe), f"{point} of {len(data)} bytes look whole"
    probe.unlink()


def write(tmp_path: Path, target: Path, data: bytes, how: str) -> float:
    """Runs the writer process to its end; returns when it wrote its last byte (monotonic)."""
    source = tmp_path / f"source-{target.name}"
    source.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", WRITER, str(source), str(target), how,
                           str(PAUSE)], check=True, capture_output=True, text=True, timeout=30)
    return float(done.stdout)


def taken(drop: Path, name: str) -> Callable[[], bool]:
    """The file left the folder for .sohoa-done (after its original was stored)."""
    return lambda: not (drop / name).exists() and (drop / DONE / name).exists()


def no_batch(path: Path, **kw: Any) -> dict[str, Any]:
    """An accept that stores nothing: these tests look only at what the receiver hands over."""
    return {"id": "noted", "file": kw.get("file_name")}


@pytest.mark.parametrize("how", ["slow", "chunked"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_file_written_in_pieces_is_taken_once_and_whole(tmp_path: Path, drop: Path,
                                                          spool: Spool, kind: str,
                                                          how: str) -> None:
    """Given a writer that pauses longer than the settle time mid-file (slow), or appends a quarter
    at a time in four open/write/close rounds (chunked), when the folder is watched, then exactly
    one item is handed over, after the last byte, byte-identical to the file, not incomplete."""
    data = scan_file(kind)
    assert_cut_short_at(data, cut_points(how, len(data)), tmp_path)
    name = f"scan0001.{kind}"
    recording = Recording(no_batch)
    with folder_receiver(drop, spool, recording, settle_seconds=SETTLE, unfinished_seconds=20):
        last_byte = write(tmp_path, drop / name, data, how)
        wait_for(taken(drop, name), what="the file taken")
    assert [(c["sha256"], c["incomplete"]) for c in recording.calls] == [(sha256(data), None)]
    assert recording.calls[0]["at"] >= last_byte
    assert [p.name for p in (drop / DONE).iterdir()] == [name]
    assert (drop / DONE / name).read_bytes() == data


# Pillow warns when it reads the tags of a TIFF cut short: that is the very point of the test.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_a_file_left_cut_short_is_kept_marked_incomplete(tmp_path: Path, drop: Path, spool: Spool,
                                                         accept, pipe: Pipeline,
                                                         kind: str) -> None:
    """Given a writer that stops for good after 60% of the file and closes it, when it stays cut
    short past `unfinished_seconds` (1 s), then it is taken once, no sooner, marked incomplete with
    the structure that is missing, and its batch holds exactly the bytes written and goes to
    review instead of passing for a whole scan."""
    data = scan_file(kind)
    cut = data[:cut_points("cut", len(data))[0]]
    assert_cut_short_at(data, [len(cut)], tmp_path)
    name = f"scan0001.{kind}"
    recording = Recording(accept)
    with folder_receiver(drop, spool, recording, settle_seconds=SETTLE, unfinished_seconds=1):
        last_byte = write(tmp_path, drop / name, data, "cut")
        records = wait_for(lambda: finished(pipe, 1), what="one batch")
        wait_for(taken(drop, name), what="the file moved")
    assert len(recording.calls) == 1
    assert recording.calls[0]["at"] - last_byte >= 1.0
    why = recording.calls[0]["incomplete"]
    assert why.startswith("the file was not whole after 1 s: ") and STRUCTURE[kind] in why, why
    record = records[0]
    assert record["incomplete"] == why
    assert record["status"] in ("needs_review", "failed")
    assert record["sha256"] == sha256(cut)
    assert stored_original(pipe, record) == cut
    assert (drop / DONE / name).read_bytes() == cut


# --- FTP: the client process killed mid-file ----------------------------------------------------

# A scanner uploading over FTP, throttled (8 kB every 50 ms) so that it can be killed mid-file.
UPLOADER = r"""
import ftplib, sys, time
port, source = int(sys.argv[1]), sys.argv[2]

class Slow:
    def __init__(self, f):
        self.f = f
    def read(self, n):
        time.sleep(0.05)
        return self.f.read(n)

with open(source, "rb") as f, ftplib.FTP() as client:
    client.connect("127.0.0.1", port, timeout=30)
    client.login("scanner1", "s3cret-1")
    client.storbinary("STOR dossier.pdf", Slow(f), blocksize=8192)
"""


def test_an_ftp_client_killed_mid_file_leaves_an_incomplete_batch(tmp_path: Path, ftp: FtpReceiver,
                                                                  spool: Spool,
                                                                  pipe: Pipeline) -> None:
    """Given a real ftplib client process uploading a 3-page PDF, when it is SIGKILLed after about
    40% has reached the server, then what arrived is one batch holding a prefix of the file, marked
    incomplete (the transfer may end "complete" for the server: the file's own end is missing)."""
    data = scan_file("pdf")
    source = tmp_path / "dossier.pdf"
    source.write_bytes(data)
    client = subprocess.Popen([sys.executable, "-c", UPLOADER, str(ftp.port), str(source)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: [f for f in spool.incoming.glob("*/file/dossier.pdf")
                          if f.stat().st_size >= len(data) * 4 // 10] or client.poll() is not None,
                 what="40% of the upload on disk")
        assert client.poll() is None, "the upload ended before it could be cut"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(client.pid, signal.SIGKILL)
        client.wait(10)
        client.stderr.close()  # type: ignore[union-attr]
    records = wait_for(lambda: finished(pipe, 1), what="one batch")
    record = records[0]
    kept = stored_original(pipe, record)
    assert 0 < len(kept) < len(data) and data.startswith(kept)
    assert record["incomplete"], json.dumps(record, default=str)
    assert record["status"] in ("needs_review", "failed")
