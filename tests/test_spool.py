"""The scanner spool: pages are kept from arrival until their original is stored."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image

from ocr.pdf import scan_pdf
from scanners.spool import Spool


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
