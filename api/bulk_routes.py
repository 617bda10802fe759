"""Many dossiers at once: a ZIP of their PDFs with their manifests, and a verification of each.

Both take the codes in the body (a search page's selection, an auditor's list). Every code is
looked up as on the single-dossier routes before anything is read: one that is missing or another
agency's answers 404 naming it (the same answer for both), a withdrawn one 410, and nothing is
sent. Each dossier read or verified is audited as the single routes audit it.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.errors import PRINTABLE, answers
from api.keys import Principal
from ingest.pipeline import Pipeline
from storage.export import export_zip, zip_name

MAX_CODES = 100  # per request: a search page's largest page

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]


class Codes(BaseModel):
    codes: list[Code] = Field(min_length=1, max_length=MAX_CODES,
                              description="dossier codes, each at most once")


def add_bulk_routes(app: FastAPI, pipeline: Pipeline, role: Callable[..., Any],
                    log: Callable[..., None],
                    visible_dossier: Callable[[str, Principal], dict[str, Any]],
                    verify_one: Callable[[dict[str, Any], Request, Principal, str],
                                         dict[str, Any]]) -> None:
    def visible_all(codes: list[str], who: Principal) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for code in codes:
            try:
                dossier = visible_dossier(code, who)
            except HTTPException as e:
                if e.status_code != 404:  # 410 names the code and where its pages went
                    raise
                raise HTTPException(404, f"no such dossier: {code.strip().upper()}") from None
            found.setdefault(dossier["dossier_id"], dossier)
        return list(found.values())

    @app.post("/api/v1/exports", response_class=StreamingResponse, responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
              "description": "A ZIP: per dossier `{code}/manifest.json` and its stored objects "
                             "(`dossier.pdf`, …) as stored; `SHA256SUMS` last"},
        **answers(400, 404, 410)})
    def export_dossiers(body: Codes, request: Request,
                        who: Annotated[Principal, Depends(role("processor", "auditor"))]
                        ) -> StreamingResponse:
        """The latest version of each dossier, byte for byte, in one ZIP streamed as it is
        written; `sha256sum -c SHA256SUMS` in the unpacked folder proves the copy whole."""
        dossiers = visible_all(body.codes, who)
        manifests = [pipeline.dossiers.versions(d["dossier_id"])[-1] for d in dossiers]
        for dossier, manifest in zip(dossiers, manifests, strict=True):
            log(request, who, "dossier.export.read", dossier["dossier_id"], dossier["agency"],
                version=manifest.version)
        name = zip_name([d["dossier_id"] for d in dossiers])
        return StreamingResponse(export_zip(pipeline.store, manifests),
                                 media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/api/v1/verifications", responses=answers(400, 404, 410))
    def verify_dossiers(body: Codes, request: Request,
                        who: Annotated[Principal, Depends(role("auditor"))]) -> dict[str, Any]:
        """Each dossier verified as by GET /api/v1/dossiers/{code}/verify (and audited so);
        `ok` is true only when every one is."""
        results = [verify_one(d, request, who, "api-bulk") for d in visible_all(body.codes, who)]
        for result in results:
            del result["findings"]  # per object: ask the single route for one dossier's
        return {"ok": all(r["ok"] for r in results), "dossiers": results}
