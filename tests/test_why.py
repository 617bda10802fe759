"""A batch's stored reason for being incomplete, said in the page's language."""

from __future__ import annotations

import pytest

from api.web.why import say


@pytest.mark.parametrize(("stored", "vi", "en"), [
    ("[jam] Paper jam in the feeder: clear it and scan the remaining pages.",
     "Kẹt giấy trong khay nạp", "Paper jam in the feeder"),
    ("Paper jam in the feeder: clear it and scan the remaining pages.",  # before the [code]
     "Kẹt giấy trong khay nạp", "Paper jam in the feeder"),
    ("upload interrupted after 4096 bytes", "tải lên FTP bị ngắt sau 4096 byte",
     "the FTP upload was interrupted after 4096 bytes"),
    ("sohoa stopped while receiving; 2 page(s) kept", "đã giữ 2 trang", "2 pages kept"),
    ("the file is cut short: a PDF without its end (%%EOF)",
     "tệp bị cắt ngắn (a PDF without its end (%%EOF))", "the file is cut short"),
])
def test_known_reasons_are_said_in_each_language(stored: str, vi: str, en: str) -> None:
    assert vi in say("vi", stored) and en in say("en", stored)
    assert not say("vi", stored).endswith(".")


def test_an_unknown_reason_shows_as_stored_without_its_full_stop() -> None:
    assert say("vi", "paper jam at sheet 4.") == "paper jam at sheet 4"
