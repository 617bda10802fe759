"""The web app's message catalogs: one file per language (api/web/messages/vi.py, en.py), the same
message ids in both, the same str.format placeholders in both, and i18n.translate reading them."""

from __future__ import annotations

import string

import pytest

from api.web import i18n
from api.web.messages import en, vi

CATALOGS = {"vi": vi.MESSAGES, "en": en.MESSAGES}


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_every_key_is_in_both_languages() -> None:
    assert sorted(set(vi.MESSAGES) - set(en.MESSAGES)) == []
    assert sorted(set(en.MESSAGES) - set(vi.MESSAGES)) == []


def test_placeholders_match() -> None:
    differ = {key: (placeholders(text), placeholders(en.MESSAGES[key]))
              for key, text in vi.MESSAGES.items()
              if placeholders(text) != placeholders(en.MESSAGES[key])}
    assert differ == {}


@pytest.mark.parametrize("lang", sorted(CATALOGS))
def test_every_message_is_text_and_formats(lang: str) -> None:
    for key, text in CATALOGS[lang].items():
        assert isinstance(text, str) and text.strip(), key
        values = dict.fromkeys(placeholders(text), "x")
        assert i18n.translate(lang, key, **values) == (text.format(**values) if values else text)


def test_the_catalogs_are_the_app_s() -> None:
    assert i18n.MESSAGES == {"vi": vi.MESSAGES, "en": en.MESSAGES}
    assert set(i18n.LANGS) == set(CATALOGS)
    for prefix in ("nav.", "review.", "dossier.", "search.", "scan."):
        assert any(key.startswith(prefix) for key in vi.MESSAGES), prefix


def test_translate_falls_back() -> None:
    assert i18n.translate("en", "nav.scan") == "Scanning station"
    assert i18n.translate("xx", "nav.scan") == vi.MESSAGES["nav.scan"]
    assert i18n.translate("en", "no.such.key") == "no.such.key"
    throttled = vi.MESSAGES["login.throttled"]
    assert i18n.translate("vi", "login.throttled", minutes=5) == throttled.format(minutes=5)
