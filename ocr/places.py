"""Addresses checked against the official list of administrative units.

An address on a receipt or an ID card ends with the units it lies in: since the reorganization of
1 July 2025 a ward or commune and a province ("xã Chiềng Lề, tỉnh Sơn La"), before it a ward, a
district and a province. Most ID cards and every dossier received before then still carry the
older form, so both lists are known: the current one from the maintained `vietnam-provinces`
package, the former one frozen in `ocr/data/units-before-2025.json.gz` (scripts/units_before_2025.py).

OCR misreads tone marks ("Chiềng Lé" for "Chiềng Lề") and now and then a letter. A unit's name
that matches the list but for its marks, or but for one letter of a long name, takes the list's
spelling; the rest of the address (house number, street, hamlet) is left as read. An address in
which no ward of either list can be found is left as read: the caller lowers its confidence.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from ocr.text import fold, fold_aligned, nfc

CURRENT = "2025"  # the list in force since 1 July 2025
FORMER = "before-2025"

# A unit's kind as written before its name (folded), full or abbreviated ("P.", "TP.", "Q.1").
_WARD_KINDS = r"phuong|xa|thi\s*tran|dac\s*khu|p|x|tt"
_DISTRICT_KINDS = r"quan|huyen|thi\s*xa|thanh\s*pho|tp|q|h|tx"
_PROVINCE_KINDS = r"tinh|thanh\s*pho|tp|t"
_KIND = re.compile(rf"^\s*(?P<kind>{_WARD_KINDS}|{_DISTRICT_KINDS}|{_PROVINCE_KINDS})"
                   r"(?:\s*\.\s*|\s+)(?=\w)")
_KIND_WORDS = {"p": "phuong", "x": "xa", "tt": "thi tran", "q": "quan", "h": "huyen",
               "tx": "thi xa", "tp": "thanh pho", "t": "tinh"}
_WARD = {"phuong", "xa", "thi tran", "dac khu"}
_DISTRICT = {"quan", "huyen", "thi xa", "thanh pho"}
_PROVINCE = {"tinh", "thanh pho"}
_ALIASES = {"hcm": "ho chi minh", "hn": "ha noi"}  # "TP. HCM"
_SPLIT = re.compile(r"\s*(?:[,;\n]|\s-\s)\s*")
FUZZY_MIN_LENGTH = 6  # a folded name this long may differ from the list by one letter


@dataclass(frozen=True, slots=True)
class Unit:
    name: str  # as published, with its kind: "Xã Chiềng Lề", "Thành phố Hà Nội", "Sơn La"
    code: int  # the statistics office's code
    kind: str  # folded kind word: "xa", "phuong", "quan", "tinh", "thanh pho", ...; "" if none
    bare: str  # the name without its kind: "Chiềng Lề"
    key: str  # the bare name folded, for comparing: "chieng le"


def unit(name: str, code: int, kind: str | None = None) -> Unit:
    name = _squash(name)
    folded = fold_aligned(name)
    m = _KIND.match(folded)
    bare = name[m.end():].strip() if m else name
    return Unit(name, code, kind if kind is not None else _kind_word(m), bare, _key(fold(bare)))


@dataclass(frozen=True)
class Place:
    """A ward or commune of one of the lists, with the units it lies in."""

    ward: Unit
    province: Unit
    district: Unit | None  # the former list only
    list: str  # CURRENT or FORMER

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"list": self.list, "ward": self.ward.name,
                                  "ward_code": self.ward.code}
        if self.district is not None:
            out |= {"district": self.district.name, "district_code": self.district.code}
        return out | {"province": self.province.name, "province_code": self.province.code}


@dataclass(frozen=True)
class AddressCheck:
    value: str  # the address, the units' names spelled as the list spells them
    place: Place | None  # None: no ward of either list found in it
    repaired: bool  # value differs from the address as read


@dataclass(frozen=True)
class _Segment:
    """One comma-separated part of an address: its kind as written and its name."""

    kind: str | None  # folded kind word, None when the part starts with none
    read: str  # the name as read (kind removed)
    key: str  # the name folded
    start: int  # the name's span in the address
    end: int


def check(address: str) -> AddressCheck:
    """The address with its ward's, district's and province's names checked against the lists."""
    text = _squash(nfc(address))
    segments = _segments(text)
    for name in (CURRENT, FORMER):
        found = _match(segments, lists()[name])
        if found is not None:
            place, spans = found
            value = _respell(text, spans)
            return AddressCheck(value, place, value != text)
    return AddressCheck(text, None, False)


# ---- the lists --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Province:
    unit: Unit
    districts: tuple[tuple[Unit | None, tuple[Unit, ...]], ...]  # (None, wards) in the current list


_Triple = tuple[_Province, Unit | None, Unit]  # a ward with its province and district


def _triples(provinces: Iterable[_Province]) -> list[_Triple]:
    return [(p, d, w) for p in provinces for d, ws in p.districts for w in ws]


def _districts(triples: list[_Triple]) -> list[Unit]:
    return list(dict.fromkeys(d for _p, d, _w in triples if d))


@dataclass(frozen=True)
class UnitList:
    """One list, with what every address looked up in it reads whole, made once (an address
    naming no province searches every ward)."""

    provinces: tuple[_Province, ...]
    province_units: list[Unit]
    triples: list[_Triple]
    districts: list[Unit]  # each once, in the list's order; none in the current list
    wards: list[Unit]

    @classmethod
    def of(cls, provinces: Iterable[_Province]) -> UnitList:
        provinces = tuple(provinces)
        triples = _triples(provinces)
        return cls(provinces, [p.unit for p in provinces], triples, _districts(triples),
                   [w for _p, _d, w in triples])


_LISTS_LOCK = threading.Lock()


def lists() -> dict[str, UnitList]:
    """Both lists, read once per process (a few MB; only the fields stage needs them). A second
    thread asking while the first reads them waits for that reading (ingest prepares them on a
    spare thread while a batch's pages are read)."""
    with _LISTS_LOCK:
        return _read_lists()


@cache
def _read_lists() -> dict[str, UnitList]:
    return {CURRENT: UnitList.of(_current()), FORMER: UnitList.of(_former())}


def _current() -> Iterable[_Province]:
    # Found, not imported: the package builds enums of every unit on import (0.15 s), and only
    # its data file is read here.
    spec = importlib.util.find_spec("vietnam_provinces")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("vietnam_provinces")
    source = Path(spec.origin).parent / "data" / "nested-divisions.json"
    for p in json.loads(source.read_text(encoding="utf-8")):
        kind = "thanh pho" if fold(p["division_type"]).startswith("thanh pho") else "tinh"
        wards = tuple(unit(w["name"], w["code"]) for w in p["wards"])
        yield _Province(unit(p["name"], p["code"], kind), ((None, wards),))


def _former() -> Iterable[_Province]:
    source = resources.files("ocr") / "data" / "units-before-2025.json.gz"
    for name, code, districts in json.loads(gzip.decompress(source.read_bytes())):
        yield _Province(unit(name, code), tuple(
            (unit(d_name, d_code), tuple(unit(w_name, w_code) for w_name, w_code in wards))
            for d_name, d_code, wards in districts))


# ---- reading an address -----------------------------------------------------------------------


_SPACES = re.compile(r"\s+")
_LEADING_ZEROS = re.compile(r"\b0+(\d)")


def _squash(s: str) -> str:
    """Runs of white space as one space, none at the ends (as `\\s+` finds them)."""
    return " ".join(s.split())


def _kind_word(m: re.Match[str] | None) -> str:
    if m is None:
        return ""
    word = _squash(m["kind"])
    return _KIND_WORDS.get(word, word)


def _key(folded: str) -> str:
    """Compared form of a folded name: spaces squashed, numbers without leading zeros (P.01)."""
    key = _squash(folded).strip(" .")
    key = _ALIASES.get(key, key)
    return _LEADING_ZEROS.sub(r"\1", key) if "0" in key else key


def _segments(text: str) -> list[_Segment]:
    out = []
    start = 0
    for part in [*_SPLIT.finditer(text), None]:
        end = part.start() if part else len(text)
        piece = text[start:end]
        folded = fold_aligned(piece)
        m = _KIND.match(folded)
        offset = m.end() if m else len(piece) - len(piece.lstrip())
        read = piece[offset:].rstrip(" .")
        if read:
            out.append(_Segment(_kind_word(m) if m else None, read, _key(fold(read)),
                                start + offset, start + offset + len(read)))
        if part:
            start = part.end()
    return out


def _match(segments: list[_Segment], units: UnitList
           ) -> tuple[Place, list[tuple[_Segment, Unit]]] | None:
    """The ward the address names in this list, with the segments to respell; None if none.

    From the end: the province (when named), then the district (former list; when named), then
    the ward: the last part before them that names one. A part that names a district or a
    province this list does not have ends the search: the address is of the other list."""
    rest, pairs, districts, wards = segments, units.triples, units.districts, units.wards
    spans: list[tuple[_Segment, Unit]] = []
    if rest:
        named = _best(rest[-1], units.province_units, _PROVINCE)
        if named:
            chosen = _ids(named)
            pairs = _triples(p for p in units.provinces if id(p.unit) in chosen)
            districts, wards = _districts(pairs), [w for _p, _d, w in pairs]
            spans.append((rest[-1], named[0]))
            rest = rest[:-1]
    if rest and districts:
        named = _best(rest[-1], districts, _DISTRICT)
        if named:  # a district's name may recur in several provinces: the ward will tell
            chosen = _ids(named)
            pairs = [t for t in pairs if id(t[1]) in chosen]
            wards = [w for _p, _d, w in pairs]
            spans.append((rest[-1], named[0]))
            rest = rest[:-1]
    if rest and rest[-1].kind is not None and rest[-1].kind not in _WARD:
        return None
    for segment in reversed(rest):
        if segment.kind is not None and segment.kind not in _WARD:
            continue
        named = _best(segment, wards, _WARD, exact_only=segment.kind is None)
        chosen = _ids(named)
        owners = [(p, d, w) for p, d, w in pairs if id(w) in chosen]
        if len(owners) == 1:
            p, d, ward = owners[0]
            return Place(ward, p.unit, d, CURRENT if d is None else FORMER), [*spans, (segment, ward)]
        if owners:
            return None  # a name shared by wards of several districts or provinces
        if segment.kind is not None:
            return None  # the ward named is not in this list
    return None


def _ids(units: list[Unit]) -> set[int]:
    """The units as the list's own objects: a Unit compared by value compares every field, which
    took 60,000 comparisons an address when filtering the list's (province, district, ward)s."""
    return {id(u) for u in units}


def _best(segment: _Segment, units: list[Unit], kinds: set[str],
          exact_only: bool = False) -> list[Unit]:
    """The units the segment may name: folded name equal (or, for a long name, one letter off),
    kind as written compatible, and of these the ones spelled closest to what was read, marks
    included. Several only when they share that spelling (namesakes); none when two spellings
    are as close ("Chieng Le" read without marks, two units apart by theirs)."""
    if segment.kind is not None and segment.kind not in kinds:
        return []

    def compatible(u: Unit) -> bool:
        return segment.kind is None or not u.kind or u.kind == segment.kind

    same = [u for u in units if u.key == segment.key and compatible(u)]
    if not same and not exact_only and len(segment.key) >= FUZZY_MIN_LENGTH:
        same = [u for u in units if compatible(u)
                and Levenshtein.distance(u.key, segment.key, score_cutoff=1) <= 1]
        if len({u.key for u in same}) > 1:
            return []  # two names one letter away: guessing would be worse than not
    if not same:
        return []
    read = segment.read.lower()
    distance = {u: Levenshtein.distance(u.bare.lower(), read) for u in same}
    closest = [u for u in same if distance[u] == min(distance.values())]
    return closest if len({u.bare for u in closest}) == 1 else []


def _respell(text: str, spans: list[tuple[_Segment, Unit]]) -> str:
    """The address with each matched name spelled as the list spells it; kind words, the parts
    not matched and abbreviations ("HCM") as read."""
    out = text
    for segment, matched in sorted(spans, key=lambda s: s[0].start, reverse=True):
        if segment.read != matched.bare and fold(segment.read).lower() != segment.key:
            continue  # an alias or a number written with zeros: the reading is fine
        if segment.read != matched.bare:
            out = out[:segment.start] + matched.bare + out[segment.end:]
    return out
