"""The dossier search's form and result rows (api/web/dossier_pages.py holds the routes): the
filters of a search page's query string checked with a message each, the cursor of the next page,
and one row per dossier with its applicant, size, integrity state (its newest `dossier.verify`
audit entry) and, for a search with words, its snippet (storage/search.py ranks).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from api.keys import Principal
from ocr.text import nfc
from storage import layout, queries
from storage.search import Filters, Position

MAX_QUERY = 200  # characters of a search, as the REST API allows
MAX_PROCEDURE = 500
DEFAULT_LIMIT, MAX_LIMIT = 25, 100
STATUS_ROUNDS = 8  # catalog pages read per request when filtering by integrity status
VERIFY_ACTION = "dossier.verify"
STATUSES = ("ok", "problem", "unverified")
APPLICANT_FIELDS = ("applicant_name", "full_name", "registry_applicant")



@dataclass
class SearchForm:
    """The search page's filters as typed; `errors` are message keys of what is wrong."""

    q: str = ""
    agency: str = ""
    procedure: str = ""
    date_from: str = ""
    date_to: str = ""
    status: str = ""
    after: str = ""
    limit: int = DEFAULT_LIMIT
    cursor: Position | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    errors: list[str] = field(default_factory=list)

    def query(self, **changes: Any) -> str:
        """This search's URL query with `changes` (empty values left out)."""
        values = {"q": self.q, "agency": self.agency, "procedure": self.procedure,
                  "from": self.date_from, "to": self.date_to, "status": self.status,
                  "limit": "" if self.limit == DEFAULT_LIMIT else str(self.limit)}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})


def encode_cursor(position: Position) -> str:
    return base64.urlsafe_b64encode(position.encode().encode()).decode()


def decode_cursor(cursor: str) -> Position | None:
    """Where a cursor we handed out stands (a code, or a score and a code), else None."""
    try:
        position = Position.decode(
            base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeError, ValueError):
        return None
    code = position.code
    return position if 0 < len(code) <= 64 and code.isprintable() else None


def office_zone(settings: Any) -> timezone:
    offset = settings.timezone_offset
    sign = -1 if offset.startswith("-") else 1
    hours, _, minutes = offset.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours or 0), minutes=int(minutes or 0)))


def _day_start(text: str, zone: timezone, days: int = 0) -> datetime:
    """Midnight (office time) of a yyyy-mm-dd day, plus `days`, in UTC: the catalog keeps UTC."""
    day = date.fromisoformat(text) + timedelta(days=days)
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def parse_search(params: Any, who: Principal, zone: timezone) -> SearchForm:
    """The filters of a search page's query string, each checked with a message for people."""
    def get(name: str) -> str:
        return str(params.get(name, "")).strip()

    form = SearchForm(q=nfc(get("q")), agency=get("agency").upper(), procedure=get("procedure"),
                      date_from=get("from"), date_to=get("to"), status=get("status"),
                      after=get("after"))
    if len(form.q) > MAX_QUERY:
        form.errors.append("search.error.q_long")
    if form.agency and not who.sees(form.agency):
        form.errors.append("search.error.agency")
    if len(form.procedure) > MAX_PROCEDURE:
        form.errors.append("search.error.procedure")
    if form.status and form.status not in STATUSES:
        form.errors.append("search.error.status")
    _parse_dates(form, zone)
    _parse_limit(form, get("limit"))
    if form.after:
        form.cursor = decode_cursor(form.after)
        if form.cursor is None:
            form.errors.append("search.error.cursor")
    return form


def _parse_dates(form: SearchForm, zone: timezone) -> None:
    try:
        form.updated_from = _day_start(form.date_from, zone) if form.date_from else None
        form.updated_to = _day_start(form.date_to, zone, days=1) if form.date_to else None
    except (ValueError, OverflowError):  # not a day, or one no calendar holds (year 1, 9999)
        form.errors.append("search.error.date")
        return
    if form.updated_from and form.updated_to and form.updated_from >= form.updated_to:
        form.errors.append("search.error.date_order")


def _parse_limit(form: SearchForm, text: str) -> None:
    if not text:
        return
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        form.errors.append("search.error.limit")
        return
    form.limit = int(text)


def agency_choices(pipeline: Any, who: Principal) -> list[str]:
    """The agencies the user may filter by: theirs, or every agency in the catalog for '*'."""
    if not who.all_agencies:
        return sorted(who.agencies)
    return queries.agencies(pipeline.catalog, limit=500)


def procedure_choices(pipeline: Any, scope: tuple[str, ...] | None) -> list[str]:
    """Procedures of the dossiers the user sees (never another agency's)."""
    return queries.procedures(pipeline.catalog, scope, limit=300)


def summaries(pipeline: Any, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Applicant, page count and PDF size of each listed dossier's latest version: two queries
    for the whole page of results."""
    latest = {i["dossier_id"]: i["version"] for i in items}
    found: dict[str, dict[str, Any]] = {code: {"applicant": "", "pages": 0, "size": 0}
                                        for code in latest}
    for code, version in queries.version_summaries(pipeline.catalog, latest,
                                                    APPLICANT_FIELDS).items():
        pdf = version.manifest.objects.get("dossier.pdf")
        found[code]["pages"] = len(version.manifest.pages)
        found[code]["size"] = pdf.size if pdf else 0
        by_name = version.fields
        found[code]["applicant"] = next((by_name[n] for n in APPLICANT_FIELDS if by_name.get(n)), "")
    return found


def last_verifications(pipeline: Any, codes: list[str]) -> dict[str, dict[str, Any]]:
    """The newest `dossier.verify` audit entry of each code."""
    if not codes or pipeline.audit is None:
        return {}
    return queries.newest_entries(pipeline.audit.engine, VERIFY_ACTION, codes)


def integrity_state(check: dict[str, Any] | None, latest_version: int) -> dict[str, Any]:
    """ok | problem | unverified (never checked, or a newer version was stored since), with the
    differences the check found."""
    if check is None:
        return {"status": "unverified", "check": None, "stale": False, "problems": []}
    problems = [{**p, "name": _object_name(p)} for p in check.get("problems", [])]
    if check.get("version", 0) < latest_version:
        return {"status": "unverified", "check": check, "stale": True, "problems": problems}
    return {"status": "ok" if check.get("result") == "ok" else "problem", "check": check,
            "stale": False, "problems": problems}


def _object_name(problem: dict[str, Any]) -> str:
    """An object's key without the dossier's own prefix (originals keep their batch key)."""
    prefix = layout.dossier_prefix(problem.get("dossier_id", ""))
    key = str(problem.get("key", ""))
    return key[len(prefix):] if key.startswith(prefix) else key


@dataclass
class Found:
    """A page of result rows, where the next page starts (None at the end), and how many the
    user may see match (`about`, up to storage.search.COUNT_CAP; `more` beyond it)."""

    rows: list[dict[str, Any]]
    next: Position | None
    about: int = 0
    more: bool = False
    similar: bool = False  # no dossier held every word: the closest names


def search(pipeline: Any, form: SearchForm, scope: tuple[str, ...] | None) -> Found:
    """Filtering by integrity status reads at most STATUS_ROUNDS catalog pages per request; a
    page may then hold fewer rows but its cursor goes on where the reading stopped. Raises
    ValueError for a cursor of another search (other words)."""
    rows: list[dict[str, Any]] = []
    position = form.cursor
    filters = Filters(scope, form.procedure or None, form.updated_from, form.updated_to)
    found = None
    for _ in range(STATUS_ROUNDS if form.status else 1):
        found = pipeline.catalog.search_dossiers(filters, form.q, position, form.limit)
        for hit, row in zip(found.hits, _rows(pipeline, found.hits), strict=True):
            if form.status and row["integrity"]["status"] != form.status:
                continue
            rows.append(row)
            if len(rows) == form.limit:
                more = found.next is not None or hit is not found.hits[-1]
                return Found(rows, hit.position if more else None, found.about, found.more,
                             found.fuzzy)
        if found.next is None:
            return Found(rows, None, found.about, found.more, found.fuzzy)
        position = found.next
    assert found is not None
    return Found(rows, position, found.about, found.more, found.fuzzy)


def _rows(pipeline: Any, hits: list[Any]) -> list[dict[str, Any]]:
    items = [h.item() for h in hits]
    info = summaries(pipeline, items)
    checks = last_verifications(pipeline, [h.code for h in hits])
    return [{"code": h.code, "agency": h.agency, "procedure": h.procedure or "",
             "updated_at": i["updated_at"], "version": h.version, **info[h.code],
             "snippet": h.snippet, "integrity": integrity_state(checks.get(h.code), h.version)}
            for h, i in zip(hits, items, strict=True)]
