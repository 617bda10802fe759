"""The default dossier stages: extract fields, check addresses against the official list of
administrative units, build the PDF/A document, split it into its components (each its own PDF/A
copy), then sign the document and its copies when the dossier's agency has a signer
(ingest/signing.py).

Each stage is built with what it needs of the settings (plain values, or the signing service);
`default_dossier_stages` is the list the dossier versions run (ingest/services.py builds it from
the settings).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime

from ingest.signing import AgencySigning, Sign
from ingest.stages import DossierStage, DossierWork
from ocr import components as compmod
from ocr import fields as fieldmod
from ocr import pdf as pdfmod
from ocr import places
from ocr.dossier_code import DossierCodeGrammar
from ocr.text import fold
from storage.records import OcrFact, PageFacts


class ExtractFields:
    """Receipt fields from OCR lines (first page that has each label), citizen-ID fields from QR.
    `grammar`: the settings' dossier code grammar; `timezone_offset`: the time zone of the times
    receipts print."""

    name = "fields"

    def __init__(self, grammar: DossierCodeGrammar | None = None,
                 timezone_offset: str = "+07:00") -> None:
        self.grammar = grammar or DossierCodeGrammar()
        self.timezone_offset = timezone_offset

    def __call__(self, work: DossierWork) -> None:
        found: dict[str, fieldmod.Field] = {}
        for page, facts in zip(work.pages, work.page_facts, strict=True):
            ocr = facts.ocr or OcrFact()
            receipt = fieldmod.receipt_fields(ocr.lines, ocr.line_confidence,
                                              page, self.grammar, self.timezone_offset)
            for name, f in receipt.items():
                found.setdefault(name, f)
            if "components_listed" not in found:
                listed = fieldmod.listed_components(ocr.lines, ocr.line_confidence, page,
                                                    ocr.words)
                if listed is not None:
                    found["components_listed"] = listed
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


class CheckAddresses:
    """Addresses against the official list of wards and provinces (ocr/places.py): a unit's name
    misread (a tone mark, a letter) takes the list's spelling and the field keeps what was read
    (`read_as`); every address records the ward it names (`place`). An address read by OCR that
    names no ward of either list keeps its value at a confidence of at most UNKNOWN_PLACE, so a
    person checks it. A QR's address is exact: it is never respelled, only located."""

    name = "addresses"
    FIELDS = ("address", "permanent_address")
    UNKNOWN_PLACE = 0.5

    def prepare(self) -> None:
        """The two lists of units, read once (about half a second of a batch's end otherwise)."""
        places.lists()

    def __call__(self, work: DossierWork) -> None:
        for name in self.FIELDS:
            f = work.fields.get(name)
            if f is None or f.source not in ("ocr", "barcode"):
                continue
            checked = places.check(f.value)
            place = checked.place.to_dict() if checked.place else None
            if f.source == "barcode":
                work.fields[name] = dataclasses.replace(f, place=place)
            elif place is None:
                work.fields[name] = dataclasses.replace(
                    f, confidence=min(f.confidence, self.UNKNOWN_PLACE))
            else:
                work.fields[name] = dataclasses.replace(
                    f, value=checked.value, place=place,
                    read_as=f.value if checked.repaired else None)


class BuildPdfA:
    name = "pdfa"

    def __call__(self, work: DossierWork) -> None:
        procedure = work.fields.get("procedure")
        work.metadata = pdfmod.DossierMetadata(
            dossier_code=work.code, agency=work.agency,
            procedure=procedure.value if procedure else None,
            created=datetime.fromisoformat(work.received_at))
        work.pdf = pdfmod.assemble_pdfa(work.page_pdfs, work.metadata)


def page_input(facts: PageFacts) -> compmod.PageInput:
    """What ocr/components.py needs of a page's stored facts: its lines with their confidence
    and height on the page, its paper size in inches (upright), blank flag and barcodes."""
    ocr = facts.ocr or OcrFact()
    lines = ocr.lines
    width, height, dpi = facts.width, facts.height, facts.dpi
    if facts.rotation in (90, 270):
        width, height = height, width
    size = (width / dpi, height / dpi) if width and height and dpi else None
    tops: list[float] = []
    if height and ocr.words:
        first = [float("inf")] * len(lines)
        for w in ocr.words:
            if 0 <= w.get("line", -1) < len(lines) and len(w.get("box", ())) == 4:
                first[w["line"]] = min(first[w["line"]], w["box"][1])
        tops = [y / height if y != float("inf") else 1.0 for y in first]
    return compmod.PageInput(lines, ocr.line_confidence, tops, size, bool(facts.blank),
                             [str(b.value) for b in facts.barcodes])


def component_object(n: int, title: str) -> str:
    """`components/NN-<slug>.pdf`: the slug is the folded title, so names stay ASCII."""
    slug = re.sub(r"[^a-z0-9]+", "-", compmod.fold(title)).strip("-")[:48].strip("-")
    return f"components/{n:02d}-{slug or 'tai-lieu'}.pdf"


class SplitComponents:
    """The dossier's components (ocr/components.py): from the receipt's listed documents
    (the `components_listed` field) and what each page shows, or from the start pages a person
    set (`starts`: 0-based positions, type, title). Each becomes a PDF/A copy in `work.copies`;
    the manifest gets `components`, `complete_by_components`, `missing_components` and
    `components_listed`. Runs after BuildPdfA (it reuses the document's metadata). With
    `enabled` false (the settings' `components_enabled`), only a person's starts make them."""

    name = "components"

    def __init__(self, starts: list[tuple[int, str, str]] | None = None,
                 enabled: bool = True) -> None:
        self.starts = starts
        self.enabled = enabled

    def __call__(self, work: DossierWork) -> None:
        if not work.page_pdfs or (self.starts is None and not self.enabled):
            return  # a person's components are made even when the machine's are turned off
        field = work.fields.get("components_listed")
        items = field.items if field is not None and field.items else ()
        listed = [compmod.Listed(str(i.get("name", "")), str(i.get("form", "")),
                                 int(i.get("count", 1))) for i in items]
        inputs = [page_input(f) for f in work.page_facts]
        found = (compmod.from_starts(inputs, self.starts, listed) if self.starts
                 else compmod.split(inputs, listed))
        meta = work.metadata or pdfmod.DossierMetadata(
            dossier_code=work.code, agency=work.agency, procedure=None,
            created=datetime.fromisoformat(work.received_at))
        entries = []
        for n, c in enumerate(found.components, 1):
            name = component_object(n, c.title)
            work.copies[name] = pdfmod.assemble_pdfa(
                work.page_pdfs[c.start:c.end + 1],
                dataclasses.replace(meta, title=f"{work.code} - {n:02d}. {c.title}"))
            entries.append({"n": n, "type": c.type, "title": c.title,
                            "pages": [p + 1 for p in c.pages],
                            "confidence": round(c.confidence, 3), "object": name,
                            "listed_as": c.listed_as, "source": c.signal})
        work.manifest.update(
            components=entries, complete_by_components=found.complete,
            missing_components=[{"name": m.name, "form": m.form, "count": m.count}
                                for m in found.missing],
            components_listed=[{"name": m.name, "form": m.form, "count": m.count}
                               for m in listed])


def default_dossier_stages(grammar: DossierCodeGrammar, timezone_offset: str,
                           components_enabled: bool, signing: AgencySigning
                           ) -> list[DossierStage]:
    """The dossier stages a version runs, in their order."""
    return [ExtractFields(grammar, timezone_offset), CheckAddresses(), BuildPdfA(),
            SplitComponents(enabled=components_enabled), Sign(signing)]
