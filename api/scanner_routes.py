"""Scanner routes: list the office's scanners, start a scan, follow it (the scanning station).

A scanner configured for an agency is seen only by keys of that agency (404 for the others); a
scanner without one is shared by the office. A scan belongs to the agency it was started for.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from pydantic import BaseModel, Field

from api.errors import PRINTABLE, answers, invalid, text
from api.keys import ALL_AGENCIES, Principal
from scanners.devices import Device
from scanners.escl import EsclError
from scanners.escl_xml import ScanRequest
from scanners.scan import ScanProgress, ScanService


class StartScan(BaseModel):
    source: Literal["feeder", "platen"] = "feeder"
    duplex: bool = False
    color_mode: Literal["Grayscale8", "RGB24", "BlackAndWhite1"] = "Grayscale8"
    resolution: int = Field(default=300, ge=75, le=1200)
    dossier: str | None = Field(default=None, max_length=64, pattern=PRINTABLE)
    agency: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9.\-_]+$")


def add_scanner_routes(app: FastAPI, service: ScanService, role: Callable[..., Any],
                       log: Callable[..., None],
                       code_agency: Callable[[str], str | None]) -> None:
    """`code_agency(code)` is the agency of a dossier code, None if it is not one."""
    Scanner = Annotated[Principal, Depends(role("scanner"))]
    # A scanner by UUID or name (a URL cannot be a path segment); a scan id is 16 hex digits.
    DeviceId = Annotated[str, text(200, Path)]
    ScanId = Annotated[str, text(64, Path)]

    def visible(device: Device, who: Principal) -> bool:
        return device.agency is None or who.sees(device.agency)

    def agency_for(who: Principal, device: Device, asked: str | None) -> str | None:
        """The agency a scan is for: the scanner's own, the one asked, or the key's only one."""
        if device.agency:
            return device.agency
        if asked:
            if not who.sees(asked):
                raise HTTPException(404, "no such agency")
            return asked
        if len(who.agencies) == 1 and who.agencies[0] != ALL_AGENCIES:
            return who.agencies[0]
        raise invalid(("body", "agency"), "say which agency this scan is for (agency)")

    def visible_scan(scan_id: str, who: Principal) -> ScanProgress:
        found = service.get(scan_id)
        if found is None or not who.sees(found.agency or ""):
            raise HTTPException(404, "no such scan")
        return found

    @app.get("/api/v1/scanners", responses=answers())
    def list_scanners(who: Scanner, refresh: bool = True) -> dict[str, Any]:
        """Configured and discovered scanners with their state (idle, ready, feeder_empty...)."""
        devices = service.scanners.refresh() if refresh else service.scanners.known()
        return {"scanners": [d.public() for d in devices if visible(d, who)]}

    @app.post("/api/v1/scanners/{device_id}/scans", status_code=202,
              responses=answers(400, 404, 409))  # 404 also for a dossier of another agency
    def start_scan(device_id: DeviceId, body: StartScan, request: Request, who: Scanner) -> dict[str, Any]:
        """Starts a scan; follow it at /api/v1/scans/{id}. 409 if the feeder is empty."""
        try:
            device, _ = service.scanners.find(device_id)
        except KeyError:
            raise HTTPException(404, "no such scanner") from None
        if not visible(device, who):
            raise HTTPException(404, "no such scanner")
        owner = code_agency(body.dossier) if body.dossier else None
        if body.dossier and owner is None:
            raise invalid(("body", "dossier"), f"{body.dossier!r} is not a dossier code")
        if owner is not None and not who.sees(owner):  # writes are scoped like reads
            raise HTTPException(404, "no such dossier")
        if body.duplex and body.source != "feeder":
            raise invalid(("body", "duplex"), "duplex needs the feeder")
        agency = agency_for(who, device, body.agency or owner)
        try:
            progress = service.start(device, ScanRequest(
                source=body.source, duplex=body.duplex, color_mode=body.color_mode,
                resolution=body.resolution), body.dossier, agency)
        except EsclError as e:
            raise HTTPException(409, str(e)) from e
        log(request, who, "scan.start", progress.id, agency or "", device=device.id,
            source=body.source, duplex=body.duplex)
        return progress.public()

    @app.get("/api/v1/scans", responses=answers())
    def list_scans(who: Scanner) -> dict[str, Any]:
        return {"scans": [p.public() for p in service.recent() if who.sees(p.agency or "")]}

    @app.get("/api/v1/scans/{scan_id}", responses=answers(404))
    def scan_status(scan_id: ScanId, who: Scanner) -> dict[str, Any]:
        """state: starting, scanning, storing, done, incomplete or failed; pages so far; the
        scanner's problem (feeder_empty, jam, misfeed, door_open...) and a message for the staff."""
        return visible_scan(scan_id, who).public()
