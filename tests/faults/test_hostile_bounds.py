"""Bounded parsing before work (issue 23, class 5): tiny files that would cost minutes or gigabytes are
refused from what they declare, before the work. YAML: size, alias expansion, recursion, depth (one
loader, fcnlib.pipeline.config.load_yaml, for every YAML read). Weights: meta['arch'] size and nesting (a late
fusion of late fusions doubled the build time per level). .mat labels: every array's size read from its
header under FCN_MAX_IMAGE_PIXELS before anything is decompressed (fcnlib.files.matio.read_mat, used by every
.mat reader)."""

from __future__ import annotations

import re
import resource
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import ROOT, fcn, one_error
from matfile import write_mat
from PIL import Image

from fcnlib.errors import ConfigError, DataError, WeightsError
from fcnlib.files.matio import read_mat
from fcnlib.models import build_fcn, load_model, save_model
from fcnlib.models.preprocessing import CAFFE_VGG
from fcnlib.pipeline import config as fcncfg


# ---- YAML ------------------------------------------------------------------------------------------------
def _laughs(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _dict_laughs(levels: int = 12) -> str:
    lines = ["d0: &d0 {x: 1, y: 2}"]
    for i in range(1, levels + 1):
        lines.append(f"d{i}: &d{i} {{p: *d{i - 1}, q: *d{i - 1}, r: *d{i - 1}}}")
    return "\n".join(lines) + "\n"


def _merge_laughs(levels: int = 14) -> str:
    lines = ["m0: &m0 {k: [1, 2, 3, 4, 5, 6, 7, 8]}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{a: *m{i - 1}, b: *m{i - 1}, <<: *m{i - 1}}}")
    return "\n".join(lines) + "\n"


YAML_CASES = {
    "list laughs (530 B)": (_laughs(), "expands to over"),
    "dict laughs": (_dict_laughs(), "expands to over"),
    "merge-key laughs": (_merge_laughs(), "expands to over"),
    "laughs under experiments": ("experiments:\n  x: &x [1, 2]\n" + _laughs(8, 10).replace("a0: &a0", "a0: &a0"),
                                 "expands to over"),
    "recursive anchor": ("a: &a [1, *a]\n", "recursive"),
    "recursive mapping": ("a: &a {b: *a}\n", "recursive"),
    "deep nesting": ("x: " + "[" * 200 + "]" * 200 + "\n", "nested"),
    "oversize": ("# " + "x" * (fcncfg.MAX_YAML_BYTES + 10) + "\n", "bytes"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_yaml_bounds_library(tmp_path: Path, case: str) -> None:
    text, word = YAML_CASES[case]
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        fcncfg.load_yaml(p)
    assert str(ei.value).startswith(f"{p}: ") and word in str(ei.value), str(ei.value)


@pytest.mark.parametrize("case", ["list laughs (530 B)", "dict laughs", "recursive anchor", "deep nesting"])
def test_yaml_bounds_check_config(tmp_path: Path, case: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(YAML_CASES[case][0])
    err = one_error(fcn("check-config", str(p), timeout=60))
    assert err.startswith(f"error: {p}: ")


def test_experiment_loader_uses_the_bounded_reader(tmp_path: Path) -> None:
    from fcnlib.pipeline.config import load_config

    p = tmp_path / "c.yaml"
    p.write_text(_laughs())
    with pytest.raises(ConfigError, match="expands to over"):
        load_config([p])


def test_real_configs_and_ordinary_aliases_still_load(tmp_path: Path) -> None:
    for f in ("config/config.yaml", "config/demo.yaml", "config/test.yaml", "profiles/slurm/config.yaml"):
        assert isinstance(fcncfg.load_yaml(ROOT / f), dict), f
    p = tmp_path / "c.yaml"
    p.write_text("base: &b {lr: 1.0e-4, momentum: 0.99}\nx: *b\ny: {<<: *b, lr: 1.0e-5}\n")
    assert fcncfg.load_yaml(p) == {"base": {"lr": 1e-4, "momentum": 0.99}, "x": {"lr": 1e-4, "momentum": 0.99},
                                   "y": {"lr": 1e-5, "momentum": 0.99}}


def test_no_other_yaml_reader() -> None:
    """One YAML loader: nothing else in fcnlib, the workflow or bench calls yaml.load/safe_load."""
    hits = []
    for p in [*ROOT.glob("fcnlib/**/*.py"), *ROOT.glob("workflow/**/*.py"), *ROOT.glob("workflow/**/*.smk"),
              *ROOT.glob("bench/**/*.py"), ROOT / "Snakefile"]:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"\byaml\.(safe_)?load\b|\byaml\.(full_|unsafe_)load\b", line):
                hits.append(f"{p.relative_to(ROOT)}:{n}")
    assert hits == [], hits  # pipeline/config.load_yaml builds its bounded loader itself, with no yaml.load


# ---- weights arch ----------------------------------------------------------------------------------------
def _weights_with_arch(path: Path, arch: dict) -> Path:
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625)
    save_model(model, {"arch": model.arch, "modalities": ["rgb"], "preprocessing": {"rgb": CAFFE_VGG.to_dict()},
                       "classes": [f"c{i}" for i in range(21)]}, path)
    obj = torch.load(path, weights_only=True)
    obj["meta"]["arch"] = arch
    torch.save(obj, path)
    return path


def _nested_fusion(levels: int) -> dict:
    leaf = {"variant": "fcn32s", "backbone": "vgg16", "num_classes": 21, "width": 0.0625}
    a: dict = leaf
    for _ in range(levels):
        a = {"fusion": "late", "members": [a, a], "weights": [0.5, 0.5]}  # one dict shared: 2.5 KB on disk
    return a


def _shared_lists(levels: int) -> dict:
    x: list = [0]
    for _ in range(levels):
        x = [x, x]
    return {"variant": "fcn32s", "num_classes": 21, "width": 0.0625, "heads": {"sem": 21}, "junk": x}


ARCH_CASES = {
    "late fusion nested 30 levels": (_nested_fusion(30), "meta['arch'] holds"),
    "late fusion of late fusions": (_nested_fusion(2), "meta['arch'] holds"),
    "shared lists 2^40": (_shared_lists(40), "meta['arch'] holds"),
    "100k heads": ({"variant": "fcn32s", "width": 0.0625, "heads": {f"h{i}": 2 for i in range(100_000)}},
                   "meta['arch'] holds"),
    "wide members list": ({"fusion": "late", "members": [{"variant": "fcn32s"}] * 5000}, "meta['arch'] holds"),
}


@pytest.mark.parametrize("case", list(ARCH_CASES))
def test_arch_bounds_before_building(tmp_path: Path, case: str) -> None:
    arch, word = ARCH_CASES[case]
    w = _weights_with_arch(tmp_path / "w.pt", arch)
    with pytest.raises(WeightsError) as ei:
        load_model(w)
    assert str(ei.value).startswith(f"{w}: ") and word in str(ei.value), str(ei.value)


def test_build_from_arch_refuses_nested_fusion() -> None:
    from fcnlib.models import build_from_arch

    with pytest.raises(ConfigError, match="late-fusion members must be single nets"):
        build_from_arch(_nested_fusion(2))


def test_arch_bomb_through_segment(tmp_path: Path) -> None:
    w = _weights_with_arch(tmp_path / "w.pt", _nested_fusion(40))
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    err = one_error(fcn("segment", str(img), "--weights", str(w), "-o", str(tmp_path / "o"), "--device", "cpu",
                        timeout=60))
    assert err.startswith(f"error: {w}: meta['arch']")


def test_genuine_late_fusion_still_loads(tmp_path: Path) -> None:
    from fcnlib.models import build_late_fusion

    a = build_fcn("fcn32s", "vgg16", num_classes=5, width=0.0625)
    b = build_fcn("fcn32s", "vgg16", num_classes=5, width=0.0625)
    net = build_late_fusion(a, b, split=3)
    pre = {"rgb": CAFFE_VGG.to_dict(), "hha": CAFFE_VGG.to_dict()}
    arch = {"fusion": "late", "members": [a.arch, b.arch], "weights": [0.5, 0.5]}
    save_model(net, {"arch": arch, "modalities": ["rgb", "hha"], "preprocessing": pre, "classes": list("abcde")},
               tmp_path / "f.pt")
    _, meta = load_model(tmp_path / "f.pt")
    assert meta.input_channels == 6


# ---- .mat labels -----------------------------------------------------------------------------------------
def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_sbd_huge_label_refused_from_header(tmp_path: Path) -> None:
    from fcnlib.data.prepare.sbd import read_sbd_cls

    mat = write_mat(tmp_path / "2008_000001.mat", "GTcls", (8000, 6000), "Segmentation")  # 48 MP in ~47 KB
    assert mat.stat().st_size < 100_000
    before = _rss_kb()
    with pytest.raises(DataError) as ei:
        read_sbd_cls(mat)
    assert _rss_kb() - before < 30_000
    msg = str(ei.value)
    assert msg.startswith(f"{mat}: ") and "8000×6000" in msg and "FCN_MAX_IMAGE_PIXELS" in msg


@pytest.mark.parametrize("compressed", [True, False])
def test_mat_cap_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool) -> None:
    from fcnlib.data.prepare.sbd import read_sbd_cls

    mat = write_mat(tmp_path / "x.mat", "GTcls", (300, 200), "Segmentation", fill=b"\x03", compressed=compressed)
    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", "50000")
    with pytest.raises(DataError, match="300×200 array"):
        read_sbd_cls(mat)
    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", "60000")
    assert read_sbd_cls(mat).shape == (300, 200)


def test_siftflow_huge_label_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fcnlib.data.prepare.siftflow import _load_S

    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", "100000")
    mat = write_mat(tmp_path / "coast.mat", "S", (1000, 1000))
    with pytest.raises(DataError, match=r"1000×1000 array \(1000000 pixels\), over the limit of 100000"):
        _load_S(mat, "coast", "semantic", 0, 33)


@pytest.mark.parametrize("var,kind", [("segmentation", "NYUD label"), ("LabelMap", "PASCAL-Context label"),
                                      ("S", "SIFT Flow label")])
def test_every_dataset_mat_var_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, kind: str) -> None:
    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", "10000")
    mat = write_mat(tmp_path / "a.mat", var, (200, 100))
    with pytest.raises(DataError, match="200×100 array"):
        read_mat(mat, kind)


def test_mat_readers_all_go_through_read_mat() -> None:
    """One helper: no dataset module calls scipy's loadmat itself (it would skip the cap)."""
    users = [p.relative_to(ROOT).as_posix() for p in ROOT.glob("fcnlib/**/*.py")
             if re.search(r"\bloadmat\(", p.read_text()) and p.name != "matio.py"
             and "read as loadmat" not in p.read_text()]
    assert users == [], users


MAT_BROKEN = {
    "truncated": lambda p: p.write_bytes(write_mat(p, "S", (40, 40)).read_bytes()[:150]),
    "not a mat": lambda p: p.write_bytes(b"hello, this is text" * 10),
    "v7.3 header": lambda p: p.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM"
                                           + b"\0" * 64),
    "empty": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("case", list(MAT_BROKEN))
def test_broken_mat_is_one_data_error(tmp_path: Path, case: str) -> None:
    from fcnlib.data.prepare.sbd import read_sbd_cls

    p = tmp_path / "x.mat"
    MAT_BROKEN[case](p)
    with pytest.raises(DataError) as ei:
        read_sbd_cls(p)
    assert str(ei.value).startswith(f"{p}: ")
