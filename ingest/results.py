"""Result stages: how a dossier's result (the decision, certificate or licence issued) becomes the
PDF/A that is stored as result vN (ingest/versions.py `Dossiers.store_result`).

ResultWork contract (like DossierWork's, ingest/stages.py)
    in:  code, agency, pages (batch page indexes), page_facts, page_pdfs (each page already OCR'd
         with its text layer by the page stages), received_at
    out: pdf (the document to store; a signer stage appended after BuildResultPdfA replaces it),
         manifest (keys a stage adds to the result's manifest; `signature` starts "unsigned")

The last stage signs the result when the agency has a signer (ingest/signing.py SignResult), as
dossier versions are signed. `default_result_stages` is the list every result runs
(`Dossiers.result_stages`; ingest/services.py builds it with the signing service).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ingest.signing import AgencySigning
from ocr import pdf as pdfmod
from ocr.text import fold
from storage.records import PageFacts

# All-caps title lines that name a result document (folded, as OCR reads them).
RESULT_TITLES = ("quyet dinh", "giay chung nhan", "giay phep", "chung chi", "van ban chap thuan",
                 "trich luc", "thong bao ket qua")


@dataclass
class ResultWork:
    batch_id: str
    code: str
    agency: str
    pages: list[int]
    page_facts: list[PageFacts]
    page_pdfs: list[bytes]
    received_at: str  # ISO 8601, when the batch was received
    pdf: bytes | None = None
    manifest: dict[str, Any] = field(
        default_factory=lambda: {"signature": {"status": "unsigned"}})


class ResultStage(Protocol):
    name: str

    def __call__(self, work: ResultWork) -> None: ...


class ResultTitle:
    """The result's title as printed (QUYẾT ĐỊNH …, GIẤY CHỨNG NHẬN …), when OCR read one near
    the top of its first pages: shown on the dossier page."""

    name = "result-title"

    def __call__(self, work: ResultWork) -> None:
        for facts in work.page_facts[:3]:
            for line in (facts.ocr.lines if facts.ocr else [])[:12]:
                text = line.strip()
                if text and text == text.upper() and fold(text).startswith(RESULT_TITLES):
                    work.manifest["title"] = text[:200]
                    return


class BuildResultPdfA:
    name = "pdfa"

    def __call__(self, work: ResultWork) -> None:
        work.pdf = pdfmod.assemble_pdfa(work.page_pdfs, pdfmod.DossierMetadata(
            dossier_code=work.code, agency=work.agency, procedure=None,
            created=datetime.fromisoformat(work.received_at),
            title=f"Kết quả giải quyết hồ sơ {work.code}"))


class SignResult:
    """After BuildResultPdfA: the result signed by the dossier's agency like its versions
    (ingest/signing.py); `manifest["signature"]` says so, or stays unsigned."""

    name = "sign"

    def __init__(self, signing: AgencySigning) -> None:
        self.signing = signing

    def __call__(self, work: ResultWork) -> None:
        assert work.pdf is not None, "the sign stage runs after the PDF is built"
        signed, info = self.signing.sign_many(work.agency, {"result.pdf": work.pdf})
        work.pdf = signed["result.pdf"]
        work.manifest["signature"] = info.to_manifest(
            ["result.pdf"] if info.status == "signed" else None)


def default_result_stages(signing: AgencySigning) -> list[ResultStage]:
    """The result stages a result runs, in their order."""
    return [ResultTitle(), BuildResultPdfA(), SignResult(signing)]
