"""The digitization report: per agency and per month of receipt, how many dossiers were received,
digitized, digitized in full by component, have a digitized result, and are signed.

The figures are one grouped SQL query on the `dossiers` table (a filtered count per figure),
whose flags the catalog sets when it indexes a version or a result (storage/catalog.py): no
manifest is read, and the index on (received_on, agency, received_month, flags) covers the query,
so the report stays fast at hundreds of thousands of dossiers.

Definitions (README "The digitization report"):
    received         live dossiers (not withdrawn) whose receipt date falls in the range: the
                     receipt's `received_at` field in Vietnam time, else the code's date part
    digitized        of those, with a stored current version (a PDF)
    full_components  of those, whose current manifest says `complete_by_components: true`
    result           of those, with a stored result
    signed           of those, whose current manifest says `signature.status == "signed"`
Shares are percent of received. Months are those of the receipt date (Vietnam time).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from storage.tables import Dossier

if TYPE_CHECKING:
    from storage.catalog import Catalog

Scope = tuple[str, ...] | None

FIGURES = ("received", "digitized", "full_components", "result", "signed")
SHARES = FIGURES[1:]
CSV_COLUMNS = ("agency", "month", *FIGURES, *(f"{f}_pct" for f in SHARES))


def figure_condition(figure: str) -> ColumnElement[bool]:
    """The condition on `dossiers` of one figure (every figure counts received dossiers only:
    the range condition is added by the caller)."""
    conditions: dict[str, ColumnElement[bool]] = {
        "received": Dossier.withdrawn_to.is_(None),
        "digitized": Dossier.digitized.is_(True),
        "full_components": Dossier.full_components.is_(True),
        "result": Dossier.result_version.is_not(None),
        "signed": Dossier.signed.is_(True),
    }
    if figure not in conditions:
        raise ValueError(f"no figure {figure!r}: one of {', '.join(FIGURES)}")
    return conditions[figure]


def received_between(start: date | None, end: date | None,
                     month: str | None = None) -> list[ColumnElement[bool]]:
    """Conditions of a receipt date in [start, end] (both inclusive) and in `month` (YYYY-MM)."""
    found: list[ColumnElement[bool]] = []
    if start is not None:
        found.append(Dossier.received_on >= start)
    if end is not None:
        found.append(Dossier.received_on <= end)
    if month is not None:
        found.append(Dossier.received_month == month)
    return found


def list_conditions(figure: str | None, month: str | None, start: date | None,
                    end: date | None) -> tuple[ColumnElement[bool], ...]:
    """The dossier list's filters behind a figure of the report (GET /api/v1/dossiers?figure=
    &month=&received_from=&received_to=): pass them as `Catalog.list_dossiers(where=...)`."""
    found = received_between(start, end, month)
    if figure is not None:
        found.append(figure_condition(figure))
    return tuple(found)


def list_link(base: str, figure: str, agency: str | None, month: str | None,
              start: date, end: date) -> str:
    """The dossier list behind a figure: `base?figure=&agency=&month=` for a month's cell, with
    `received_from=&received_to=` for a range's total."""
    from urllib.parse import urlencode

    query: dict[str, str] = {"figure": figure}
    if agency:
        query["agency"] = agency
    if month:
        query["month"] = month
    query.update(received_from=start.isoformat(), received_to=end.isoformat())
    return f"{base}?{urlencode(query)}"


def share(part: int, whole: int) -> float | None:
    """Percent of `whole`, one decimal; None of nothing."""
    return round(100.0 * part / whole, 1) if whole else None


@dataclass
class Row:
    agency: str
    month: str  # YYYY-MM, or "" for the agency's total over the range
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))

    def shares(self) -> dict[str, float | None]:
        return {f: share(self.counts[f], self.counts["received"]) for f in SHARES}

    def to_dict(self) -> dict[str, Any]:
        return {"agency": self.agency, "month": self.month or None, **self.counts,
                "shares": self.shares()}


@dataclass
class Report:
    start: date
    end: date
    scope: Scope
    rows: list[Row]  # per agency and month, by agency then month
    totals: list[Row]  # per agency over the range
    total: Row  # every agency in scope over the range

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(),
                "agencies": list(self.scope) if self.scope is not None else None,
                "timezone": "+07:00", "figures": list(FIGURES),
                "rows": [r.to_dict() for r in self.rows],
                "totals": [r.to_dict() for r in self.totals], "total": self.total.to_dict()}

    def to_csv(self) -> str:
        """One line per agency and month, then one per agency (month empty), then the total
        (agency and month empty): the columns of CSV_COLUMNS."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in [*self.rows, *self.totals, self.total]:
            shares = row.shares()
            writer.writerow([row.agency, row.month, *(row.counts[f] for f in FIGURES),
                             *("" if shares[f] is None else shares[f] for f in SHARES)])
        return out.getvalue()


def digitization(catalog: Catalog, start: date, end: date, scope: Scope) -> Report:
    """The report over receipt dates in [start, end] for the agencies of `scope` (None: all):
    one grouped query, a filtered count per figure."""
    cells: dict[tuple[str, str], Row] = {}
    counts = [func.count().filter(figure_condition(f)) for f in FIGURES]
    stmt = (select(Dossier.agency, Dossier.received_month, *counts)
            .where(Dossier.withdrawn_to.is_(None), *received_between(start, end))
            .group_by(Dossier.agency, Dossier.received_month))
    if scope is not None:
        stmt = stmt.where(Dossier.agency.in_(scope))
    with catalog.session() as s:
        for agency, month, *found in s.execute(stmt).all():
            cells[(agency, month)] = Row(agency, month, dict(zip(FIGURES, found, strict=True)))
    rows = [cells[k] for k in sorted(cells)]
    totals: dict[str, Row] = {}
    total = Row("", "")
    for row in rows:
        agency_total = totals.setdefault(row.agency, Row(row.agency, ""))
        for f in FIGURES:
            agency_total.counts[f] += row.counts[f]
            total.counts[f] += row.counts[f]
    return Report(start, end, scope, rows, [totals[a] for a in sorted(totals)], total)
