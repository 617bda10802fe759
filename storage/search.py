"""Ranked full-text search of dossiers, on both catalogs: SQLite's FTS5 (bm25) on the embedded
default, PostgreSQL's full-text search (ts_rank_cd) and pg_trgm past one machine.

Both match the same words: fields and OCR text folded by `ocr.text.fold` (NFC, no accents,
đ -> d, lower case) and cut into letters-and-digits words here, in Python, for the stored text
and the typed query alike, so "hung dao", "Hưng Đạo" and "HƯNG-ĐẠO" are one query everywhere.

Ranking, on both:
- a dossier must hold every word of the query (the last one may be the start of a word: people
  stop typing early);
- a word in the code, an ID, an applicant's name weighs most, then addresses, then the
  procedure and other fields, then OCR text;
- the words as a phrase, then the words close together, weigh more than the same words
  scattered: "nguyen van" brings Nguyễn Văn An before a text holding "Thái Nguyên" and
  "văn hóa".
When no dossier holds every word, the names most like the query are found instead (a
misspelled name: trigrams, pg_trgm's on PostgreSQL), best first.

Results are pages of a stable order (score, then code) with a cursor holding both, so paging
neither repeats nor skips a dossier while nothing is stored meanwhile (a dossier stored between
two pages may shift scores). Each result has a snippet of its text as written, HTML-escaped
except for the <mark>s around the matched words. Counts are of what the caller may see only,
and stop at COUNT_CAP ("about N", or "more than N").

The table (storage/tables.py `SearchText`) is written by the catalog when it indexes a version
or a correction (storage/catalog.py), and made again by `rebuild`.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Double, String, and_, cast, func, literal, literal_column, or_, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ocr.text import fold, fold_aligned, nfc
from storage.db import aware
from storage.tables import FTS_COLUMNS, Dossier, SearchText

log = logging.getLogger(__name__)

COUNT_CAP = 1000  # results counted at most
MAX_WORDS = 12  # words of a query used (a query is at most 200 characters)
FUZZY_CANDIDATES = 200  # names read for a misspelled query, best trigram matches first
FUZZY_THRESHOLD = 0.6  # share of the query's trigrams a name must hold
# A name typed with a slip often makes another real syllable ("lam" for "Lan") that some OCR
# text holds, so dossiers do hold every word, just not the person. When no field of any
# dossier holds the typed words as a phrase and a name holds this share of their trigrams,
# the names like it come first.
NAME_SLIP = 0.75
SNIPPET_CHARS = 200
NEAR = 5  # words apart that still count as close

# Which field goes into which weighted column; any other field weighs as "other".
ID_FIELDS = ("dossier_id", "citizen_id", "old_id", "phone", "email")
NAME_FIELDS = ("applicant_name", "full_name", "registry_applicant")
PLACE_FIELDS = ("address", "permanent_address")
PROCEDURE_FIELDS = ("procedure", "registry_procedure")
# SQLite bm25 weights, in the FTS5 table's column order (storage/tables.py FTS_COLUMNS):
# ids, names, places, procedure, other, body. Small: bm25 saturates a weighted count of hits,
# so weights above 1 barely count, while OCR text at a tenth weighs a tenth: a rare phrase in
# OCR text does not outweigh the same words in the applicant's name.
BM25_WEIGHTS = (1.0, 1.0, 0.6, 0.4, 0.3, 0.1)
# PostgreSQL ts_rank_cd weights of D (body), C (procedure, other), B (places), A (ids, names).
PG_WEIGHTS = "{0.05, 0.3, 0.5, 1.0}"

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The folded words of a text: what is indexed and what a query is made of."""
    return _WORD.findall(fold(nfc(text)))


def folded(text: str) -> str:
    return " ".join(words(text))


# ---- what is stored ------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One dossier's row of `dossier_search`: folded columns by weight, and the text as written."""

    ids: str = ""
    names: str = ""
    places: str = ""
    procedure: str = ""
    other: str = ""
    body: str = ""
    fields_text: str = ""
    body_text: str = ""

    @classmethod
    def of(cls, code: str, fields: dict[str, str], lines: Iterable[str] = ()) -> Document:
        """From a version's field values (name -> value) and OCR lines."""
        def values(names: Sequence[str] | None) -> list[str]:
            if names is None:
                taken = {*ID_FIELDS, *NAME_FIELDS, *PLACE_FIELDS, *PROCEDURE_FIELDS}
                return [v for n, v in sorted(fields.items()) if n not in taken and v]
            return [fields[n] for n in names if fields.get(n)]

        written = values(NAME_FIELDS) + values(("citizen_id",)) + values(PLACE_FIELDS) \
            + values(PROCEDURE_FIELDS) + values(("phone", "email")) + values(None)
        body = " ".join(" ".join(line.split()) for line in lines if line.strip())
        return cls(ids=folded(" ".join([code, *values(ID_FIELDS)])),
                   names=folded(" ".join(values(NAME_FIELDS))),
                   places=folded(" ".join(values(PLACE_FIELDS))),
                   procedure=folded(" ".join(values(PROCEDURE_FIELDS))),
                   other=folded(" ".join(values(None))), body=folded(body),
                   fields_text=" · ".join(" ".join(nfc(v).split()) for v in written),
                   body_text=nfc(body))

    def columns(self) -> dict[str, str]:
        return {"ids": self.ids, "names": self.names, "places": self.places,
                "procedure": self.procedure, "other": self.other, "body": self.body,
                "fields_text": self.fields_text, "body_text": self.body_text}


def store(s: Session, code: str, document: Document) -> None:
    """The search row of a dossier, replaced (its dossier row must exist)."""
    row = s.scalars(select(SearchText).where(SearchText.code == code)).first()
    if row is None:
        s.add(SearchText(code=code, **document.columns()))
        return
    for name, value in document.columns().items():
        setattr(row, name, value)


def store_fields(s: Session, code: str, fields: dict[str, str]) -> None:
    """After a correction: the fields' columns again, the OCR text kept."""
    row = s.scalars(select(SearchText).where(SearchText.code == code)).first()
    body = row.body_text if row is not None else ""
    store(s, code, Document.of(code, fields, [body]))


def fill(connection: Connection) -> int:
    """Every live dossier's row from what the catalog holds (its latest version's fields and
    the OCR text of its pages): how a catalog made before the search table gets one
    (migration 0008). `sohoa reindex` makes the same from object storage."""
    from storage.tables import DossierVersion, FieldRow, Page

    done = 0
    dossiers = connection.execute(select(Dossier.code, Dossier.latest_version)
                                  .where(Dossier.withdrawn_to.is_(None))).all()
    for code, version in dossiers:
        fields = dict(connection.execute(select(FieldRow.name, FieldRow.value).where(
            FieldRow.code == code, FieldRow.version == version)).all())
        manifest = connection.execute(select(DossierVersion.manifest, DossierVersion.batch_id)
                                      .where(DossierVersion.code == code,
                                             DossierVersion.version == version)).first()
        lines: list[str] = []
        if manifest is not None and (pages := (manifest[0] or {}).get("pages")):
            lines = list(connection.execute(select(Page.text).where(
                Page.batch_id == manifest[1], Page.index.in_(pages)).order_by(Page.index))
                .scalars())
        document = Document.of(code, {n: str(v) for n, v in fields.items()}, lines)
        connection.execute(SearchText.__table__.insert().values(code=code, **document.columns()))
        done += 1
    return done


# ---- queries and cursors -------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A typed search as words; never FTS syntax: quotes, stars, NEAR, minus signs and colons
    are separators like any punctuation."""

    words: tuple[str, ...]

    @classmethod
    def parse(cls, q: str) -> Query:
        return cls(tuple(words(q[:1000]))[:MAX_WORDS])

    def __bool__(self) -> bool:
        return bool(self.words)

    def pairs(self) -> list[tuple[str, ...]]:
        """Each two words typed one after the other, and the whole query when longer: a name
        and a commune typed together are two phrases in two fields."""
        found = list(dict.fromkeys(zip(self.words, self.words[1:], strict=False)))
        return [*found, self.words] if len(self.words) > 2 else found

    def fts5(self) -> str:
        """A MATCH expression: every word (the last also as a prefix), or a pair of them as a
        phrase, or the words near each other; bm25 adds the score of each part a dossier
        matches, so phrases and nearness rank above scattered words."""
        quoted = [f'"{w}"' for w in self.words]
        every = " AND ".join([*quoted[:-1], f'({quoted[-1]} OR {quoted[-1]}*)'])
        if len(quoted) == 1:
            return every
        phrases = " OR ".join('"' + " ".join(p) + '"' for p in self.pairs())
        if len(quoted) > 2:  # the pairs say what nearness would, at less cost; OR-ed with
            # a word the dossier holds anyway, they rank but do not widen what matches
            return f"({every}) AND ({phrases} OR {quoted[0]})"
        return f"({every}) OR {phrases} OR NEAR({' '.join(quoted)}, {NEAR})"

    def tsquery_every(self) -> str:
        quoted = [f"'{w}'" for w in self.words]
        return " & ".join([*quoted[:-1], f"({quoted[-1]} | {quoted[-1]}:*)"])

    def tsquery_phrases(self) -> str:
        """The pairs as phrases, any of them (one word: itself)."""
        pairs = self.pairs() or [self.words]
        return " | ".join("(" + " <-> ".join(f"'{w}'" for w in p) + ")" for p in pairs)

    def trigrams(self) -> list[str]:
        return sorted({w[i:i + 3] for w in self.words for i in range(len(w) - 2)})

    def text(self) -> str:
        return " ".join(self.words)


MODES = ("code", "rank", "fuzzy")


@dataclass(frozen=True)
class Position:
    """Where a result stands: by code (no query), by score then code (a query), or by
    similarity then code (a misspelled name). Its text is what a cursor carries."""

    mode: str
    code: str
    score: float = 0.0

    def encode(self) -> str:
        return self.code if self.mode == "code" else f"{self.mode}|{self.score!r}|{self.code}"

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """ValueError for anything `encode` did not make."""
        mode, sep, rest = cursor.partition("|")
        if not sep:
            return cls("code", cursor)
        score, sep, code = rest.partition("|")
        if mode not in MODES[1:] or not sep or not code:
            raise ValueError("its parts are not those of one")
        value = float(score)
        if not math.isfinite(value):
            raise ValueError("its score is not a number")
        return cls(mode, code, value)


@dataclass(frozen=True)
class Filters:
    """What narrows a search besides its words; `agencies=None` means every agency. `where`:
    further conditions on `dossiers` (a report figure's, storage/reports.py)."""

    agencies: tuple[str, ...] | None = None
    procedure: str | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    where: tuple[Any, ...] = ()

    def conditions(self) -> list[Any]:
        found: list[Any] = [Dossier.withdrawn_to.is_(None), *self.where]
        if self.agencies is not None:
            found.append(Dossier.agency.in_(self.agencies))
        if self.procedure:
            found.append(Dossier.procedure == self.procedure)
        if self.updated_from:
            found.append(Dossier.updated_at >= self.updated_from)
        if self.updated_to:
            found.append(Dossier.updated_at < self.updated_to)
        return found


@dataclass(frozen=True)
class Hit:
    code: str
    agency: str
    procedure: str | None
    version: int
    updated_at: datetime
    position: Position
    snippet: str | None = None  # HTML: the text as written, escaped, matched words in <mark>

    def item(self) -> dict[str, Any]:
        """As the REST API lists it."""
        found: dict[str, Any] = {"dossier_id": self.code, "agency": self.agency,
                                 "procedure": self.procedure, "version": self.version,
                                 "updated_at": self.updated_at.isoformat()}
        if self.snippet is not None:
            found["snippet"] = self.snippet
        return found


@dataclass(frozen=True)
class Results:
    hits: list[Hit]
    next: Position | None  # where the next page starts after; None at the end
    about: int  # how many the caller may see match, counted up to COUNT_CAP
    more: bool = False  # more than COUNT_CAP
    fuzzy: bool = False  # no dossier held every word: names like the query instead
    words: tuple[str, ...] = field(default=())


# ---- the search ----------------------------------------------------------------------------


def search(s: Session, filters: Filters, q: str = "", after: Position | None = None,
           limit: int = 50) -> Results:
    """A page of results. Without words: by code. `after` must be a position of the same
    kind of search (ValueError otherwise: a cursor of another search)."""
    query = Query.parse(q)
    if not query:
        if after is not None and after.mode != "code":
            raise ValueError("a cursor of a search with words")
        return _by_code(s, filters, after, limit)
    if after is not None and after.mode == "code":
        raise ValueError("a cursor of a list without words")
    dialect = s.get_bind().dialect.name
    if after is None or after.mode == "rank":
        about, more = _count(s, _matching(dialect, query), filters)
        if about and after is None and _name_like(query) \
                and not _phrase_in_fields(s, dialect, query, filters):
            slipped = _fuzzy(s, dialect, query, filters, None, limit)
            if slipped.hits and -slipped.hits[0].position.score >= NAME_SLIP:
                return slipped
        if about or after is not None:
            return _ranked(s, dialect, query, filters, after, limit, about, more)
    return _fuzzy(s, dialect, query, filters, after, limit)


def _name_like(query: Query) -> bool:
    """Two to five words of letters: what a person's name typed looks like."""
    return 2 <= len(query.words) <= 5 and all(w.isalpha() for w in query.words)


def _phrase_in_fields(s: Session, dialect: str, query: Query, filters: Filters) -> bool:
    """Whether a dossier the caller sees holds the typed words, in order, in one of its fields
    (not only in its OCR text): then the words are what was meant."""
    if dialect == "sqlite":
        fields = " ".join(c for c in FTS_COLUMNS if c != "body")
        match = f'{{{fields}}} : "{query.text()}" *'  # the last word may be still typed
        ids = (select(literal_column("dossier_fts.rowid").label("id"))
               .select_from(text("dossier_fts"))
               .where(text("dossier_fts MATCH :held").bindparams(held=match)))
    else:
        phrase = " <-> ".join(f"'{w}':{'*' if i == len(query.words) - 1 else ''}ABC"
                              for i, w in enumerate(query.words))
        document = literal_column("dossier_search.document")
        ids = select(SearchText.id.label("id")).where(document.op("@@")(func.to_tsquery(
            literal_column("'simple'::regconfig"), literal(phrase, String))))
    held = _first(ids, "held", dialect)
    stmt = (select(literal(1)).select_from(held).join(SearchText, SearchText.id == held.c.id)
            .join(Dossier, Dossier.code == SearchText.code).where(*filters.conditions())
            .limit(1))
    return s.scalar(stmt) is not None


def _by_code(s: Session, filters: Filters, after: Position | None, limit: int) -> Results:
    stmt = (select(Dossier.code, Dossier.agency, Dossier.procedure, Dossier.latest_version,
                   Dossier.updated_at).where(*filters.conditions())
            .order_by(Dossier.code).limit(limit + 1))
    if after is not None:
        stmt = stmt.where(Dossier.code > after.code)
    rows = s.execute(stmt).all()
    about, more = _count(s, None, filters)
    hits = [Hit(r[0], r[1], r[2], r[3], aware(r[4]), Position("code", r[0])) for r in rows]
    return _page(hits, limit, about, more)


def _page(hits: list[Hit], limit: int, about: int, more: bool, **extra: Any) -> Results:
    return Results(hits[:limit], hits[limit - 1].position if len(hits) > limit else None,
                   about, more, **extra)


def _matching(dialect: str, query: Query) -> Any:
    """A selectable of the `dossier_search` ids holding every word of the query."""
    if dialect == "sqlite":
        return (select(literal_column("dossier_fts.rowid").label("id"))
                .select_from(text("dossier_fts"))
                .where(text("dossier_fts MATCH :match").bindparams(match=query.fts5())))
    document = literal_column("dossier_search.document")
    every = func.to_tsquery(literal_column("'simple'::regconfig"),
                            literal(query.tsquery_every(), String))
    return select(SearchText.id.label("id")).where(document.op("@@")(every))


def _first(stmt: Any, name: str, dialect: str) -> Any:
    """The full-text part of a query, run first: on SQLite a materialized CTE, else the planner
    may walk an agency's dossiers and run the full-text query once for each of them."""
    return stmt.cte(name).prefix_with("MATERIALIZED") if dialect == "sqlite" \
        else stmt.subquery(name)


def _count(s: Session, matching: Any, filters: Filters) -> tuple[int, bool]:
    """How many the caller may see (agencies and filters applied), up to COUNT_CAP."""
    stmt = select(literal(1)).select_from(Dossier)
    if matching is not None:
        ids = _first(matching, "matching", s.get_bind().dialect.name)
        stmt = (select(literal(1)).select_from(ids)
                .join(SearchText, SearchText.id == ids.c.id)
                .join(Dossier, Dossier.code == SearchText.code))
    stmt = stmt.where(*filters.conditions()).limit(COUNT_CAP + 1)
    found = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return min(found, COUNT_CAP), found > COUNT_CAP


def _scored(dialect: str, query: Query) -> Any:
    """(id, score) of the dossiers holding every word; lower scores first."""
    if dialect == "sqlite":
        weights = ", ".join(map(str, BM25_WEIGHTS))
        return (select(literal_column("dossier_fts.rowid").label("id"),
                       literal_column(f"bm25(dossier_fts, {weights})").label("score"))
                .select_from(text("dossier_fts"))
                .where(text("dossier_fts MATCH :match").bindparams(match=query.fts5())))
    document = literal_column("dossier_search.document")
    weights = literal_column(f"'{PG_WEIGHTS}'::float4[]")

    def tsquery(value: str) -> Any:
        return func.to_tsquery(literal_column("'simple'::regconfig"), literal(value, String))

    every, phrase = tsquery(query.tsquery_every()), tsquery(query.tsquery_phrases())
    score = -(func.ts_rank_cd(weights, document, every) + func.ts_rank_cd(weights, document, phrase))
    return (select(SearchText.id.label("id"), cast(score, Double).label("score"))
            .where(document.op("@@")(every)))


def _ranked(s: Session, dialect: str, query: Query, filters: Filters, after: Position | None,
            limit: int, about: int, more: bool) -> Results:
    scored = _first(_scored(dialect, query), "scored", dialect)
    stmt = (select(Dossier.code, Dossier.agency, Dossier.procedure, Dossier.latest_version,
                   Dossier.updated_at, scored.c.score)
            .select_from(scored).join(SearchText, SearchText.id == scored.c.id)
            .join(Dossier, Dossier.code == SearchText.code)
            .where(*filters.conditions()).order_by(scored.c.score, Dossier.code).limit(limit + 1))
    if after is not None:
        stmt = stmt.where(or_(scored.c.score > after.score,
                              and_(scored.c.score == after.score, Dossier.code > after.code)))
    rows = s.execute(stmt).all()
    texts = _texts(s, [r[0] for r in rows[:limit]])
    hits = [Hit(r[0], r[1], r[2], r[3], aware(r[4]), Position("rank", r[0], float(r[5])),
                snippet(*texts.get(r[0], ("", "")), query)) for r in rows]
    return _page(hits, limit, about, more, words=query.words)


def _texts(s: Session, codes: list[str]) -> dict[str, tuple[str, str]]:
    """The text as written of a page of results (read apart from the ranking, which would
    otherwise sort every match's text along)."""
    if not codes:
        return {}
    rows = s.execute(select(SearchText.code, SearchText.fields_text, SearchText.body_text)
                     .where(SearchText.code.in_(codes))).all()
    return {code: (fields, body) for code, fields, body in rows}


_trigram_support: dict[int, bool] = {}


def _has_trigrams(s: Session) -> bool:
    """Whether PostgreSQL has pg_trgm here (storage/tables.py made it, if it could)."""
    bind = s.get_bind()
    key = id(bind)
    if key not in _trigram_support:
        _trigram_support[key] = s.scalar(text(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_dossier_search_names_trgm'")) == 1
        if not _trigram_support[key]:
            log.warning("no trigram index (pg_trgm): misspelled names are not searched")
    return _trigram_support[key]


def _fuzzy(s: Session, dialect: str, query: Query, filters: Filters, after: Position | None,
           limit: int) -> Results:
    """Names most like the query, when no dossier holds every word: the best trigram matches
    (FUZZY_CANDIDATES of them, in the caller's scope) scored alike on both databases."""
    candidates = select(Dossier.code, Dossier.agency, Dossier.procedure, Dossier.latest_version,
                        Dossier.updated_at, SearchText.names)
    if dialect == "sqlite":
        grams = query.trigrams()
        if not grams:
            return Results([], None, 0, fuzzy=True, words=query.words)
        match = " OR ".join(f'"{g}"' for g in grams)
        ids = (select(literal_column("dossier_names_fts.rowid").label("id"),
                      literal_column("bm25(dossier_names_fts)").label("score"))
               .select_from(text("dossier_names_fts"))
               .where(text("dossier_names_fts MATCH :grams").bindparams(grams=match))
               .order_by(literal_column("bm25(dossier_names_fts)"))
               .limit(FUZZY_CANDIDATES * 5))
        ids = _first(ids, "grams", dialect)
        candidates = (candidates.select_from(ids).join(SearchText, SearchText.id == ids.c.id)
                      .order_by(ids.c.score))
    elif _has_trigrams(s):
        typed = literal(query.text(), String)
        candidates = (candidates.select_from(SearchText)
                      .where(typed.op("<%")(SearchText.names))
                      .order_by(func.word_similarity(typed, SearchText.names).desc()))
    else:
        return Results([], None, 0, fuzzy=True, words=query.words)
    candidates = (candidates.join(Dossier, Dossier.code == SearchText.code)
                  .where(*filters.conditions()).limit(FUZZY_CANDIDATES))
    liked = []
    for row in s.execute(candidates).all():
        score = round(-similarity(query.text(), row[5]), 6)
        if -score >= FUZZY_THRESHOLD:
            liked.append(Hit(row[0], row[1], row[2], row[3], aware(row[4]),
                             Position("fuzzy", row[0], score)))
    liked.sort(key=lambda h: (h.position.score, h.code))
    about = len(liked)
    if after is not None:
        liked = [h for h in liked if (h.position.score, h.code) > (after.score, after.code)]
    page = liked[:limit + 1]
    texts = _texts(s, [h.code for h in page[:limit]])
    names = {w for h in page for w in words(texts.get(h.code, ("", ""))[0])}
    close = tuple(w for w in names if any(similarity(q, w) >= FUZZY_THRESHOLD
                                          for q in query.words))
    hits = [Hit(h.code, h.agency, h.procedure, h.version, h.updated_at, h.position,
                snippet(*texts.get(h.code, ("", "")), Query(close), prefix=False))
            for h in page]
    return _page(hits, limit, about, False, fuzzy=True, words=query.words)


def _grams(text: str) -> set[str]:
    """pg_trgm's trigrams: each word padded with two spaces before and one after."""
    return {f"  {w} "[i:i + 3] for w in text.split() for i in range(len(w) + 1)}


def similarity(typed: str, names: str) -> float:
    """The share of the typed words' trigrams found in the names (1.0: every one)."""
    wanted = _grams(typed)
    return len(wanted & _grams(names)) / len(wanted) if wanted else 0.0


# ---- snippets ------------------------------------------------------------------------------


def snippet(fields_text: str, body_text: str, query: Query, prefix: bool = True) -> str:
    """About SNIPPET_CHARS of the dossier's text as written around where most query words
    are, HTML-escaped, each run of matched words in one <mark>: "… xã <mark>Hưng Đạo</mark> …".
    The last query word also marks the words it starts (`prefix`)."""
    shown = " · ".join(part for part in (fields_text, " ".join(body_text.split())) if part)
    if not shown:
        return ""
    hay = fold_aligned(shown)
    wanted = set(query.words)
    last = query.words[-1] if query.words and prefix else None
    spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(hay)
             if m.group() in wanted or (last and m.group().startswith(last))]
    start, end = _window(shown, spans)
    out = ["… " if start > 0 else ""]
    cursor, run_start, run_end = start, -1, -1
    for a, b, _ in spans:
        if a < start or b > end:
            continue
        if run_start >= 0 and not shown[run_end:a].strip():
            run_end = b  # only spaces between: one mark
            continue
        if run_start >= 0:
            out += [html.escape(shown[cursor:run_start]), _mark(shown[run_start:run_end])]
            cursor = run_end
        run_start, run_end = a, b
    if run_start >= 0:
        out += [html.escape(shown[cursor:run_start]), _mark(shown[run_start:run_end])]
        cursor = run_end
    out += [html.escape(shown[cursor:end]), " …" if end < len(shown) else ""]
    return "".join(out).strip()


def _mark(text: str) -> str:
    return f"<mark>{html.escape(text)}</mark>"


def _window(shown: str, spans: list[tuple[int, int, str]]) -> tuple[int, int]:
    """The stretch of text to show: the one holding the most different matched words (then
    the earliest), starting a little before the first of them, cut at spaces."""
    best, best_at = -1, 0
    for i, (a, _, _) in enumerate(spans[:300]):
        inside = {w for x, y, w in spans[i:i + 60] if y <= a + SNIPPET_CHARS - 40}
        if len(inside) > best:
            best, best_at = len(inside), a
    start = best_at - 40 if best_at > SNIPPET_CHARS - 60 else 0  # near the start: from it
    if start > 0:
        space = shown.find(" ", start)
        start = space + 1 if 0 <= space < best_at else best_at
        while shown.startswith("· ", start) and start + 2 <= best_at:
            start += 2
    end = min(len(shown), start + SNIPPET_CHARS)
    if end < len(shown):
        space = shown.rfind(" ", start, end)
        end = space if space > start else end
    return start, end
