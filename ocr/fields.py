"""Field extraction: receipt lines keyed on their label text, citizen-ID QR payloads by content.

Offices add, drop and renumber receipt items, so labels are found by (accent-folded) text anywhere
in a line, never by position; a value runs to the end of the line or to the next known label.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache

from ocr.dossier_code import DossierCodeGrammar
from ocr.text import clean_line, fold


@dataclass(frozen=True)
class Field:
    value: str
    page: int  # 0-based page index in the input batch
    confidence: float  # 0..1
    source: str  # barcode | ocr

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 3)
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


def fold_aligned(text: str) -> str:
    """fold(), one output character per input character, so positions map back to the original."""
    return "".join(map(_fold_char, text))


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    """Cached: every OCR line of every page is folded (a tenth of a batch's finishing time)."""
    return (fold(c) or c)[:1]


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
