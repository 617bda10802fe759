"""The scanning station (/scan): pick a scanner, start a scan, watch its pages arrive, follow the
batches. For scanning staff (role scanner; admins too), within their agencies: another agency's
scanner, scan, batch or thumbnail answers 404, as if it did not exist; a scan is started only for
one of their agencies and a dossier code of one (another is refused, saying so).

Pages are rendered on the server; htmx polls small fragments (the running scan every second, the
batch list every few seconds while something is under way) because office networks are slow.
Thumbnails are small JPEGs made once per page, kept under data_dir/thumbs and cached by browsers:
a batch page is shown as the pipeline stored it (straightened), or from the original until then.
The batch list's rows and a batch's page roles (the view models) are built in api/web/scan_view.py.

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

import io
import json
import os
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from PIL import Image

from api.keys import Principal
from api.web import i18n
from api.web.render import jpeg_response, render
from api.web.scan_view import (
    FINAL_BATCH,
    RUNNING,
    batch_record,
    batch_rows,
    device_names,
    page_roles,
    row_of,
    stale,
    visible_batch,
    when,
)
from api.web.security import WebState, language, require_role
from ocr.decode import open_document
from ocr.errors import DocumentError
from ocr.pdf import page_jpeg
from scanners.devices import Device
from scanners.escl import ADF_PROBLEMS, EsclError
from scanners.escl_xml import ScanRequest
from scanners.scan import ScanProgress, ScanService
from scanners.spool import PAGES, Spool
from storage import layout, queries
from storage.objects import ObjectMissing
from storage.records import BatchRecord

THUMB_SIDE = 200  # pixels, longest side: ~6 KB a page
THUMB_CACHE = "private, max-age=604800, immutable"  # a page's image never changes
AGENCY = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,39}$")

# Scanner states (scanners/devices.py) shown as a badge: ok, warn or bad.
STATE_TONE = {"idle": "ok", "ready": "ok", "busy": "warn", "feeder_empty": "warn",
              "jammed": "bad", "door_open": "bad", "misfeed": "bad", "unreachable": "bad",
              "stopped": "bad", "unknown": "off"}


class FormError(Exception):
    """A start form the station refuses: `key` is the message, shown above the form."""

    def __init__(self, key: str, status: int = 422, **values: Any) -> None:
        super().__init__(key)
        self.key, self.status, self.values = key, status, values


@dataclass
class ScanForm:
    """What the staff chose; kept across a refused submission and the next scan."""

    scanner: str = ""
    source: str = "feeder"
    duplex: bool = False
    dossier: str = ""
    agency: str = ""
    color: str = "Grayscale8"
    resolution: int = 300


COLOR_MODES = ("Grayscale8", "RGB24", "BlackAndWhite1")  # eSCL names; the first is the default
RESOLUTIONS = (200, 300, 400, 600)  # a scanner without the one chosen scans at its nearest


# ---- scans, scanners, batches within the user's agencies -------------------------------------


def _service(request: Request) -> ScanService:
    return request.app.state.scans


def _visible_device(device: Device, who: Principal) -> bool:
    return device.agency is None or who.sees(device.agency)


def _visible_scan(service: ScanService, scan_id: str, who: Principal) -> ScanProgress:
    found = service.get(scan_id) if scan_id.isalnum() and len(scan_id) <= 64 else None
    if found is None or not who.sees(found.agency or ""):
        raise HTTPException(404)
    return found


def _agency_choices(who: Principal, state: WebState, scans: ScanService) -> list[str]:
    """Agencies to pick from when neither the scanner nor the user settles it; [] if settled.
    A user of every agency is offered those the catalog knows and the scanners name."""
    if who.all_agencies:
        named = {c.agency for c in scans.scanners.configured if c.agency}
        known = queries.agencies(state.pipeline.catalog) if state.pipeline.catalog else []
        return sorted(set(known) | named)
    if len(who.agencies) > 1:
        return list(who.agencies)
    return []


def chosen_scanner(devices: list[Device], wanted: str) -> str:
    """The scanner picked before, else the first ready one; never one in trouble (jammed,
    empty, unreachable): staff pick that one themselves."""
    if any(d.id == wanted for d in devices):
        return wanted
    usable = [d for d in devices if STATE_TONE.get(d.state) == "ok"]
    return usable[0].id if usable else ""


def _problem_key(progress: ScanProgress) -> str | None:
    """The message id for the scan's problem; a refusal names the feeder's trouble if it can."""
    if not progress.problem:
        return None
    code = progress.problem
    if code == "refused":
        code = next((c for c, text in ADF_PROBLEMS.values() if text == progress.message), code)
    key = f"scan.problem.{code}"
    return key if key in i18n.VI else "scan.problem.other"


# ---- thumbnails ------------------------------------------------------------------------------


def _thumbnail(img: Image.Image) -> bytes:
    img.draft("RGB" if img.mode == "RGB" else "L", (THUMB_SIDE * 2, THUMB_SIDE * 2))
    small = img.convert("RGB" if img.mode in ("RGB", "RGBA", "P", "CMYK") else "L")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=70, optimize=True)
    return out.getvalue()


def _cached(path: Path, make: Any) -> bytes | None:
    """The thumbnail at `path`, made by `make()` (bytes or None) the first time."""
    if path.exists():
        return path.read_bytes()
    data = make()
    if data is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


class SpoolPages:
    """A running scan's pages in the spool (incoming/ or ready/, same item name), by scan id."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._items: dict[str, str] = {}

    def page(self, scan_id: str, number: int) -> bytes | None:
        name = self._items.get(scan_id) or self._find(scan_id)
        if name is None:
            return None
        for folder in (self.spool.incoming, self.spool.ready):
            path = folder / name / PAGES / f"{number:04d}.img"
            try:
                return path.read_bytes()
            except OSError:
                continue
        return None

    def _find(self, scan_id: str) -> str | None:
        for folder in (self.spool.incoming, self.spool.ready):
            for item in folder.iterdir() if folder.is_dir() else ():
                try:
                    meta = json.loads((item / "meta.json").read_text())
                except (OSError, ValueError):
                    continue
                if meta.get("scan_id") == scan_id:
                    self._items[scan_id] = item.name
                    return item.name
        return None


@cache
def _spool_pages(spool: Spool) -> SpoolPages:
    """One per spool (per app): it remembers where each scan's pages are."""
    return SpoolPages(spool)


def _processed_page(state: WebState, batch_id: str, index: int) -> bytes | None:
    """Page `index` (0-based) as the pipeline stored it, as a thumbnail; None before that."""
    key = layout.page_pdf(batch_id, index)
    try:
        return page_jpeg(io.BytesIO(state.pipeline.store.get(key)), 0, THUMB_SIDE, quality=70)
    except ObjectMissing:
        return None


def _batch_page(state: WebState, record: BatchRecord, index: int) -> bytes | None:
    """Page `index` (0-based) of the batch's original, as a thumbnail."""
    try:
        with state.pipeline.store.local_path(record.original or "") as path:
            document = open_document(path, state.pipeline.limits)
            try:
                if index >= document.page_count:
                    return None
                return _thumbnail(document.page(index).image)
            finally:
                document.close()
    except (DocumentError, ObjectMissing, OSError, ValueError):
        return None


# ---- routes ----------------------------------------------------------------------------------


def add_routes(app: FastAPI, state: WebState) -> None:
    Staff = Annotated[Principal, Depends(require_role("scanner"))]
    thumbs = Path(state.settings.storage.data_dir) / "thumbs"

    def batch_outcome(progress: ScanProgress | None) -> dict[str, Any] | None:
        record = batch_record(state, progress.batch_id) if progress and progress.batch_id else None
        if record is None:
            return None
        done = len(state.pipeline.pages_done(record.batch_id)) \
            if record.status not in FINAL_BATCH else 0
        return {"batch_id": record.batch_id, "status": record.status,
                "dossiers": len(record.dossiers), "pages": record.pages, "pages_done": done}

    def scan_context(request: Request, progress: ScanProgress | None) -> dict[str, Any]:
        batch = batch_outcome(progress)
        busy = progress is not None and not stale(progress) and (not progress.finished or (
            batch is not None and batch["status"] not in FINAL_BATCH))
        return {"scan": progress, "batch": batch, "polling": busy,
                "started": when(progress.started_at) if progress else None,
                "problem_key": _problem_key(progress) if progress else None,
                "seen": f"{progress.state}/{batch['status'] if batch else ''}" if progress else ""}

    def batches_context(who: Principal, request: Request) -> dict[str, Any]:
        rows = batch_rows(state, _service(request), who)
        return {"rows": rows, "interval": 2 if any(r.status in RUNNING for r in rows) else 15}

    def page(request: Request, who: Principal, form: ScanForm,
             current: ScanProgress | None = None, error: str | None = None,
             status_code: int = 200) -> HTMLResponse:
        # The list as last read (no scanner asked): the page works without JavaScript; with
        # it, htmx reads the states again at once.
        devices = [d for d in _service(request).scanners.known() if _visible_device(d, who)]
        return render(request, "scan.html", {
            "form": form, "error": error, "agencies": _agency_choices(who, state, _service(request)),
            "scanners": devices, "chosen": chosen_scanner(devices, form.scanner),
            "tone": STATE_TONE,
            "color_modes": COLOR_MODES, "resolutions": RESOLUTIONS,
            "any_agency": who.all_agencies,
            **scan_context(request, current), **batches_context(who, request)},
            status_code=status_code)

    @app.get("/scan", response_class=HTMLResponse, include_in_schema=False)
    def scan_page(request: Request, who: Staff, scan: str = "", refresh: str = "") -> HTMLResponse:
        """The station; `refresh=1` reads the scanners' states now (the button without
        JavaScript)."""
        if refresh:
            _service(request).scanners.refresh(discover=False)
        current = _visible_scan(_service(request), scan, who) if scan else None
        form = ScanForm(scanner=current.device_id, source=current.source, duplex=current.duplex,
                        color=current.color_mode, resolution=current.resolution) \
            if current else ScanForm()
        return page(request, who, form, current)

    @app.post("/scan", include_in_schema=False)
    def start_scan(request: Request, who: Staff,
                   scanner: Annotated[str, Form(max_length=300)] = "",
                   source: Annotated[str, Form(max_length=20)] = "feeder",
                   duplex: Annotated[str, Form(max_length=10)] = "",
                   dossier: Annotated[str, Form(max_length=200)] = "",
                   agency: Annotated[str, Form(max_length=60)] = "",
                   color: Annotated[str, Form(max_length=20)] = COLOR_MODES[0],
                   resolution: Annotated[str, Form(max_length=5)] = "300") -> Response:
        form = ScanForm(scanner.strip(), source.strip(), duplex in ("1", "on", "true"),
                        dossier.strip().upper(), agency.strip().upper(), color.strip(),
                        int(resolution) if resolution.strip().isdigit() else 0)
        service = _service(request)
        try:
            device, for_agency = _checked(state, service, who, form)
            scan = ScanRequest(source=form.source, duplex=form.duplex, color_mode=form.color,
                               resolution=form.resolution)
            progress = service.start(device, scan, form.dossier or None, for_agency)
        except FormError as e:
            message = i18n.translate(language(request), e.key, **e.values)
            return page(request, who, form, error=message, status_code=e.status)
        except EsclError:  # this station already runs a scan on that scanner
            message = i18n.translate(language(request), "scan.error.busy")
            return page(request, who, form, error=message, status_code=409)
        state.audit(request, who, "scan.start", progress.id, for_agency or "", device=device.id,
                    source=form.source, duplex=form.duplex, color=form.color,
                    resolution=form.resolution, dossier=form.dossier or None)
        return RedirectResponse(f"/scan?scan={progress.id}", 303)

    @app.get("/scan/scanners", response_class=HTMLResponse, include_in_schema=False)
    def scanner_list(request: Request, who: Staff, scanner: str = "",
                     wanted: str = "") -> HTMLResponse:
        """The scanners' states, read now (each asked over the network)."""
        devices = [d for d in _service(request).scanners.refresh() if _visible_device(d, who)]
        return render(request, "scan_scanners.html", {
            "scanners": devices, "chosen": chosen_scanner(devices, scanner or wanted),
            "tone": STATE_TONE})

    @app.get("/scan/scans/{scan_id}", response_class=HTMLResponse, include_in_schema=False)
    def scan_fragment(request: Request, who: Staff, scan_id: str, seen: str = "") -> HTMLResponse:
        """The running scan's panel, polled by htmx; tells the page when the scan or its batch
        has just finished, so the scanner and batch lists refresh."""
        context = scan_context(request, _visible_scan(_service(request), scan_id, who))
        response = render(request, "scan_progress.html", context)
        events = _events(seen, context)
        if events:
            response.headers["HX-Trigger"] = ", ".join(events)
        return response

    @app.get("/scan/batches", response_class=HTMLResponse, include_in_schema=False)
    def batch_list(request: Request, who: Staff) -> HTMLResponse:
        return render(request, "scan_batches.html", batches_context(who, request))

    @app.get("/scan/batches/{batch_id}", response_class=HTMLResponse, include_in_schema=False)
    def batch_page(request: Request, who: Staff, batch_id: str) -> HTMLResponse:
        record = visible_batch(state, batch_id, who)
        state.audit(request, who, "batch.read", batch_id, record.agency or "")
        names = device_names(_service(request), _service(request).recent(50))
        return render(request, "scan_batch.html", {
            "record": record, "row": row_of(record, names), "roles": page_roles(record)})

    @app.get("/scan/scans/{scan_id}/pages/{number}.jpg", include_in_schema=False)
    def scan_thumbnail(request: Request, who: Staff, scan_id: str, number: int) -> Response:
        progress = _visible_scan(_service(request), scan_id, who)
        if not 1 <= number <= progress.pages:
            raise HTTPException(404)

        def make() -> bytes | None:
            data = _spool_pages(_service(request).spool).page(scan_id, number)
            if data is not None:
                with Image.open(io.BytesIO(data)) as img:
                    return _thumbnail(img)
            batch = batch_record(state, progress.batch_id) if progress.batch_id else None
            return _batch_page(state, batch, number - 1) if batch else None

        data = _cached(thumbs / "scans" / scan_id / f"{number:04d}.jpg", make)
        if data is None:
            raise HTTPException(404)
        return jpeg_response(request, data, f'"s-{scan_id}-{number}"', THUMB_CACHE)

    @app.get("/scan/batches/{batch_id}/pages/{number}.jpg", include_in_schema=False)
    def batch_thumbnail(request: Request, who: Staff, batch_id: str, number: int) -> Response:
        record = visible_batch(state, batch_id, who)
        if not 1 <= number <= record.pages:
            raise HTTPException(404)
        data = _cached(thumbs / "batches" / batch_id / f"{number:04d}.jpg",
                       lambda: _processed_page(state, batch_id, number - 1))
        if data is not None:  # the page as stored: straightened, turned upright
            return jpeg_response(request, data, f'"b-{batch_id}-{number}"', THUMB_CACHE)
        data = _batch_page(state, record, number - 1)  # not processed yet: from the original
        if data is None:
            raise HTTPException(404)
        return jpeg_response(request, data, f'"b-{batch_id}-{number}-scan"', "no-cache")


def _checked(state: WebState, service: ScanService, who: Principal,
             form: ScanForm) -> tuple[Device, str | None]:
    """The scanner and the agency the scan is for; FormError for what cannot be scanned."""
    if not form.scanner:
        raise FormError("scan.error.pick_scanner")
    try:
        device, _ = service.scanners.find(form.scanner)
    except KeyError:
        raise FormError("scan.error.scanner") from None
    if not _visible_device(device, who):
        raise FormError("scan.error.scanner")
    if form.source not in ("feeder", "platen"):
        raise FormError("scan.error.source")
    if form.duplex and form.source != "feeder":
        raise FormError("scan.error.duplex")
    if form.color not in COLOR_MODES or form.resolution not in RESOLUTIONS:
        raise FormError("scan.error.settings")
    if form.dossier:
        code = state.pipeline.grammar.match(form.dossier)
        if code is None:
            raise FormError("scan.error.dossier", code=form.dossier[:64])
        if not who.may_change(code.agency):  # writes are scoped like reads: as for an upload
            raise FormError("scan.error.not_yours", code=code.code)
        form.dossier = code.code
    return device, _agency_for(who, device, form.agency)


def _agency_for(who: Principal, device: Device, asked: str) -> str | None:
    """The scanner's own agency, else the one asked (among the user's: another is refused, never
    replaced by the user's own), else the user's only one."""
    if device.agency:
        return device.agency
    if asked:
        if AGENCY.match(asked) and who.may_change(asked):
            return asked
        raise FormError("scan.error.agency")
    if (agency := who.only_agency()) is not None:
        return agency
    raise FormError("scan.error.agency")


def _events(seen: str, context: dict[str, Any]) -> list[str]:
    """htmx events for what finished since the poll that rendered `seen` (state/batch status)."""
    if not seen:
        return []
    was_state, _, was_batch = seen.partition("/")
    scan, batch = context["scan"], context["batch"]
    events = []
    if was_state and was_state not in ("done", "incomplete", "failed") and scan.finished:
        events.append("scan-finished")
    if batch and batch["status"] in FINAL_BATCH and was_batch not in FINAL_BATCH:
        events.append("batch-finished")
    return events
