"""fcnlib's import structure beyond the layers contract (`lint-imports`, pyproject.toml): no import cycle even
counting imports inside functions, no private name imported from another package, and imports at module top
(an import inside a function only for an optional or heavy dependency, with its reason beside it)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fcnlib"
MAX_IMPORTS_IN_FUNCTIONS = 14


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path) -> Iterator[tuple[ast.stmt, str, str | None, bool]]:
    """(node, imported module, imported name or None, inside a function) for each fcnlib import of a file."""
    tree = ast.parse(path.read_text())
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name, None, in_function(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (ruff TID252 bans them)"
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in MODULES:  # `from fcnlib.data import hha`: the module itself
                    yield node, sub, None, in_function(node)
                else:
                    yield node, node.module or "", a.name, in_function(node)


def _package(module: str) -> str:
    """fcnlib.files.io → fcnlib.files; a top-level module (fcnlib.errors) is its own package."""
    return ".".join(module.split(".")[:2])


def _graph() -> dict[str, set[str]]:
    return {m: {t for _, t, _, _ in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_counting_imports_inside_functions():
    assert _cycles(_graph()) == []


def test_no_private_name_imported_across_packages():
    bad = [f"{MODULES[m].relative_to(PKG.parent)}:{node.lineno}: {name} from {target}"
           for m, p in MODULES.items() for node, target, name, _ in _imports(p)
           if name and name.startswith("_") and not name.startswith("__") and target.startswith("fcnlib")
           and _package(target) != _package(m)]
    assert bad == [], "make the name public, or move the code to the package that owns it:\n" + "\n".join(bad)


@pytest.fixture(scope="module")
def function_imports() -> list[tuple[Path, ast.stmt]]:
    found = []
    for p in sorted(MODULES.values()):
        tree = ast.parse(p.read_text())
        for f in ast.walk(tree):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [(p, n) for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return sorted(set(found), key=lambda t: (str(t[0]), t[1].lineno))


def test_imports_inside_functions_are_few_and_say_why(function_imports):
    where = [f"{p.relative_to(PKG.parent)}:{n.lineno}" for p, n in function_imports]
    assert len(function_imports) <= MAX_IMPORTS_IN_FUNCTIONS, "move these to the module top:\n" + "\n".join(where)
    def explained(p: Path, n: ast.stmt) -> bool:  # a comment on the import's line or the line above
        lines = p.read_text().splitlines()
        return "#" in lines[n.lineno - 1] or lines[n.lineno - 2].strip().startswith("#")

    unexplained = [w for w, (p, n) in zip(where, function_imports, strict=True) if not explained(p, n)]
    assert unexplained == [], "say why this import is inside a function (comment on or above it):\n" + "\n".join(
        unexplained)
