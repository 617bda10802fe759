"""Vietnamese text: NFC storage form and the accent-insensitive key."""

import unicodedata

from ocr.text import clean_line, fold, nfc


def test_decomposed_text_becomes_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn Đức")
    assert nfd != "Nguyễn Văn Đức"
    assert nfc(nfd) == "Nguyễn Văn Đức"


def test_fold_drops_marks_and_maps_d_stroke() -> None:
    assert fold("Nguyễn Văn Đức, phường Điện Biên") == "nguyen van duc, phuong dien bien"


def test_clean_line_collapses_spaces() -> None:
    assert clean_line("  Mã  hồ\u00a0sơ:   X ") == "Mã hồ sơ: X"
