"""One scan from an eSCL scanner into a batch: every page is on disk the moment it arrives.

Pages go into a spool item (scanners/spool.py) as they come, so the staff see them arrive and a
crash loses none of them; at the end of the job the pages become one PDF original, which is
stored and queued like an upload. A job the scanner aborted (jam, misfeed, door open) still keeps
and stores what it sent: its batch is marked incomplete, with the scanner's reason.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanners.devices import Device, Scanners
from scanners.escl import EsclError
from scanners.escl_xml import ScanRequest
from scanners.spool import Accept, ItemGone, Spool

KEEP_DAYS = 30  # how long the progress of a finished scan is kept for the scanning station


@dataclass
class ScanProgress:
    """What the staff watch: updated while the scan runs."""

    id: str
    device_id: str
    device_name: str
    source: str
    duplex: bool
    state: str = "starting"  # starting, scanning, storing, done, incomplete, failed
    pages: int = 0
    problem: str | None = None
    message: str = ""
    batch_id: str | None = None
    agency: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    color_mode: str = "Grayscale8"  # as asked; eSCL names
    resolution: int = 300  # as asked (the scanner may use its nearest)

    def public(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "incomplete", "failed")


def run_scan(scanners: Scanners, device: Device, request: ScanRequest, spool: Spool,
             accept: Accept, dossier: str | None = None, agency: str | None = None,
             progress: ScanProgress | None = None, cancel: threading.Event | None = None,
             notify: Callable[[ScanProgress], None] | None = None) -> ScanProgress:
    """Scans, stores and queues; never raises for scanner trouble: `progress` says what happened,
    and `notify` hears of every page and change of state."""
    progress = progress or ScanProgress(uuid.uuid4().hex[:16], device.id, device.name,
                                        request.source, request.duplex,
                                        color_mode=request.color_mode,
                                        resolution=request.resolution)
    tell = notify or (lambda _: None)
    try:
        return _scan(scanners, device, request, spool, accept, dossier, agency, progress, cancel, tell)
    finally:
        tell(progress)


def _scan(scanners: Scanners, device: Device, request: ScanRequest, spool: Spool, accept: Accept,
          dossier: str | None, agency: str | None, progress: ScanProgress,
          cancel: threading.Event | None, tell: Callable[[ScanProgress], None]) -> ScanProgress:
    agency = agency or device.agency
    progress.agency = agency
    stamp = time.strftime("%Y%m%d-%H%M%S")
    item = spool.open("escl", device.id, device_name=device.name, dpi=request.resolution,
                      dossier=dossier, agency=agency, scan_id=progress.id,
                      file_name=f"scan-{stamp}-{progress.id[:6]}.pdf")

    def on_page(data: bytes) -> None:
        item.add_page(data)
        progress.pages += 1
        tell(progress)

    incomplete = None
    try:
        progress.state = "scanning"
        tell(progress)
        with scanners.client_for(device) as client:
            outcome = client.scan(request, on_page, cancel)
        item.update(dpi=outcome.resolution)
        progress.problem, progress.message = outcome.problem, outcome.message
        if not outcome.complete:  # "[jam] Paper jam…": the web says it in the page's language
            incomplete = f"[{outcome.problem}] {outcome.message}" if outcome.problem \
                else outcome.message
    except EsclError as e:
        progress.problem, progress.message = e.code, str(e)
        if not item.pages:
            spool.discard(item)
            progress.state, progress.finished_at = "failed", time.time()
            return progress
        incomplete = f"[{e.code}] {e}"
    if not item.pages:
        spool.discard(item)
        progress.state, progress.finished_at = "failed", time.time()
        progress.problem = progress.problem or "no_pages"
        progress.message = progress.message if progress.problem != "no_pages" \
            else "The scanner sent no pages."
        return progress
    progress.state = "storing"
    tell(progress)
    # Held from completion until stored and deleted: a server draining the same spool leaves it.
    ready = spool.complete(item, incomplete=incomplete, hold=True)
    try:
        record = spool.store(ready, accept)
    except ItemGone:  # another sohoa process stored it (stores come before deletes)
        progress.state = "incomplete" if incomplete else "done"
        progress.message = (progress.message + " " if progress.message else "") + \
            "The pages were stored by another sohoa process (a server on the same data)."
        progress.finished_at = time.time()
        return progress
    except Exception as e:  # kept in the spool: the next drain stores it
        progress.state, progress.problem = "failed", "storage"
        progress.message = f"The pages are kept and will be stored when storage is back: {e}"
        progress.finished_at = time.time()
        return progress
    progress.batch_id = record.batch_id
    progress.state = "incomplete" if incomplete else "done"
    progress.finished_at = time.time()
    return progress


class ScanService:
    """Scans started from the API or web app, each in its own thread, followed by id."""

    def __init__(self, scanners: Scanners, spool: Spool, accept: Accept, state_dir: Path) -> None:
        """Progress is also written to `state_dir`, so every API process (and a restarted one)
        can answer for a scan another one runs."""
        self.scanners, self.spool, self.accept = scanners, spool, accept
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.prune()
        self._scans: dict[str, ScanProgress] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def start(self, device: Device, request: ScanRequest, dossier: str | None = None,
              agency: str | None = None) -> ScanProgress:
        with self._lock:
            if device.id in self._busy:
                raise EsclError("This scanner is already scanning for sohoa.")
            self._busy.add(device.id)
            progress = ScanProgress(uuid.uuid4().hex[:16], device.id, device.name,
                                    request.source, request.duplex, agency=agency or device.agency,
                                    color_mode=request.color_mode, resolution=request.resolution)
            self._scans[progress.id] = progress

        def work() -> None:
            try:
                run_scan(self.scanners, device, request, self.spool, self.accept, dossier,
                         agency, progress, notify=self._save)
            finally:
                with self._lock:
                    self._busy.discard(device.id)

        self._save(progress)
        threading.Thread(target=work, name=f"scan-{progress.id}", daemon=True).start()
        return progress

    def _save(self, progress: ScanProgress) -> None:
        path = self.state_dir / f"{progress.id}.json"
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}")
        tmp.write_text(json.dumps(progress.public()))
        tmp.replace(path)

    def get(self, scan_id: str) -> ScanProgress | None:
        if scan_id in self._scans:
            return self._scans[scan_id]
        if not scan_id.isalnum():
            return None
        path = self.state_dir / f"{scan_id}.json"
        return ScanProgress(**json.loads(path.read_text())) if path.exists() else None

    def prune(self, keep_days: float = KEEP_DAYS) -> int:
        """Forgets the progress of scans older than `keep_days` (their batches stay: progress is
        only what the scanning station shows while and shortly after a scan runs), so that listing
        recent scans does not grow with years of scanning. Returns how many were forgotten."""
        cutoff = time.time() - keep_days * 86400
        old = [p for p in self.state_dir.glob("*.json") if p.stat().st_mtime < cutoff]
        for path in old:
            path.unlink(missing_ok=True)
        return len(old)

    def recent(self, limit: int = 100) -> list[ScanProgress]:
        paths = sorted(self.state_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)[-limit:]
        found = [self.get(p.stem) for p in reversed(paths)]
        return [p for p in found if p is not None]
