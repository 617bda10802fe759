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
