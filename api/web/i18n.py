"""Messages of the web app in Vietnamese (the default) and English.

Templates call `t("key")` or `t("key", name=...)` (str.format placeholders). The language is the
`lang` cookie (set by /lang/{code}), else the browser's Accept-Language, else Vietnamese. A key
missing in English falls back to Vietnamese, a key missing everywhere shows as itself. Every message
of every page lives in one catalog file per language, api/web/messages/vi.py and en.py; add a new
key to both (tests/test_messages.py checks they hold the same keys with the same placeholders).
"""

from __future__ import annotations

from typing import Any

from api.web.messages import en, vi

DEFAULT = "vi"
LANGS = ("vi", "en")
COOKIE = "lang"

VI: dict[str, str] = vi.MESSAGES
EN: dict[str, str] = en.MESSAGES
MESSAGES: dict[str, dict[str, str]] = {"vi": VI, "en": EN}


class Localized:
    """A value put in a message that is itself said per language (a stored reason, say):
    `translate` asks it for the message's language."""

    def in_lang(self, lang: str) -> str:
        raise NotImplementedError


def translate(lang: str, key: str, **values: Any) -> str:
    text = MESSAGES.get(lang, VI).get(key) or VI.get(key) or key
    if not values:
        return text
    return text.format(**{k: v.in_lang(lang) if isinstance(v, Localized) else v
                          for k, v in values.items()})


def from_accept_language(header: str) -> str | None:
    """The supported language the browser prefers most (q-values honoured), or None."""
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        if code not in LANGS:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -position) > (best[0], best[1])):
            best = (q, -position, code)
    return best[2] if best else None


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGS:
        return cookie  # type: ignore[return-value]
    return from_accept_language(accept_language or "") or DEFAULT
