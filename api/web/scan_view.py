"""What the scanning station (api/web/scan_pages.py) shows of batches: the rows of its batch list
and the roles of a batch's pages, read from the typed batch records (storage/records.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import HTTPException

from api.keys import Principal
from api.web import i18n
from api.web.security import WebState
from scanners.scan import ScanProgress, ScanService
from storage.catalog import HELD
from storage.objects import ObjectMissing
from storage.records import BatchRecord

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RUNNING = ("starting", "scanning", "storing", "received", "processing")
FINAL_BATCH = ("done", "needs_review", "failed")
RECENT = 15  # rows of the batch list
STALE_AFTER_S = 6 * 3600  # a scan "running" this long died with its server: no more polling


@dataclass
class Row:
    """One line of the batch list: a stored batch, or a scan whose batch is not stored yet."""

    at: datetime
    status: str
    file: str = ""
    device: str = ""
    source: str = ""
    pages: int = 0
    batch_id: str | None = None
    scan_id: str | None = None
    dossiers: list[str] = field(default_factory=list)
    unmatched: int = 0

    @property
    def source_key(self) -> str | None:
        """How a batch not scanned at a station came in (upload, folder, FTP...)."""
        key = f"scan.source.{self.source}"
        return key if self.source != "escl" and key in i18n.VI else None


def batch_record(state: WebState, batch_id: str) -> BatchRecord | None:
    """The batch record from storage (the truth, also while processing), None if missing."""
    if not BATCH_ID.match(batch_id):
        return None
    try:
        return state.pipeline.record(batch_id)
    except (ObjectMissing, ValueError):
        return None


def visible_batch(state: WebState, batch_id: str, who: Principal) -> BatchRecord:
    record = batch_record(state, batch_id)
    if record is None or not who.sees(record.agency or ""):
        raise HTTPException(404)
    return record


def stale(progress: ScanProgress) -> bool:
    return not progress.finished and time.time() - progress.started_at > STALE_AFTER_S


def when(value: str | float | None) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        at = datetime.fromisoformat(value) if value else datetime.fromtimestamp(0, UTC)
    except ValueError:
        at = datetime.fromtimestamp(0, UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def device_names(service: ScanService, scans: list[ScanProgress]) -> dict[str, str]:
    """Scanner id -> name, from the configuration and recent scans, without asking any scanner."""
    names = service.scanners.names()
    names.update((p.device_id, p.device_name) for p in scans)
    return names


def row_of(record: BatchRecord, names: dict[str, str], scan_id: str | None = None) -> Row:
    device = record.device or ""
    return Row(at=when(record.received_at), status=record.status or "received",
               file=record.file or "", device=names.get(device, device),
               source=record.source or "", pages=record.pages,
               batch_id=record.batch_id, scan_id=scan_id,
               dossiers=[d.dossier_id for d in record.dossiers],
               unmatched=len(record.unmatched_pages))


def batch_rows(state: WebState, service: ScanService, who: Principal) -> list[Row]:
    """Recent batches of the user's agencies: indexed (finished) ones from the catalog, plus the
    scans still running or whose batch is still being processed (not indexed yet)."""
    scans = [p for p in service.recent(50) if who.sees(p.agency or "")][:RECENT]
    names = device_names(service, scans)
    catalog = state.pipeline.catalog
    rows = {r.batch_id: row_of(r, names)
            for r in (catalog.recent_batches(who.scope(), RECENT) if catalog else [])}
    for p in scans:
        if p.batch_id in rows:
            rows[p.batch_id].scan_id = p.id
        elif p.batch_id:
            record = (catalog.batch(p.batch_id) if catalog else None) or batch_record(state, p.batch_id)
            if record:
                rows[p.batch_id] = row_of(record, names, p.id)
        elif not p.finished and not stale(p):
            rows[f"scan:{p.id}"] = Row(at=when(p.started_at), status=p.state, device=p.device_name,
                                       source="escl", pages=p.pages, scan_id=p.id)
    return sorted(rows.values(), key=lambda r: r.at, reverse=True)[:RECENT]


def page_roles(record: BatchRecord) -> dict[int, tuple[str, str]]:
    """Page index -> (kind, label): the dossier it went to, or why it went to none."""
    roles: dict[int, tuple[str, str]] = {}
    for index in record.unmatched_pages:
        roles[index] = ("unmatched", "scan.batch.unmatched")
    for dropped in record.dropped_pages:
        key = f"scan.batch.{dropped.reason}"
        roles[dropped.page] = ("dropped", key if key in i18n.VI else "scan.batch.unmatched")
    for failed in record.failed_pages:
        roles[failed.page] = ("failed", "scan.batch.failed_page")
    for entry in record.review:
        if entry.reason in HELD:
            roles.update({p: ("held", "scan.batch.held") for p in entry.pages})
    for dossier in record.dossiers:
        for index in dossier.pages:
            roles[index] = ("dossier", dossier.dossier_id)
    return roles
