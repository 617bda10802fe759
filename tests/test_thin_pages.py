"""Thin web pages (issue 12): the page modules hold routes and view models; what they read from
the catalog and the audit log is asked through storage/queries.py, so none of them speaks SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "api" / "web"
PAGES = sorted(p.name for p in WEB.glob("*_pages.py"))


@pytest.mark.parametrize("name", PAGES)
def test_a_page_module_imports_no_sqlalchemy(name: str) -> None:
    tree = ast.parse((WEB / name).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] == "sqlalchemy"}
    assert not {m for m in imported if m == "storage.tables"}


def test_a_principal_answers_for_its_agencies() -> None:
    from api.keys import Principal

    one = Principal("k1", "processor", ("000.00.04.H40",))
    two = Principal("k2", "processor", ("000.00.04.H40", "000.00.05.H40"))
    every = Principal("k3", "auditor", ("*",))
    assert one.scope() == ("000.00.04.H40",) and two.scope() == two.agencies
    assert every.scope() is None and every.all_agencies and not one.all_agencies
    assert one.sees("000.00.04.H40") and one.may_change("000.00.04.H40")
    assert not one.sees("000.00.05.H40") and not one.may_change("000.00.05.H40")
    assert every.sees("anything") and every.may_change("anything")
    assert one.only_agency() == "000.00.04.H40"
    assert two.only_agency() is None and every.only_agency() is None


def test_no_page_module_repeats_the_agency_scope() -> None:
    for name in PAGES:
        text = (WEB / name).read_text(encoding="utf-8")
        assert "ALL_AGENCIES in who" not in text and "def _scope" not in text, name
