"""Stage contracts. A stage is a named callable that reads and writes one work object.

Page stages run in order on one page (`PageWork`); dossier stages run in order on one dossier
(`DossierWork`). To add a step (a classifier, a signer), write a callable with a `name` and put it
in the list given to the pipeline: no other stage changes. A stage is given what it needs of the
settings (its section, or plain values) when it is built: ingest/services.py builds the default
lists from the settings; the work objects carry no settings.

PageWork contract
    in:  scan (the page as decoded: ocr.decode.PageImage), image and dpi (at first the scan's)
    out: facts (storage.records.PageFacts, stored as pages/NNNNN.json: set its attributes; a
         stage's own facts go in as attributes of their own, JSON-safe), image/dpi (may be
         replaced: the scan turned by facts.rotation and facts.skew, at a lower resolution
         if the stage chooses), text_pdf (tesseract's invisible text for this image, in the
         page's points), done (True stops the page's remaining stages: blank pages and
         separator sheets need no OCR).
         The stored page is the scan turned by facts.rotation and facts.skew in its PDF (never
         resampled): a stage that changes what the stored page should show replaces `scan`.
DossierWork contract
    in:  code, agency, code_source, pages (batch page indexes), page_facts, page_pdfs,
         received_at, registry
    out: fields (name -> Field), metadata, pdf (the document to store; a signer replaces it),
         copies (further documents stored with the version, object name -> bytes, such as each
         component's electronic copy; a signer replaces them too), manifest (keys a stage adds to
         the version's manifest, such as `components` or `signature`)
Preparing
    A stage of either kind may also have `prepare()`: work that needs no page or dossier (a list
    or a model to load). A runner calls it on a spare thread, a page stage's when a batch
    starts (Pipeline.prepare_pages), a dossier stage's once the batch's first page is read
    (Pipeline.prepare_dossiers: not beside the first pages, which would wait for the
    interpreter), so that the first dossier does not wait for it; the stage must work the same
    when it was never called, and a second call must cost nothing. A page stage may
    also have `release()`, called by a runner once a batch's pages are all read (before its
    dossiers are assembled): it lets go of what `prepare()` or the pages started (Tesseract's
    children), and the stage must still work after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ocr.decode import DecodeLimits, PageImage, check_readable, open_document
from ocr.fields import Field
from ocr.pdf import DossierMetadata
from storage.records import PageFacts


@dataclass
class PageWork:
    batch_id: str
    index: int
    image: Image.Image
    dpi: int
    facts: PageFacts = None  # type: ignore[assignment]  # by default: index, status ok
    text_pdf: bytes | None = None
    done: bool = False
    scan: PageImage = None  # type: ignore[assignment]  # by default: image and dpi as given
    _derived: dict[str, tuple[Image.Image, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.facts is None:
            self.facts = PageFacts(index=self.index, status="ok")
        if self.scan is None:
            self.scan = PageImage(self.image, self.dpi, "given")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "image" and "_derived" in self.__dict__:
            self._derived.clear()  # the old image's arrays go with it (a page's worth each)
        super().__setattr__(name, value)

    def derived(self, name: str, make: Callable[[Image.Image], Any]) -> Any:
        """`make(image)`, made once for the current image: the stages reading the same pixels
        (barcodes, blank detection, deskew read the scan as a NumPy array) share them. A stage
        that replaces `image` gets new ones; the old ones are let go."""
        kept = self._derived.get(name)
        if kept is None or kept[0] is not self.image:
            kept = self._derived[name] = (self.image, make(self.image))
        return kept[1]


@dataclass
class DossierWork:
    batch_id: str
    code: str
    agency: str
    code_source: str
    pages: list[int]
    page_facts: list[PageFacts]
    page_pdfs: list[bytes]
    received_at: str  # ISO 8601, when the batch was received
    registry: dict[str, Any] | None = None  # the registry's record of the code, if asked
    fields: dict[str, Field] = field(default_factory=dict)
    metadata: DossierMetadata | None = None
    pdf: bytes | None = None
    copies: dict[str, bytes] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


class PageStage(Protocol):
    name: str

    def __call__(self, work: PageWork) -> None: ...


class DossierStage(Protocol):
    name: str

    def __call__(self, work: DossierWork) -> None: ...


def read_page(path: Path, facts: PageFacts, stages: Sequence[PageStage], limits: DecodeLimits,
              batch_id: str = "") -> PageWork:
    """Page `facts.index` of the file at `path`, decoded and put through `stages` in their order
    until one says the page is done; the seconds of the decoding and of each stage go in
    `facts.seconds`. The one way a page is read: by the pipeline, and ahead of it by `sohoa
    ingest` (ingest/ahead.py). Raises what the decoding and the stages raise."""
    start = time.perf_counter()
    doc = open_document(path, limits)
    try:
        page = doc.page(facts.index)
    finally:
        doc.close()
    check_readable(page.image, facts.index)
    facts.dpi, facts.width, facts.height = page.dpi, page.image.width, page.image.height
    facts.origin, facts.had_text_layer = page.origin, page.has_text_layer
    work = PageWork(batch_id, facts.index, page.image, page.dpi, facts, scan=page)
    facts.seconds = timings = {"decode": round(time.perf_counter() - start, 3)}
    for stage in stages:
        if work.done:
            break
        t0 = time.perf_counter()
        stage(work)
        timings[stage.name] = round(time.perf_counter() - t0, 3)
    return work
