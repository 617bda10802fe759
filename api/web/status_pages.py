"""The admins' status page: what the system is doing now (api/status_routes.py reads it).

    GET /admin/status    intake channels with their last file and last failure, batches by
                         status, failed pages waiting, the queue, workers alive, scanners

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from api.keys import Principal
from api.status_routes import system_status
from api.web.dossier_search import office_zone
from api.web.render import render
from api.web.security import WebState, require_role

Admin = Annotated[Principal, Depends(require_role("admin"))]
REFRESH_SECONDS = 30


def add_routes(app: FastAPI, state: WebState) -> None:
    @app.get("/admin/status", response_class=HTMLResponse, include_in_schema=False)
    def status_page(request: Request, who: Admin) -> HTMLResponse:
        scans = getattr(request.app.state, "scans", None)
        status = system_status(state.pipeline, scans.scanners if scans else None, who.scope())
        zone = office_zone(state.settings)
        return render(request, "admin_status.html", {
            "status": status, "refresh": REFRESH_SECONDS,
            "local": lambda at: at.astimezone(zone).strftime("%d/%m/%Y %H:%M") if at else "",
        })
