"""Config composition: a partial --configfile / --config is deep-merged over config/config.yaml, a complete
config (the demo) replaces it, and the run names every file that made its config."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fcnlib.cli import check_config
from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"


def test_deep_merge_recurses_into_mappings_and_replaces_the_rest():
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [1, 2], "s": "x"}
    out = fcncfg.deep_merge(base, {"a": {"c": {"d": 20}}, "l": [9], "new": {"k": 1}})
    assert out == {"a": {"b": 1, "c": {"d": 20, "e": 3}}, "l": [9], "s": "x", "new": {"k": 1}}
    assert base["a"]["c"]["d"] == 2  # inputs untouched
    assert fcncfg.deep_merge(base, {"a": 5})["a"] == 5  # a scalar replaces a mapping


def test_partial_override_merges_over_the_default_and_validates():
    paper = fcncfg.load_yaml(DEFAULT)
    cfg, sources = fcncfg.compose_config({"training": {"threads": 4}}, ["override.yaml"], default=DEFAULT)
    assert cfg["training"]["threads"] == 4
    assert cfg["training"]["recipe"] == paper["training"]["recipe"]  # siblings kept
    assert cfg["experiments"] == paper["experiments"]
    assert sources == [str(DEFAULT), "override.yaml"]
    fcncfg.validate_config(cfg, source=" + ".join(sources))
    # the same through --config pairs only
    cfg2, sources2 = fcncfg.compose_config({"training": {"threads": "4"}}, [], {"training": {"threads": "4"}},
                                           default=DEFAULT)
    assert cfg2 == cfg and sources2 == [str(DEFAULT), "--config"]


def test_complete_config_replaces_the_default():
    demo = fcncfg.load_yaml(ROOT / "config" / "demo.yaml")
    cfg, sources = fcncfg.compose_config(demo, ["config/demo.yaml"], default=DEFAULT)
    assert cfg == demo and sources == ["config/demo.yaml"]
    assert cfg["source"] == "demo"  # nothing of the paper config leaked in
    # --config over a complete file: Snakemake has merged it already (nested leaves as strings)
    given = fcncfg.deep_merge(demo, {"training": {"threads": "3", "amp": "off"}})
    cfg, sources = fcncfg.compose_config(given, ["config/demo.yaml"], {"training": {"threads": "3", "amp": "off"}},
                                         default=DEFAULT)
    assert sources == ["config/demo.yaml", "--config"]
    assert cfg["training"]["threads"] == 3 and cfg["training"]["amp"] == "off"
    assert cfg["training"]["recipe"] == demo["training"]["recipe"]


def test_config_pairs_are_typed_like_a_file():
    assert fcncfg._typed({"a": "4", "b": ["true", "1e-10", "0.5", "cpu", "null", "off"]}) == {
        "a": 4, "b": [True, 1e-10, 0.5, "cpu", None, "off"]}


def _dry_run(tmp_path: Path, *args: str) -> str:
    if shutil.which("snakemake", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("snakemake is not installed (pip install 'fcnlib[workflow]')")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT), "-n", "--cores", "16",
           *args]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout + r.stderr


def _train_threads(log: str) -> set[int]:
    blocks = re.findall(r"^rule train:\n((?:    .*\n)+)", log, flags=re.M)
    return {int(m) for b in blocks for m in re.findall(r"threads: (\d+)", b)}


def _counts(log: str) -> dict[str, int]:
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
def test_snakemake_dry_run_with_a_one_key_override_plans_the_paper(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("training:\n  threads: 3\n")
    paper_threads = fcncfg.load_yaml(DEFAULT)["training"]["threads"]
    assert paper_threads != 3
    default_log = _dry_run(tmp_path)
    log = _dry_run(tmp_path, "--configfile", str(override))
    assert _counts(log) == _counts(default_log) and _counts(log)["train"] > 10  # the paper's DAG
    assert _train_threads(default_log) == {paper_threads}
    assert _train_threads(log) == {3}
    assert f"fcn config: config/config.yaml + {override}" in log
    header = re.search(r"Config file\(s\): (.*)", log).group(1)
    assert "config.yaml" in header and "override.yaml" in header
    log = _dry_run(tmp_path, "--config", "training={threads: 3}")
    assert _train_threads(log) == {3} and "fcn config: config/config.yaml + --config" in log


def test_check_config_merges_an_override_like_the_workflow(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("training:\n  threads: 4\n")
    bad.write_text("training:\n  threads: four\n")
    assert check_config.cli([str(good)]) == 0
    assert "merged over" in capsys.readouterr().out
    assert check_config.cli([str(bad)]) == 2
    assert "bad.yaml: at 'training.threads'" in capsys.readouterr().err
