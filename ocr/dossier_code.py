"""Dossier codes (mã hồ sơ, Circular 01/2018 art. 19) found in barcodes and OCR text.

The grammar is configuration: offices differ. The default is DOMAIN.md's tolerant grammar.
"""

import re
from dataclasses import dataclass

STRICT = (
    r"^(?P<agency>\d{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[A-Z]\d{2})"
    r"-(?P<date>\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01]))-(?P<seq>\d{4})$"
)
TOLERANT = (
    r"^(?P<agency>(?=[0-9A-Z.]{3,35}-)(?:[A-Z]\d{2}(?:\.[0-9A-Z]{2,3}){0,4}"
    r"|(?:[0-9A-Z]{2,3}\.){1,4}[A-Z]\d{2}))"
    r"-(?P<date>(?:\d{2})?\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))-(?P<seq>\d{4,14})$"
)

# Candidate substrings: anything shaped like AGENCY-DATE-SEQ inside a URL or an OCR line.
_CANDIDATE = re.compile(r"[0-9A-Za-z.]{3,35}-[0-9OoIl|]{6,8}-[0-9OoIl|]{4,14}")
_DIGIT_REPAIR = str.maketrans({"O": "0", "o": "0", "I": "1", "l": "1", "|": "1"})


@dataclass(frozen=True)
class DossierCode:
    code: str
    agency: str
    date: str
    seq: str


class DossierCodeGrammar:
    """Matches whole codes, finds them inside longer strings, and repairs OCR digit confusions."""

    def __init__(self, pattern: str = TOLERANT) -> None:
        self._regex = re.compile(pattern)

    def match(self, text: str) -> DossierCode | None:
        m = self._regex.match(text.strip().upper())
        if not m:
            return None
        return DossierCode(m.group(0), m.group("agency"), m.group("date"), m.group("seq"))

    def find(self, text: str) -> DossierCode | None:
        """A code standing alone or inside a longer payload (a URL, a `Mã hồ sơ:` line)."""
        direct = self.match(text)
        if direct:
            return direct
        for candidate in _CANDIDATE.findall(text):
            found = self.match(candidate.strip("."))
            if found:
                return found
        return None

    def find_repaired(self, text: str) -> DossierCode | None:
        """Like find, after mapping O->0 and I/l/|->1 in the date and sequence parts (OCR)."""
        found = self.find(text)
        if found:
            return found
        for candidate in _CANDIDATE.findall(text):
            agency, date, seq = candidate.rsplit("-", 2)
            repaired = f"{agency.upper()}-{date.translate(_DIGIT_REPAIR)}-{seq.translate(_DIGIT_REPAIR)}"
            found = self.match(repaired.strip("."))
            if found:
                return found
        return None
