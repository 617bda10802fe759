"""The review queue: what the machine could not settle waits here for a person.

    GET  /review                          the queue: batches and codes to check, newest first
    GET  /review/batches/{id}             a batch's unmatched pages, assigned by typing or scanning
    POST /review/batches/{id}/{op}        assign | discard | incomplete
    GET  /review/dossiers/{code}          a dossier's pages: rotate, move, drop, split, merge, confirm,
                                          recode (correct a code read wrong)
    POST /review/dossiers/{code}          one change (form field `op`)
    GET  .../pages/{n}.jpg                page images of a batch or of a dossier version

Every change goes through ingest/review.py, which makes a new dossier version and an audit entry
in the name of the user (`user:<name>`). A form carries an action id, so sending it twice changes
nothing the second time, and a dossier form the version it was made on, so a change made on a
page that someone else changed meanwhile is refused instead of hitting the wrong page. Forms work
without JavaScript (post, then redirect); with htmx a change swaps only the panel. Another agency's
batch or dossier answers 404, like one that does not exist. Correcting a code (op `recode`) moves
the pages to the right code and withdraws the old one: the form posts without htmx and lands on
the new code's page; the old code's page then leads there too.

What the queue and the screens show (the view models) is built in api/web/review_view.py.

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

import io
import re
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.keys import Principal
from api.web import i18n
from api.web.render import jpeg_response, render
from api.web.review_changes import CHANGES, ChangeForm
from api.web.review_view import (
    QUEUE_LIMIT,
    Refused,
    batch_name,
    batch_view,
    dossier_view,
    other_agencies,
    pages_text,
    queue,
    refused,
    sees_page,
)
from api.web.review_view import waiting_batches as waiting_batches  # tests/test_write_scope.py
from api.web.security import WebState, language, require_role
from ingest.pipeline import PageRef, Pipeline
from ingest.review import Review, ReviewError
from ocr.pdf import page_jpeg, rotated
from storage import layout
from storage.objects import ObjectMissing
from storage.records import BatchRecord, Manifest

ROLES = ("scanner", "processor")  # and admin
THUMB, LARGE = 320, 1400  # longest side of a thumbnail, of an enlarged page
BATCH_ID = re.compile(r"b[0-9a-f]{24}")
ACTION_ID = re.compile(r"[0-9a-f]{32}")

Staff = Annotated[Principal, Depends(require_role(*ROLES))]
Text = Annotated[str, Form(max_length=300)]


# ---- routes ---------------------------------------------------------------------------------

def add_routes(app: FastAPI, state: WebState) -> None:
    pages = ReviewPages(state)
    app.add_api_route("/review", pages.queue_page, methods=["GET"], response_class=HTMLResponse,
                      include_in_schema=False)
    app.add_api_route("/review/dossiers", pages.find_dossier, methods=["GET"],
                      include_in_schema=False)
    app.add_api_route("/review/batches/{batch_id}", pages.batch_page, methods=["GET"],
                      response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/review/batches/{batch_id}/pages/{number}.jpg", pages.batch_image,
                      methods=["GET"], include_in_schema=False)
    app.add_api_route("/review/batches/{batch_id}/{op}", pages.batch_change, methods=["POST"],
                      include_in_schema=False)
    app.add_api_route("/review/dossiers/{code}", pages.dossier_page, methods=["GET"],
                      response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/review/dossiers/{code}/v{version}/pages/{number}.jpg",
                      pages.dossier_image, methods=["GET"], include_in_schema=False)
    app.add_api_route("/review/dossiers/{code}", pages.dossier_change, methods=["POST"],
                      include_in_schema=False)


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _new_action() -> str:
    return uuid.uuid4().hex


def _action_id(value: str) -> str:
    if not ACTION_ID.fullmatch(value):
        raise HTTPException(400)  # the page's own forms always send one: reload and retry
    return value


def scanner_names(request: Request) -> dict[str, str]:
    scans = getattr(request.app.state, "scans", None)
    return scans.scanners.names() if scans is not None else {}


# Changes made with a form far down the page: their notice or refusal is shown beside it.
LOCAL_FEEDBACK = ("merge", "split")


class ReviewPages:
    """The routes' work, sharing the app's pipeline."""

    def __init__(self, state: WebState) -> None:
        self.state = state

    @property
    def pipeline(self) -> Pipeline:
        return self.state.pipeline

    @property
    def review(self) -> Review:
        return Review(self.pipeline)

    # ---- lookups: another agency's batch or dossier is one that does not exist ----

    def batch(self, batch_id: str, who: Principal) -> BatchRecord:
        if not BATCH_ID.fullmatch(batch_id):
            raise HTTPException(404)
        try:
            record = self.pipeline.record(batch_id)
        except ObjectMissing:
            raise HTTPException(404) from None
        if not who.sees(record.agency or "") and \
                not any(who.sees(a) for a in other_agencies(record)):
            raise HTTPException(404)
        return record

    def dossier(self, code: str, who: Principal) -> dict[str, Any]:
        """The catalog's view of a dossier the user may see (fields, agency, version)."""
        assert self.pipeline.catalog is not None
        found = self.pipeline.grammar.match(code)
        dossier = self.pipeline.catalog.dossier(found.code) if found else None
        if dossier is None or not who.sees(dossier["agency"]):
            raise HTTPException(404)
        return dossier

    def renamed_to(self, code: str, who: Principal) -> str | None:
        """The code a person corrected this (withdrawn) code to, if the user sees both."""
        assert self.pipeline.catalog is not None
        found = self.pipeline.grammar.match(code)
        gone = self.pipeline.catalog.withdrawal(found.code) if found else None
        if gone is None or not who.sees(gone["agency"]):
            return None
        to = self.pipeline.grammar.match(gone["to"])
        return to.code if to and who.sees(to.agency) else None

    def code(self, text: str) -> str:
        """A typed or scanned code (a reader may send a URL holding it), checked with the
        pipeline's grammar."""
        text = text.strip()
        if not text:
            raise Refused("review.error.no_code")
        grammar = self.pipeline.grammar
        found = grammar.match(text) or (grammar.find(text) if "://" in text else None)
        if found is None:
            raise Refused("review.error.bad_code", code=text[:60])
        return found.code

    def message(self, request: Request, key: str, **values: Any) -> str:
        return i18n.translate(language(request), key, **values)

    # ---- the queue ----

    def queue_page(self, request: Request, who: Staff) -> HTMLResponse:
        return self.show_queue(request, who)

    def show_queue(self, request: Request, who: Principal, error: str | None = None,
                   code: str = "", status_code: int = 200) -> HTMLResponse:
        return render(request, "review_queue.html", {
            "items": queue(self.pipeline, who, scanner_names(request)), "limit": QUEUE_LIMIT,
            "error": error,
            "code": code}, status_code=status_code)

    def find_dossier(self, request: Request, who: Staff,
                     code: Annotated[str, Query(max_length=300)] = "") -> Response:
        """The queue's "open a dossier by its code" box."""
        try:
            found = self.code(code)
        except Refused as e:
            return self.show_queue(request, who, self.message(request, e.key, **e.values),
                                   code, e.status_code)
        try:
            self.dossier(found, who)
        except HTTPException:
            if to := self.renamed_to(found, who):
                return RedirectResponse(f"/review/dossiers/{to}?"
                                        + urlencode({"done": "renamed", "other": found}), 303)
            return self.show_queue(request, who,
                                   self.message(request, "review.error.no_dossier", code=found),
                                   code, 404)
        return RedirectResponse(f"/review/dossiers/{found}", 303)

    # ---- a batch ----

    def batch_page(self, request: Request, batch_id: str, who: Staff,
                   done: Annotated[str, Query(max_length=20)] = "",
                   code: Annotated[str, Query(max_length=80)] = "",
                   v: Annotated[int, Query(ge=0)] = 0,
                   p: Annotated[str, Query(max_length=2000)] = "") -> HTMLResponse:
        record = self.batch(batch_id, who)
        self.state.audit(request, who, "batch.read", batch_id, record.agency or "")
        numbers = [int(n) for n in p.split(",") if n.isdigit()]
        notice = self.batch_notice(request, done, code, v, [n - 1 for n in numbers])
        return self.show_batch(request, record, who, notice=notice)

    def batch_notice(self, request: Request, done: str, code: str, version: int,
                     pages: list[int]) -> str | None:
        if done == "assign" and self.pipeline.grammar.match(code) and version:
            return self.message(request, "review.done.assign", pages=pages_text(pages),
                                code=code, version=version)
        if done == "replace" and self.pipeline.grammar.match(code) and version:
            return self.message(request, "review.done.replace", code=code, version=version)
        if done == "keep":
            return self.message(request, "review.done.keep", pages=pages_text(pages))
        if done == "discard":
            return self.message(request, "review.done.discard", pages=pages_text(pages))
        if done == "incomplete":
            return self.message(request, "review.done.incomplete")
        return None

    def show_batch(self, request: Request, record: BatchRecord, who: Principal,
                   notice: str | None = None, error: str | None = None, code: str = "",
                   selected: set[int] | None = None, status_code: int = 200,
                   assigned: str | None = None) -> HTMLResponse:
        template = "review_batch_panel.html" if _htmx(request) else "review_batch.html"
        return render(request, template, {
            **batch_view(self.pipeline, record, who, selected),
            "notice": notice, "error": error, "code": code, "assigned": assigned,
            "batch_name": batch_name(record, scanner_names(request)),
            "action_id": _new_action(), "thumb": THUMB, "large": LARGE,
        }, status_code=status_code)

    def batch_image(self, request: Request, batch_id: str, number: int, who: Staff,
                    size: Annotated[int, Query(ge=64, le=LARGE)] = THUMB) -> Response:
        """A page of the batch as the scanner saw it (after straightening), for review."""
        record = self.batch(batch_id, who)
        if not 1 <= number <= record.pages or not sees_page(who, record, number - 1):
            raise HTTPException(404)
        try:
            jpeg = self.page_jpeg(PageRef(batch_id, number - 1), size)
        except ObjectMissing:
            raise HTTPException(404) from None
        self.state.audit(request, who, "batch.page.read", batch_id, record.agency or "",
                         page=number, size=size)
        return jpeg_response(request, jpeg, f'"{batch_id}-{number}-{size}"')

    def file_of(self, batch_id: str) -> str:
        try:
            return self.pipeline.record(batch_id).file or batch_id
        except (ObjectMissing, ValueError):
            return batch_id

    def page_jpeg(self, ref: PageRef, size: int) -> bytes:
        page = self.pipeline.store.get(layout.page_pdf(ref.batch_id, ref.index))
        return page_jpeg(io.BytesIO(rotated(page, ref.rotate)), 0, size)

    def batch_change(self, request: Request, batch_id: str, op: str, who: Staff,
                     action_id: Text = "", code: Text = "",
                     pages: Annotated[list[int], Form()] = []) -> Response:  # noqa: B006
        """assign (the selected pages join the dossier of `code`), discard (they belong to
        none), incomplete (the scan was checked for missing pages), replace (a held rescan
        becomes its dossier's current version), keep (a held rescan is set aside)."""
        record = self.batch(batch_id, who)
        if op not in ("assign", "discard", "incomplete", "replace", "keep"):
            raise HTTPException(404)
        if op == "incomplete" and not who.sees(record.agency or ""):
            # Another agency's scan, seen only for pages of ours held in it: its staff check it.
            raise HTTPException(404)
        action = _action_id(action_id)
        indexes = sorted({n - 1 for n in pages})
        try:
            if op == "assign":
                found = self.code(code)
                manifest = self.assign(record, indexes, found, who, action)
                query = {"done": op, "code": found, "v": manifest.version}
            elif op == "discard":
                self.check_pages(record, indexes, who)
                self.review.discard(batch_id, indexes, who.key_id, action)
                query = {"done": op}
            elif op == "replace":
                if not (manifest := self.review.replayed_in(record, action)):
                    self.check_pages(record, indexes, who)
                    manifest = self.review.replace(batch_id, indexes, who.key_id, action)
                query = {"done": op, "code": manifest.dossier_id, "v": manifest.version}
            elif op == "keep":
                if not any(d.action_id == action for d in record.dropped_pages):
                    self.check_pages(record, indexes, who)
                self.review.keep_current(batch_id, indexes, who.key_id, action)
                query = {"done": op}
            else:
                self.review.accept_incomplete(batch_id, who.key_id)
                query = {"done": op}
        except ReviewError as e:
            return self.batch_refused(request, batch_id, who, refused(e), code, pages)
        except Refused as e:
            return self.batch_refused(request, batch_id, who, e, code, pages)
        query["p"] = ",".join(str(i + 1) for i in indexes)
        if not _htmx(request):
            return RedirectResponse(f"/review/batches/{batch_id}?{urlencode(query)}", 303)
        notice = self.batch_notice(request, op, str(query.get("code", "")), int(query.get("v", 0)),
                                   indexes)
        return self.show_batch(request, self.pipeline.record(batch_id), who, notice=notice,
                               assigned=str(query.get("code") or "") or None)

    def batch_refused(self, request: Request, batch_id: str, who: Principal, e: Refused,
                      code: str, pages: list[int]) -> HTMLResponse:
        return self.show_batch(request, self.pipeline.record(batch_id), who,
                               error=self.message(request, e.key, **e.values), code=code[:300],
                               selected=set(pages), status_code=e.status_code)

    def check_pages(self, record: BatchRecord, indexes: list[int], who: Principal) -> None:
        if not indexes:
            raise Refused("review.error.no_pages")
        if not set(indexes) <= set(record.unmatched_pages):
            raise Refused("review.error.not_waiting")
        if not all(sees_page(who, record, i) for i in indexes):
            raise Refused("review.error.not_waiting")  # as if they were not there

    def assign(self, record: BatchRecord, indexes: list[int], code: str, who: Principal,
               action: str) -> Manifest:
        if done := self.review.replayed(code, action):
            return done  # the same form again: its pages were assigned the first time
        self.check_pages(record, indexes, who)
        agency = self.pipeline.grammar.match(code).agency  # type: ignore[union-attr]
        if not who.sees(agency):
            raise Refused("review.error.not_yours", code=code)
        return self.review.assign(record.batch_id, indexes, code, who.key_id, action)

    # ---- a dossier ----

    def dossier_page(self, request: Request, code: str, who: Staff,
                     done: Annotated[str, Query(max_length=20)] = "",
                     v: Annotated[int, Query(ge=0)] = 0,
                     other: Annotated[str, Query(max_length=80)] = "") -> Response:
        """A dossier's page editor; a code corrected in review leads to the right code's."""
        try:
            dossier = self.dossier(code, who)
        except HTTPException:
            if to := self.renamed_to(code, who):
                return RedirectResponse(f"/review/dossiers/{to}?" + urlencode(
                    {"done": "renamed", "other": self.pipeline.grammar.match(code).code}), 303)  # type: ignore[union-attr]
            raise
        self.state.audit(request, who, "dossier.read", dossier["dossier_id"], dossier["agency"],
                         version=dossier["version"], via="review")
        return self.show_dossier(request, dossier, who, notice=self.dossier_notice(
            request, dossier["dossier_id"], done, v, other), at=done)

    def dossier_notice(self, request: Request, code: str, done: str, version: int,
                       other: str) -> str | None:
        other_ok = bool(self.pipeline.grammar.match(other))
        if done == "renamed" and other_ok:
            return self.message(request, "review.error.renamed", code=other, other=code)
        if not done or not version:
            return None
        if done == "split" and other_ok:
            return self.message(request, "review.done.split", version=version, other=other)
        if done == "recode" and other_ok:
            return self.message(request, "review.done.recode", version=version, code=code,
                                other=other)
        return self.message(request, "review.done.version", version=version)

    def show_dossier(self, request: Request, dossier: dict[str, Any], who: Principal,
                     notice: str | None = None, error: str | None = None,
                     status_code: int = 200, recode: str | None = None,
                     at: str = "") -> HTMLResponse:
        """The page editor; `recode` is a code typed into the "correct the code" box that was
        refused: shown again there, with the focus. `at`: the change whose form the notice or
        error is shown beside (merge, split: at the bottom of the page), else at the top."""
        versions = self.pipeline.dossiers.versions(dossier["dossier_id"])
        template = "review_dossier_panel.html" if _htmx(request) else "review_dossier.html"
        return render(request, template, {
            **dossier_view(dossier, versions, recode, self.file_of),
            "notice": notice, "error": error, "action_id": _new_action(),
            "thumb": THUMB, "large": LARGE, "at": at if at in LOCAL_FEEDBACK else "",
        }, status_code=status_code)

    def dossier_image(self, request: Request, code: str, version: int, number: int, who: Staff,
                      size: Annotated[int, Query(ge=64, le=LARGE)] = THUMB) -> Response:
        """Page `number` of version `version` as it shows in that version (turned)."""
        dossier = self.dossier(code, who)
        code = dossier["dossier_id"]
        manifest = next((m for m in self.pipeline.dossiers.versions(code) if m.version == version), None)
        refs = manifest.refs() if manifest else []
        if not 1 <= number <= len(refs):
            raise HTTPException(404)
        self.state.audit(request, who, "dossier.page.read", code, dossier["agency"],
                         version=version, page=number, size=size)
        return jpeg_response(request, self.page_jpeg(refs[number - 1], size),
                             f'"{code}-{version}-{number}-{size}"')

    def dossier_change(self, request: Request, code: str, who: Staff,
                       op: Annotated[str, Form(max_length=20)] = "",
                       version: Annotated[int, Form(ge=1)] = 1,
                       page: Annotated[int, Form()] = 0, to: Annotated[int, Form()] = 0,
                       new_code: Text = "", other: Text = "",
                       action_id: Text = "") -> Response:
        if op == "recode":
            return self.recode(request, code, who, version, new_code, action_id)
        dossier = self.dossier(code, who)
        code = dossier["dossier_id"]
        if op not in CHANGES:
            raise HTTPException(400)
        action = _action_id(action_id)
        form = ChangeForm(op, page, to, new_code, other)
        try:
            manifest, other_code = self.change(dossier, who, form, version, action)
        except ReviewError as e:
            return self.dossier_refused(request, code, who, refused(e), at=op)
        except Refused as e:
            return self.dossier_refused(request, code, who, e, at=op)
        if not _htmx(request):
            query = {"done": op, "v": manifest.version}
            query.update({"other": other_code} if other_code else {})
            anchor = f"#{op}-feedback" if op in LOCAL_FEEDBACK else ""
            return RedirectResponse(f"/review/dossiers/{code}?{urlencode(query)}{anchor}", 303)
        notice = self.dossier_notice(request, code, op, manifest.version, other_code or "")
        return self.show_dossier(request, self.dossier(code, who), who, notice=notice, at=op)

    def dossier_refused(self, request: Request, code: str, who: Principal,
                        e: Refused, recode: str | None = None, at: str = "") -> HTMLResponse:
        return self.show_dossier(request, self.dossier(code, who), who,
                                 error=self.message(request, e.key, **e.values),
                                 status_code=e.status_code, recode=recode, at=at)

    def recode(self, request: Request, code: str, who: Principal, version: int, typed: str,
               action_id: str) -> Response:
        """The "correct the code" form: the dossier's pages become dossier `typed` (typed, or
        scanned with a barcode reader, which ends with Enter) and the old code is withdrawn;
        then the right code's page, with a notice. The right code must be of an agency the user
        works for. Sent again (same action id), it leads to the same page and changes nothing."""
        action = _action_id(action_id)
        found = self.pipeline.grammar.match(code)
        try:
            target: str | None = self.code(typed)
        except Refused:
            target = None
        if found and target and (moved := self.recoded_already(found.code, target, action, who)):
            return self.recoded(request, found.code, target, moved)
        dossier = self.dossier(code, who)
        code = dossier["dossier_id"]
        try:
            target = self.code(typed)
            if not who.sees(self.pipeline.grammar.match(target).agency):  # type: ignore[union-attr]
                raise Refused("review.error.not_yours", code=target)
            latest = self.pipeline.dossiers.versions(code)[-1]
            if latest.version != version:
                raise Refused("review.error.stale", 409, version=latest.version)
            _, moved = self.review.recode(code, target, who.key_id, action)
        except ReviewError as e:
            return self.dossier_refused(request, code, who, refused(e), recode=typed[:300])
        except Refused as e:
            return self.dossier_refused(request, code, who, e, recode=typed[:300])
        return self.recoded(request, code, target, moved)

    def recoded_already(self, code: str, target: str, action: str,
                        who: Principal) -> Manifest | None:
        """The new code's version an earlier run of this same form made (the old code is
        withdrawn by now, so its page would be a 404)."""
        withdrawn, moved = self.review.replayed(code, action), self.review.replayed(target, action)
        if withdrawn and moved and withdrawn.withdrawn and who.sees(withdrawn.agency) \
                and who.sees(moved.agency):
            return moved
        return None

    def recoded(self, request: Request, code: str, target: str,
                moved: Manifest) -> Response:
        url = f"/review/dossiers/{target}?" + urlencode(
            {"done": "recode", "v": moved.version, "other": code})
        if _htmx(request):
            return Response(headers={"HX-Redirect": url})
        return RedirectResponse(url, 303)

    def change(self, dossier: dict[str, Any], who: Principal, form: ChangeForm, version: int,
               action: str) -> tuple[Manifest, str | None]:
        """Applies one change unless this action was already applied; returns the dossier's new
        version (and the other dossier a split made)."""
        code = dossier["dossier_id"]
        if form.op == "split":
            new_code = self.code(form.new_code)
            kept, other = self.review.replayed(code, action), self.review.replayed(new_code, action)
            if kept and other:
                return kept, new_code
        elif done := self.review.replayed(code, action):
            return done, None
        latest = self.pipeline.dossiers.versions(code)[-1]
        if latest.version != version:
            raise Refused("review.error.stale", 409, version=latest.version)
        count = len(latest.refs())
        return CHANGES[form.op](self, code, who, form, count, action)
