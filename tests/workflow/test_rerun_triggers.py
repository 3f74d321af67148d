"""Editing fcnlib reruns exactly the rules whose code changed.

Snakemake does not see Python imports, so the workflow puts a hash of each rule's fcnlib modules in
`params: code=...`; Snakemake 9's default rerun trigger `params` then reruns the rule. We build the
PASCAL FCN-32s branch of the reduced test DAG in a copy of the repo, edit fcnlib files there and read
which jobs `snakemake -n` plans (and why).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = "results/pascal/voc-fcn32s/weights.pt"
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _copy_repo(dest: Path) -> Path:
    """The workflow's own files (not data/, results/, .snakemake/): a clean checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in ("Snakefile", "workflow", "config", "fcnlib", "profiles"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def _snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = ["snakemake", TARGET, "--configfile", "config/test.yaml", "--cores", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def planned(cwd: Path) -> dict[str, str]:
    """rule -> reason, for every job a dry run would execute ({} when nothing to do)."""
    r = _snakemake(cwd, "-n")  # default rerun triggers of Snakemake 9 include params
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    jobs: dict[str, str] = {}
    # each planned job prints "rule NAME:" (or "localrule NAME:") then indented keys incl. "reason:"
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if m:
            reason = re.search(r"reason: (.*)", block)
            jobs[m.group(1)] = reason.group(1) if reason else ""
    return jobs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repo with the PASCAL FCN-32s branch built (demo data → weights.pt)."""
    work = _copy_repo(tmp_path_factory.mktemp("rerun"))
    r = _snakemake(work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert (work / TARGET).exists()
    return work


def _edited_copy(built: Path, tmp_path: Path, rel: str) -> Path:
    """A copy of the built tree (outputs, .snakemake metadata, mtimes kept) with one fcnlib file edited."""
    work = tmp_path / "w"
    shutil.copytree(built, work, symlinks=True)  # copytree keeps mtimes (copy2)
    f = work / "fcnlib" / rel
    f.write_text(f.read_text() + "\n# edited by test_rerun_triggers\n")
    return work


def test_built_tree_is_up_to_date(built: Path) -> None:
    assert planned(built) == {}


@pytest.mark.parametrize("rel", ["train/loop.py", "train/settings.py",  # any file of the fcnlib.train package
                                 "eval/inference.py",  # loading/scoring the trainer shares with evaluation
                                 "runtime/allocator.py"])  # the malloc settings (the trainer's, via fast.py)
def test_editing_train_reruns_train_only(built: Path, tmp_path: Path, rel: str) -> None:
    jobs = planned(_edited_copy(built, tmp_path, rel))
    assert set(jobs) == {"train"}, jobs
    assert "params have changed" in jobs["train"].lower(), jobs


def test_editing_models_reruns_conversion_and_training(built: Path, tmp_path: Path) -> None:
    jobs = planned(_edited_copy(built, tmp_path, "models/fcn.py"))
    assert {"convert_weights", "train"} <= set(jobs), jobs
    # data preparation does not use the FCN heads
    assert not {"make_demo_sources", "download", "extract", "prepare_pascal"} & set(jobs), jobs


def test_editing_a_backbone_remakes_the_demo_sources(built: Path, tmp_path: Path) -> None:
    # the demo's ImageNet stand-ins are built with fcnlib's backbones (fcnlib/demo/imagenet.py)
    jobs = planned(_edited_copy(built, tmp_path, "models/vgg.py"))
    assert {"make_demo_sources", "convert_weights", "train"} <= set(jobs), jobs


def test_editing_the_process_pool_reruns_preparation(built: Path, tmp_path: Path) -> None:
    jobs = planned(_edited_copy(built, tmp_path, "runtime/parallel.py"))  # prepare's (and SBD's) parallel map
    assert "prepare_pascal" in jobs and "params have changed" in jobs["prepare_pascal"].lower(), jobs
    assert not {"make_demo_sources", "download", "extract", "convert_weights"} & set(jobs), jobs


def test_editing_the_http_layer_reruns_download(built: Path, tmp_path: Path) -> None:
    jobs = planned(_edited_copy(built, tmp_path, "files/httpfetch.py"))  # download's per-URL fetching
    assert "download" in jobs and "params have changed" in jobs["download"].lower(), jobs


@pytest.mark.parametrize("rel", ["report/tables.py", "eval/segment.py"])
def test_editing_unrelated_module_reruns_nothing(built: Path, tmp_path: Path, rel: str) -> None:
    # tables.py is only used by the report rules, which are not part of this target; segment.py only by `fcn segment`
    assert planned(_edited_copy(built, tmp_path, rel)) == {}
