"""The packages stay layered and free of import cycles (issue 12, point 4).

    api        routes, web pages, CLI                       -> ingest, scanners, storage, ocr
    ingest     the pipeline, its stages and tasks            -> scanners, storage, ocr
    scanners   eSCL, push receivers, spool                  -> storage, ocr
    storage    object stores, the one database, catalog...   -> ocr
    ocr        image work, pure                              -> nothing of sohoa

Read from the source with `ast`, nothing imported: every `import` counts, at the top of a module,
inside a function or under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ocr", "storage", "scanners", "ingest", "api")
MAY_IMPORT = {
    "ocr": frozenset(),
    "storage": frozenset({"ocr"}),
    "scanners": frozenset({"ocr", "storage"}),
    "ingest": frozenset({"ocr", "storage", "scanners"}),
    "api": frozenset({"ocr", "storage", "scanners", "ingest"}),
}
# Cycles closed by an import inside a function, still to be broken. api.web.pages imports the page
# modules inside add_web_routes, and review_pages and scan_pages import `render`/`jpeg_response`
# from api.web.pages: they should import them from api.web.render, as dossier_pages does.
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left; a cycle to tolerate would be named here


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


class _Import:
    def __init__(self, target: str, line: int, where: str) -> None:
        self.target, self.line, self.where = target, line, where  # where: top | function | typing


def _imports(name: str, path: Path) -> list[_Import]:
    """Every sohoa module `name` imports, with where the import stands."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[_Import] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "function" if where == "top" else where
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = "typing"
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package[:len(package) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" for alias in child.names]  # a module or a name in one
            for target in dict.fromkeys(_sohoa_module(imported) for imported in names):
                if target and target != name:
                    found.append(_Import(target, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), "top")
    return found


def _sohoa_module(dotted: str) -> str | None:
    """The sohoa module an import name loads (`storage.catalog.Catalog` -> storage.catalog)."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> dict[frozenset[str], list[str]]:
    """The groups of modules that import each other (strongly connected), each with one of its
    cycles as a path back to its start."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return {frozenset(group): _path_round(graph, group) for group in groups}


def _path_round(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest way from the group's first module back to itself, through the group."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def _graph(*wheres: str) -> dict[str, set[str]]:
    return {name: {i.target for i in found if i.where in wheres} for name, found in IMPORTS.items()}


def test_the_modules_are_found() -> None:
    assert {"ocr.text", "storage.db", "storage.tables", "scanners.spool", "ingest.pipeline",
            "api.app", "api.web.pages", "storage.migrations.env"} <= set(MODULES)


def test_each_package_imports_only_the_layers_below_it() -> None:
    """Given every import of every module (in functions and for type checking too), then ocr
    imports nothing of sohoa, storage only ocr, scanners no ingest or api, ingest no api."""
    upward = []
    for name, found in IMPORTS.items():
        package = name.split(".")[0]
        for i in found:
            other = i.target.split(".")[0]
            if other != package and other not in MAY_IMPORT[package]:
                upward.append(f"{MODULES[name].relative_to(ROOT)}:{i.line} ({i.where}) imports "
                              f"{i.target}: {package} may import "
                              f"{', '.join(sorted(MAY_IMPORT[package])) or 'nothing of sohoa'}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycle_at_module_level() -> None:
    """Given the imports at the top of each module, then no module imports itself through others."""
    cycles = _cycles(_graph("top"))
    assert not cycles, "import cycles:\n" + "\n".join(
        f"{' -> '.join(c)} (among {', '.join(sorted(group))})" for group, c in cycles.items())


def test_no_import_cycle_hidden_in_a_function() -> None:
    """Given also the imports inside functions (which only hide a cycle from Python, not from a
    reader), then the only cycles are the known ones still to be broken (KNOWN_CYCLES)."""
    found = _cycles(_graph("top", "function"))
    new = [f"{' -> '.join(c)} (among {', '.join(sorted(group))})"
           for group, c in found.items() if group not in KNOWN_CYCLES]
    gone = [", ".join(sorted(group)) for group in KNOWN_CYCLES if group not in found]
    assert not new, "import cycles through imports inside functions:\n" + "\n".join(new)
    assert not gone, "broken at last, so remove from KNOWN_CYCLES: " + "; ".join(gone)
