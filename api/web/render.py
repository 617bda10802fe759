"""The frame every web page renders in: the templates with their filters and globals, the menu,
and `render`, `error_page` and `jpeg_response`, which the page modules (pages.py, scan_pages.py,
review_pages.py, dossier_pages.py) answer with.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup

from api.keys import ROLES, Principal
from api.web import i18n
from api.web.security import language, session_of
from api.web.why import IncompleteWhy

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.trim_blocks = templates.env.lstrip_blocks = True


@dataclass(frozen=True)
class NavItem:
    href: str
    key: str  # i18n message id of the link text
    roles: tuple[str, ...]  # admin sees every item


NAV = [
    NavItem("/scan", "nav.scan", ("scanner",)),
    NavItem("/review", "nav.review", ("scanner", "processor")),
    NavItem("/dossiers", "nav.dossiers", ("processor", "auditor")),
    NavItem("/reports/digitization", "nav.reports", ("auditor",)),
    NavItem("/admin/users", "nav.users", ("admin",)),
    NavItem("/admin/status", "nav.status", ("admin",)),
]
@pass_context
def _t(context: Any, key: str, **values: Any) -> str:
    return i18n.translate(context.get("lang", i18n.DEFAULT), key, **values)


@pass_context
def _csrf_input(context: Any) -> Markup:
    return Markup('<input type="hidden" name="csrf" value="{}">').format(context.get("csrf", ""))


_versions: dict[tuple[str, int], str] = {}


def static_url(name: str) -> str:
    """/static/<name>?v=<content hash>: cached for a year by browsers, changed with the file."""
    path = STATIC / name
    try:
        stamp = (name, path.stat().st_mtime_ns)
    except OSError:
        return f"/static/{quote(name)}"
    if stamp not in _versions:
        _versions[stamp] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"/static/{quote(name)}?v={_versions[stamp]}"


def _zone(context: Any) -> timezone:
    request = context.get("request")
    offset = "+07:00"
    if request is not None and hasattr(request.app.state, "web"):
        offset = request.app.state.web.settings.timezone_offset
    sign = -1 if offset.startswith("-") else 1
    hours, _, minutes = offset.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours or 0), minutes=int(minutes or 0)))


@pass_context
def _local_datetime(context: Any, value: datetime | str | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    """`{{ at|local_datetime }}`: in the office's time zone (settings.timezone_offset), dd/mm/yyyy."""
    if not value:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(_zone(context)).strftime(fmt)


@pass_context
def _local_date(context: Any, value: datetime | str | None) -> str:
    return _local_datetime(context, value, "%d/%m/%Y")


templates.env.globals.update(t=_t, csrf_input=_csrf_input, static_url=static_url, roles=ROLES,
                             why=IncompleteWhy)
templates.env.filters.update(local_datetime=_local_datetime, local_date=_local_date)


def nav_for(who: Principal | None) -> list[NavItem]:
    if who is None:
        return []
    return [item for item in NAV if who.role == "admin" or who.role in item.roles]


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The template with what every page needs: `lang`, `t`, `user` (WebUser or None), `who`
    (Principal or None), `csrf` (the session's token, "" before login), `nav`, `path`."""
    session = session_of(request)
    who = session.user.principal if session else None
    path = request.url.path
    full_path = path + (f"?{request.url.query}" if request.url.query else "")
    values: dict[str, Any] = {
        "lang": language(request), "langs": i18n.LANGS, "user": session.user if session else None,
        "who": who, "csrf": session.csrf if session else "", "nav": nav_for(who), "path": path,
        "full_path": full_path,
    }
    values.update(context or {})
    return templates.TemplateResponse(request, name, values, status_code=status_code,
                                      headers=headers)


def jpeg_response(request: Request, data: bytes, etag: str,
                  cache_control: str = "private, max-age=86400") -> Response:
    """A page image or thumbnail; 304 when the browser already holds this ETag (slow networks)."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)


def error_page(request: Request, status_code: int, key: str, headers: dict[str, str] | None = None,
               **values: Any) -> HTMLResponse:
    message = i18n.translate(language(request), key, **values)
    return render(request, "error.html", {"status": status_code, "message": message},
                  status_code=status_code, headers=headers)
