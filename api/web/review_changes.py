"""The changes the dossier form of the review pages can ask for (api/web/review_pages.py): each
checks the form against the dossier's latest version and makes one change through ingest/review.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import HTTPException

from api.keys import Principal
from api.web.review_view import Refused
from ingest.review import Review
from storage.records import Manifest


class ReviewPages(Protocol):
    """What a change needs of the review pages (api/web/review_pages.py ReviewPages)."""

    @property
    def review(self) -> Review: ...

    def code(self, text: str) -> str: ...

    def dossier(self, code: str, who: Principal) -> dict[str, Any]: ...


# ---- the changes a dossier form can ask for ---------------------------------------------------

@dataclass
class ChangeForm:
    op: str
    page: int  # 1-based, as staff count
    to: int
    new_code: str
    other: str

    def position(self, count: int, number: int | None = None) -> int:
        """The 0-based position of page `number` (default: the form's page), checked."""
        number = self.page if number is None else number
        if not 1 <= number <= count:
            raise Refused("review.error.no_page", page=number)
        return number - 1


ChangeResult = tuple[Manifest, str | None]


def _rotate(degrees: int) -> Any:
    def change(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
               action: str) -> ChangeResult:
        return pages.review.rotate(code, form.position(count), degrees, who.key_id, action), None
    return change


def _shift(by: int) -> Any:
    def change(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
               action: str) -> ChangeResult:
        at = form.position(count)
        to = form.position(count, form.page + by)
        return pages.review.move(code, at, to, who.key_id, action), None
    return change


def _move(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
          action: str) -> ChangeResult:
    at, to = form.position(count), form.position(count, form.to)
    return pages.review.move(code, at, to, who.key_id, action), None


def _drop(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
          action: str) -> ChangeResult:
    return pages.review.drop(code, form.position(count), who.key_id, action), None


def _split(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
           action: str) -> ChangeResult:
    new_code = pages.code(form.new_code)
    kept, _ = pages.review.split(code, form.position(count), new_code, who.key_id, action)
    return kept, new_code


def _merge(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
           action: str) -> ChangeResult:
    other = pages.code(form.other)
    try:
        pages.dossier(other, who)
    except HTTPException:
        raise Refused("review.error.no_dossier", code=other) from None
    return pages.review.merge(code, other, who.key_id, action), None


def _confirm(pages: ReviewPages, code: str, who: Principal, form: ChangeForm, count: int,
             action: str) -> ChangeResult:
    return pages.review.confirm(code, who.key_id, action), None


CHANGES = {
    "rotate_left": _rotate(-90), "rotate_right": _rotate(90), "earlier": _shift(-1),
    "later": _shift(1), "move": _move, "drop": _drop, "split": _split, "merge": _merge,
    "confirm": _confirm,
}
