"""Non-finite numbers and unsafe names in the config: refused with the key named, by the
library, by `fcn check-config` and (one case, since it crashed before) by `snakemake -n`. Fast except the
single Snakemake dry run."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from hostile import ROOT, fcn, one_error

from fcnlib.errors import ConfigError
from fcnlib.pipeline import config as fcncfg

PAPER = ROOT / "config" / "config.yaml"
NAN, INF = float("nan"), float("inf")

# key path → a non-finite value it must refuse (every number the issue lists, in the paper config)
NON_FINITE = {
    ("recipes", "released", "lr", "fcn32s"): NAN,
    ("recipes", "released", "momentum"): NAN,
    ("recipes", "released", "weight_decay"): NAN,
    ("recipes", "released", "weight_decay", "+inf"): INF,
    ("recipes", "released", "bias_lr_mult"): NAN,
    ("recipes", "released", "bias_lr_mult", "+inf"): INF,
    ("recipes", "released", "dropout"): NAN,
    ("width",): NAN,
    ("training", "loss_sampling"): NAN,
    ("datasets", "nyud", "depth_scale"): INF,
    ("resources", "minutes_per_1k_iter"): NAN,
    ("resources", "minutes_per_1k_iter", "+inf"): INF,
    ("experiments", "voc-fcn32s", "lr"): -INF,
}


def _set(cfg: dict, path: tuple[str, ...], value: object) -> dict:
    cfg = copy.deepcopy(cfg)
    path = tuple(p for p in path if p != "+inf")
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return cfg


@pytest.mark.parametrize("path", list(NON_FINITE), ids=lambda p: ".".join(p))
def test_non_finite_number_names_the_key(paper: dict, path: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as ei:
        fcncfg.validate_config(_set(paper, path, NON_FINITE[path]), source="cfg.yaml")
    key = ".".join(p for p in path if p != "+inf")
    msg = str(ei.value)
    assert msg.startswith(f"cfg.yaml: at '{key}': ") and "not a finite number" in msg, msg


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_filenames_refused(paper: dict, name: str) -> None:
    with pytest.raises(ConfigError) as ei:
        fcncfg.validate_config(_set(paper, ("sources", "nyud", "filename"), name), source="cfg.yaml")
    assert "sources.nyud.filename" in str(ei.value)


def test_plain_dotted_filenames_still_valid(paper: dict) -> None:
    fcncfg.validate_config(_set(paper, ("sources", "nyud", "filename"), ".nyud.tar.gz"), source="cfg.yaml")


@pytest.mark.parametrize("path", [("recipes", "released", "iterations"), ("experiments", "voc-fcn32s", "iterations")])
def test_iterations_bound(paper: dict, path: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as ei:
        fcncfg.validate_config(_set(paper, path, 10**12), source="cfg.yaml")
    assert ".".join(path) in str(ei.value) and "10000000" in str(ei.value)


def _yaml_with(tmp_path: Path, old: str, new: str) -> Path:
    text = PAPER.read_text()
    assert re.search(old, text, re.M), old
    p = tmp_path / "bad.yaml"
    p.write_text(re.sub(old, new, text, count=1, flags=re.M))
    return p


def test_check_config_cli_yaml_nan(tmp_path: Path) -> None:
    """Exactly what a user writes: `weight_decay: .nan` in YAML."""
    p = _yaml_with(tmp_path, r"^    weight_decay: 5\.0e-4$", "    weight_decay: .nan")
    assert yaml.safe_load(p.read_text())["recipes"]["released"]["weight_decay"] != 5e-4
    err = one_error(fcn("check-config", str(p)))
    assert err.startswith(f"error: {p}: at 'recipes.released.weight_decay': ") and "finite" in err, err


@pytest.mark.slow
def test_snakemake_dry_run_minutes_nan(tmp_path: Path) -> None:
    """`minutes_per_1k_iter: .nan` must not reach `snakemake -n`'s runtime arithmetic (it would crash there)."""
    import os
    import subprocess
    import sys

    p = _yaml_with(tmp_path, r"^  minutes_per_1k_iter: 6", "  minutes_per_1k_iter: .nan")
    work = tmp_path / "w"
    work.mkdir()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
                        "-n", "all", "--configfile", str(p)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, DVC_NO_ANALYTICS="1"))
    out = r.stdout + r.stderr
    lines = [ln for ln in out.splitlines() if "invalid configuration" in ln]
    assert r.returncode != 0 and len(lines) == 1, out[-3000:]
    assert "resources.minutes_per_1k_iter" in lines[0] and "finite" in lines[0] and str(p) in lines[0]
    assert "Traceback" not in out
