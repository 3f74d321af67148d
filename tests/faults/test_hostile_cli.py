"""Raw tracebacks become one line (issue 23, class 8): every `fcn` subcommand is driven with the same set
of bad inputs where it takes a file — missing, a folder, a FIFO, a character device, binary garbage, text
that is not UTF-8, an empty file — and must exit 2 with exactly one `error: ` line naming the input, no
traceback. The mechanism is fcnlib.errors.one_line (the dispatcher and the rule scripts) plus
fcnlib.files.paths.open_regular where inputs are opened; also: disk full / file size limit while writing
(DiskError naming the file), `--size 0 0`, FCN_MAX_IMAGE_PIXELS=0 blamed on the variable, bad numbers in
a weights meta. In-process through fcnlib.cli.main (one torch import), FIFO cases in a subprocess (a
reader that opened one would block)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import ROOT, fcn, one_error
from PIL import Image

from fcnlib import cli
from fcnlib.errors import DiskError, one_line
from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG

# subcommand → argv with {X} where the bad input goes ({OUT}: a fresh output folder)
COMMANDS = {
    "check-config": ["check-config", "{X}"],
    "segment": ["segment", "{X}", "--weights", "{W}", "-o", "{OUT}", "--device", "cpu", "--no-progress"],
    "segment-weights": ["segment", "{IMG}", "--weights", "{X}", "-o", "{OUT}", "--device", "cpu"],
    "evaluate": ["evaluate", "{X}", "--dataset", "pascal", "--split", "val", "-o", "{OUT}/m.json"],
    "export": ["export", "{X}", "-o", "{OUT}/m.pt"],
    "hha": ["hha", "{X}", "-o", "{OUT}", "--workers", "1", "--no-progress"],
    "convert-weights": ["convert-weights", "{X}", "-o", "{OUT}/w.pt", "--backbone", "vgg16", "--format", "caffe"],
    "convert-released": ["convert-weights", "{X}", "-o", "{OUT}/w.pt", "--released", "voc-fcn32s"],
    "extract": ["extract", "{X}", "-o", "{OUT}/x"],
    "train-config": ["train", "voc-fcn32s", "-c", "{X}", "-o", "{OUT}/w.pt"],
    "prepare-pascal": ["prepare-pascal", "-o", "{OUT}", "--voc2011", "{X}", "--sbd", "{X}"],
    "download-file-url": ["download", "file://{X}", "-o", "{OUT}/f", "--sha256", "0" * 64, "--no-progress"],
}

BAD = {
    "missing": lambda d: d / "nope.bin",
    "folder": lambda d: (d / "folder").mkdir() or d / "folder",
    "device": lambda d: Path("/dev/null"),
    "garbage": lambda d: (d / "garbage.bin").write_bytes(bytes(range(256)) * 64) or d / "garbage.bin",
    "latin-1 text": lambda d: (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1")) or d / "latin1.yaml",
    "empty": lambda d: (d / "empty.pt").write_bytes(b"") or d / "empty.pt",
}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625)
    save_model(model, {"arch": model.arch, "modalities": ["rgb"], "preprocessing": {"rgb": CAFFE_VGG.to_dict()},
                       "classes": [f"c{i}" for i in range(21)]}, d / "w.pt")
    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(d / "img.png")
    return {"W": d / "w.pt", "IMG": d / "img.png"}


def _argv(cmd: str, bad: Path, good: dict[str, Path], out: Path) -> list[str]:
    subs = {"{X}": str(bad), "{W}": str(good["W"]), "{IMG}": str(good["IMG"]), "{OUT}": str(out)}
    argv = []
    for a in COMMANDS[cmd]:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    return argv


def _main_one_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and "Traceback" not in err, (rc, err[-3000:])
    errs = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errs) == 1, err[-3000:]
    return errs[0]


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_every_command_bad_input_one_line(tmp_path: Path, good: dict[str, Path], cmd: str, kind: str,
                                          capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # commands that read config/ from the cwd find none
    bad = BAD[kind](tmp_path)
    out = tmp_path / "out"
    err = _main_one_error(_argv(cmd, bad, good, out), capsys)
    # the line names the input, or (for a config the command composes) the config it came from
    assert str(bad) in err or bad.name in err, err


@pytest.mark.parametrize("cmd", ["check-config", "segment", "segment-weights", "export", "hha", "extract",
                                 "convert-weights", "train-config"])
def test_fifo_named_as_fifo(tmp_path: Path, good: dict[str, Path], cmd: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = fcn(*_argv(cmd, fifo, good, tmp_path / "out"), timeout=60)
    err = one_error(r)
    assert str(fifo) in err and ("FIFO" in err or "not a regular file" in err), err


# ---- single cases the issue names ------------------------------------------------------------------------
def test_export_size_zero(tmp_path: Path, good: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    for size in (["0", "0"], ["-3", "5"], ["100000", "100000"]):
        err = _main_one_error(["export", str(good["W"]), "-o", str(tmp_path / "m.pt"), "--size", *size], capsys)
        assert "--size" in err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan", "lots"])
def test_max_pixels_variable_blamed(tmp_path: Path, good: dict[str, Path], value: str,
                                    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", value)
    err = _main_one_error(["segment", str(good["IMG"]), "--weights", str(good["W"]), "-o", str(tmp_path / "o"),
                           "--device", "cpu"], capsys)
    assert err.startswith("error: FCN_MAX_IMAGE_PIXELS=") and str(good["IMG"]) not in err, err


def _limit_fsize(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.parametrize("cmd", ["segment", "export", "demo-data"])
def test_file_size_limit_is_a_disk_error(tmp_path: Path, good: dict[str, Path], cmd: str) -> None:
    """RLIMIT_FSIZE (EFBIG): what a full quota or disk does to a writer, without filling one."""
    out = tmp_path / "out"
    argv = {"segment": ["segment", str(good["IMG"]), "--weights", str(good["W"]), "-o", str(out), "--device",
                        "cpu", "--overlay"],
            "export": ["export", str(good["W"]), "-o", str(out / "m.pt")],
            "demo-data": ["demo-data", "-o", str(out), "--parts", "pascal"]}[cmd]
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "fcnlib", *argv], capture_output=True, text=True, timeout=300,
                       env=env, preexec_fn=lambda: _limit_fsize(600))
    err = one_error(r)
    assert "file size limit" in err and str(out) in err, err
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_one_line_maps_os_errors() -> None:
    import errno

    for no, word in ((errno.ENOSPC, "no space left"), (errno.EFBIG, "file size limit"),
                     (errno.EDQUOT, "no space left")):
        e = one_line(OSError(no, os.strerror(no), "/x/y.png"))
        assert isinstance(e, DiskError) and str(e).startswith("/x/y.png: ") and word in str(e)
    e = one_line(PermissionError(errno.EACCES, "Permission denied", "/x/z"))
    assert str(e).startswith("/x/z: Permission denied; fix its permissions")
    assert one_line(KeyError("bug")) is None  # a bug keeps its traceback


def test_weights_meta_strings_for_means(tmp_path: Path, good: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    obj = torch.load(good["W"], weights_only=True)
    obj["meta"]["preprocessing"]["rgb"]["mean"] = ["104.0", "116.7", "122.7"]
    w = tmp_path / "strings.pt"
    torch.save(obj, w)
    err = _main_one_error(["segment", str(good["IMG"]), "--weights", str(w), "-o", str(tmp_path / "o"), "--device",
                           "cpu"], capsys)
    assert err.startswith(f"error: {w}: meta['preprocessing']['rgb']") and "'104.0'" in err, err


@pytest.mark.parametrize("exc", [
    lambda p: open(p / "missing.txt"),
    lambda p: open(p),
    lambda p: (p / "latin1.txt").write_bytes(b"caf\xe9") and (p / "latin1.txt").read_text(encoding="utf-8"),
    lambda p: (_ for _ in ()).throw(OSError(28, "No space left on device", str(p / "out.png"))),
])
def test_rule_scripts_one_line(tmp_path: Path, exc, capsys: pytest.CaptureFixture) -> None:
    """fcnlib.pipeline.scripting.run (every rule script) maps the same failures to one line in stderr and the log."""
    from types import SimpleNamespace

    from fcnlib.pipeline.scripting import run

    log = tmp_path / "rule.log"
    job = SimpleNamespace(log=[str(log)], threads=1, rule="x")
    with pytest.raises(SystemExit) as ei:
        run(lambda j: exc(tmp_path), job)
    assert ei.value.code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in log.read_text(), err
    assert log.read_text().rstrip().splitlines()[-1] == lines[0]


@pytest.mark.parametrize("what", ["dataset.json", "split list"])
def test_evaluate_fifo_or_latin1_dataset_files(tmp_path: Path, good: dict[str, Path], what: str,
                                              capsys: pytest.CaptureFixture) -> None:
    """A dataset.json or split list that is a FIFO is named (reading one would block); one in latin-1 is named."""
    import json

    root = tmp_path / "ds"
    (root / "splits").mkdir(parents=True)
    meta = {"name": "toy", "heads": {"sem": 21}, "classes": {"sem": [f"c{i}" for i in range(21)]},
            "splits": {"val": {"ids": "splits/val.txt", "images": {"rgb": {"dir": "rgb", "ext": ".png"}},
                               "labels": {"sem": {"dir": "labels", "ext": ".png"}}}}}
    bad = root / ("dataset.json" if what == "dataset.json" else "splits/val.txt")
    if what == "split list":
        (root / "dataset.json").write_text(json.dumps(meta))
    os.mkfifo(bad)
    argv = ["evaluate", str(good["W"]), "--dataset", str(root / "dataset.json"), "--split", "val", "-o",
            str(tmp_path / "m.json"), "--device", "cpu"]
    err = one_error(fcn(*argv, timeout=60))
    assert str(bad) in err and "FIFO" in err, err
    bad.unlink()
    bad.write_bytes("caf\xe9\n".encode("latin-1") if what == "split list" else b'{"name": "caf\xe9"}')
    err = _main_one_error(argv, capsys)
    assert str(bad) in err, err
