"""Bad inputs end to end: each is planted where the workflow reads it, in a copy of the reference demo
workdir, and the real Snakemake run must fail with ONE clear `error:` line (in the job's log and on the
console) that names the bad file and the fix, and leave nothing at the job's destination.

To keep CI time down, the faults of one kind are planted together (each in a different job) and run in
ONE Snakemake invocation with --keep-going; each job's log is then checked on its own.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from faultlib import CONFIG, REPORT, Case, first_id, replace_file, run_cases, run_smk, spec_path
from PIL import Image

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------
# archives and downloads
# ------------------------------------------------------------------------------------------------
def _tar(path: Path, members: list[tarfile.TarInfo], gz: bool = False) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for m in members:
            data = b"x" * m.size if m.isfile() else None
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    raw = gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()
    path.unlink(missing_ok=True)
    path.write_bytes(raw)


def _file(name: str, size: int = 4) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.size = size
    return t


def _link(name: str, target: str, hard: bool) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    t.linkname = target
    return t


def plant_bad_checksum(w: Path) -> str:
    """The mirror serves a file whose bytes differ from the published checksum."""
    src = w / "data/demo_src/benchmark.tgz"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    src.unlink()
    src.write_bytes(bytes(data))
    return "benchmark.tgz"


def plant_truncated(w: Path) -> str:
    p = w / "data/raw/nyud.tar.gz"
    data = p.read_bytes()
    p.unlink()
    p.write_bytes(data[: len(data) // 2])
    return "data/raw/nyud.tar.gz"


def plant_dotdot(w: Path) -> str:
    _tar(w / "data/raw/VOCtrainval_03-May-2010.tar", [_file("VOC/ok.txt"), _file("../../escaped_dotdot.txt")])
    return "data/raw/VOCtrainval_03-May-2010.tar"


def plant_absolute(w: Path) -> str:
    _tar(w / "data/raw/VOCtrainval_25-May-2011.tar", [_file("VOC/ok.txt"), _file(f"{w}/escaped_abs.txt")])
    return "data/raw/VOCtrainval_25-May-2011.tar"


def plant_symlink(w: Path) -> str:
    _tar(w / "data/raw/VOCtrainval_11-May-2012.tar",
         [_link("VOC/evil", "../../..", hard=False), _file("VOC/evil/escaped_sym.txt")])
    return "data/raw/VOCtrainval_11-May-2012.tar"


def plant_hardlink(w: Path) -> str:
    _tar(w / "data/raw/trainval.tar.gz", [_link("labels.txt", "../../../config.yaml", hard=True)], gz=True)
    return "data/raw/trainval.tar.gz"


def plant_zip_slip(w: Path) -> str:
    p = w / "data/raw/SiftFlowDataset.zip"
    p.unlink()
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("SiftFlowDataset/ok.txt", "ok")
        zf.writestr("../../escaped_zip.txt", "pwned")
    return "data/raw/SiftFlowDataset.zip"


ARCHIVE_CASES = [
    Case("archive with bad checksum", plant_bad_checksum, "data/raw/benchmark.tgz",
         "logs/download/benchmark.tgz.log", ("by hand",)),
    Case("truncated archive", plant_truncated, "data/extracted/nyud", "logs/extract/nyud.log", ("delete",)),
    Case("tar member with ../", plant_dotdot, "data/extracted/voc2010", "logs/extract/voc2010.log", ("delete",),
         also_absent=("escaped_dotdot.txt", "data/escaped_dotdot.txt")),
    Case("tar member with absolute path", plant_absolute, "data/extracted/voc2011", "logs/extract/voc2011.log",
         ("delete",), also_absent=("escaped_abs.txt",)),
    Case("tar symlink escaping", plant_symlink, "data/extracted/voc2012", "logs/extract/voc2012.log", ("delete",),
         also_absent=("escaped_sym.txt",)),
    Case("tar hardlink escaping", plant_hardlink, "data/extracted/context", "logs/extract/context.log",
         ("delete",)),
    Case("zip slip", plant_zip_slip, "data/extracted/siftflow", "logs/extract/siftflow.log", ("delete",),
         also_absent=("escaped_zip.txt", "data/escaped_zip.txt")),
]


def test_bad_archives(work: Path) -> None:
    run_cases(work, ARCHIVE_CASES)


# ------------------------------------------------------------------------------------------------
# images, labels, split lists, depth
# ------------------------------------------------------------------------------------------------


def plant_truncated_jpeg(w: Path) -> str:
    p = spec_path(w, "pascal", "seg11valid", "images", "rgb", first_id(w, "pascal", "seg11valid"))
    replace_file(p, p.read_bytes()[:200])
    return p.name


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def plant_label_out_of_range(w: Path) -> str:
    p = spec_path(w, "context", "val", "labels", "sem", first_id(w, "context", "val"))
    lab = np.array(Image.open(p))
    lab[0, :4] = 77  # 60 classes (0..59) + 255 void: 77 is neither
    replace_file(p, _png(lab))
    return p.name


def plant_size_mismatch(w: Path) -> str:
    p = spec_path(w, "nyud", "test", "labels", "sem", first_id(w, "nyud", "test"))
    lab = np.array(Image.open(p))
    replace_file(p, _png(np.ascontiguousarray(lab[:-5, :-3])))
    return p.name


def plant_missing_id(w: Path) -> str:
    import json

    meta = json.loads((w / "data/siftflow/dataset.json").read_text())
    lst = w / "data/siftflow" / meta["splits"]["test"]["ids"]
    replace_file(lst, (lst.read_text().rstrip("\n") + "\nno_such_image_123\n").encode())
    return "no_such_image_123"


DATA_CASES = [
    Case("truncated JPEG", plant_truncated_jpeg, "results/pascal/voc-fcn32s/seg11valid/metrics.json",
         "logs/evaluate/pascal/voc-fcn32s/seg11valid.log", ("truncated", "re-extract", "delete")),
    Case("label PNG value outside the classes", plant_label_out_of_range,
         "results/context/context-fcn32s/val/metrics.json",
         "logs/evaluate/context/context-fcn32s/val.log", ("rerun", "re-extract", "regenerate", "prepare")),
    Case("label/image size mismatch", plant_size_mismatch, "results/nyud/nyud-rgb-fcn32s/test/metrics.json",
         "logs/evaluate/nyud/nyud-rgb-fcn32s/test.log", ("rerun", "re-extract", "regenerate", "prepare")),
    Case("split list naming a missing id", plant_missing_id, "results/siftflow/sift-fcn32s/test/metrics.json",
         "logs/evaluate/siftflow/sift-fcn32s/test.log", ("remove the id", "rerun")),
]


def test_bad_images_labels_splits(work: Path) -> None:
    run_cases(work, DATA_CASES)


def plant_raw_split_missing_id(w: Path) -> str:
    p = w / "data/raw/seg11valid.txt"
    replace_file(p, (p.read_text().rstrip("\n") + "\n2099_999999\n").encode())
    return "2099_999999"


def plant_depth_in_metres(w: Path) -> str:
    """A depth PNG saved in metres (1..5) instead of the dataset's millimetres."""
    p = spec_path(w, "nyud", "test", "images", "depth", first_id(w, "nyud", "test"))
    mm = np.array(Image.open(p)).astype(np.float64)
    replace_file(p, _png(np.round(mm / 1000.0).clip(0, 65535).astype(np.uint16)))
    shutil.rmtree(w / "data/nyud/hha")  # else the resumable encoder skips the image it already encoded
    return p.name


PREPARE_CASES = [
    Case("downloaded split list naming a missing id (SBD merge)", plant_raw_split_missing_id,
         "data/pascal/dataset.json", "logs/prepare/pascal.log",
         ("re-extract", "re-download", "drop the reference list", "checksums")),
    Case("depth PNG in the wrong units (HHA)", plant_depth_in_metres, "data/nyud/hha/manifest.json",
         "logs/hha/encode_hha.log", ("depth_scale", "depth-scale", "scale")),
]


def test_bad_prepare_inputs(work: Path) -> None:
    run_cases(work, PREPARE_CASES)


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs a shell command: what a malicious weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(p: Path, marker: Path) -> None:
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _Payload(marker)}, buf)
    replace_file(p, buf.getvalue())


def plant_pickle_raw(w: Path) -> str:
    """GoogLeNet's ImageNet file (no experiment of the test config uses it, so nothing downstream reruns)."""
    p = w / "data/raw/googlenet.pth"
    p.touch()
    _evil(p, w / "PWNED_raw")
    os.utime(p)  # newer than the manifest: Snakemake takes it as downloaded
    return "data/raw/googlenet.pth"


def plant_pickle_trained(w: Path) -> str:
    _evil(w / "results/nyud/nyud-rgb-fcn32s/weights.pt", w / "PWNED_trained")
    return "results/nyud/nyud-rgb-fcn32s/weights.pt"


def plant_other_arch(w: Path) -> str:
    """The FCN-16s that FCN-8s starts from is replaced by a 60-class PASCAL-Context net."""
    p = w / "results/pascal/voc-fcn16s/weights.pt"
    replace_file(p, (w / "results/context/context-fcn32s/weights.pt").read_bytes())
    return "voc-fcn16s/weights.pt"


def plant_missing_keys(w: Path) -> str:
    p = w / "results/pascal/voc-fcn32s/weights.pt"
    obj = torch.load(p, weights_only=True)
    del obj["state_dict"]["score_fr.weight"]
    buf = io.BytesIO()
    torch.save(obj, buf)
    replace_file(p, buf.getvalue())
    return "results/pascal/voc-fcn32s/weights.pt"


WEIGHTS_CASES = [
    Case("pickle that runs code (raw ImageNet file)", plant_pickle_raw, "data/weights/googlenet.pt",
         "logs/weights/googlenet.log", ("re-create", "recreate", "delete"), also_absent=("PWNED_raw",)),
    Case("pickle that runs code (trained weights)", plant_pickle_trained,
         "results/nyud/nyud-rgb-fcn32s/test/metrics.json",
         "logs/evaluate/nyud/nyud-rgb-fcn32s/test.log", ("re-create", "recreate", "delete"),
         also_absent=("PWNED_trained",)),
    Case("weights of another architecture (staged init)", plant_other_arch, "results/pascal/voc-fcn8s/weights.pt",
         "logs/train/pascal/voc-fcn8s.log", ("retrain", "matching", "rerun", "delete")),
    Case("weights with missing keys", plant_missing_keys, "results/pascal/voc-fcn32s/seg11valid/metrics.json",
         "logs/evaluate/pascal/voc-fcn32s/seg11valid.log", ("retrain", "matching", "rerun", "delete")),
]


def test_bad_weights(work: Path) -> None:
    run_cases(work, WEIGHTS_CASES)


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
def _cfg(tmp: Path, name: str, edit: Callable[[str], str]) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(edit(CONFIG.read_text()))
    return p


CONFIG_CASES = {
    "unknown key": (lambda t: t + "\ntrainng: {iterations: 5}\n", ["trainng", "unknown key"]),
    "unknown nested key": (lambda t: t.replace("  log_every: 2", "  log_every: 2\n  lr_polcy: step"),
                           ["training", "lr_polcy"]),
    "wrong type": (lambda t: t.replace("\nseed: 0\n", '\nseed: "zero"\n'), ["seed", "integer"]),
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_bad_config(name: str, tmp_path: Path) -> None:
    edit, words = CONFIG_CASES[name]
    cfg = _cfg(tmp_path, name.replace(" ", "_"), edit)
    assert cfg.read_text() != CONFIG.read_text()
    r = run_smk(tmp_path / "w", "-n", "all", config=cfg, timeout=300)
    assert r.returncode != 0
    lines = [ln for ln in r.stdout.splitlines() if "invalid configuration" in ln]
    REPORT.append(f"config {name}: {lines}")
    print(lines)
    assert len(lines) == 1, r.stdout[-3000:]
    assert str(cfg) in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "w" / "data").exists() and not (tmp_path / "w" / "results").exists()


def test_yaml_with_python_tags_is_refused(tmp_path: Path) -> None:
    """Snakemake parses --configfile itself (safe loader: the tag is refused, no code runs) before our
    Snakefile starts, so its message is Snakemake's own; fcnlib's loader (the Snakefile's default config,
    `fcn config`) names the file and the fix."""
    from fcnlib.errors import ConfigError
    from fcnlib.pipeline.config import load_yaml

    marker = tmp_path / "PWNED"
    cfg = _cfg(tmp_path, "pytag", lambda t: t.replace(
        "\nname: test\n", f'\nname: !!python/object/apply:os.system ["touch {marker}"]\n'))
    r = run_smk(tmp_path / "w", "-n", "all", config=cfg, timeout=300)
    assert r.returncode != 0
    assert not marker.exists(), "a python tag in the config ran code"
    lines = [ln for ln in r.stdout.splitlines() if "not valid JSON or YAML" in ln]
    REPORT.append(f"config python tag (snakemake --configfile): {lines}")
    assert len(lines) == 1, r.stdout[-3000:]
    with pytest.raises(ConfigError) as e:
        load_yaml(cfg)
    REPORT.append(f"config python tag (fcnlib.pipeline.config.load_yaml): {e.value}")
    print(e.value)
    assert not marker.exists()
    assert str(cfg) in str(e.value) and "python tags" in str(e.value)

