"""Why a batch is marked incomplete, said in the page's language.

The reason is stored as the receiver wrote it (batch records are plain data, read by programs
too): a scan's problem as `[code] message` (scanners/scan.py), or a sentence of the folder, FTP
or spool receivers or of the pipeline. Known ones are said from the message catalog; the
technical detail of a cut-short file is kept as written after a translated lead; anything else
shows as stored. Records written before the `[code]` prefix carry the eSCL message alone, which
is recognised too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from api.web import i18n
from scanners.escl import ADF_PROBLEMS

_CODED = re.compile(r"^\[([a-z_]+)\] (.*)$", re.S)
_BY_MESSAGE = {message: code for code, message in ADF_PROBLEMS.values()}
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, dict[str, str]]]]] = [
    (re.compile(r"^upload interrupted after (\d+) bytes$"),
     lambda m: ("why.upload_interrupted", {"bytes": m[1]})),
    (re.compile(r"^sohoa stopped while receiving; (\d+) page\(s\) kept$"),
     lambda m: ("why.stopped_pages", {"count": m[1]})),
    (re.compile(r"^sohoa stopped while receiving; (\d+) bytes kept$"),
     lambda m: ("why.stopped_bytes", {"bytes": m[1]})),
    (re.compile(r"^the file was not whole after ([\d.]+) s: (.*)$", re.S),
     lambda m: ("why.not_whole", {"seconds": m[1], "detail": m[2]})),
    (re.compile(r"^the file is cut short: (.*)$", re.S),
     lambda m: ("why.cut_short", {"detail": m[1]})),
]


class IncompleteWhy(i18n.Localized):
    def __init__(self, stored: str) -> None:
        self.stored = stored

    def in_lang(self, lang: str) -> str:
        return say(lang, self.stored)


def say(lang: str, stored: str) -> str:
    """The stored reason in `lang`, without a closing full stop (messages add their own)."""
    text = stored.strip()
    coded = _CODED.match(text)
    code = coded[1] if coded else _BY_MESSAGE.get(text)
    if code and f"scan.problem.{code}" in i18n.VI:
        return i18n.translate(lang, f"scan.problem.{code}").rstrip(". ")
    if coded:
        text = coded[2]
    for pattern, message in _PATTERNS:
        if found := pattern.match(text):
            key, values = message(found)
            return i18n.translate(lang, key, **values).rstrip(". ")
    return text.rstrip(". ")
