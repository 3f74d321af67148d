"""Editing fcnlib reruns exactly the rules whose code imports the edited module.

Snakemake does not see Python imports, so every script rule carries `params: code=<hash of its script's
import closure>` (fcnlib.pipeline.codehash, added in common.smk); Snakemake 9's default rerun trigger `params` then
reruns it. We take the session's finished reduced demo run (`demo_run`, every rule of the DAG), pair a
copy of its outputs and metadata with a copy of the code, edit one fcnlib module there and read which
jobs `snakemake -n` plans (and why). The expectation is computed from the import graph, and the cases
the issue names are spelled out (distributed → every training and nothing else, ...).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

import fcnlib
import fcnlib.data.hha
import fcnlib.data.prepare.voc
import fcnlib.eval.inference
import fcnlib.files.httpfetch
import fcnlib.models.fcn
import fcnlib.report.fidelity
import fcnlib.report.figures
import fcnlib.report.tables
import fcnlib.runtime.parallel
import fcnlib.train.distributed
import fcnlib.train.loop
from fcnlib.facts.datasets import REGISTRY
from fcnlib.pipeline.codehash import import_closure

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(fcnlib.__file__).resolve().parent
TARGETS = ("results/tables.md", "all")


def _copy_code(dest: Path) -> Path:
    """The workflow's own files (not data/, results/, .snakemake/): a clean checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "fcnlib", "profiles"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def _dry_run(code: Path, work: Path, *args: str) -> dict[str, list[str]]:
    """rule -> reasons of the jobs a dry run of the code tree `code` over `work` plans ({} when none)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(code / "Snakefile"), "--directory", str(work), *TARGETS,
           "-n", "--nolock", "--cores", "2", *args, "--configfile", str(code / "config" / "test.yaml")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # default triggers include params
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs: dict[str, list[str]] = {}
    # each planned job prints "rule NAME:" (or "localrule NAME:") then indented keys incl. "reason:"
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", r.stdout + r.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if m:
            reason = re.search(r"reason: (.*)", block)
            jobs.setdefault(m.group(1), []).append(reason.group(1) if reason else "")
    return jobs


def _rule_code() -> dict[str, list[Path]]:
    """rule -> the files whose imports make up its code: the workflow script it runs (read from the rule
    files), and for the prepare_<dataset> rules generated from the registry, prepare.py + the entry module."""
    out = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for m in re.finditer(r"^rule (\w+):\n(?:(?!^rule ).*\n)*?    script:\n\s+\"([^\"]+)\"", smk.read_text(),
                             re.M):
            out[m.group(1)] = [(smk.parent / m.group(2)).resolve()]
    for name, spec in REGISTRY.items():
        entry = importlib.import_module(spec.prepare.partition(":")[0])
        out[f"prepare_{name}"] = [REPO / "workflow" / "scripts" / "prepare.py", Path(entry.__file__).resolve()]
    return out


@pytest.fixture(scope="module")
def finished(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished run's outputs and metadata (copytree keeps mtimes); dry runs only read it."""
    work = tmp_path_factory.mktemp("rerun") / "work"
    shutil.copytree(demo_run, work, symlinks=True)
    return work


@pytest.fixture(scope="module")
def dag(finished: Path, tmp_path_factory: pytest.TempPathFactory) -> Counter:
    """rule -> number of its jobs in the whole DAG (a forced dry run)."""
    code = _copy_code(tmp_path_factory.mktemp("code_all"))
    return Counter({r: len(v) for r, v in _dry_run(code, finished, "--forceall").items()})


def _edited(tmp_path: Path, module: ModuleType) -> Path:
    """A code copy with `module`'s file edited (a comment appended)."""
    code = _copy_code(tmp_path / "code")
    f = code / "fcnlib" / Path(module.__file__).resolve().relative_to(PACKAGE)
    f.write_text(f.read_text() + "\n# edited by test_rerun_triggers\n")
    return code


def _users(module: ModuleType, dag: Counter) -> set[str]:
    """Rules of the DAG whose script's import closure holds `module`."""
    f = Path(module.__file__).resolve()
    return {rule for rule, files in _rule_code().items() if rule in dag and f in import_closure(files, REPO)}


def test_finished_run_is_up_to_date(finished: Path, tmp_path: Path) -> None:
    assert _dry_run(_copy_code(tmp_path), finished) == {}


def test_every_script_rule_of_the_dag_is_known(dag: Counter) -> None:
    code = _rule_code()
    assert set(dag) - {"all"} <= set(code), set(dag) - set(code)


@pytest.mark.parametrize("module", [
    fcnlib.train.distributed,  # the DDP plumbing: every training
    fcnlib.data.hha,  # NYUD's cameras and the HHA encoding
    fcnlib.data.prepare.voc,  # a data module (PASCAL preparation)
    fcnlib.report.tables,  # a report module
    fcnlib.report.figures,  # the figures and the DVC summaries' curves
    fcnlib.train.loop, fcnlib.eval.inference, fcnlib.models.fcn, fcnlib.runtime.parallel, fcnlib.files.httpfetch,
    fcnlib.report.fidelity,  # docs/fidelity.md's generator, no rule: nothing
], ids=lambda m: m.__name__)
def test_editing_a_module_reruns_exactly_the_rules_importing_it(finished: Path, dag: Counter, tmp_path: Path,
                                                                 module: ModuleType) -> None:
    jobs = _dry_run(_edited(tmp_path, module), finished)
    users = _users(module, dag)
    # a job shows one reason: "params have changed" where its code hash changed, "input files updated by
    # another job" downstream of a rerun (which wins when both hold, e.g. below make_demo_sources)
    changed = {rule for rule, reasons in jobs.items() if any("params have changed" in r.lower() for r in reasons)}
    assert changed <= users and bool(changed) == bool(users), (users, jobs)
    for rule in users:
        assert len(jobs.get(rule, [])) == dag[rule], (rule, jobs)  # every job of every importing rule reruns
    assert all("params have changed" in r.lower() or "input files updated by another job" in r.lower()
               for reasons in jobs.values() for r in reasons), jobs


def test_named_cases(dag: Counter) -> None:
    """What the rule sets above amount to for the modules the issue names (dry runs above check them)."""
    assert _users(fcnlib.train.distributed, dag) == {"train"}
    assert {"prepare_nyud", "encode_hha"} <= _users(fcnlib.data.hha, dag)
    assert _users(fcnlib.data.prepare.voc, dag) == {"prepare_pascal"}
    assert _users(fcnlib.report.tables, dag) == {"tables"}
    assert _users(fcnlib.report.fidelity, dag) == set()
    assert dag["train"] == 8  # config/test.yaml's eight experiments: "every training" above is all of them
