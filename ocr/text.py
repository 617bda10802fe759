"""Vietnamese text normalization: NFC for storage, a folded key for accent-insensitive search."""

import re
import unicodedata

_SPACES = re.compile(r"[ \t\u00a0]+")


def nfc(text: str) -> str:
    """NFC, because OCR and barcodes may hand us decomposed letters (ệ = e + U+0323 + U+0302)."""
    return unicodedata.normalize("NFC", text)


def fold(text: str) -> str:
    """Accent-insensitive key: 'Nguyễn Văn Đức' -> 'nguyen van duc'. Unicode does not decompose đ."""
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.replace("đ", "d").replace("Đ", "D").lower()


def clean_line(text: str) -> str:
    """NFC with runs of spaces collapsed; what a person would retype."""
    return _SPACES.sub(" ", nfc(text)).strip()
