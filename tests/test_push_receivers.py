"""Push receivers (scanners/folder.py, ftp.py, email.py, receivers.py): what a scanner sends is
stored once, byte for byte, with its device; a partial upload is kept as an incomplete batch;
nothing is lost when sohoa is killed at any point. All servers run on loopback, port 0."""

from __future__ import annotations

import contextlib
import ftplib
import functools
import hashlib
import io
import json
import os
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from scanners.email import EmailConfig, EmailReceiver
from scanners.folder import DONE, REJECTED, FolderConfig, FolderReceiver
from scanners.ftp import FtpAccount, FtpConfig, FtpReceiver
from scanners.receivers import start_receivers
from scanners.spool import Spool
from tests import synth

REPO = Path(__file__).resolve().parents[1]
PDF = synth.RECEIVED_TEXT  # generated scans kept in tests/data
PDF2 = synth.RECEIVED_RECEIPT
JPG = synth.RECEIVED_PHOTO


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_pipeline(data_dir: Path) -> Pipeline:
    pipeline = Pipeline.from_settings(Settings(data_dir=data_dir, workers=1))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]  # no OCR: fast
    return pipeline


def batches(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every batch record in object storage, finished ones only (a batch still being processed has
    status received/processing)."""
    keys = sorted(k for k in pipeline.store.list("batches/") if k.endswith("/batch.json"))
    return [json.loads(pipeline.store.get(k)) for k in keys]


def finished(pipeline: Pipeline, count: int) -> list[dict[str, Any]] | None:
    records = batches(pipeline)
    if len(records) == count and all(r["status"] in ("done", "failed", "needs_review")
                                     for r in records):
        return records
    return None


def stored_original(pipeline: Pipeline, record: dict[str, Any]) -> bytes:
    return pipeline.store.get(record["original"])


class Recording:
    """An accept that notes each hand-off (and whether the folder's source still existed) before
    passing it on to the real one."""

    def __init__(self, inner: Callable[..., dict[str, Any]], watch: Path | None = None) -> None:
        self.inner = inner
        self.watch = watch
        self.calls: list[dict[str, Any]] = []

    def __call__(self, path: Path, **kw: Any) -> dict[str, Any]:
        self.calls.append({"at": time.monotonic(), "sha256": sha256(Path(path).read_bytes()),
                           "source_present": self.watch.exists() if self.watch else None, **kw})
        return self.inner(path, **kw)


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    return make_pipeline(tmp_path / "data")


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "data" / "spool")


@pytest.fixture
def accept(pipe: Pipeline) -> Callable[..., dict[str, Any]]:
    return functools.partial(run_file, pipe)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "smb" / "mfp-1"
    folder.mkdir(parents=True)
    return folder


@contextlib.contextmanager
def folder_receiver(drop: Path, spool: Spool, accept: Callable[..., Any], **options: Any
                    ) -> Iterator[FolderReceiver]:
    config = FolderConfig(devices={"mfp-1": drop}, **{"poll_seconds": 0.1, "settle_seconds": 0.3,
                                                      **options})
    receiver = FolderReceiver(config, spool, accept).start()
    try:
        yield receiver
    finally:
        receiver.stop()


# --- watched folder -----------------------------------------------------------------------------


def test_a_file_written_slowly_is_taken_only_once_complete(drop: Path, spool: Spool, accept,
                                                           pipe: Pipeline) -> None:
    """Given a scanner writing a PDF in chunks over 1.5 s (pauses shorter than settle_seconds),
    when the folder is watched, then the file is taken once, after the last byte, whole."""
    data = PDF2.read_bytes()
    recording = Recording(accept)
    written_at: list[float] = []

    def write_slowly() -> None:
        chunks = [data[i:i + len(data) // 10 + 1] for i in range(0, len(data), len(data) // 10 + 1)]
        with (drop / "scan0001.pdf").open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
                time.sleep(1.5 / len(chunks))
        written_at.append(time.monotonic())

    with folder_receiver(drop, spool, recording, settle_seconds=1.0):
        writer = threading.Thread(target=write_slowly)
        writer.start()
        records = wait_for(lambda: finished(pipe, 1), what="one batch")
        writer.join()
    assert len(recording.calls) == 1
    assert recording.calls[0]["at"] >= written_at[0]
    assert recording.calls[0]["sha256"] == records[0]["sha256"] == sha256(data)


def test_a_temporary_name_renamed_is_taken_once_under_its_final_name(drop: Path, spool: Spool,
                                                                      accept, pipe: Pipeline) -> None:
    """Given a scanner that writes `scan.pdf.part` then renames it to `scan.pdf`, when the folder
    is watched, then the temporary name is never taken and one batch records `scan.pdf`."""
    with folder_receiver(drop, spool, accept):
        (drop / "scan.pdf.part").write_bytes(PDF.read_bytes())
        (drop / "~scan.tmp").write_bytes(b"editor junk")
        time.sleep(1.0)  # well past settle_seconds: temporary names are still not taken
        assert batches(pipe) == []
        os.replace(drop / "scan.pdf.part", drop / "scan.pdf")
        records = wait_for(lambda: finished(pipe, 1), what="one batch")
        wait_for(lambda: (drop / DONE / "scan.pdf").exists(), what="the source moved")
    assert records[0]["file"] == "scan.pdf"
    assert records[0]["source"] == "folder" and records[0]["device"] == "mfp-1"
    assert sorted(p.name for p in (drop / DONE).iterdir()) == ["scan.pdf"]
    assert (drop / "~scan.tmp").exists()


def test_polling_alone_finds_a_file(drop: Path, spool: Spool, accept, pipe: Pipeline) -> None:
    """Given inotify disabled (a network mount gives no events), when a file is dropped, then a
    polling pass finds it once it has settled."""
    with folder_receiver(drop, spool, accept, inotify=False, poll_seconds=0.2) as receiver:
        assert receiver._observer is None
        (drop / "photo.jpg").write_bytes(JPG.read_bytes())
        records = wait_for(lambda: finished(pipe, 1), what="one batch")
    assert records[0]["file"] == "photo.jpg"


def test_the_stored_original_is_byte_identical_to_the_dropped_file(drop: Path, spool: Spool,
                                                                    accept, pipe: Pipeline) -> None:
    """Given a PDF dropped in the folder, when it is stored, then the batch's sha256 and the
    object in the store are exactly the dropped bytes."""
    data = PDF2.read_bytes()
    with folder_receiver(drop, spool, accept):
        (drop / "dossier.pdf").write_bytes(data)
        records = wait_for(lambda: finished(pipe, 1), what="one batch")
    assert records[0]["sha256"] == sha256(data)
    assert stored_original(pipe, records[0]) == data


def test_the_source_is_moved_to_done_only_after_storing(drop: Path, spool: Spool, accept,
                                                         pipe: Pipeline) -> None:
    """Given a file dropped in the folder, when it is handed over to be stored, then the source is
    still in the folder during the hand-off and is in .sohoa-done (same bytes) afterwards."""
    data = PDF.read_bytes()
    recording = Recording(accept, watch=drop / "a.pdf")
    with folder_receiver(drop, spool, recording):
        (drop / "a.pdf").write_bytes(data)
        wait_for(lambda: (drop / DONE / "a.pdf").exists(), what="the source moved")
    assert recording.calls[0]["source_present"] is True
    assert not (drop / "a.pdf").exists()
    assert (drop / DONE / "a.pdf").read_bytes() == data
    assert len(batches(pipe)) == 1
    assert list(spool.ready.iterdir()) == [] and list(spool.incoming.iterdir()) == []


def test_an_unsupported_file_is_set_aside_not_deleted(drop: Path, spool: Spool, accept,
                                                      pipe: Pipeline) -> None:
    """Given a .docx dropped in a scan folder, when it has settled, then it is moved to
    .sohoa-rejected with its reason beside it, bytes intact, and no batch is made."""
    with folder_receiver(drop, spool, accept):
        (drop / "notes.docx").write_bytes(b"PK\x03\x04 not a scan")
        wait_for(lambda: (drop / REJECTED / "notes.docx").exists(), what="the file set aside")
    assert (drop / REJECTED / "notes.docx").read_bytes() == b"PK\x03\x04 not a scan"
    assert "unsupported file type .docx" in (drop / REJECTED / "notes.docx.reason.txt").read_text()
    assert not (drop / "notes.docx").exists()
    assert batches(pipe) == []


# --- FTP ----------------------------------------------------------------------------------------


def ftp_config(**options: Any) -> FtpConfig:
    return FtpConfig(accounts=[
        FtpAccount(device="mfp-ftp-1", username="scanner1", password="s3cret-1"),
        FtpAccount(device="mfp-ftp-2", username="scanner2", password="s3cret-2"),
    ], **{"auth_failed_delay_seconds": 0, **options})


@pytest.fixture
def ftp(spool: Spool, accept) -> Iterator[FtpReceiver]:
    receiver = FtpReceiver(ftp_config(), spool, accept).start()
    yield receiver
    receiver.stop()


def reset(client: ftplib.FTP) -> None:
    """Drops the control connection the way a scanner losing its network does: RST, no goodbye."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.file.close()  # (its reference would keep the socket open)
    client.sock.close()


def test_a_curl_upload_becomes_one_batch_with_its_device(ftp: FtpReceiver, pipe: Pipeline) -> None:
    """Given an FTP account for device mfp-ftp-1, when `curl -T` uploads a PDF with it, then one
    batch records the device, source "ftp", the file name and the exact bytes."""
    subprocess.run(["curl", "-sS", "--max-time", "20", "-T", str(PDF2),
                    f"ftp://scanner1:s3cret-1@127.0.0.1:{ftp.port}/scan-001.pdf"],
                   check=True, capture_output=True)
    records = wait_for(lambda: finished(pipe, 1), what="one batch")
    assert (records[0]["device"], records[0]["source"], records[0]["file"]) == \
        ("mfp-ftp-1", "ftp", "scan-001.pdf")
    assert records[0]["incomplete"] is None
    assert stored_original(pipe, records[0]) == PDF2.read_bytes()


def test_a_wrong_password_is_refused(ftp: FtpReceiver, spool: Spool) -> None:
    """Given the account scanner1, when a client logs in with a wrong password or anonymously,
    then login fails with 530 and it cannot store anything."""
    for user, password in (("scanner1", "wrong"), ("scanner2", "s3cret-1"), ("anonymous", "")):
        client = ftplib.FTP()
        client.connect("127.0.0.1", ftp.port, timeout=10)
        with pytest.raises(ftplib.error_perm, match="530"):
            client.login(user, password)
        client.close()
    assert list(spool.incoming.iterdir()) == [] and list(spool.ready.iterdir()) == []


def test_an_upload_cut_midway_is_kept_as_an_incomplete_batch(ftp: FtpReceiver, spool: Spool,
                                                             pipe: Pipeline) -> None:
    """Given an upload whose client vanishes (connection reset) after half the bytes, when the
    server notices, then the half is stored as a batch marked incomplete, not deleted."""
    data = PDF2.read_bytes()
    half = len(data) // 2
    client = ftplib.FTP()
    client.connect("127.0.0.1", ftp.port, timeout=10)
    client.login("scanner1", "s3cret-1")
    client.voidcmd("TYPE I")
    conn = client.transfercmd("STOR cut.pdf")
    conn.sendall(data[:half])
    wait_for(lambda: [f for f in spool.incoming.glob("*/file/cut.pdf") if f.stat().st_size == half],
             what="half the upload on disk")
    reset(client)
    records = wait_for(lambda: finished(pipe, 1), what="one batch")
    conn.close()
    record = records[0]
    assert record["incomplete"] == f"upload interrupted after {half} bytes"
    assert record["status"] in ("failed", "needs_review")
    assert stored_original(pipe, record) == data[:half]


def test_two_accounts_record_two_devices(ftp: FtpReceiver, pipe: Pipeline) -> None:
    """Given accounts for two scanners, when each uploads a file, then each batch records the
    device of the account that sent it."""
    for user, password, sample in (("scanner1", "s3cret-1", PDF), ("scanner2", "s3cret-2", PDF2)):
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", ftp.port, timeout=10)
            client.login(user, password)
            with sample.open("rb") as f:
                client.storbinary(f"STOR {sample.name}", f)
    records = wait_for(lambda: finished(pipe, 2), what="two batches")
    assert {r["file"]: r["device"] for r in records} == {PDF.name: "mfp-ftp-1",
                                                         PDF2.name: "mfp-ftp-2"}


def test_an_upload_over_the_size_limit_is_cut_and_kept_as_incomplete(spool: Spool, accept,
                                                                     pipe: Pipeline) -> None:
    """Given a 10 kB limit, when a 40 kB PDF is uploaded, then the transfer is refused (426) and
    the first 10 kB are stored as a batch marked incomplete with the reason."""
    receiver = FtpReceiver(ftp_config(max_file_bytes=10_000), spool, accept).start()
    try:
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", receiver.port, timeout=10)
            client.login("scanner1", "s3cret-1")
            client.voidcmd("TYPE I")
            conn = client.transfercmd("STOR big.pdf")
            with contextlib.suppress(OSError):  # the server may hang up before the last byte
                conn.sendall(PDF2.read_bytes())
            conn.close()
            with pytest.raises(ftplib.error_temp, match="426"):
                client.voidresp()
        records = wait_for(lambda: finished(pipe, 1), what="one batch")
    finally:
        receiver.stop()
    assert records[0]["incomplete"] == "upload stopped at the size limit of 10000 bytes"
    assert stored_original(pipe, records[0]) == PDF2.read_bytes()[:10_000]


# --- e-mail -------------------------------------------------------------------------------------


@pytest.fixture
def smtp(spool: Spool, accept) -> Iterator[EmailReceiver]:
    config = EmailConfig(senders={"Scanner-Floor1@office.example": "mfp-mail-1"},
                         max_message_bytes=200_000)
    receiver = EmailReceiver(config, spool, accept).start()
    yield receiver
    receiver.stop()


def message(sender: str, *attachments: tuple[bytes, str, str, str]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "sohoa@office.example", "Scanned document"
    msg.set_content("Scanned from MFP floor 1.")
    for data, maintype, subtype, name in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def send(port: int, msg: EmailMessage, sender: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(msg, from_addr=sender, to_addrs=["sohoa@office.example"])


def test_a_mailed_pdf_becomes_a_batch_with_the_senders_device(smtp: EmailReceiver,
                                                              pipe: Pipeline) -> None:
    """Given an allowed sender address, when it mails a PDF attachment, then one batch records the
    sender's device and the attachment's exact bytes."""
    data = PDF2.read_bytes()
    sender = "scanner-floor1@office.example"
    send(smtp.port, message(sender, (data, "application", "pdf", "Scan_0001.pdf")), sender)
    records = wait_for(lambda: finished(pipe, 1), what="one batch")
    assert (records[0]["device"], records[0]["source"], records[0]["file"]) == \
        ("mfp-mail-1", "email", "Scan_0001.pdf")
    assert records[0]["sha256"] == sha256(data)
    assert stored_original(pipe, records[0]) == data


def test_a_sender_not_configured_is_refused_and_nothing_is_stored(smtp: EmailReceiver,
                                                                   spool: Spool,
                                                                   pipe: Pipeline) -> None:
    """Given a sender address that is not a configured scanner, when it mails a PDF, then MAIL FROM
    is answered 550 and nothing reaches the spool or the store."""
    sender = "someone@elsewhere.example"
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(smtp.port, message(sender, (PDF.read_bytes(), "application", "pdf", "x.pdf")), sender)
    assert refused.value.smtp_code == 550
    time.sleep(0.2)
    leftovers = [p for p in spool.root.rglob("*") if p.is_file()]
    assert leftovers == [] and batches(pipe) == []


def test_two_attachments_give_two_batches(smtp: EmailReceiver, pipe: Pipeline) -> None:
    """Given a message with a PDF and a JPEG sent as application/octet-stream, when it is received,
    then each attachment becomes its own batch with the sender's device."""
    sender = "scanner-floor1@office.example"
    send(smtp.port, message(sender, (PDF.read_bytes(), "application", "pdf", "page1.pdf"),
                            (JPG.read_bytes(), "application", "octet-stream", "page2.jpg")), sender)
    records = wait_for(lambda: finished(pipe, 2), what="two batches")
    assert sorted((r["file"], r["device"], r["sha256"]) for r in records) == sorted([
        ("page1.pdf", "mfp-mail-1", sha256(PDF.read_bytes())),
        ("page2.jpg", "mfp-mail-1", sha256(JPG.read_bytes()))])


def test_a_message_without_a_scan_is_kept_in_rejected(smtp: EmailReceiver, spool: Spool,
                                                      pipe: Pipeline) -> None:
    """Given an allowed sender, when it mails a message with no usable attachment, then the raw
    message is kept in spool/rejected/ with the reason, and no batch is made."""
    sender = "scanner-floor1@office.example"
    send(smtp.port, message(sender, (b"hello", "text", "plain", "readme.txt")), sender)
    kept = wait_for(lambda: list((spool.root / "rejected").glob("*/message.eml")),
                    what="the message kept")
    assert b"Scanned from MFP floor 1." in kept[0].read_bytes()
    meta = json.loads((kept[0].parent / "meta.json").read_text())
    assert (meta["device"], meta["reason"]) == ("mfp-mail-1", "no PDF, TIFF, JPEG or PNG attachment")
    time.sleep(0.2)
    assert batches(pipe) == []


def test_a_message_over_the_size_limit_is_refused_and_nothing_is_stored(smtp: EmailReceiver,
                                                                        spool: Spool,
                                                                        pipe: Pipeline) -> None:
    """Given a 200 kB message limit, when a larger message arrives, then it is refused with 552
    (the scanner reports it) and nothing is spooled."""
    sender = "scanner-floor1@office.example"
    big = message(sender, (os.urandom(300_000), "application", "pdf", "big.pdf"))
    with pytest.raises(smtplib.SMTPException) as refused:
        send(smtp.port, big, sender)
    assert "552" in str(refused.value)
    assert [p for p in spool.root.rglob("*") if p.is_file()] == [] and batches(pipe) == []


# --- crash safety: sohoa killed with SIGKILL, then restarted ----------------------------------

CHILD = r"""
import json, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
sys.path.insert(0, args["repo"])
from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from scanners.folder import FolderConfig
from scanners.ftp import FtpConfig
from scanners.receivers import start_receivers
from scanners.spool import Spool

data = Path(args["data"])
pipeline = Pipeline.from_settings(Settings(data_dir=data, workers=1))
pipeline.page_stages = [ReadBarcodes(), DetectBlank()]

def accept(path, **kw):
    if args["hang"] == "after_store":
        pipeline.receive(path, **kw)  # the original is stored, the spool item not yet removed
    if args["hang"]:
        Path(args["marker"]).write_text("handing over")
        time.sleep(3600)
    return run_file(pipeline, path, **kw)

receivers = start_receivers(
    Spool(data / "spool"), accept,
    folder=FolderConfig.model_validate(args["folder"]) if args["folder"] else None,
    ftp=FtpConfig.model_validate(args["ftp"]) if args["ftp"] else None)
ready = Path(args["marker"] + ".ready")
ready.with_suffix(".part").write_text(str(getattr(receivers[0], "port", 0)))
ready.with_suffix(".part").replace(ready)  # whole when seen: the test reads it at once
time.sleep(3600)
"""


def start_child(tmp_path: Path, data: Path, hang: str | None, folder: dict[str, Any] | None = None,
                ftp: dict[str, Any] | None = None) -> tuple[subprocess.Popen, Path, int]:
    """sohoa's receivers in a process of their own, to be killed; `hang` makes its accept stop
    forever at the hand-off (before or after storing the original), like a crash would."""
    marker = tmp_path / "marker"
    args = {"repo": str(REPO), "data": str(data), "hang": hang, "marker": str(marker),
            "folder": folder, "ftp": ftp}
    log = (tmp_path / "child.log").open("wb")
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args, default=str)],
                             cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # its own group: killed with all it started
    try:
        ready = marker.with_name(marker.name + ".ready")
        wait_for(lambda: ready.exists() or child.poll() is not None, timeout=30, what="the child")
        assert child.poll() is None, (tmp_path / "child.log").read_text()
        return child, marker, int(ready.read_text())
    except BaseException:
        kill(child)
        raise


def kill(child: subprocess.Popen) -> None:
    """SIGKILL (no cleanup of any kind) to the child and every process of its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(10)


def test_killed_mid_ftp_upload_keeps_the_partial_upload_and_stores_the_full_one_once(
        tmp_path: Path) -> None:
    """Given sohoa receiving FTP in a process that is SIGKILLed after one upload finished and
    while a second one is half-way, when sohoa starts again, then the finished upload is one batch,
    and the half upload is a batch marked incomplete holding exactly the bytes received."""
    data_dir = tmp_path / "data"
    config = {"accounts": [{"device": "mfp-ftp-1", "username": "scanner1", "password": "s3cret-1"}]}
    child, _, port = start_child(tmp_path, data_dir, None, ftp=config)
    full, partial = PDF.read_bytes(), PDF2.read_bytes()
    half = len(partial) // 2
    try:
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", port, timeout=10)
            client.login("scanner1", "s3cret-1")
            client.storbinary("STOR full.pdf", io.BytesIO(full))
        client = ftplib.FTP()
        client.connect("127.0.0.1", port, timeout=10)
        client.login("scanner1", "s3cret-1")
        client.voidcmd("TYPE I")
        conn = client.transfercmd("STOR partial.pdf")
        conn.sendall(partial[:half])
        incoming = data_dir / "spool" / "incoming"
        wait_for(lambda: [f for f in incoming.glob("*/file/partial.pdf")
                          if f.stat().st_size == half], what="half the upload on disk")
    finally:
        kill(child)
    conn.close()
    client.close()

    pipeline = make_pipeline(data_dir)
    spool = Spool(data_dir / "spool")
    receivers = start_receivers(spool, functools.partial(run_file, pipeline),
                                ftp=FtpConfig.model_validate(config))
    for receiver in receivers:
        receiver.stop()
    by_file = {r["file"]: r for r in batches(pipeline)}
    assert sorted(by_file) == ["full.pdf", "partial.pdf"], (
        sorted(str(p.relative_to(data_dir)) for p in (data_dir / "spool").rglob("*")),
        (tmp_path / "child.log").read_text()[-3000:])
    assert by_file["full.pdf"]["incomplete"] is None
    assert by_file["full.pdf"]["status"] in ("done", "needs_review")
    assert stored_original(pipeline, by_file["full.pdf"]) == full
    assert by_file["partial.pdf"]["incomplete"] == f"sohoa stopped while receiving; {half} bytes kept"
    assert by_file["partial.pdf"]["status"] in ("failed", "needs_review")
    assert stored_original(pipeline, by_file["partial.pdf"]) == partial[:half]
    assert list(spool.incoming.iterdir()) == [] and list(spool.ready.iterdir()) == []


@pytest.mark.parametrize("hang", ["before_store", "after_store"])
def test_killed_between_spooling_and_storing_a_folder_file_stores_it_exactly_once(
        tmp_path: Path, hang: str) -> None:
    """Given a folder file copied into the spool, and sohoa SIGKILLed while handing it over (before
    or after its original was stored), when sohoa starts again, then the file is one batch, the
    source ends in .sohoa-done, and the spool is empty."""
    data_dir = tmp_path / "data"
    drop = tmp_path / "smb" / "mfp-1"
    drop.mkdir(parents=True)
    config = {"devices": {"mfp-1": str(drop)}, "poll_seconds": 0.1, "settle_seconds": 0.2}
    child, marker, _ = start_child(tmp_path, data_dir, hang, folder=config)
    data = PDF2.read_bytes()
    try:
        (drop / "scan.pdf").write_bytes(data)
        wait_for(marker.exists, what="the hand-off")
    finally:
        kill(child)
    spool = Spool(data_dir / "spool")
    assert len(list(spool.ready.iterdir())) == 1 and (drop / "scan.pdf").exists()

    pipeline = make_pipeline(data_dir)
    receivers = start_receivers(spool, functools.partial(run_file, pipeline),
                                folder=FolderConfig.model_validate(config))
    try:
        wait_for(lambda: (drop / DONE / "scan.pdf").exists(), what="the source moved")
    finally:
        for receiver in receivers:
            receiver.stop()
    records = batches(pipeline)
    assert len(records) == 1
    assert records[0]["sha256"] == sha256(data) and records[0]["status"] != "received"
    assert stored_original(pipeline, records[0]) == data
    assert list(spool.incoming.iterdir()) == [] and list(spool.ready.iterdir()) == []


# ---- the registry: receivers by their settings section (scanners/receivers.py) ------------------

def test_every_registered_section_is_a_settings_field_of_its_config_model() -> None:
    """A receiver is started from the `ScannersConfig` field named by its section (the `scanners`
    section of the settings, SOHOA_<SECTION>): the table and the settings name the same sections,
    with the same models, and all are off by default."""
    from pydantic import BaseModel

    from ingest.settings import FLAT
    from scanners.config import ScannersConfig
    from scanners.receivers import RECEIVERS

    fields = ScannersConfig.model_fields
    assert list(RECEIVERS) == ["folder", "ftp", "smtp"]  # the order they start
    for section, kind in RECEIVERS.items():
        assert fields[section].default is None
        assert kind.config in getattr(fields[section].annotation, "__args__", ())
        assert FLAT[section] == ("scanners", section)  # SOHOA_FOLDER, SOHOA_FTP, SOHOA_SMTP
    receiver_models = {f for name, info in fields.items()
                       for f in getattr(info.annotation, "__args__", ())
                       if isinstance(f, type) and issubclass(f, BaseModel)
                       and f.__module__ == "scanners.config" and name != "devices"}
    assert receiver_models == {kind.config for kind in RECEIVERS.values()}
    assert Settings.model_fields["scanners"].annotation is ScannersConfig


def test_a_registered_receiver_is_started_from_its_section_and_stopped(
        spool: Spool, accept, monkeypatch) -> None:
    """Adding a receiver is one entry: a kind registered under a section is started when that
    section is configured (from settings or by keyword), after the spool's recovery, and stopped
    with the others if a later one fails to start."""
    from pydantic import BaseModel

    from scanners import receivers

    class PigeonConfig(BaseModel):
        loft: str

    events: list[str] = []

    class Pigeon:
        def __init__(self, config: PigeonConfig) -> None:
            self.config = config

        def stop(self) -> None:
            events.append(f"stop {self.config.loft}")

    def start(config: PigeonConfig, spool_: Spool, accept_: Any, retry: float) -> Pigeon:
        if config.loft == "broken":
            raise OSError("no loft")
        events.append(f"start {config.loft} {retry}")
        return Pigeon(config)

    monkeypatch.setattr(receivers, "RECEIVERS", dict(receivers.RECEIVERS))
    receivers.register(receivers.ReceiverKind("pigeon", PigeonConfig, start,
                                              recover=lambda s: events.append("recover")))
    with pytest.raises(ValueError, match="already registered"):
        receivers.register(receivers.ReceiverKind("pigeon", PigeonConfig, start))

    class FromSettings:
        folder = ftp = smtp = None
        pigeon = PigeonConfig(loft="roof")

    started = start_receivers(spool, accept, FromSettings(), retry_seconds=5)
    assert [type(r).__name__ for r in started] == ["Pigeon"]
    assert events == ["recover", "start roof 5"]
    assert start_receivers(spool, accept, FromSettings(), pigeon=None) == []  # a keyword wins
    with pytest.raises(TypeError, match="no receiver is registered for \\['owl'\\]"):
        start_receivers(spool, accept, owl=PigeonConfig(loft="x"))
    with pytest.raises(TypeError, match="the ftp section is a FtpConfig, not PigeonConfig"):
        start_receivers(spool, accept, ftp=PigeonConfig(loft="x"))

    events.clear()
    monkeypatch.setitem(receivers.RECEIVERS, "zz", receivers.ReceiverKind("zz", PigeonConfig, start))
    with pytest.raises(OSError, match="no loft"):
        start_receivers(spool, accept, pigeon=PigeonConfig(loft="roof"),
                        zz=PigeonConfig(loft="broken"))
    assert events == ["recover", "start roof 60.0", "stop roof"]
