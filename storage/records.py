"""The stored records, typed (issue 12, point 2): each one a pydantic model with a `format` number.

    BatchRecord   batches/<id>/batch.json          json indent=1, keys in the order written
    PageFacts     batches/<id>/pages/<nnnnn>.json  json on one line, keys in the order written
                  (its barcodes: BarcodeFact, its OCR: OcrFact; the blank facts `ink` and
                  `blank` stand on the page facts themselves)
    Manifest      dossiers/<code>/v<nnnn>/manifest.json   json indent=1, keys sorted
    Correction    dossiers/<code>/corrections/<n>.json    json indent=1, keys sorted
    ResultManifest  results/<code>/r<nnnn>/manifest.json  json indent=1, keys sorted
    PageRef       a page of a batch as it goes into a dossier version (in a manifest's page_refs)

`Model.load(data)` reads stored bytes (or an already parsed dict): an older `format` is first
brought up to date by `migrate`, a record from a newer sohoa or of the wrong shape raises
`RecordError` naming the record and what is wrong. Keys an older writer did not write load with
their defaults (the attributes), and are not added to what it gives back: `as_dict()` and
`dump()` give the record as it was stored, byte for byte, keys in the stored order. A record is
built the same way (`BatchRecord(batch_id=..., ...)`): its keys are written in the order given,
keys set later after them, as the dicts these models replace were.

`extra="allow"` where the shape is open: page facts (every page stage adds its own), manifests
(a writer's `extra`, such as a review's `change`; a result stage's keys), the batch record
(writers of tasks, review and recovery add keys of their own) and the entries inside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

FORMAT = 1  # of every record below; a new one gets a step in its model's `migrate`

Number = int | float  # as written: an int stays an int, a float a float (so dumps match)


class RecordError(ValueError):
    """A stored record that cannot be read: not JSON, not an object, of a newer format, or of
    the wrong shape."""


class Stored(BaseModel):
    """A stored record or a part of one. It keeps the keys in the order they were written, as
    the dicts it replaces did: the keys it was loaded or built with, then keys set since (in the
    order set). A key it was not given is not written back, though its attribute reads its
    default; `unset()` takes a key out again (what `dict.pop` did)."""

    _keys: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _written_order(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, Stored):
            model._keys = [k for k in data if isinstance(k, str)]
        return model

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_") and name not in self._keys:
            self._keys.append(name)

    def unset(self, name: str) -> Any:
        """Takes key `name` out of the record (its attribute reads its default again) and gives
        its value, or None."""
        if name not in self._keys:
            return None
        value = getattr(self, name)
        self._keys.remove(name)
        extra = self.__pydantic_extra__
        if extra is not None and name in extra:
            del extra[name]
        else:
            field = type(self).model_fields[name]
            object.__setattr__(self, name, field.get_default(call_default_factory=True))
            self.model_fields_set.discard(name)
        return value

    def has(self, name: str) -> bool:
        """Whether the record holds key `name` (was written with it or had it set since)."""
        return name in self._keys

    def as_dict(self) -> dict[str, Any]:
        """The record as stored: its keys in the order written, its parts as dicts."""
        return {k: _plain(getattr(self, k)) for k in self._keys}

    def __eq__(self, other: object) -> bool:
        """Equal to a record or dict that would be stored the same (key order aside)."""
        if isinstance(other, Stored):
            return type(self) is type(other) and self.as_dict() == other.as_dict()
        if isinstance(other, dict):
            return self.as_dict() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _plain(value: Any) -> Any:
    if isinstance(value, Stored):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _keys_of(value: Any) -> dict[str, Any]:
    """A record's or part's keys in the order written, for json's encoder (`Record.dump`)."""
    if isinstance(value, Stored):
        return {k: getattr(value, k) for k in value._keys}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Record(Stored):
    """What every stored record shares: its format, load (with migration) and dump."""

    model_config = ConfigDict(extra="forbid")
    FORMAT: ClassVar[int] = FORMAT
    JSON_ARGS: ClassVar[dict[str, Any]] = {"indent": 1}

    format: int = FORMAT

    @classmethod
    def migrate(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Brings a record of an older format up to `FORMAT`. Format 1 is the first: a record
        without `format` is taken to be format 1 (the keys it lacks load with their defaults)."""
        found = raw.get("format", 1)
        if not isinstance(found, int) or found < 1:
            raise RecordError(f"{cls.__name__}: format {found!r} is not a format number")
        if found > cls.FORMAT:
            raise RecordError(f"{cls.__name__}: format {found} was written by a newer sohoa "
                              f"(this one reads up to format {cls.FORMAT})")
        # steps to come: `if found == 1: raw = {...}; found = 2` and so on
        return raw

    @classmethod
    def load(cls, data: bytes | str | dict[str, Any]) -> Self:
        if isinstance(data, bytes | str):
            try:
                raw = json.loads(data)
            except ValueError as e:
                raise RecordError(f"{cls.__name__}: not JSON: {e}") from e
        else:
            raw = data
        if not isinstance(raw, dict):
            raise RecordError(f"{cls.__name__}: a JSON object expected, not "
                              f"{type(raw).__name__}")
        raw = cls.migrate(raw)
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(record)'}: "
                                 f"{err['msg']}" for err in e.errors())
            raise RecordError(f"{cls.__name__}: {problems}") from e

    def dump(self) -> bytes:
        """The bytes `as_dict()` would give json. Its parts are handed to the encoder as they
        are met (`_keys_of`): a page's thousand OCR words are not copied into new dicts first
        (a tenth of the page stages' interpreter time on a batch)."""
        return json.dumps(self, default=_keys_of, ensure_ascii=False, **self.JSON_ARGS).encode()


class Entry(Stored):
    """A part of a record: loose where writers add keys of their own."""

    model_config = ConfigDict(extra="allow")


# ---- page facts ------------------------------------------------------------------------------


class BarcodeFact(Entry):
    value: str
    symbology: str
    engine: str | None = None
    box: list[Number] | None = None


class OcrFact(Entry):
    lines: list[str] = Field(default_factory=list)
    line_confidence: list[Number] = Field(default_factory=list)
    confidence: Number | None = None
    languages: str | None = None
    readings: list[dict[str, Any]] = Field(default_factory=list)
    words: list[dict[str, Any]] = Field(default_factory=list)


class PageFacts(Record):
    """What the page stages found on one page (ingest/page_stages.py): written once per page."""

    model_config = ConfigDict(extra="allow")
    JSON_ARGS: ClassVar[dict[str, Any]] = {}

    index: int
    status: str  # ok | failed
    error: str | None = None
    dpi: Number | None = None
    width: int | None = None
    height: int | None = None
    origin: str | None = None
    had_text_layer: bool | None = None
    seconds: dict[str, Number] = Field(default_factory=dict)
    barcodes: list[BarcodeFact] = Field(default_factory=list)
    ink: Number | None = None  # the blank facts (DetectBlank)
    blank: bool | None = None
    rotation: Number | None = None
    skew: Number | None = None
    ocr: OcrFact | None = None
    separator: bool | None = None  # a separator sheet (ReadBarcodes)


# ---- batch record ----------------------------------------------------------------------------


class DossierSummary(Entry):
    dossier_id: str
    pages: list[int]
    version: int
    code_source: str
    pdf: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class ReviewEntry(Entry):
    pages: list[int]
    code: str | None = None
    reason: str
    detail: str | None = None
    code_source: str | None = None  # of a held version's code (hold_partial, other_agency)
    agency: str | None = None  # other_agency: the agency of the code
    current_version: int | None = None  # incomplete_rescan: the dossier's version now
    current_pages: int | None = None


class DroppedPage(Entry):
    page: int
    reason: str  # blank | separator | set_aside | kept_current
    by: str | None = None  # set aside by a person (ingest/review.py discard)
    action_id: str | None = None


class FailedPage(Entry):
    page: int
    error: str | None = None


class Resolution(Entry):
    """Pages of a batch a person put in a dossier (ingest/review.py assign, replace)."""

    pages: list[int]
    dossier_id: str
    version: int
    by: str


class BatchRecord(Record):
    """One scanned batch (ingest/pipeline.py receive .. finish, ingest/tasks.py, ingest/review.py).
    Earlier writers wrote no `scope`, `failed_pages` or `review`: they load as none."""

    model_config = ConfigDict(extra="allow")

    batch_id: str
    file: str | None = None
    sha256: str | None = None
    size: int | None = None
    original: str | None = None
    source: str | None = None
    dossier_hint: str | None = None
    agency: str | None = None
    device: str | None = None
    incomplete: str | None = None
    scope: list[str] | None = None
    received_at: str | None = None
    status: str
    error: str | None = None
    pages: int = 0
    dossiers: list[DossierSummary] = Field(default_factory=list)
    unmatched_pages: list[int] = Field(default_factory=list)
    dropped_pages: list[DroppedPage] = Field(default_factory=list)
    failed_pages: list[FailedPage] = Field(default_factory=list)
    unmatched_groups: list[list[int]] = Field(default_factory=list)
    review: list[ReviewEntry] = Field(default_factory=list)
    finished_at: str | None = None
    # written by ingest/tasks.py and Pipeline.wait/resume, ingest/review.py
    page_order: list[int] | None = None
    pages_in_flight: int | None = None
    start_queued_at: str | None = None
    waiting_for: dict[str, Any] | None = None
    retried_failure: str | None = None
    resolved: list[Resolution] = Field(default_factory=list)
    renamed: list[dict[str, Any]] = Field(default_factory=list)
    incomplete_checked: dict[str, Any] | None = None
    # a result's batch (ingest/results.py): the dossier it is the result of, what it stored
    result_for: str | None = None
    results: list[dict[str, Any]] | None = None
    # not stored: ingest/runner.py run_file's answer for a file whose batch had finished before
    already_ingested: bool = False


# ---- dossier versions ------------------------------------------------------------------------


@dataclass(frozen=True)
class PageRef:
    """A page of a batch as it goes into a dossier version, turned clockwise by `rotate`."""

    batch_id: str
    index: int
    rotate: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "index": self.index, "rotate": self.rotate}


class PageRefEntry(Entry):
    model_config = ConfigDict(extra="forbid")

    batch_id: str
    index: int
    rotate: int = 0

    def ref(self) -> PageRef:
        return PageRef(self.batch_id, self.index, self.rotate)


class StoredObject(Entry):
    key: str
    sha256: str
    size: int


class OriginalScan(Entry):
    key: str
    sha256: str
    size: int
    file: str | None = None


class Withdrawal(Entry):
    to: str
    by: str
    at: str
    from_version: int


class Manifest(Record):
    """One stored version of a dossier (ingest/versions.py store_version, withdraw)."""

    model_config = ConfigDict(extra="allow")
    JSON_ARGS: ClassVar[dict[str, Any]] = {"indent": 1, "sort_keys": True}

    dossier_id: str
    agency: str
    version: int
    batch_id: str
    code_source: str = ""
    pages: list[int]
    created_at: str
    original: OriginalScan
    objects: dict[str, StoredObject]
    page_refs: list[PageRefEntry] | None = None
    retention_days: int | None = None
    registry: dict[str, Any] | None = None
    withdrawn: Withdrawal | None = None
    signature: dict[str, Any] | None = None  # ingest/signing.py: signed, or unsigned
    # ingest/dossier_stages.py SplitComponents: the dossier's documents, each its own copy
    components: list[dict[str, Any]] | None = None
    complete_by_components: bool | None = None
    missing_components: list[dict[str, Any]] | None = None
    components_listed: list[dict[str, Any]] | None = None
    change: dict[str, Any] | None = None

    def refs(self) -> list[PageRef]:
        """The pages this version is made of."""
        if self.page_refs is not None:
            return [r.ref() for r in self.page_refs]
        return [PageRef(self.batch_id, i) for i in self.pages]


class ResultManifest(Record):
    """One stored result of a dossier, the decision, certificate or licence issued
    (ingest/versions.py store_result): its own numbering (r1, r2, ...), beside the version of the
    dossier it answers (`dossier_version`). Result stages add keys of their own (`title`,
    `signature`)."""

    model_config = ConfigDict(extra="allow")
    JSON_ARGS: ClassVar[dict[str, Any]] = {"indent": 1, "sort_keys": True}
    PDF: ClassVar[str] = "result.pdf"  # the result document's name in `objects`

    kind: Literal["result"]  # what tells a result's manifest from a version's
    dossier_id: str
    agency: str
    version: int
    batch_id: str
    pages: list[int]
    created_at: str
    original: OriginalScan
    objects: dict[str, StoredObject]
    retention_days: int | None = None
    dossier_version: int
    page_refs: list[PageRefEntry] | None = None
    signature: dict[str, Any] | None = None  # ingest/results.py SignResult: signed, or unsigned
    title: str | None = None  # ingest/results.py ResultTitle: as OCR read it

    @property
    def pdf(self) -> StoredObject:
        """The result document."""
        return self.objects[self.PDF]

    def refs(self) -> list[PageRef]:
        """The pages this result is made of."""
        if self.page_refs is not None:
            return [r.ref() for r in self.page_refs]
        return [PageRef(self.batch_id, i) for i in self.pages]


class Correction(Record):
    """A person's correction of a field of a dossier's version (ingest/versions.py correct)."""

    JSON_ARGS: ClassVar[dict[str, Any]] = {"indent": 1, "sort_keys": True}

    dossier_id: str
    version: int
    name: str
    value: str
    previous: Any = None
    page: int | None = None
    actor: str
    reason: str = ""
    at: str
    seq: int
    # the person confirmed the value as read (the same value): written only then
    confirmed: bool | None = None
