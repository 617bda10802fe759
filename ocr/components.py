"""Dossier components (thành phần hồ sơ): which pages make which submitted document.

Pure logic on plain per-page inputs, so it can be tested and benchmarked without the pipeline; it
imports nothing else of sohoa. Three sources agree or correct each other:

- the pages: a new component starts at a citizen-ID copy (its QR, or the card's all-caps title),
  at an all-caps document title near the top (TỜ KHAI, ĐƠN ĐỀ NGHỊ, GIẤY CHỨNG NHẬN, QUYẾT ĐỊNH,
  BIÊN BẢN, SƠ ĐỒ ...), at the national motto block, or where the paper size changes; a page with
  none of these continues the component before it, and so does a blank page;
- the receipt's item 1 (`listed`): each component is matched to the listed document whose name
  is nearest to its title (accents folded, fuzzy), which also names untitled ones;
- a person (review): `from_starts` builds the components from the start pages they chose.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from rapidfuzz import fuzz

TYPES = ("receipt", "id_card", "form", "certificate", "decision", "minutes", "plan", "contract",
         "other")

# Title openings (folded) -> component type; the longest opening that a title starts with wins.
TITLE_TYPES: list[tuple[str, str]] = [
    ("giay tiep nhan ho so", "receipt"),
    ("phieu tiep nhan", "receipt"),
    ("to khai", "form"),
    ("don ", "form"),
    ("phieu ", "form"),
    ("ban khai", "form"),
    ("ban cam ket", "form"),
    ("giay de nghi", "form"),
    ("giay chung nhan", "certificate"),
    ("giay phep", "certificate"),
    ("giay khai sinh", "certificate"),
    ("giay chung tu", "certificate"),
    ("giay xac nhan", "certificate"),
    ("chung chi", "certificate"),
    ("chung nhan", "certificate"),
    ("trich luc", "certificate"),
    ("so ho khau", "certificate"),
    ("van bang", "certificate"),
    ("bang tot nghiep", "certificate"),
    ("quyet dinh", "decision"),
    ("bien ban", "minutes"),
    ("so do", "plan"),
    ("ban ve", "plan"),
    ("mat bang", "plan"),
    ("hop dong", "contract"),
    ("van ban", "other"),
    ("giay uy quyen", "other"),
    ("giay ", "other"),
    ("thong bao", "other"),
    ("ban sao", "other"),
]
_ID_CARD_WORDS = ("can cuoc", "chung minh nhan dan", "ho chieu", "cccd", "cmnd")
_MOTTO = ("cong hoa xa hoi chu nghia viet nam", "doc lap tu do hanh phuc")
# Names on the receipt start with the form they were given in: not part of the document's name.
_FORM_PREFIX = re.compile(r"^(ban\s+sao\s+chung\s+thuc|ban\s+sao|ban\s+chinh|ban\s+photo)\s+")
TOP_FRACTION = 0.4  # a title is "near the top" within this share of the page height
TOP_LINES = 10  # ... or, without line positions, among the first lines read
SIZE_TOLERANCE_IN = 0.4  # paper sizes closer than this (inches, each side) are the same
MATCH_THRESHOLD = 62.0  # rapidfuzz score (0-100) under which a title is not a listed name
# The receipt is one national form (Thông tư 01/2018/TT-VPCP, mẫu số 01): its component is named
# as the form is, not as OCR read its title, whose end the code stamped at the top right may cover
# ('kết quz', 'kết qu', 'kết ql' on four of the benchmark's six receipts). A title read closer to
# the form's name than this (rapidfuzz ratio of the folded titles) is the form's.
RECEIPT_TITLE = "Giấy tiếp nhận hồ sơ và hẹn trả kết quả"
RECEIPT_TITLE_MATCH = 90.0
# A side of an ID card copied on a page reads as a dozen lines at most (the front: its name,
# dates and places; the back: features, date, issuer and the machine-readable lines). An untitled
# page with more text after an ID-card copy is a document of its own, not the card's other side.
ID_SIDE_LINES = 12


def fold(text: str) -> str:
    """Accent-insensitive key ('Tờ khai' -> 'to khai'), as ocr/text.py folds: NFD, marks
    dropped, đ by hand (and Ð, which OCR reads for it), lowercase; punctuation becomes space,
    spaces collapse."""
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    stripped = stripped.replace("đ", "d").replace("Đ", "D").replace("Ð", "D").lower()
    return " ".join(re.sub(r"[^\w]+", " ", stripped).split())


@dataclass(frozen=True)
class PageInput:
    """What one page shows, as the page stages found it."""

    lines: Sequence[str] = ()
    line_confidence: Sequence[float] = ()
    line_tops: Sequence[float] = ()  # each line's top as a share of the page height (0 = top)
    size: tuple[float, float] | None = None  # width, height in inches, as read (upright)
    blank: bool = False
    qr: Sequence[str] = ()  # barcode payloads


@dataclass(frozen=True)
class Listed:
    """One row of the receipt's item 1: name, form (bản chính / bản sao / ...), count."""

    name: str
    form: str = ""
    count: int = 1


@dataclass
class Component:
    """Pages `start`..`end` (inclusive, positions in the page list given) form one document."""

    start: int
    end: int
    type: str
    title: str
    confidence: float
    listed_as: str | None = None  # the receipt's name of the document, when matched
    signal: str = ""  # what started it: first, id_qr, id_layout, title, motto,
    # after_id_card, size, person
    citizen_id: str | None = None

    @property
    def pages(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 3)
        return d


@dataclass
class Split:
    components: list[Component]
    missing: list[Listed] = field(default_factory=list)  # listed on the receipt, not found
    listed: list[Listed] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every document the receipt lists was found; False when it lists none (then nothing
        says the dossier is whole)."""
        return bool(self.listed) and not self.missing


@dataclass(frozen=True)
class _Start:
    type: str
    title: str
    signal: str
    strength: float
    citizen_id: str | None = None


def citizen_id_of(payload: str) -> str | None:
    """The 12-digit number of a citizen-ID QR (`id|old id|name|dob|sex|address|issue date`),
    recognised by content; None for any other payload."""
    parts = [p.strip() for p in payload.split("|")]
    if len(parts) < 6:
        return None
    ids = [p for p in parts if re.fullmatch(r"\d{12}", p)]
    if not ids or not any(fold(p) in ("nam", "nu") for p in parts):
        return None
    return ids[0]


def _is_caps(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 4 and sum(c.isupper() for c in letters) >= 0.85 * len(letters)


def _top_lines(page: PageInput) -> list[tuple[int, str]]:
    out = []
    for i, line in enumerate(page.lines):
        if i < len(page.line_tops):
            if page.line_tops[i] > TOP_FRACTION:
                continue
        elif i >= TOP_LINES:
            break
        out.append((i, line))
    return out


def title_type(title: str) -> str | None:
    """The component type an all-caps title names, None if it opens no known kind."""
    key = fold(title) + " "
    if key.startswith(_ID_CARD_WORDS):
        return "id_card"
    best: tuple[int, str] | None = None
    for opening, kind in TITLE_TYPES:
        if key.startswith(opening) and (best is None or len(opening) > best[0]):
            best = (len(opening), kind)
    if best is None:
        return None
    if any(w in key for w in _ID_CARD_WORDS) and best[1] in ("other", "certificate"):
        return "id_card"
    return best[1]


def _title(page: PageInput) -> tuple[str, str, float] | None:
    """(title, type, OCR confidence) of the first all-caps title line near the top; a title
    broken over two lines is joined with the all-caps line after it."""
    top = _top_lines(page)
    for k, (i, line) in enumerate(top):
        if not _is_caps(line) or any(m in fold(line) for m in _MOTTO):
            continue
        kind = title_type(line)
        if kind is None:
            continue
        text = line.strip(" .:-|")
        if k + 1 < len(top):
            j, nxt = top[k + 1]
            if j == i + 1 and _is_caps(nxt) and not any(m in fold(nxt) for m in _MOTTO) \
                    and len(nxt) > 3:
                text = f"{text} {nxt.strip(' .:-|')}"
        conf = page.line_confidence[i] if i < len(page.line_confidence) else 0.9
        return text, kind, conf
    return None


def _has_motto(page: PageInput) -> bool:
    return any(fold(line).startswith(_MOTTO) for _, line in _top_lines(page))


def _same_size(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return True
    return abs(a[0] - b[0]) <= SIZE_TOLERANCE_IN and abs(a[1] - b[1]) <= SIZE_TOLERANCE_IN


def _start(page: PageInput, previous: PageInput | None, current: Component | None) -> _Start | None:
    """Why this page starts a component, or None if it continues the one before."""
    cid = next((c for c in map(citizen_id_of, page.qr) if c), None)
    titled = _title(page)
    if cid:
        if current is not None and current.type == "id_card" and \
                (current.citizen_id in (None, cid)) and current.end - current.start < 1:
            return None  # the other side of the same card
        return _Start("id_card", "Căn cước công dân", "id_qr", 0.99, cid)
    if titled is not None:
        text, kind, conf = titled
        if kind == "id_card":
            if current is not None and current.type == "id_card" and current.end == current.start:
                return None
            return _Start("id_card", _pretty(text), "id_layout", 0.9 * max(conf, 0.5))
        if kind == "receipt" and current is not None and current.type == "receipt":
            return None  # a second copy of the receipt
        strength = 0.97 if _has_motto(page) else 0.9
        return _Start(kind, _named(text, kind), "title", strength * max(conf, 0.6))
    if _has_motto(page):
        return _Start("other", "", "motto", 0.75)
    if current is not None and current.type == "id_card" and len(page.lines) > ID_SIDE_LINES:
        return _Start("other", "", "after_id_card", 0.7)  # a page of text: no card's side
    if previous is not None and not _same_size(page.size, previous.size):
        return _Start("other", "", "size", 0.6)
    return None


def _named(title: str, kind: str) -> str:
    """A component's title as a person writes it; a receipt's, the form's own name
    (RECEIPT_TITLE) when what was read is that name misread at a letter or two."""
    if kind == "receipt" and fuzz.ratio(fold(title), fold(RECEIPT_TITLE)) >= RECEIPT_TITLE_MATCH:
        return RECEIPT_TITLE
    return _pretty(title)


def _pretty(title: str) -> str:
    """'TỜ KHAI ĐĂNG KÝ KHAI SINH' -> 'Tờ khai đăng ký khai sinh' (as a person writes it)."""
    text = " ".join(title.split()).lower()
    return text[:1].upper() + text[1:]


def split(pages: Sequence[PageInput], listed: Sequence[Listed] = ()) -> Split:
    """The components of a dossier's pages, the first being its receipt, each matched to the
    receipt's listed documents; what the receipt lists and no component matches is `missing`."""
    components: list[Component] = []
    previous: PageInput | None = None
    for n, page in enumerate(pages):
        current = components[-1] if components else None
        if current is None:
            titled = _title(page)
            kind = "receipt" if titled is None or titled[1] == "receipt" else titled[1]
            title = _named(titled[0], kind) if titled else RECEIPT_TITLE
            components.append(Component(n, n, kind, title, 0.99 if kind == "receipt" else 0.8,
                                        signal="first"))
        elif page.blank:
            current.end = n
            continue  # a blank back says nothing of its size or layout
        else:
            why = _start(page, previous, current)
            if why is None:
                current.end = n
            else:
                components.append(Component(n, n, why.type, why.title, why.strength,
                                            signal=why.signal, citizen_id=why.citizen_id))
        previous = page
    return match(components, list(listed))


def from_starts(pages: Sequence[PageInput], starts: Sequence[tuple[int, str, str]],
                listed: Sequence[Listed] = ()) -> Split:
    """Components as a person set them: (start position, type, title) each, positions
    increasing from 0; their confidence is 1."""
    components = []
    for k, (start, kind, title) in enumerate(starts):
        end = starts[k + 1][0] - 1 if k + 1 < len(starts) else len(pages) - 1
        components.append(Component(start, end, kind, title, 1.0, signal="person"))
    return match(components, list(listed), by_person=True)


def _name_key(name: str) -> str:
    return _FORM_PREFIX.sub("", fold(name))


def _listed_kind(item: Listed) -> str | None:
    key = fold(item.name)
    if any(w in key for w in _ID_CARD_WORDS):
        return "id_card"
    return title_type(_name_key(item.name))


# Words every name uses: they say little of which document it is.
_GENERIC_WORDS = ("giay chung nhan don de nghi dang ky cap ban sao chinh cua theo mau da nop ho so "
                  "nguoi yeu cau to khai ve viec cho va voi tai the duoc kem bo")
_GENERIC = frozenset(_GENERIC_WORDS.split())
_ABBREVIATIONS = {"qsdd": "quyen su dung dat", "qsd": "quyen su dung", "gcn": "giay chung nhan",
                  "cccd": "can cuoc cong dan", "cmnd": "chung minh nhan dan", "dk": "dang ky",
                  "ubnd": "uy ban nhan dan", "hkd": "ho kinh doanh"}


def _words(name: str) -> list[str]:
    return " ".join(_ABBREVIATIONS.get(w, w) for w in _name_key(name).split()).split()


def _score(component: Component, item: Listed) -> float:
    """How well a component fits a listed document, 0-100: the fuzzy likeness of the names,
    half of it from the telling words they share (not the generic ones), with a bonus when the
    title and the name open with the same kind of document and a penalty when they differ."""
    kind = _listed_kind(item)
    if component.type == "id_card":
        return 95.0 if kind == "id_card" else 0.0
    if kind == "id_card" or component.type == "receipt" or not component.title:
        return 0.0
    a, b = _words(component.title), _words(item.name)
    telling_b = [w for w in b if w not in _GENERIC] or b
    shared = set(a) & set(telling_b)
    recall = sum(1 for w in telling_b if w in shared) / len(telling_b)
    score = 0.5 * fuzz.token_set_ratio(" ".join(a), " ".join(b)) + 50 * recall
    if kind is not None and kind != "other" and component.type != "other":
        score += 10 if kind == component.type else -25
    return max(0.0, min(100.0, score))


def match(components: list[Component], listed: list[Listed], by_person: bool = False) -> Split:
    """Pairs components with listed documents, best scores first (one each); components left
    without a title take, in order, the listed documents left. `by_person`: the components are a
    person's, whose types, titles and confidence stay as given."""
    pairs = sorted(((_score(c, item), ci, li) for ci, c in enumerate(components)
                    for li, item in enumerate(listed)), reverse=True)
    taken_c: set[int] = set()
    taken_l: set[int] = set()
    for score, ci, li in pairs:
        if score < MATCH_THRESHOLD or ci in taken_c or li in taken_l:
            continue
        taken_c.add(ci)
        taken_l.add(li)
        c = components[ci]
        c.listed_as = listed[li].name
        if by_person:
            continue  # a person's components keep their type and confidence
        c.confidence = min(1.0, c.confidence * (0.85 + 0.15 * score / 100))
        if c.type == "other" and (kind := _listed_kind(listed[li])):
            c.type = kind
    left = [li for li in range(len(listed)) if li not in taken_l]
    for ci, c in enumerate(components):
        if ci in taken_c or c.type == "receipt" or c.title or not left or by_person:
            continue
        li = left.pop(0)  # an untitled component (size change, motto only): next in order
        c.listed_as = listed[li].name
        c.type = _listed_kind(listed[li]) or c.type
        c.confidence *= 0.8
        taken_l.add(li)
    for c in components:
        if not c.title and not by_person:
            c.title = c.listed_as or {"receipt": "Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
                                      "id_card": "Căn cước công dân"}.get(c.type, "Tài liệu")
    missing = [item for li, item in enumerate(listed) if li not in taken_l]
    return Split(components, missing, listed)
