"""The admins' status page: what the system is doing now (api/status_routes.py reads it).

    GET /admin/status    intake channels with their last file and last failure, batches by
                         status, failed pages waiting, the queue, workers alive, scanners

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

from datetime import timedelta, timezone
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from api.keys import Principal
from api.status_routes import system_status
from api.web.render import render
from api.web.security import WebState, require_role

Admin = Annotated[Principal, Depends(require_role("admin"))]
REFRESH_SECONDS = 30


def _zone(offset: str) -> timezone:
    sign = -1 if offset.startswith("-") else 1
    hours, _, minutes = offset.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours or 0), minutes=int(minutes or 0)))


def add_routes(app: FastAPI, state: WebState) -> None:
    @app.get("/admin/status", response_class=HTMLResponse, include_in_schema=False)
    def status_page(request: Request, who: Admin) -> HTMLResponse:
        scans = getattr(request.app.state, "scans", None)
        status = system_status(state.pipeline, scans.scanners if scans else None, who.scope())
        zone = _zone(state.settings.timezone_offset)
        return render(request, "admin_status.html", {
            "status": status, "refresh": REFRESH_SECONDS,
            "local": lambda at: at.astimezone(zone).strftime("%d/%m/%Y %H:%M") if at else "",
        })
