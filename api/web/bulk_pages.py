"""Many dossiers at once from the search page: the ticked rows downloaded as one ZIP, or
verified now.

    POST /dossiers/export    codes=... -> one ZIP (storage/export.py: each dossier's manifest and
                             objects as stored, SHA256SUMS last), as POST /api/v1/exports
    POST /dossiers/verify    codes=..., next=... -> each verified (audited as "verify now"), then
                             back to the list, whose integrity column shows the outcome

Every code is looked up as on the dossier page first: one that is missing or another agency's
answers 404 and nothing is sent or verified.

(No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.)
"""

from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from api.keys import Principal
from api.web.dossier_pages import MAX_PROBLEMS, check_dossier, manifests_of, visible
from api.web.dossier_search import VERIFY_ACTION
from api.web.render import error_page
from api.web.security import WebState, require_role, safe_next
from storage.export import export_zip, zip_name

MAX_CODES = 100  # the search page's largest page
Viewer = Annotated[Principal, Depends(require_role("processor", "auditor"))]
Auditor = Annotated[Principal, Depends(require_role("auditor"))]
Codes = Annotated[list[str], Form(max_length=MAX_CODES)]


def add_routes(app: FastAPI, state: WebState) -> None:
    def chosen(request: Request, codes: list[str], who: Principal) -> list[dict] | Response:
        if not codes:
            return error_page(request, 422, "bulk.none")
        found: dict[str, dict] = {}
        for code in codes:
            dossier = visible(state.pipeline, code[:64], who)
            found.setdefault(dossier["dossier_id"], dossier)
        return list(found.values())

    @app.post("/dossiers/export", include_in_schema=False)
    def export(request: Request, who: Viewer, codes: Codes = []) -> Response:  # noqa: B006
        dossiers = chosen(request, codes, who)
        if isinstance(dossiers, Response):
            return dossiers
        manifests = [manifests_of(state.pipeline, d)[-1] for d in dossiers]
        for dossier, manifest in zip(dossiers, manifests, strict=True):
            state.audit(request, who, "dossier.export.read", dossier["dossier_id"],
                        dossier["agency"], version=manifest.version, via="web")
        name = zip_name([d["dossier_id"] for d in dossiers])
        return StreamingResponse(export_zip(state.pipeline.store, manifests),
                                 media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/dossiers/verify", include_in_schema=False)
    def verify_many(request: Request, who: Auditor, codes: Codes = [],  # noqa: B006
                    next: Annotated[str, Form(max_length=2000)] = "") -> Response:
        dossiers = chosen(request, codes, who)
        if isinstance(dossiers, Response):
            return dossiers
        for found in dossiers:
            checked, problems = check_dossier(state.pipeline, found)
            state.audit(request, who, VERIFY_ACTION, found["dossier_id"], found["agency"],
                        result="problem" if problems else "ok", version=found["version"],
                        objects=checked, problems=problems[:MAX_PROBLEMS], via="web-bulk")
        target = safe_next(next) or "/dossiers"
        return RedirectResponse(f"{target}#results", 303)
