"""Vietnamese text normalization: NFC for storage, a folded key for accent-insensitive search."""

import re
import unicodedata

_SPACES = re.compile(r"[ \t\u00a0]+")


def nfc(text: str) -> str:
    """NFC, because OCR and barcodes may hand us decomposed letters (ệ = e + U+0323 + U+0302)."""
    return unicodedata.normalize("NFC", text)


# Vietnamese marks are all combining diacritics of U+0300..U+036F: removed by one translate.
_MARKS = {c: None for c in range(0x300, 0x370)} | {ord("đ"): "d", ord("Đ"): "D"}


def fold(text: str) -> str:
    """Accent-insensitive key: 'Nguyễn Văn Đức' -> 'nguyen van duc'. Unicode does not decompose đ."""
    if text.isascii():
        return text.lower()
    stripped = unicodedata.normalize("NFD", text).translate(_MARKS)
    if not stripped.isascii():  # marks of other scripts, if any
        stripped = "".join(c for c in stripped if not unicodedata.combining(c))
    return stripped.lower()


class _OneCharFold(dict[int, str]):
    """Each character's fold cut to one character (a lone mark stays itself), looked up by
    str.translate: made the first time a character is met."""

    def __missing__(self, code: int) -> str:
        c = chr(code)
        self[code] = folded = (fold(c) or c)[:1]
        return folded


_ONE_CHAR_FOLD = _OneCharFold()


def fold_aligned(text: str) -> str:
    """fold(), one character for each character, so that a position in it is the same position
    in `text` (a match found in the folded text is cut out of the text itself). Every OCR line
    of a batch and every unit of the official lists is folded so: a table lookup per character."""
    if text.isascii():
        return text.lower()
    return text.translate(_ONE_CHAR_FOLD)


def clean_line(text: str) -> str:
    """NFC with runs of spaces collapsed; what a person would retype."""
    return _SPACES.sub(" ", nfc(text)).strip()
