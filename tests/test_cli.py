"""The `fcn` command: --version, `python -m fcnlib`, one spelling for shared options, help on every option,
`fcn train` / `fcn evaluate` doing what the rules do, `-o/--out` required where a command must write."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import fcnlib
from fcnlib import cli
from fcnlib.errors import ConfigError
from fcnlib.files.io import atomic_write_json, write_label_png, write_png

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_python_m(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fcn (fcnlib) {fcnlib.__version__}"
    r = subprocess.run([sys.executable, "-m", "fcnlib", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and fcnlib.__version__ in r.stdout
    r = subprocess.run([sys.executable, "-m", "fcnlib", "nope"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown command" in r.stderr


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _parser_of(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The ArgumentParser a subcommand builds (caught when it parses)."""
    def capture(self, *a, **k):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module = importlib.import_module(cli.COMMANDS[name][0])
    with pytest.raises(_Captured) as e:
        module.cli(["x"])
    monkeypatch.undo()
    return e.value.parser


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_option_has_help_and_shared_spellings(name, monkeypatch):
    p = _parser_of(name, monkeypatch)
    visible = [a for a in p._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
    assert visible
    for a in visible:
        assert a.help and a.help.strip(), f"fcn {name}: {a.option_strings or a.dest} has no help text"
    flags = {s for a in visible for s in a.option_strings}
    # what a command writes is -o/--out; progress is --no-progress (no other spellings)
    assert not {"--output", "--quiet"} & flags, f"fcn {name}: {sorted(flags)}"
    writes = [a for a in p._actions if a.dest in ("out", "output")]
    if writes:
        assert any({"-o", "--out"} <= set(a.option_strings) for a in writes), f"fcn {name}: {sorted(flags)}"
    help_text = p.format_help()
    assert "--output" not in help_text.replace("--output-", "") and "--quiet" not in help_text


def test_out_required_where_a_command_must_write(tmp_path, capsys):
    import tarfile

    (tmp_path / "f.txt").write_text("x")
    with tarfile.open(tmp_path / "a.tar", "w") as t:
        t.add(tmp_path / "f.txt", arcname="f.txt")
    assert cli.main(["extract", str(tmp_path / "a.tar"), "-o", str(tmp_path / "y")]) == 0
    assert (tmp_path / "y" / "f.txt").read_text() == "x"
    with pytest.raises(SystemExit) as e:  # the old spelling is gone: argparse refuses it
        cli.main(["extract", str(tmp_path / "a.tar"), "--output", str(tmp_path / "x")])
    assert e.value.code == 2 and not (tmp_path / "x").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # required: neither spelling given
        cli.main(["extract", str(tmp_path / "a.tar")])
    assert e.value.code == 2 and "-o/--out" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# fcn train / fcn evaluate in a pipeline folder laid out as the workflow leaves it
# --------------------------------------------------------------------------------------------------
def _pipeline_folder(root: Path) -> None:
    """data/pascal (a 21-class toy dataset, splits train + seg11valid), data/weights/vgg16.pt, config files."""
    from fcnlib.demo import vgg16_state_dict
    from fcnlib.models import convert_imagenet_file

    rng = np.random.default_rng(0)
    ds = root / "data" / "pascal"
    ids = []
    for i in range(3):
        img = rng.integers(90, 160, (48, 56, 3)).astype(np.uint8)
        lab = np.zeros((48, 56), np.uint8)
        img[10:30, 12:40] = (220, 40, 40) if i % 2 else (40, 60, 220)
        lab[10:30, 12:40] = 1 + i % 2
        write_png(ds / "img" / f"im{i}.png", img)
        write_label_png(ds / "sem" / f"im{i}.png", lab)
        ids.append(f"im{i}")
    (ds / "ids.txt").write_text("\n".join(ids) + "\n")
    split = {"ids": "ids.txt", "images": {"rgb": {"dir": "img", "ext": ".png"}},
             "labels": {"sem": {"dir": "sem", "ext": ".png"}}}
    atomic_write_json(ds / "dataset.json", {"name": "pascal", "source": "demo", "ignore_index": 255,
                                            "heads": {"sem": 21}, "classes": {"sem": [f"c{i}" for i in range(21)]},
                                            "splits": {"train": split, "seg11valid": split}})
    w = root / "data" / "weights"
    w.mkdir(parents=True)
    torch.save(vgg16_state_dict(0.0625, 11), w / "vgg16.pth")
    convert_imagenet_file(w / "vgg16.pth", w / "vgg16.pt", "vgg16", "torchvision", 0.0625)
    test = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    (root / "test.yaml").write_text(yaml.safe_dump(test))
    # a partial file: merged over the complete one before it
    (root / "fast.yaml").write_text("recipes:\n  demo:\n    iterations: 2\n    val_every: 2\n")


def test_train_then_evaluate_like_the_rules(tmp_path, monkeypatch, capsys):
    _pipeline_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FCN_PROGRESS", raising=False)
    with pytest.raises(ConfigError, match="no experiment 'nope'"):
        cli_args = ["train", "nope", "-c", "test.yaml"]
        from fcnlib.cli.train import cli as train_cli

        train_cli(cli_args[1:])
    with pytest.raises(ConfigError, match="voc-fcn32s/weights.pt: initial weights of voc-fcn16s not found"):
        train_cli(["voc-fcn16s", "-c", "test.yaml"])
    assert cli.main(["train", "voc-fcn32s", "-c", "test.yaml", "-c", "fast.yaml", "--device", "cpu",
                     "--threads", "1", "--no-progress"]) == 0
    monkeypatch.delenv("FCN_PROGRESS", raising=False)
    exp = tmp_path / "results" / "pascal" / "voc-fcn32s"
    obj = torch.load(exp / "weights.pt", weights_only=True)
    assert obj["meta"]["iterations"] == 2 and obj["meta"]["experiment"] == "voc-fcn32s"
    log = [json.loads(s) for s in (exp / "log.jsonl").read_text().splitlines()]
    assert log[-1]["iter"] == 2 and "val" in log[-1]
    assert not (exp / ".train" / "resume.pt").exists()
    assert "voc-fcn32s: 2 iterations" in capsys.readouterr().out

    # evaluate: dataset from the weights, split from the config (seg11valid), output where the rule writes
    assert cli.main(["evaluate", str(exp / "weights.pt"), "-c", "test.yaml", "--device", "cpu",
                     "--no-progress"]) == 0
    metrics = json.loads((exp / "seg11valid" / "metrics.json").read_text())
    assert metrics["n_images"] == 3 and 0.0 <= metrics["mean_iu"] <= 1.0 and metrics["split"] == "seg11valid"
    assert "mean_iu" in capsys.readouterr().out
    # no config at all (weights copied elsewhere): dataset and split come from the weights' meta
    assert obj["meta"]["val_split"] == "seg11valid" and obj["meta"]["data_source"] == "demo"
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(exp / "weights.pt", tmp_path / "elsewhere" / "w.pt")
    (tmp_path / "data" / "pascal" / "ids.txt").write_text("im0\nim1\n")  # a different count proves it scored
    assert cli.main(["evaluate", "elsewhere/w.pt", "--device", "cpu", "--no-progress"]) == 0
    moved = json.loads((tmp_path / "elsewhere" / "seg11valid" / "metrics.json").read_text())
    assert moved["split"] == "seg11valid" and moved["n_images"] == 2
    capsys.readouterr()
    meta = {k: v for k, v in obj["meta"].items() if k != "val_split"}  # a file from before the key
    torch.save({**obj, "meta": {**meta, "dataset": "pascal", "experiment": "mine"}}, tmp_path / "old.pt")
    assert cli.main(["evaluate", "old.pt", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "old.pt: cannot tell which split" in err and "experiment 'mine'" in err and "pass --split" in err
    (tmp_path / "data" / "pascal" / "ids.txt").write_text("im0\nim1\nim2\n")
    out = tmp_path / "m.json"
    assert cli.main(["evaluate", str(exp / "weights.pt"), "--dataset", "data/pascal/dataset.json",
                     "--split", "train", "-o", str(out), "--max-images", "2", "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["n_images"] == 2
