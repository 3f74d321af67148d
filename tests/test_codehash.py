"""fcnlib.pipeline.codehash: a script's code hash is its import closure, read from the source."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import fcnlib.data.hha
import fcnlib.data.prepare.voc
import fcnlib.files.archive
import fcnlib.report.tables
import fcnlib.train.distributed
from fcnlib.facts.datasets import REGISTRY
from fcnlib.pipeline.codehash import PACKAGE_ROOT, files_hash, import_closure, imported_names, package_root, script_hash

SCRIPTS = PACKAGE_ROOT / "workflow" / "scripts"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A package `pkg` with a cycle (a ↔ b), relative imports of both levels, an import inside a function,
    a sub-package whose __init__ imports, a submodule named by `from pkg.sub import c`, an
    importlib.import_module("literal"), a module nobody imports, and a script outside the package."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nfrom . import b\n",
        "pkg/b.py": "import pkg.a\nimport numpy\n",  # the cycle back to a; third-party ignored
        "pkg/sub/__init__.py": "from .init_dep import X\n",
        "pkg/sub/init_dep.py": "X = 1\n",
        "pkg/sub/c.py": "def f():\n    from ..lazy import y\n    return y\n",  # in a function, two dots
        "pkg/lazy.py": "y = 2\n",
        "pkg/dyn.py": "z = 3\n",
        "pkg/unused.py": "import pkg.a\n",
        "other/__init__.py": "",
        "other/o.py": "",
        "scripts/run.py": ("import importlib\nfrom pkg.sub import c\nfrom pkg import a\nimport other.o\n"
                           "m = importlib.import_module('pkg.dyn')\n"),
    })
    return tmp_path


def _rel(root: Path, files: list[Path]) -> set[str]:
    return {f.relative_to(root.resolve()).as_posix() for f in files}


def test_closure_follows_every_kind_of_import(pkg: Path) -> None:
    got = _rel(pkg, import_closure([pkg / "scripts" / "run.py"], root=pkg, packages=("pkg",)))
    assert got == {"scripts/run.py", "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/sub/__init__.py",
                   "pkg/sub/init_dep.py", "pkg/sub/c.py", "pkg/lazy.py", "pkg/dyn.py"}
    # a module only an unused module imports is not part of it; `other` is not a followed package
    assert "pkg/unused.py" not in got and not any(g.startswith("other/") for g in got)


def test_closure_of_a_module_entry_resolves_its_relative_imports(pkg: Path) -> None:
    got = _rel(pkg, import_closure([pkg / "pkg" / "sub" / "c.py"], root=pkg, packages=("pkg",)))
    assert got == {"pkg/sub/c.py", "pkg/__init__.py", "pkg/lazy.py"}


def test_relative_import_in_a_package_init_counts_from_the_package() -> None:
    assert imported_names("from . import m\nfrom .. import n\n", "p.q", is_package=True) >= {"p.q.m", "p.n"}
    assert imported_names("from . import m\n", "p.q", is_package=False) == {"p", "p.m"}


def test_hash_changes_with_closure_members_only(pkg: Path) -> None:
    def h() -> str:
        return files_hash(import_closure([pkg / "scripts" / "run.py"], root=pkg, packages=("pkg",)), pkg)

    before = h()
    (pkg / "pkg" / "unused.py").write_text("import pkg.a\n# edited\n")
    assert h() == before
    (pkg / "pkg" / "lazy.py").write_text("y = 2\n# edited\n")  # reached only through an in-function import
    edited = h()
    assert edited != before
    (pkg / "pkg" / "sub" / "init_dep.py").write_text("X = 2\n")  # reached only through a package __init__
    assert h() != edited


def test_hash_is_independent_of_where_the_tree_lies(pkg: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    import shutil

    other = tmp_path_factory.mktemp("elsewhere") / "copy"
    shutil.copytree(pkg, other)
    script_hash.cache_clear()
    assert script_hash(pkg / "scripts" / "run.py", pkg, ("pkg",)) == script_hash(other / "scripts" / "run.py",
                                                                                 other, ("pkg",))


def test_hash_is_independent_of_where_the_script_lies_beside_the_tree(pkg: Path) -> None:
    """The same script and tree hash the same whether the script's folder sorts before or after the tree's
    (CI's checkout under /check sorts before /tmp, a checkout under /work after it)."""
    import shutil

    script = pkg / "scripts" / "run.py"
    hashes = set()
    for folder in ("a_before", "z_after"):  # beside the tree `pkg/`: one sorts before it, one after
        moved = pkg.parent / folder / "run.py"
        moved.parent.mkdir()
        shutil.copy(script, moved)
        hashes.add(script_hash(moved, pkg, ("pkg",)))
    assert len(hashes) == 1
    assert hashes == {script_hash(script, pkg, ("pkg",))}


def test_hash_covers_the_workflow_tree_not_the_imported_copy(pkg: Path,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """A Snakefile's checkout hashes its own fcnlib even when this process imported another copy; a script is
    named by its file name, so the same tree hashes the same wherever it lies."""
    import shutil

    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(PACKAGE_ROOT / "fcnlib", tree / "fcnlib", ignore=shutil.ignore_patterns("__pycache__"))
    assert package_root(tree) == tree.resolve()
    assert package_root(pkg) == PACKAGE_ROOT  # no fcnlib/ there: the imported package
    script = SCRIPTS / "extract.py"
    assert script_hash(script, tree) == script_hash(script, PACKAGE_ROOT)
    archive = tree / Path(fcnlib.files.archive.__file__).resolve().relative_to(PACKAGE_ROOT)  # extract's code
    archive.write_text(archive.read_text() + "# edited\n")
    script_hash.cache_clear()  # one parse per process: a new start sees the edit
    assert script_hash(script, tree) != script_hash(script, PACKAGE_ROOT)


def test_modules_a_script_is_told_to_run_join_its_closure(pkg: Path) -> None:
    """A prepare rule's "module:function" entry is run by name, not imported: `modules` adds its closure."""
    script = pkg / "scripts" / "plain.py"
    script.write_text("import pkg\n")
    plain = script_hash(script, pkg, ("pkg",))
    with_entry = script_hash(script, pkg, ("pkg",), modules=("pkg.sub.c",))
    assert with_entry != plain
    (pkg / "pkg" / "lazy.py").write_text("y = 3\n")  # in pkg.sub.c's closure only
    script_hash.cache_clear()
    assert script_hash(script, pkg, ("pkg",)) == plain
    assert script_hash(script, pkg, ("pkg",), modules=("pkg.sub.c",)) != with_entry
    with pytest.raises(ValueError, match="pkg.nope"):
        script_hash(script, pkg, ("pkg",), modules=("pkg.nope",))


def _users(module: object) -> set[str]:
    """Workflow jobs whose code holds `module`'s file: each script by its name, and prepare_<dataset> (the
    one prepare.py script + the registry entry's module)."""
    f = Path(module.__file__).resolve()
    users = {s.stem for s in SCRIPTS.glob("*.py") if s.stem != "prepare" and f in import_closure([s])}
    for name, spec in REGISTRY.items():
        entry = Path(importlib.import_module(spec.prepare.partition(":")[0]).__file__)
        if f in import_closure([SCRIPTS / "prepare.py", entry]):
            users.add(f"prepare_{name}")
    return users


def test_workflow_scripts_closures_follow_the_real_imports() -> None:
    # the DDP plumbing runs inside every training and in no data preparation or report step
    assert _users(fcnlib.train.distributed) == {"train"}
    # NYUD preparation reads hha.py's cameras; HHA encoding is hha.py
    assert {"prepare_nyud", "encode_hha"} <= _users(fcnlib.data.hha)
    # a data module and a report module: their rules only
    assert _users(fcnlib.data.prepare.voc) == {"prepare_pascal"}
    assert _users(fcnlib.report.tables) == {"tables"}


def test_lazy_package_attribute_counts_only_where_its_name_is_used(tmp_path: Path) -> None:
    """A package's PEP 562 `__getattr__` imports its module when the name is asked for: a script that never
    uses the name does not depend on that module (so editing it reruns nothing there); one that does, does,
    through `from pkg import Name` or `pkg.Name`, and so does what that module imports."""
    _write(tmp_path, {
        "pkg/__init__.py": ("def __getattr__(name):\n    if name == 'Heavy':\n"
                            "        from pkg.heavy import Heavy\n        return Heavy\n"
                            "    raise AttributeError(name)\n"),
        "pkg/heavy.py": "import pkg.dep\nclass Heavy: ...\n",
        "pkg/dep.py": "",
        "pkg/light.py": "",
        "scripts/plain.py": "from pkg import light\n",
        "scripts/by_from.py": "from pkg import Heavy\n",
        "scripts/by_attr.py": "import pkg\nh = pkg.Heavy()\n",
    })

    def closure(script: str) -> set[str]:
        return _rel(tmp_path, import_closure([tmp_path / "scripts" / script], root=tmp_path, packages=("pkg",)))

    assert closure("plain.py") == {"scripts/plain.py", "pkg/__init__.py", "pkg/light.py"}
    for script in ("by_from.py", "by_attr.py"):
        assert {"pkg/heavy.py", "pkg/dep.py"} <= closure(script), script


def test_the_package_segmenter_is_not_in_every_rule() -> None:
    """fcnlib's lazy `Segmenter` (eval/segment.py) is part of a rule's code only where the rule uses it."""
    segment = PACKAGE_ROOT / "fcnlib" / "eval" / "segment.py"
    for script in ("download.py", "train.py", "tables.py"):
        assert segment not in import_closure([SCRIPTS / script]), script
