"""fcnlib.pipeline.versioning: a Snakemake run in a DVC stage's folder records itself (`dvc commit`), so `dvc exp run`
restores it instead of deleting it; nothing happens under DVC, outside a DVC checkout or in a folder no stage owns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fcnlib.pipeline.versioning import owning_stage, record_run

DEMO = {"stages": {"demo": {"cmd": "true", "outs": [{"runs/demo/results": {"persist": True}},
                                                   {"runs/demo/logs": {"persist": True}}]}}}
PAPER = {"stages": {"paper": {"wdir": "..", "cmd": "true", "outs": [{"runs/paper/results": {"persist": True}},
                                                                  {"runs/paper/logs": {"persist": True}}]}}}


def _layout(root: Path) -> Path:
    (root / ".dvc").mkdir(parents=True)
    (root / "paper").mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump(DEMO))
    (root / "paper" / "dvc.yaml").write_text(yaml.safe_dump(PAPER))
    for d in ("runs/demo/results", "runs/demo/logs", "runs/paper/results", "runs/paper/logs"):
        (root / d).mkdir(parents=True)
        (root / d / "f.txt").write_text(d)
    return root


def test_the_stage_owning_a_run_folder(tmp_path):
    root = _layout(tmp_path / "repo")
    assert owning_stage(root, root / "runs/demo") == "dvc.yaml:demo"
    assert owning_stage(root, root / "runs/paper") == "paper/dvc.yaml:paper"
    # the checkout's root and runs/ hold outs but are no stage's run folder: a plain run there is not recorded
    assert owning_stage(root, root) is None and owning_stage(root, root / "runs") is None
    assert owning_stage(root, root / "runs/demo/results") is None


def test_nothing_to_record_outside_dvc_or_under_dvc(tmp_path, monkeypatch):
    assert record_run(tmp_path) is None  # no .dvc above
    root = _layout(tmp_path / "repo")
    monkeypatch.setenv("DVC_STAGE", "demo")  # `dvc repro` runs the Snakemake: DVC records it
    assert record_run(root / "runs/demo") is None
    assert not (root / "dvc.lock").exists()


@pytest.mark.slow  # > 10 s: two `dvc commit` processes
def test_a_run_folder_is_committed_to_dvc(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dvc", reason="dvc is not installed (pip install 'fcnlib[dvc]')")
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    root = tmp_path / "repo"
    root.mkdir()
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DEMO))
    for d in ("runs/demo/results", "runs/demo/logs"):
        (root / d).mkdir(parents=True)
        (root / d / "f.txt").write_text(d)
    assert record_run(root / "runs/demo") == "dvc.yaml:demo"
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["demo"]
    assert {o["path"] for o in lock["outs"]} == {"runs/demo/results", "runs/demo/logs"}
    assert "recorded runs/demo in DVC" in capsys.readouterr().err
    # a folder DVC cannot record (an out missing): one line with the command to run, not an error
    (root / "runs/demo/logs/f.txt").unlink()
    (root / "runs/demo/logs").rmdir()
    assert record_run(root / "runs/demo") is None
    err = capsys.readouterr().err
    assert "could not record" in err and "dvc commit dvc.yaml:demo" in err
