"""Code hashes derived from the import graph: what a workflow rule's script runs, hashed.

Snakemake does not see Python imports, so each rule carries the hash of its script's import closure as
`params: code=...` (Snakemake's `params` rerun trigger then reruns it when that code changes). The
closure is read from the source (AST, nothing is imported): `import a.b`, `from a import b` (b may be a
submodule), relative imports, imports anywhere in a module (inside functions too, where most of fcnlib's
lazy imports are) and `importlib.import_module("literal")`; every package `__init__.py` on the way is
part of it, because Python runs it. Only modules of the given top-level packages (fcnlib) are followed:
third-party code is versioned by the environment, not by this hash. Derived, never listed, so a module
moved into a sub-package or newly imported is covered without touching the workflow.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

PathLike = str | os.PathLike

# the folder holding fcnlib/ (as many levels up as this module is deep, wherever the package puts it)
PACKAGE_ROOT = Path(__file__).resolve().parents[len(__name__.split(".")) - 1]
DEFAULT_PACKAGES = ("fcnlib",)


def _module_file(root: Path, name: str) -> Path | None:
    """The file Python would run for module `name` under `root` (a module file or a package's __init__)."""
    base = root.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _module_name(root: Path, path: Path) -> tuple[str, bool] | None:
    """(dotted name, is_package) of a file under `root`, None for a file outside it (a workflow script)."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported_names(source: str, module: str | None = None, is_package: bool = False) -> set[str]:
    """Dotted module names a module's source may import, anywhere in it: for `from a import b` both `a` and
    `a.b` (b may be a submodule or a name; the caller keeps what exists). `module` (its own dotted name)
    resolves relative imports; a file outside any package (a script) has none."""
    return set(_source_facts(source, module, is_package)[0])


def _lazy_getattr(tree: ast.Module) -> ast.FunctionDef | None:
    """A module's PEP 562 `__getattr__`: its imports run only when one of its names is asked for."""
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"), None)


def _identifiers_in(nodes: Iterable[ast.AST]) -> set[str]:
    """Every name the nodes use: variables, attributes and imported names (`fcnlib.Segmenter`, `from fcnlib
    import Segmenter`)."""
    out: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.alias):
            out.add(node.name.split(".")[-1])
    return out


@functools.lru_cache(maxsize=4096)
def _source_facts(source: str, module: str | None, is_package: bool) -> tuple[frozenset[str], frozenset[str],
                                                                             frozenset[str], frozenset[str]]:
    """(imported names, identifiers, lazy export names, lazy export modules) of one source, from one parse;
    everything but the lazy exports is read outside the module's lazy `__getattr__` (its imports run only
    when an importer uses one of the string names it answers to). Cached by the text itself, so the ~20
    scripts of a workflow that share most modules parse each once per process (a Snakemake start), and an
    edited file is parsed again."""
    tree = ast.parse(source)
    lazy = _lazy_getattr(tree)
    outside = [n for n in tree.body if n is not lazy]
    names = {n.value for n in ast.walk(lazy) if isinstance(n, ast.Constant) and isinstance(n.value, str)} \
        if lazy is not None else set()
    modules = _imports_in([lazy], module, is_package) if lazy is not None else set()
    return (frozenset(_imports_in(outside, module, is_package)), frozenset(_identifiers_in(outside)),
            frozenset(names), frozenset(modules))


def _imports_in(nodes: Iterable[ast.AST], module: str | None, is_package: bool) -> set[str]:
    names: set[str] = set()
    here = (module or "").split(".") if module else []
    package = here if is_package else here[:-1]
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package) or not package:
                    continue  # beyond the top-level package: Python refuses it too
                base = package[: len(package) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            names.add(parent)
            names.update(f"{parent}.{a.name}" for a in node.names if a.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            names.add(node.args[0].value)
    return {n for n in names if n}


def import_closure(entries: Iterable[PathLike], root: PathLike = PACKAGE_ROOT,
                   packages: Iterable[str] = DEFAULT_PACKAGES) -> list[Path]:
    """Every file the `entries` (scripts or modules) run through imports of `packages` found under `root`,
    transitively, the entries included, sorted. Cycles are fine (each file is read once)."""
    root = Path(root)
    tops = set(packages)
    todo = [Path(e).resolve() for e in entries]
    seen: set[Path] = set()
    used: set[str] = set()  # identifiers of every file so far
    lazy: list[tuple[set[str], set[str]]] = []  # (names, modules) of the lazy __getattr__s met so far

    def follow(names: Iterable[str]) -> None:
        for name in names:
            if name.split(".")[0] not in tops:
                continue
            parts = name.split(".")
            for k in range(1, len(parts) + 1):  # the packages on the way run their __init__ first
                f = _module_file(root, ".".join(parts[:k]))
                if f is not None and f.resolve() not in seen:
                    todo.append(f.resolve())

    while todo:
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            named = _module_name(root, path)
            module, is_pkg = named if named else (None, False)
            imports, idents, lazy_names, lazy_modules = _source_facts(path.read_text(encoding="utf-8"), module, is_pkg)
            follow(imports)
            used |= idents
            lazy.append((set(lazy_names), set(lazy_modules)))
        for names, modules in lazy:  # a lazy export counts once something in the closure uses its name
            if names & used:
                follow(modules)
    return sorted(seen)


def files_hash(files: Iterable[PathLike], root: PathLike, entries: Iterable[PathLike] = ()) -> str:
    """Short sha256 over (name, bytes) of each file in sorted order: modules named by their path relative to
    `root`, `entries` (workflow scripts) by their file name, so the hash does not depend on where the tree
    lies."""
    root = Path(root).resolve()
    named = {Path(e).resolve(): "script:" + Path(e).name for e in entries}
    # sorted by the names hashed, never by absolute paths: where the script lies beside the tree (/check
    # before /tmp, /work after it) must not change the order
    members = sorted((named.get(f) or f.relative_to(root).as_posix(), f) for f in (Path(p).resolve() for p in files))
    h = hashlib.sha256()
    for name, f in members:
        h.update(name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def package_root(workflow_dir: PathLike) -> Path:
    """The tree whose fcnlib a workflow's code hashes cover: the checkout holding the Snakefile when it has
    fcnlib/ (the code being edited, whichever copy this process imported), else the imported package's."""
    d = Path(workflow_dir).resolve()
    return d if (d / DEFAULT_PACKAGES[0] / "__init__.py").is_file() else PACKAGE_ROOT


@functools.cache
def script_hash(script: PathLike, root: PathLike = PACKAGE_ROOT,
                packages: tuple[str, ...] = DEFAULT_PACKAGES, modules: tuple[str, ...] = ()) -> str:
    """The code hash of one workflow script: its own text and its import closure in `packages` under `root`,
    plus the closures of `modules` (dotted names the script is told to run, e.g. a prepare rule's
    "module:function" entry, which no import names). Cached: one parse per process (a Snakemake start
    hashes each script once)."""
    entries = [Path(script)]
    for name in modules:
        f = _module_file(Path(root), name)
        if f is None:
            raise ValueError(f"{name}: no such module under {root} (a rule's entry names it)")
        entries.append(f)
    return files_hash(import_closure(entries, root, packages), root, entries=[script])


__all__ = ["PACKAGE_ROOT", "imported_names", "import_closure", "files_hash", "package_root", "script_hash"]
