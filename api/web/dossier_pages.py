"""Dossiers: search (accent-insensitive, with filters) and one dossier's view.

    GET  /dossiers                   the one search page: ranked by storage/search.py, with snippets,
                                     a count and every filter (/search answers a redirect to it)
    GET  /dossiers/{code}            preview, thumbnails, fields, versions, checksums, integrity, trail
    GET  /dossiers/{code}/pdf        the latest version's PDF, inline (the preview frame)
    POST /dossiers/{code}/verify     re-hashes the dossier's objects now (audited)
    POST /dossiers/{code}/fields/{name}  a person's correction of a field (Dossiers.correct)

Everything is scoped like the REST API: a dossier of an agency the user does not hold answers the
same 404 as one that does not exist and never shows in results. Downloads and thumbnails use the
REST API's routes, which accept the session.

The last verification of a dossier is its newest `dossier.verify` entry in the audit log, which is
hash-chained, outlives `sohoa reindex`, and says who checked what and when; without one (or when a
newer version was stored since) the dossier reads "not verified yet".

The search form and its result rows are built in api/web/dossier_search.py.

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

import json
import re
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse

from api.keys import Principal
from api.web import i18n
from api.web.dossier_search import (
    APPLICANT_FIELDS,
    MAX_LIMIT,
    MAX_QUERY,
    STATUSES,
    VERIFY_ACTION,
    Found,
    SearchForm,
    agency_choices,
    encode_cursor,
    integrity_state,
    last_verifications,
    office_zone,
    parse_search,
    procedure_choices,
    search,
)
from api.web.render import error_page, render
from api.web.security import WebState, language, require_role, safe_next
from ingest import component_review
from ocr.components import TYPES as COMPONENT_TYPES
from ocr.text import nfc
from storage import queries
from storage.integrity import problems, verify
from storage.objects import ObjectMissing
from storage.records import Manifest

PERSON = ("corrected", "confirmed")  # sources of a value a person gave or confirmed
LOW_CONFIDENCE = 0.85  # fields read below this are highlighted for a person to check
TRAIL_PAGE = 50
MAX_PROBLEMS = 50  # differences kept in one verification's audit entry
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?$")
FIELD_ORDER = ("dossier_id", "applicant_name", "full_name", "procedure", "address", "phone",
               "email", "received_at", "due_at", "citizen_id", "date_of_birth", "sex",
               "permanent_address", "id_issue_date", "registry_applicant", "registry_procedure")
ADDABLE_FIELDS = ("applicant_name", "procedure", "address", "phone", "email", "received_at",
                  "due_at")
READ_SUFFIXES = (".read", ".search")

Viewer = Annotated[Principal, Depends(require_role("processor", "auditor"))]
Corrector = Annotated[Principal, Depends(require_role("scanner", "processor"))]


# ---- one dossier ---------------------------------------------------------------------------


def _plausible(code: str) -> bool:
    """A code worth looking up: short and printable (a NUL would reach PostgreSQL as an error)."""
    return len(code) <= 64 and code.isprintable()


def visible(pipeline: Any, code: str, who: Principal) -> dict[str, Any]:
    """The catalog's dossier, or the same 404 whether it is missing or another agency's."""
    found = pipeline.catalog.dossier(code.strip().upper()) if _plausible(code) else None
    if found is None or not who.sees(found["agency"]):
        raise HTTPException(404, "dossier.missing")
    return found


def renamed_to(pipeline: Any, code: str, who: Principal) -> str | None:
    """The code now holding the pages of a code a person withdrew as misread, when the user
    sees both (else None: then it answers like any missing dossier)."""
    withdrawal = getattr(pipeline.catalog, "withdrawal", None)
    gone = withdrawal(code.strip().upper()) if withdrawal and _plausible(code) else None
    if not gone or not who.sees(gone["agency"]):
        return None
    target = pipeline.catalog.dossier(gone["to"])
    return gone["to"] if target and who.sees(target["agency"]) else None


def field_label(lang: str, name: str) -> str:
    key = f"dossier.field.{name}"
    return i18n.translate(lang, key) if key in i18n.VI else name


def display_value(value: str) -> str:
    """ISO dates and times as offices write them (dd/mm/yyyy hh:mm, in the value's own offset);
    anything else as it is."""
    try:
        if ISO_DATE.match(value):
            return date.fromisoformat(value).strftime("%d/%m/%Y")
        if ISO_DATETIME.match(value):
            return datetime.fromisoformat(value).strftime("%d/%m/%Y %H:%M")
    except ValueError:
        pass  # a date typed wrong is shown as typed
    return value


def source_label(lang: str, source: str) -> str:
    key = f"dossier.source.{source}"
    return i18n.translate(lang, key) if key in i18n.VI else source


def _position(page: int, pages: list[int]) -> int | None:
    """A field's page (an index in its batch) as a page number of the dossier."""
    return pages.index(page) + 1 if page in pages else None


def field_rows(lang: str, fields: dict[str, dict[str, Any]], machine: dict[str, dict[str, Any]],
               pages: list[int], corrections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields in reading order, each with what the machine read beside a correction."""
    order = {name: i for i, name in enumerate(FIELD_ORDER)}
    rows = []
    for name in sorted(fields, key=lambda n: (order.get(n, len(order)), n)):
        f = fields[name]
        rows.append({
            "name": name, "label": field_label(lang, name), "value": f["value"],
            "display": display_value(f["value"]),
            "confidence": round(f["confidence"] * 100), "source": f["source"],
            "low": f["source"] not in PERSON and f["confidence"] < LOW_CONFIDENCE,
            "source_label": source_label(lang, f["source"]),
            "page": _position(f["page"], pages), "machine": machine.get(name),
            "history": [c for c in corrections if c["name"] == name],
            "place": place_line(f.get("place")), "read_as": f.get("read_as"),
            "unplaced": name in ADDRESSES and f["source"] == "ocr" and not f.get("place"),
        })
    return rows


ADDRESSES = ("address", "permanent_address")  # checked against the official list of units


def place_line(place: dict[str, Any] | None) -> dict[str, Any] | None:
    """The units an address was found in, smallest first, and whether the list is the former one
    (addresses written before 1 July 2025 name a district)."""
    if not place:
        return None
    units = [place.get(k) for k in ("ward", "district", "province")]
    return {"units": ", ".join(str(u) for u in units if u),
            "former": place.get("list") == "before-2025"}


def corrections_of(pipeline: Any, code: str, version: int) -> list[dict[str, Any]]:
    return queries.corrections(pipeline.catalog, code, version)


def audit_entries(pipeline: Any, code: str, actions: tuple[str, ...] = (), reads: bool = True,
                  before: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """The dossier's audit entries, newest first."""
    if pipeline.audit is None:
        return []
    return queries.entries_of(pipeline.audit.engine, code, actions,
                              () if reads else READ_SUFFIXES, before, limit)


def actor_label(lang: str, actor: str) -> str:
    if actor.startswith("user:"):
        return actor[5:]
    if actor == "pipeline":
        return i18n.translate(lang, "dossier.actor.pipeline")
    if actor.startswith("cli:"):
        return i18n.translate(lang, "dossier.actor.cli", name=actor[4:])
    return i18n.translate(lang, "dossier.actor.key", name=actor)


def change_text(lang: str, manifest: Manifest) -> str:
    """What made this version, in words."""
    change = manifest.change or {}  # what the review wrote: its own keys per action
    action = change.get("action")
    if manifest.withdrawn:
        return i18n.translate(lang, "dossier.change.withdrawn", to=manifest.withdrawn.to)
    values = {"batch": manifest.batch_id, "file": manifest.original.file or "",
              **{k: v for k, v in change.items() if isinstance(v, str | int)}}
    for key in ("position", "to"):
        if isinstance(change.get(key), int):
            values[key] = change[key] + 1  # people count pages from 1
    values["count"] = len(change.get("pages", []))
    if action is None:
        action = "scan" if manifest.version == 1 else "rescan"
    key = f"dossier.change.{action}"
    if key not in i18n.VI:
        return str(action)
    try:
        return i18n.translate(lang, key, **values)
    except (KeyError, IndexError):
        return str(action)


def version_rows(lang: str, manifests: list[Manifest],
                 created: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Versions newest first with who stored each (from the audit log) and their checksums."""
    by_version = {e["detail"].get("version"): e["actor"] for e in reversed(created)}
    rows = []
    for m in reversed(manifests):
        objects = [{"name": name, **o.as_dict()} for name, o in sorted(m.objects.items())]
        rows.append({"version": m.version, "created_at": m.created_at,
                     "change": change_text(lang, m), "pages": len(m.pages),
                     "actor": actor_label(lang, by_version.get(m.version, "pipeline")),
                     "objects": objects, "original": m.original.as_dict()})
    return rows


def trail_rows(lang: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"seq": e["seq"], "at": e["at"], "actor": actor_label(lang, e["actor"]),
             "action": _action_label(lang, e["action"]),
             "detail": detail_sentence(lang, e["action"], e["detail"]),
             "remote": e["remote"]} for e in entries]


def _action_label(lang: str, action: str) -> str:
    key = f"dossier.action.{action}"
    return i18n.translate(lang, key) if key in i18n.VI else action


# What an audit entry's details say, as a sentence per action (the raw details stay in the
# API's /api/v1/audit); the checksums are in the versions' table.
_SENTENCES: dict[str, tuple[str, ...]] = {
    "dossier.version.create": ("version", "batch_id"),
    "dossier.result.create": ("version", "batch_id"),
    "dossier.withdraw": ("version", "to"),
    "dossier.field.correct": ("field", "value", "previous", "reason"),
    "dossier.verify": ("result", "objects", "version"),
    "dossier.pdf.read": ("version",),
    "dossier.page.read": ("page",),
    "dossier.read": ("version",),
}


def detail_sentence(lang: str, action: str, detail: dict[str, Any]) -> str:
    """The entry's details said for people: `Phiên bản 2, từ lô b3f…` rather than
    `version: 2; batch_id: …; pdf_sha256: …`; an action without a sentence keeps the short
    technical line."""
    wanted = _SENTENCES.get(action)
    key = f"audit.detail.{action}"
    if action == "dossier.field.correct" and detail.get("confirmed"):
        key += ".confirmed"
    elif action == "dossier.verify":
        key += ".ok" if detail.get("result") == "ok" else ".problem"
    if wanted is None or key not in i18n.VI:
        return _detail_text(detail)
    values = {name: str(detail.get(name) if detail.get(name) is not None else "—")[:80]
              for name in wanted}
    if "field" in values:
        values["field"] = field_label(lang, values["field"])
    return i18n.translate(lang, key, **values)


def _detail_text(detail: dict[str, Any]) -> str:
    """A short line of an entry's details (long values and lists cut)."""
    parts = []
    for key, value in detail.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list | dict):
            value = f"[{len(value)}]"
        parts.append(f"{key}: {str(value)[:80]}")
    return "; ".join(parts)[:300]


def machine_fields(pipeline: Any, manifest: Manifest) -> dict[str, dict[str, Any]]:
    """The fields as the machine read them (the version's fields.json, never corrected); none
    when that object is gone or damaged (verification reports it; the page still opens)."""
    try:
        return json.loads(pipeline.store.get(manifest.objects["fields.json"].key))
    except (ObjectMissing, KeyError, ValueError):
        return {}


def manifests_of(pipeline: Any, found: dict[str, Any]) -> list[Manifest]:
    """The versions' manifests as stored; one missing from object storage (which verification
    reports) is shown from the catalog's copy, so the page still opens."""
    stored: dict[int, Manifest] = {m.version: m for m in pipeline.dossiers.versions(found["dossier_id"])}
    missing = [v["version"] for v in found["versions"] if v["version"] not in stored]
    if missing:
        for m in queries.version_manifests(pipeline.catalog, found["dossier_id"], missing):
            stored[m.version] = m
    return [stored[v] for v in sorted(stored)]


# ---- verification --------------------------------------------------------------------------


def check_dossier(pipeline: Any, found: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """The archive's one verification (storage/integrity.py) of this dossier: returns (objects
    and manifests checked, problems)."""
    findings = verify(pipeline.store, found["dossier_id"], pipeline.catalog, pipeline.audit,
                      pipeline.settings.signing.trust_root_files)
    return len(findings), [f.to_dict() for f in problems(findings)]


# ---- routes --------------------------------------------------------------------------------


def exact_code(pipeline: Any, form: SearchForm, who: Principal) -> str | None:
    """A search that is exactly the code of a dossier the user sees (typed, or scanned from
    the receipt's barcode, which a USB reader types with an Enter): that dossier."""
    if form.errors or form.after or not (code := pipeline.grammar.match(form.q)):
        return None
    found = pipeline.catalog.dossier(code.code)
    return found["dossier_id"] if found and who.sees(found["agency"]) else None


def _search_page(request: Request, who: Principal) -> Response:
    state: WebState = request.app.state.web
    pipeline = state.pipeline
    form = parse_search(request.query_params, who, office_zone(state.settings))
    if (code := exact_code(pipeline, form, who)) is not None:
        return RedirectResponse(f"/dossiers/{code}", 303)
    agencies = agency_choices(pipeline, who)
    found = Found([], None)
    if not form.errors:
        try:
            found = search(pipeline, form, (form.agency,) if form.agency else who.scope())
        except ValueError:  # a cursor of a search with other words
            form.errors.append("search.error.cursor")
    if not form.errors:
        state.audit(request, who, "dossier.search", form.q, who.agencies[0],
                    results=[r["code"] for r in found.rows], via="web")
    lang = language(request)
    return render(request, "search.html", {
        "form": form, "rows": found.rows, "found": found,
        "next_cursor": encode_cursor(found.next) if found.next else None,
        "errors": [i18n.translate(lang, e, max=MAX_QUERY, limit=MAX_LIMIT) for e in form.errors],
        "agencies": agencies, "procedures": procedure_choices(pipeline, who.scope()),
        "statuses": STATUSES, "page_sizes": (25, 50, 100), "actor_label": actor_label,
        "can_audit": who.role in ("auditor", "admin"),
    }, status_code=400 if form.errors else 200)


def _dossier_page(request: Request, who: Principal, code: str, status_code: int = 200,
                  **extra: Any) -> HTMLResponse:
    state: WebState = request.app.state.web
    pipeline = state.pipeline
    found = visible(pipeline, code, who)
    code = found["dossier_id"]
    lang = language(request)
    manifests = manifests_of(pipeline, found)
    latest = manifests[-1]
    state.audit(request, who, "dossier.read", code, found["agency"], version=found["version"],
                via="web")
    check = last_verifications(pipeline, [code]).get(code)
    can_audit = who.role in ("auditor", "admin")
    reads = request.query_params.get("reads") == "1"
    before = request.query_params.get("before", "")
    trail = audit_entries(pipeline, code, reads=reads, limit=TRAIL_PAGE + 1,
                          before=int(before) if before.isdigit() else None) if can_audit else []
    return render(request, "dossier.html", {
        "d": found, "manifest": latest, "pdf": latest.objects["dossier.pdf"],
        "fields": field_rows(lang, found["fields"], machine_fields(pipeline, latest),
                             latest.pages, corrections_of(pipeline, code, found["version"])),
        "addable": [(n, field_label(lang, n)) for n in ADDABLE_FIELDS if n not in found["fields"]],
        "applicant": next((found["fields"][n]["value"] for n in APPLICANT_FIELDS
                           if n in found["fields"]), ""),
        "versions": version_rows(lang, manifests, audit_entries(
            pipeline, code, ("dossier.version.create",))),
        "integrity": integrity_state(check, found["version"]),
        "can_correct": who.role in ("processor", "admin"), "can_audit": can_audit,
        "trail": trail_rows(lang, trail[:TRAIL_PAGE]), "trail_reads": reads,
        "trail_older": trail[TRAIL_PAGE - 1]["seq"] if len(trail) > TRAIL_PAGE else None,
        "low_confidence": round(LOW_CONFIDENCE * 100), "actor_label": actor_label,
        "components": latest.components or [],
        "complete_by_components": bool(latest.complete_by_components),
        "missing_components": latest.missing_components or [],
        "component_types": COMPONENT_TYPES,
        "result": pipeline.catalog.result(code) if pipeline.catalog else None,
        **extra,
    }, status_code=status_code)


def _pdf_response(pipeline: Any, key: str, filename: str) -> Response:
    """Inline, so the preview frame shows it; Range requests are answered for local storage.
    Kept in the browser's private cache for an hour (pages link it with its version), so
    turning the preview to another page does not fetch it again over a slow network."""
    disposition = {"Content-Disposition": f'inline; filename="{filename}"',
                   "Cache-Control": "private, max-age=3600"}
    try:
        if (path := pipeline.store.file_path(key)) is not None:  # a local store: in place
            return FileResponse(path, media_type="application/pdf", headers=disposition)
        stream = pipeline.store.open(key)
    except ObjectMissing:
        raise HTTPException(404, "dossier.error.pdf_missing") from None

    def body() -> Any:
        with stream:
            while chunk := stream.read(1 << 20):
                yield chunk
    return StreamingResponse(body(), media_type="application/pdf", headers=disposition)


CORRECTION_ERRORS = ("dossier.error.value_empty", "dossier.error.value_long",
                     "dossier.error.reason_long")


def _correction_error(value: str, reason: str, current: str | None) -> str | None:
    if not value:
        return "dossier.error.value_empty"
    if len(value) > 2000:
        return "dossier.error.value_long"
    if len(reason) > 500:
        return "dossier.error.reason_long"
    return None  # the value it has: a confirmation (Dossiers.correct)


def add_routes(app: FastAPI, state: WebState) -> None:
    @app.get("/dossiers", response_class=HTMLResponse, include_in_schema=False)
    def dossiers(request: Request, who: Viewer) -> Response:
        return _search_page(request, who)

    @app.get("/search", include_in_schema=False)
    def search_page(request: Request, who: Viewer) -> Response:
        """The former auditors' page, now the one search page: links and bookmarks still work."""
        query = request.url.query
        return RedirectResponse(f"/dossiers?{query}" if query else "/dossiers", 303)

    @app.get("/dossiers/{code}", response_class=HTMLResponse, include_in_schema=False)
    def dossier(request: Request, code: str, who: Viewer) -> HTMLResponse:
        if (to := renamed_to(state.pipeline, code, who)) is not None:
            return render(request, "dossier_renamed.html", {"code": code.strip().upper(),
                                                            "to": to}, status_code=410)
        notice = {"corrected": "dossier.corrected_ok", "components": "dossier.components_ok",
                  "confirmed": "dossier.confirmed_ok"}.get(
            request.query_params.get("done", ""))
        fix, error = request.query_params.get("fix", ""), request.query_params.get("error", "")
        if FIELD_NAME.match(fix) and error in CORRECTION_ERRORS:  # a refused correction
            found = visible(state.pipeline, code, who)
            typed = {"name": fix, "value": found["fields"].get(fix, {}).get("value", ""),
                     "reason": "", "error": i18n.translate(language(request), error)}
            return _dossier_page(request, who, code, 200, typed=typed)
        return _dossier_page(request, who, code, notice=i18n.translate(language(request), notice)
                             if notice else None)

    @app.get("/dossiers/{code}/pdf", include_in_schema=False)
    def dossier_pdf(request: Request, code: str, who: Viewer) -> Response:
        found = visible(state.pipeline, code, who)
        manifest = manifests_of(state.pipeline, found)[-1]
        state.audit(request, who, "dossier.pdf.read", found["dossier_id"], found["agency"],
                    version=manifest.version, range=request.headers.get("range"), via="web")
        return _pdf_response(state.pipeline, manifest.objects["dossier.pdf"].key,
                             f"{found['dossier_id']}.pdf")

    @app.post("/dossiers/{code}/verify", include_in_schema=False)
    def verify_now(request: Request, code: str, who: Viewer,
                   view: Annotated[str, Form(max_length=10)] = "panel",
                   next: Annotated[str, Form(max_length=2000)] = "") -> Response:
        found = visible(state.pipeline, code, who)
        checked, problems = check_dossier(state.pipeline, found)
        result = "ok" if not problems else "problem"
        state.audit(request, who, VERIFY_ACTION, found["dossier_id"], found["agency"],
                    result=result, version=found["version"], objects=checked,
                    problems=problems[:MAX_PROBLEMS])
        if not request.headers.get("hx-request"):
            target = safe_next(next) or f"/dossiers/{found['dossier_id']}#integrity"
            return RedirectResponse(target, 303)
        check = last_verifications(state.pipeline, [found["dossier_id"]]).get(found["dossier_id"])
        view = view if view in ("panel", "badge") else "panel"
        trail = None  # on the dossier page, an auditor's trail shows the check at once
        if view == "panel" and who.role in ("auditor", "admin"):
            trail = audit_entries(state.pipeline, found["dossier_id"], reads=False,
                                  limit=TRAIL_PAGE + 1)
        return render(request, "dossier_verified.html", {
            "d": found, "view": view, "integrity": integrity_state(check, found["version"]),
            "just_checked": True, "actor_label": actor_label,
            "trail": trail_rows(language(request), trail[:TRAIL_PAGE]) if trail is not None else None,
            "trail_older": trail[TRAIL_PAGE - 1]["seq"] if trail and len(trail) > TRAIL_PAGE else None})

    @app.post("/dossiers/{code}/fields/{name}", include_in_schema=False)
    def correct_field(request: Request, code: str, name: str, who: Corrector,
                      value: Annotated[str, Form(max_length=10_000)] = "",
                      reason: Annotated[str, Form(max_length=10_000)] = "",
                      next: Annotated[str, Form(max_length=2000)] = "") -> Response:
        return _correct(request, who, code, name, value, reason, next)

    @app.post("/dossiers/{code}/components", include_in_schema=False)
    def correct_components(request: Request, code: str, who: Corrector,
                           lines: Annotated[str, Form(max_length=20_000)] = "") -> Response:
        return _correct_components(request, who, code, lines)

    @app.post("/dossiers/{code}/fields", include_in_schema=False)
    def add_field(request: Request, code: str, who: Corrector,
                  name: Annotated[str, Form(max_length=100)] = "",
                  value: Annotated[str, Form(max_length=10_000)] = "",
                  reason: Annotated[str, Form(max_length=10_000)] = "") -> Response:
        return _correct(request, who, code, name, value, reason)


def parse_component_lines(text: str) -> list[dict[str, Any]]:
    """The components form's lines, `page | type | title` each; ComponentsError names the
    first line that is not one."""
    out = []
    for k, line in enumerate(nfc(text).splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|", 2)]
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 6:
            raise component_review.ComponentsError(f"line {k}", k, "line")
        out.append({"start_page": int(parts[0]), "type": parts[1], "title": parts[2]})
    return out


def _correct_components(request: Request, who: Principal, code: str, lines: str) -> Response:
    """A person's components (ingest/component_review.py): a new version; a mistake re-shows
    the page with the message at the form (422)."""
    state: WebState = request.app.state.web
    found = visible(state.pipeline, code, who)
    lang = language(request)
    try:
        asked = parse_component_lines(lines)
        component_review.correct_components(state.pipeline, found["dossier_id"], asked,
                                            who.key_id)
    except component_review.ComponentsError as e:
        message = i18n.translate(lang, "dossier.error.components_line", line=e.index) \
            if e.field == "line" else str(e)
        if who.role not in ("processor", "admin"):  # scanning staff do not see dossier pages
            return error_page(request, 422, message)
        return _dossier_page(request, who, code, 422,
                             components_typed={"lines": lines, "error": message})
    return RedirectResponse(f"/dossiers/{found['dossier_id']}?done=components#components", 303)


def _correct(request: Request, who: Principal, code: str, name: str, value: str, reason: str,
             next_: str = "") -> Response:
    """Stores a correction (Dossiers.correct: kept beside what the machine read, audited,
    in the change feed); a mistake re-shows the page with the message at the field."""
    state: WebState = request.app.state.web
    found = visible(state.pipeline, code, who)
    if not FIELD_NAME.match(name):
        raise HTTPException(400, "dossier.error.field")
    value, reason = nfc(value).strip(), nfc(reason).strip()
    error = _correction_error(value, reason, found["fields"].get(name, {}).get("value"))
    if error is not None:
        if who.role not in ("processor", "admin"):  # scanning staff do not see dossier pages
            return error_page(request, 400, error)
        # Back to the dossier page at that field, its form open with the message beside it
        # (a page answering the POST would sit at /fields/<name>, scrolled to the top).
        anchor = f"field-{name}" if name in found["fields"] else "add-field"
        query = urlencode({"fix": name, "error": error})
        return RedirectResponse(f"/dossiers/{found['dossier_id']}?{query}#{anchor}", 303)
    remote = request.client.host if request.client else ""
    try:
        state.pipeline.dossiers.correct(found["dossier_id"], name, value, who.key_id, reason, remote)
    except ObjectMissing:  # the version's fields are gone from storage: verification says more
        raise HTTPException(409, "dossier.error.storage") from None
    done = "confirmed" if value == found["fields"].get(name, {}).get("value") else "corrected"
    default = f"/dossiers/{found['dossier_id']}?done={done}#field-{name}"
    return RedirectResponse(safe_next(next_) or default, 303)
