"""Field extraction: receipt lines keyed on their label text, citizen-ID QR payloads by content.

Offices add, drop and renumber receipt items, so labels are found by (accent-folded) text anywhere
in a line, never by position; a value runs to the end of the line or to the next known label.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date
from itertools import pairwise
from typing import Any

from ocr.dossier_code import DossierCodeGrammar
from ocr.text import clean_line, fold, fold_aligned


@dataclass(frozen=True)
class Field:
    value: str
    page: int  # 0-based page index in the input batch
    confidence: float  # 0..1
    source: str  # barcode | ocr
    # A field that is a list (components_listed): its rows; `value` says the same in words.
    items: tuple[dict[str, Any], ...] | None = None
    # An address: the ward, district and province of the official list it names (ocr/places.py).
    place: dict[str, Any] | None = None
    # What was read, when the value is not that: an address whose units were respelled.
    read_as: str | None = None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 3)
        for optional in ("items", "place", "read_as"):
            if d[optional] is None:
                del d[optional]
        if self.items is not None:
            d["items"] = [dict(i) for i in self.items]
        return d


# label -> field name; matched on the folded line (no accents, lowercase).
RECEIPT_LABELS: list[tuple[str, str]] = [
    ("dossier_id", r"ma\s*ho\s*s[oơ]"),
    ("applicant_name", r"tiep\s*nhan\s*ho\s*so\s*cua"),
    ("address", r"dia\s*chi"),
    ("phone", r"so\s*dien\s*thoai|dien\s*thoai"),
    ("email", r"e-?mail|thu\s*dien\s*tu"),
    ("procedure", r"noi\s*dung\s*yeu\s*cau(\s*giai\s*quyet)?|ten\s*thu\s*tuc"),
    ("received_at", r"thoi\s*gian\s*nhan\s*ho\s*so|ngay\s*nhan\s*ho\s*so"),
    ("due_at", r"thoi\s*gian\s*tra\s*ket\s*qua(\s*giai\s*quyet\s*ho\s*so)?|ngay\s*hen\s*tra"),
]
_LABEL_RE = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in RECEIPT_LABELS)
                       + r"|(?P<_other>\b(?:so\s*luong|thanh\s*phan|dang\s*ky\s*nhan)\b)")
_PHONE = re.compile(r"(?:\+?84|0)[\d .-]{8,13}\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DMY_WORDS = re.compile(
    r"(?:(?P<h>\d{1,2})\s*(?:gio|h|:)\s*(?P<m>\d{1,2})\s*(?:phut|p)?\s*[,;]?\s*)?"
    r"ngay\s*(?P<d>\d{1,2})\s*thang\s*(?P<mo>\d{1,2})\s*nam\s*(?P<y>\d{4})")
_DMY_SLASH = re.compile(
    r"(?:(?P<h>\d{1,2})\s*(?:gio|h|:)\s*(?P<m>\d{1,2})\s*(?:phut|p)?\s*[,;]?\s*(?:ngay\s*)?)?"
    r"(?P<d>\d{1,2})/(?P<mo>\d{1,2})/(?P<y>\d{4})")


def parse_datetime(text: str, tz: str = "+07:00") -> str | None:
    """'09 giờ 30 phút, ngày 14 tháng 04 năm 2023' or '09:30 14/04/2023' -> ISO 8601."""
    folded = fold(text).replace("O", "0")
    m = _DMY_WORDS.search(folded) or _DMY_SLASH.search(folded)
    if not m:
        return None
    try:
        day = date(int(m["y"]), int(m["mo"]), int(m["d"]))
    except ValueError:
        return None
    if m["h"] is None:
        return day.isoformat()
    h, mi = int(m["h"]), int(m["m"])
    if not (0 <= h < 24 and 0 <= mi < 60):
        return day.isoformat()
    return f"{day.isoformat()}T{h:02d}:{mi:02d}:00{tz}"


def _clean_value(value: str) -> str:
    return clean_line(value).strip(" :;,.-–")


def receipt_fields(lines: list[str], line_confidence: list[float], page: int,
                   grammar: DossierCodeGrammar, tz: str = "+07:00") -> dict[str, Field]:
    """Fields of a receipt page from its OCR lines (first occurrence of each label wins)."""
    found: dict[str, Field] = {}
    for i, line in enumerate(lines):
        folded = fold_aligned(line)
        matches = [m for m in _LABEL_RE.finditer(folded) if m.lastgroup]
        for j, m in enumerate(matches):
            name = m.lastgroup
            if name is None or name.startswith("_") or name in found:
                continue
            end = matches[j + 1].start() if j + 1 < len(matches) else len(line)
            raw = line[m.end():end]
            value = _interpret(name, raw, grammar, tz)
            if value:
                conf = line_confidence[i] if i < len(line_confidence) else 0.0
                found[name] = Field(value, page, conf, "ocr")
    return found


def _interpret(name: str, raw: str, grammar: DossierCodeGrammar, tz: str) -> str | None:
    value = _clean_value(raw)
    if not value:
        return None
    if name == "dossier_id":
        code = grammar.find_repaired(value.replace(" ", ""))
        return code.code if code else None
    if name == "phone":
        m = _PHONE.search(value)
        return re.sub(r"[ .-]", "", m.group(0)) if m else None
    if name == "email":
        m = _EMAIL.search(value)
        return m.group(0).lower() if m else None
    if name in ("received_at", "due_at"):
        return parse_datetime(value, tz)
    return value


# ---- citizen ID (CCCD) QR ----------------------------------------------------------------------

_ID12 = re.compile(r"^\d{12}$")
_DATE8 = re.compile(r"^\d{8}$")


def _ddmmyyyy(s: str) -> str | None:
    try:
        return date(int(s[4:]), int(s[2:4]), int(s[:2])).isoformat()
    except ValueError:
        return None


def citizen_id_fields(payload: str, page: int) -> dict[str, Field] | None:
    """Fields of a CCCD QR (`id|old id|name|dob|sex|address|issue date`, 6-8 fields seen),
    recognised by content rather than position; None if the payload is not one."""
    parts = [p.strip() for p in payload.split("|")]
    if len(parts) < 6:
        return None
    ids = [i for i, p in enumerate(parts) if _ID12.match(p)]
    sexes = [i for i, p in enumerate(parts) if fold(p) in ("nam", "nu")]
    if not ids or not sexes:
        return None
    values: dict[str, str] = {"citizen_id": parts[ids[0]]}
    sex_at = sexes[0]
    values["sex"] = "Nam" if fold(parts[sex_at]) == "nam" else "Nữ"
    before = [(i, p) for i, p in enumerate(parts[:sex_at]) if i > ids[0]]
    names = [p for _, p in before if re.search(r"[^\W\d_]", p)]
    dobs = [_ddmmyyyy(p) for _, p in before if _DATE8.match(p)]
    if names:
        values["full_name"] = clean_line(names[0])
    if dobs and dobs[-1]:
        values["date_of_birth"] = dobs[-1]
    after = parts[sex_at + 1:]
    addresses = [p for p in after if re.search(r"[^\W\d_]", p)]
    if addresses:
        values["permanent_address"] = clean_line(addresses[0])
    issued = [_ddmmyyyy(p) for p in after if _DATE8.match(p)]
    if issued and issued[0]:
        values["id_issue_date"] = issued[0]
    return {k: Field(v, page, 1.0, "barcode") for k, v in values.items()}


# ---- the receipt's item 1: the documents submitted ------------------------------------------

_LIST_START = re.compile(r"thanh\s*phan\s*ho\s*s[oơ]")
_LIST_END = re.compile(r"^\W*(?:\d\s*[.)]\s*)?(?:so\s*luong\s*ho\s*so|thoi\s*gian\s*(?:giai\s*quyet|nhan"
                       r"\s*ho\s*so|tra)|dang\s*ky\s*nhan\s*ket\s*qua|vao\s*so\s*theo\s*doi"
                       r"|nguoi\s*nop\s*ho\s*so\s*$|nguoi\s*nop\s*ho\s*so\s*\W*\s*nguoi\s*tiep)")
_HEADER = re.compile(r"ten\s*(loai\s*)?giay\s*to|hinh\s*thuc.*so\s*luong")
_BULLET = re.compile(r"^[\s|\[\](){}!]*(?:\d{1,2}(?:\s*[.,]\s*\d{1,2})*\s*[.):,]?|[-–•+*>]|[a-zđ]\s*\))"
                     r"[\s|\]]*")
_FORMS = re.compile(r"ban\s*sao\s*(?:co\s*)?chung\s*thuc|ban\s*sao|ban\s*chinh|ban\s*photo|ban\s*goc")
_COUNT = re.compile(r"(?:so\s*luong\s*:?\s*)?\b(\d{1,3})\s*(?:\(?\s*(?:ban|bo|to|trang|quyen)\b\s*\)?)?"
                    r"[\s.;:|)\]]*$")
_FORM_NAMES = {"ban chinh": "bản chính", "ban goc": "bản chính", "ban sao": "bản sao",
               "ban photo": "bản sao", "ban sao chung thuc": "bản sao chứng thực",
               "ban sao co chung thuc": "bản sao chứng thực"}


def visual_rows(words: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """OCR words regrouped into rows by their height on the page, left to right, a `|` where a
    wide gap separates them: a table Tesseract read column by column becomes rows again."""
    boxes = [w for w in words if str(w.get("text", "")).strip() and len(w.get("box", ())) == 4]
    if not boxes:
        return []
    heights = sorted(w["box"][3] - w["box"][1] for w in boxes)
    unit = max(heights[len(heights) // 2], 1)
    rows: list[list[dict[str, Any]]] = []
    for w in sorted(boxes, key=lambda w: (w["box"][1] + w["box"][3]) / 2):
        centre = (w["box"][1] + w["box"][3]) / 2
        if rows:
            row = rows[-1]
            mean = sum((v["box"][1] + v["box"][3]) / 2 for v in row) / len(row)
            if abs(centre - mean) <= 0.6 * unit:
                row.append(w)
                continue
        rows.append([w])
    out = []
    for row in rows:
        row.sort(key=lambda w: w["box"][0])
        text = str(row[0]["text"])
        for a, b in pairwise(row):
            text += (" | " if b["box"][0] - a["box"][2] > 1.8 * unit else " ") + str(b["text"])
        conf = sum(float(w.get("conf", 0)) for w in row) / len(row) / 100
        out.append((clean_line(text), conf))
    return out


def _listed_row(row: str) -> tuple[dict[str, Any] | None, bool]:
    """A row of the list as {name, form, count}; the bool says whether it opened with a number or
    bullet (else it may be the rest of the name above it, wrapped in its cell)."""
    folded = fold_aligned(row)
    bullet = _BULLET.match(folded)
    opened = bool(bullet and bullet.group(0).strip(" |[]"))
    start = bullet.end() if bullet else 0
    text, key = row[start:].replace("|", " "), folded[start:].replace("|", " ")
    count_m = _COUNT.search(key)
    count = int(count_m.group(1)) if count_m else 1
    end = count_m.start() if count_m else len(key)
    forms = [m for m in _FORMS.finditer(key[:end]) if m.start() > 0]
    form_m = forms[-1] if forms else _FORMS.match(key)
    form = _FORM_NAMES.get(re.sub(r"\s+", " ", form_m.group(0)), "") if form_m else ""
    name_end = forms[-1].start() if forms else end
    # Tesseract reads Đ as the look-alike Ð (U+00D0), a letter Vietnamese never uses.
    name = re.sub(r"^[^\w(]+", "", _clean_value(text[:name_end]).replace("\u00d0", "Đ"))
    name = name.strip(" ()[]|:;,.-–")
    trailing = re.search(r"[\s:;,(-]+(\d{1,3})\s*$", name)  # "Tờ khai: 01 bản chính"
    if trailing and not count_m:
        count_m, count = trailing, int(trailing.group(1))
        name = name[:trailing.start()].strip(" ()[]|:;,.-–")
    if not re.search(r"[^\W\d_]{2}", name):
        return None, opened
    return {"name": name, "form": form, "count": max(1, min(count, 99)) if count_m else 1}, opened


def listed_components(lines: list[str], line_confidence: list[float], page: int,
                      words: list[dict[str, Any]] | None = None) -> Field | None:
    """The receipt's `1. Thành phần hồ sơ nộp gồm:` list (a table or numbered lines) as a field:
    `items` holds {name, form, count} per document, `value` the same in one line; None when the
    page has no such list. With the OCR words, rows are rebuilt from their positions."""
    rows = visual_rows(words) if words else []
    if not rows:
        rows = [(line, line_confidence[i] if i < len(line_confidence) else 0.0)
                for i, line in enumerate(lines)]
    items: list[dict[str, Any]] = []
    confs: list[float] = []
    inside = False
    for row, conf in rows:
        folded = fold(row)
        if not inside:
            m = _LIST_START.search(folded)
            if m:
                inside = True
                rest = row[m.end():].split(":", 1)[-1] if ":" in row[m.end():] else ""
                if len(fold(rest).strip()) > 4:  # a first document on the same line
                    item, _ = _listed_row(rest)
                    if item:
                        items.append(item)
                        confs.append(conf)
            continue
        if _LIST_END.search(folded):
            break
        if _HEADER.search(folded) or not folded.strip(" |"):
            continue
        item, opened = _listed_row(row)
        if item is None:
            continue
        if not opened and items and not item["form"] and not _COUNT.search(fold(row)):
            items[-1]["name"] = f"{items[-1]['name']} {item['name']}"  # wrapped in its cell
            continue
        items.append(item)
        confs.append(conf)
    if not items:
        return None
    value = "; ".join(f"{i['name']} ({i['form'] or '?'}, {i['count']})" for i in items)
    return Field(value, page, sum(confs) / len(confs), "ocr", tuple(items))
