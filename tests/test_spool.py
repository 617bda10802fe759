"""The scanner spool: pages are kept from arrival until their original is stored."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pikepdf
import pytest
from PIL import Image

from ocr.pdf import scan_pdf
from scanners.spool import ItemBusy, ItemGone, Spool


def jpeg(shade: int, size: tuple[int, int] = (120, 170)) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, shade).save(buf, "JPEG", dpi=(150, 150))
    return buf.getvalue()


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[bytes, dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, path: Path, **kwargs: Any) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("storage down")
        self.calls.append((path.read_bytes(), kwargs))
        return {"batch_id": f"b{len(self.calls)}"}


def killed_while_receiving(root: Path, pages: int) -> None:
    """A process that opens a scan item, receives `pages` pages, and is killed (SIGKILL)."""
    script = (f"import os, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
              "from pathlib import Path; from test_spool import jpeg; from scanners.spool import Spool; "
              f"item = Spool(Path({str(root)!r})).open('escl', 'uuid-1'); "
              f"[item.add_page(jpeg(10 * i)) for i in range({pages})]; os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent, check=False)
    assert len(list((root / "incoming").iterdir())) == 1


def test_scan_pdf_embeds_each_jpeg_page_byte_for_byte() -> None:
    pages = [jpeg(200), jpeg(100)]
    pdf = pikepdf.open(io.BytesIO(scan_pdf(pages, 300)))
    embedded = [bytes(p.Resources.XObject.Im0.read_raw_bytes()) for p in pdf.pages]
    assert embedded == pages
    assert float(pdf.pages[0].MediaBox[2]) == pytest.approx(120 * 72 / 150)  # the JPEG's own dpi


def test_scan_pdf_is_deterministic() -> None:
    """Same pages, same bytes: a scan stored twice after a crash is one batch."""
    assert scan_pdf([jpeg(90)], 300) == scan_pdf([jpeg(90)], 300)


def test_a_completed_scan_is_stored_as_one_pdf_then_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    item = spool.open("escl", "uuid-1", dpi=300, dossier="X", file_name="scan.pdf")
    item.add_page(jpeg(10))
    item.add_page(jpeg(20))
    accept = Recorder()
    spool.complete(item)
    records = spool.drain(accept)
    assert records == [{"batch_id": "b1"}]
    data, kwargs = accept.calls[0]
    assert len(pikepdf.open(io.BytesIO(data)).pages) == 2
    assert kwargs == {"source": "escl", "device": "uuid-1", "file_name": "scan.pdf", "dossier": "X",
                      "agency": None, "incomplete": None}
    assert list(spool.ready.iterdir()) == []


def test_an_item_whose_storing_fails_stays_for_the_next_drain(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    item = spool.open("ftp", "mfp-2", file_name="a.pdf")
    item.file("a.pdf").write_bytes(b"%PDF-1.4 ...")
    spool.complete(item)
    assert spool.drain(Recorder(fail=True)) == []
    accept = Recorder()
    assert len(spool.drain(accept)) == 1 and accept.calls[0][0] == b"%PDF-1.4 ..."


def test_what_was_being_received_at_a_crash_is_stored_marked_incomplete(tmp_path: Path) -> None:
    """Given a scan interrupted after 2 pages (its process killed), when a new spool recovers,
    then the two pages are stored as a batch that says it is incomplete."""
    killed_while_receiving(tmp_path / "spool", pages=2)
    spool = Spool(tmp_path / "spool")  # after the restart
    spool.recover()
    accept = Recorder()
    spool.drain(accept)
    assert len(accept.calls) == 1
    assert "2 page(s) kept" in accept.calls[0][1]["incomplete"]


def test_an_item_still_being_received_by_a_live_process_is_left_alone(tmp_path: Path) -> None:
    receiving = Spool(tmp_path / "spool")
    item = receiving.open("escl", "uuid-1")
    item.add_page(jpeg(10))
    other = Spool(tmp_path / "spool")  # e.g. a server starting while `sohoa scan` runs
    assert other.recover() == []
    assert item.path.exists()


def test_an_item_that_received_nothing_is_not_a_batch(tmp_path: Path) -> None:
    killed_while_receiving(tmp_path / "spool", pages=0)
    spool = Spool(tmp_path / "spool")
    assert spool.recover() == []
    accept = Recorder()
    assert spool.drain(accept) == [] and accept.calls == []


# ---- a scan CLI and a server on one spool ---------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SOHOA = Path(sys.executable).parent / "sohoa"


def _race_side(role: str, root: str, log: str, count: int) -> None:
    """One side of the race, in a process of its own: the server's Drainer (`drainer`), or the
    scan CLI completing its items and storing them itself (`storer`). Every hand-off to `accept`
    is appended to `log`: "<item> <role>"."""
    from scanners.receiving import Drainer

    spool = Spool(Path(root) / "spool")

    def accept(path: Path, **kw: Any) -> dict[str, Any]:
        assert path.read_bytes().startswith(b"%PDF")
        time.sleep(0.003)  # a store takes a while: time enough for the other side to step in
        with open(log, "a") as f:
            f.write(f"{kw['file_name']} {role}\n")
        return {"batch_id": kw["file_name"]}

    if role == "drainer":
        drainer = Drainer(spool, accept, retry_seconds=0.001).start()  # drains back to back
        (Path(root) / "drainer.ready").touch()
        while not (Path(root) / "stop").exists():
            time.sleep(0.01)
        drainer.stop()
        spool.drain(accept)  # what the storer left, if anything
        return
    for i in range(count):
        item = spool.open("escl", "uuid-1", file_name=f"item-{i:03d}")
        item.add_page(jpeg(i % 250, (40, 60)))
        ready = spool.complete(item, hold=True)  # as scanners/scan.py does
        assert spool.store(ready, accept) == {"batch_id": f"item-{i:03d}"}


def _side(role: str, root: Path, log: Path, count: int = 0) -> subprocess.Popen:
    code = (f"from tests.test_spool import _race_side; "
            f"_race_side({role!r}, {str(root)!r}, {str(log)!r}, {count})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_a_scan_storing_its_own_items_beside_a_draining_server_stores_each_once(
        tmp_path: Path) -> None:
    """Given a server process draining the spool back to back, when another process (the scan CLI)
    completes 60 items and stores each itself, then every item is handed over exactly once, the
    storing process never meets an error, and the spool ends empty."""
    count, log = 60, tmp_path / "accepted.log"
    drainer = _side("drainer", tmp_path, log)
    storer = None
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "drainer.ready").exists():
            assert drainer.poll() is None and time.monotonic() < deadline, drainer.stdout.read()
            time.sleep(0.02)
        storer = _side("storer", tmp_path, log, count)
        out, _ = storer.communicate(timeout=60)
        (tmp_path / "stop").touch()
        drained, _ = drainer.communicate(timeout=30)
    finally:
        for process in (drainer, storer):
            if process is not None:
                _kill(process)
    assert storer.returncode == 0, out
    assert drainer.returncode == 0, drained
    handed = log.read_text().split("\n")[:-1]
    items = [line.split()[0] for line in handed]
    assert sorted(items) == [f"item-{i:03d}" for i in range(count)], handed  # each exactly once
    assert all(line.endswith(" storer") for line in handed), handed  # held: the drainer left them
    spool = Spool(tmp_path / "spool")
    assert list(spool.ready.iterdir()) == [] and list(spool.incoming.iterdir()) == []


def test_drain_leaves_an_item_another_holder_is_storing(tmp_path: Path) -> None:
    """Given an item completed by one spool that keeps its lock to store it, when another spool on
    the same directory drains, then it leaves the item alone; the holder stores it once."""
    scanning, server = Spool(tmp_path / "spool"), Spool(tmp_path / "spool")
    item = scanning.open("escl", "uuid-1", file_name="scan.pdf")
    item.add_page(jpeg(10))
    ready = scanning.complete(item, hold=True)
    drained = Recorder()
    assert server.drain(drained) == [] and drained.calls == []
    with pytest.raises(ItemBusy):
        server.store(ready, drained)
    stored = Recorder()
    assert scanning.store(ready, stored) == {"batch_id": "b1"}
    assert len(stored.calls) == 1
    assert server.drain(drained) == [] and drained.calls == []
    with pytest.raises(ItemGone):
        server.store(ready, drained)
    assert list(server.ready.iterdir()) == []


def test_an_item_removed_while_being_stored_is_still_stored_from_the_bytes_held(
        tmp_path: Path) -> None:
    """Given an item that vanishes while being handed over (another process stored and removed it:
    a lock that did not hold), when the hand-off fails for its missing file, then it is handed
    over again from the bytes still held open, and the same batch is returned (not an error)."""
    spool = Spool(tmp_path / "spool")
    item = spool.open("ftp", "mfp-2", file_name="a.pdf")
    item.file("a.pdf").write_bytes(b"%PDF-1.4 the bytes")
    ready = spool.complete(item, hold=True)
    seen: list[bytes] = []

    def accept(path: Path, **kw: Any) -> dict[str, Any]:
        if ready.path.exists():
            shutil.rmtree(ready.path)  # the other process deletes it after storing
        seen.append(path.read_bytes())
        return {"batch_id": "b-same"}

    assert spool.store(ready, accept) == {"batch_id": "b-same"}
    assert seen == [b"%PDF-1.4 the bytes"]


def test_a_scan_whose_item_another_process_stored_is_not_reported_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scanners.devices import ScannerConfig, Scanners
    from scanners.escl_xml import ScanRequest
    from scanners.scan import run_scan
    from tests.escl_emulator import EmulatorConfig, EsclEmulator, numbered_pages

    def gone(self: Spool, item: Any, accept: Any) -> dict[str, Any]:
        shutil.rmtree(item.path)
        self._release(item.id)
        raise ItemGone(item.id)

    monkeypatch.setattr(Spool, "store", gone)
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(1, size=(200, 280)))) as emulator:
        scanners = Scanners([ScannerConfig(url=emulator.url, name="quay-1")], tmp_path, False)
        device, _ = scanners.find("quay-1")
        progress = run_scan(scanners, device, ScanRequest(), Spool(tmp_path / "spool"),
                            Recorder())
    assert progress.state == "done" and progress.pages == 1
    assert "stored by another sohoa process" in progress.message


def test_sohoa_scan_beside_sohoa_serve_on_the_same_data_names_the_stored_batch(
        tmp_path: Path) -> None:
    """Given `sohoa serve` running on a data directory, when `sohoa scan` runs on the same one,
    then it exits 0 and names the batch, which the server's data holds."""
    from tests.escl_emulator import EmulatorConfig, EsclEmulator, numbered_pages

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    with EsclEmulator(EmulatorConfig(pages=numbered_pages(2, size=(413, 585)))) as emulator:
        env = {**os.environ, "SOHOA_DATA_DIR": str(data), "SOHOA_WORKERS": "1",
               "SOHOA_SCANNER_DISCOVERY": "false",
               "SOHOA_SCANNERS": json.dumps([{"url": emulator.url, "name": "quay-1"}])}
        log = (tmp_path / "serve.log").open("w")
        server = subprocess.Popen([str(SOHOA), "serve", "--port", str(port)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/batches/x").status_code == 401:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and server.poll() is None, \
                    (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
            out = subprocess.run([str(SOHOA), "scan", "quay-1", "--json"], env=env,
                                 capture_output=True, text=True, timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)  # nothing of it may outlive the test
                server.wait(10)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["scan"]["state"] == "done" and result["scan"]["pages"] == 2
    batch_id = result["scan"]["batch_id"]
    assert batch_id and result["batch"]["batch_id"] == batch_id
    assert (data / "objects" / "batches" / batch_id / "batch.json").exists()
    assert list((data / "spool" / "ready").iterdir()) == []
