"""The default dossier stages: extract fields, build the PDF/A document, then sign it (and its
copies) when the dossier's agency has a signer (ingest/signing.py).
"""

from __future__ import annotations

from datetime import datetime

from ingest.signing import Sign
from ingest.stages import DossierWork
from ocr import fields as fieldmod
from ocr import pdf as pdfmod
from ocr.dossier_code import DossierCodeGrammar
from ocr.text import fold
from storage.records import OcrFact


class ExtractFields:
    """Receipt fields from OCR lines (first page that has each label), citizen-ID fields from QR."""

    name = "fields"

    def __call__(self, work: DossierWork) -> None:
        grammar = DossierCodeGrammar(work.settings.barcodes.dossier_code_pattern)
        found: dict[str, fieldmod.Field] = {}
        for page, facts in zip(work.pages, work.page_facts, strict=True):
            ocr = facts.ocr or OcrFact()
            receipt = fieldmod.receipt_fields(ocr.lines, ocr.line_confidence,
                                              page, grammar, work.settings.timezone_offset)
            for name, f in receipt.items():
                found.setdefault(name, f)
            for b in facts.barcodes:
                card = fieldmod.citizen_id_fields(b.value, page)
                for name, f in (card or {}).items():
                    found.setdefault(name, f)
        _confirm_with_id_card(found)
        _add_registry_facts(found, work)
        if work.code_source == "barcode":
            found["dossier_id"] = fieldmod.Field(work.code, work.pages[0], 1.0, "barcode")
        elif work.code_source == "user" or "dossier_id" not in found:
            found["dossier_id"] = fieldmod.Field(work.code, work.pages[0], 1.0, work.code_source)
        work.fields = dict(sorted(found.items()))


# OCR'd receipt field -> the ID-card QR field that names the same thing.
_ID_CARD_TWINS = {"applicant_name": "full_name", "address": "permanent_address"}


def _confirm_with_id_card(found: dict[str, fieldmod.Field]) -> None:
    """An OCR'd name or address that matches the ID card's QR but for accents (OCR drops marks on
    noisy scans) takes the QR's spelling: same place on the receipt, now confirmed."""
    for ocr_name, qr_name in _ID_CARD_TWINS.items():
        ocr, qr = found.get(ocr_name), found.get(qr_name)
        if ocr and qr and ocr.source == "ocr" and ocr.value != qr.value \
                and fold(ocr.value) == fold(qr.value):
            found[ocr_name] = fieldmod.Field(qr.value, ocr.page, max(ocr.confidence, 0.99), "ocr")


def _add_registry_facts(found: dict[str, fieldmod.Field], work: DossierWork) -> None:
    """What the processing system's registry says of the code is kept as fields of their own;
    its procedure also fills a procedure the receipt did not show (retention depends on it)."""
    for key in ("procedure", "applicant"):
        value = (work.registry or {}).get(key)
        if isinstance(value, str) and value.strip():
            found[f"registry_{key}"] = fieldmod.Field(value.strip(), work.pages[0], 1.0, "registry")
    if "registry_procedure" in found and "procedure" not in found:
        found["procedure"] = found["registry_procedure"]


class BuildPdfA:
    name = "pdfa"

    def __call__(self, work: DossierWork) -> None:
        procedure = work.fields.get("procedure")
        work.metadata = pdfmod.DossierMetadata(
            dossier_code=work.code, agency=work.agency,
            procedure=procedure.value if procedure else None,
            created=datetime.fromisoformat(work.received_at))
        work.pdf = pdfmod.assemble_pdfa(work.page_pdfs, work.metadata)


DEFAULT_DOSSIER_STAGES = [ExtractFields(), BuildPdfA(), Sign()]
