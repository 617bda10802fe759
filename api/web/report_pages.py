"""The digitization report's web page (auditors and admins): the figures of storage/reports.py per
agency and month of receipt, each a link to the list of dossiers behind it.

    GET /reports/digitization?from=&to=&agency=           the figures (this month by default)
    GET /reports/digitization/dossiers?figure=&agency=&month=&from=&to=&after=
                                                          the dossiers behind one figure

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

import re
from datetime import date, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from api.keys import Principal
from api.web.render import render
from api.web.security import WebState, require_role
from storage import reports
from storage.catalog import VIETNAM

Reader = Annotated[Principal, Depends(require_role("auditor"))]
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_AGENCY = re.compile(r"^[A-Za-z0-9.*_-]{1,40}$")
PAGE = 100


def _day(value: str | None, default: date) -> tuple[date, str | None]:
    """A YYYY-MM-DD of the query, else the default; an error message for a malformed one."""
    if not value:
        return default, None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return date.fromisoformat(value), None
    except ValueError:
        return default, f"{value[:40]!r} is not a date (YYYY-MM-DD)"


def _range(request: Request) -> tuple[date, date, str | None, list[str]]:
    today = datetime.now(VIETNAM).date()
    q = request.query_params
    start, e1 = _day(q.get("from"), today.replace(day=1))
    end, e2 = _day(q.get("to"), today)
    agency = (q.get("agency") or "").strip().upper() or None
    errors = [e for e in (e1, e2) if e]
    if agency and not _AGENCY.fullmatch(agency):
        errors.append("not an agency code")
        agency = None
    return start, end, agency, errors


def add_routes(app: FastAPI, state: WebState) -> None:
    @app.get("/reports/digitization", response_class=HTMLResponse, include_in_schema=False)
    def digitization(request: Request, who: Reader) -> HTMLResponse:
        start, end, agency, errors = _range(request)
        found = reports.digitization(state.pipeline.catalog, start, end, who.scope_for(agency))
        state.audit(request, who, "report.digitization", "digitization", via="web",
                    **{"from": start.isoformat(), "to": end.isoformat(), "asked_agency": agency})

        def link(figure: str, row: reports.Row) -> str:
            query = {"figure": figure, "agency": row.agency, "month": row.month,
                     "from": start.isoformat(), "to": end.isoformat()}
            return "/reports/digitization/dossiers?" + urlencode(
                {k: v for k, v in query.items() if v})

        return render(request, "report_digitization.html", {
            "report": found, "start": start, "end": end, "agency": agency or "",
            "figures": reports.FIGURES, "shares": reports.SHARES, "link": link,
            "rows": [*found.rows, *found.totals, found.total], "errors": errors,
        }, status_code=422 if errors else 200)

    @app.get("/reports/digitization/dossiers", response_class=HTMLResponse,
             include_in_schema=False)
    def figure_dossiers(request: Request, who: Reader) -> HTMLResponse:
        start, end, agency, errors = _range(request)
        q = request.query_params
        figure = q.get("figure", "received")
        month = q.get("month") or None
        after = q.get("after") or None
        if figure not in reports.FIGURES:
            errors.append("not a figure")
            figure = "received"
        if month and not _MONTH.fullmatch(month):
            errors.append("not a month (YYYY-MM)")
            month = None
        if after and len(after) > 64:
            after = None
        items, last = state.pipeline.catalog.list_dossiers(
            who.scope_for(agency), after=after, limit=PAGE,
            where=reports.list_conditions(figure, month, start, end))
        state.audit(request, who, "dossier.search", f"report:{figure}", via="web",
                    results=[d["dossier_id"] for d in items])
        more = None
        if last:
            more = "/reports/digitization/dossiers?" + urlencode(
                {k: v for k, v in {"figure": figure, "agency": agency, "month": month,
                                   "from": start.isoformat(), "to": end.isoformat(),
                                   "after": last}.items() if v})
        return render(request, "report_dossiers.html", {
            "figure": figure, "agency": agency or "", "month": month or "", "start": start,
            "end": end, "items": items, "more": more, "errors": errors,
        }, status_code=422 if errors else 200)
