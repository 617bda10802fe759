"""Vietnamese text: NFC storage form and the accent-insensitive key."""

import unicodedata

from ocr.text import clean_line, fold, fold_aligned, nfc


def test_decomposed_text_becomes_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Văn Đức")
    assert nfd != "Nguyễn Văn Đức"
    assert nfc(nfd) == "Nguyễn Văn Đức"


def test_fold_drops_marks_and_maps_d_stroke() -> None:
    assert fold("Nguyễn Văn Đức, phường Điện Biên") == "nguyen van duc, phuong dien bien"


def test_clean_line_collapses_spaces() -> None:
    assert clean_line("  Mã  hồ\u00a0sơ:   X ") == "Mã hồ sơ: X"


def test_fold_aligned_folds_each_character_in_place() -> None:
    """Given Vietnamese text, then its aligned fold is fold()'s, character for character, so a
    match in it cuts the same span out of the text."""
    text = "Phường Chiềng Lề, TỈNH SƠN LA"
    folded = fold_aligned(text)
    assert folded == fold(text) and len(folded) == len(text)
    start = folded.index("chieng le")
    assert text[start:start + len("chieng le")] == "Chiềng Lề"


def test_fold_aligned_keeps_a_lone_mark_so_positions_hold() -> None:
    """Given text with a combining mark standing alone (decomposed input), then the mark keeps
    its place in the aligned fold, where fold() drops it."""
    text = "Le\u0300 ba"  # "Lè ba" decomposed
    assert len(fold_aligned(text)) == len(text) and fold_aligned(text).endswith(" ba")
    assert fold(text) == "le ba"
