"""A few hostile inputs through the real Snakemake rules, planted in a copy of the reference demo
workdir as tests/faults/test_bad_inputs.py does: the job fails with one `error:` line naming the file and
the fix, its output is absent, and nothing lands outside the extraction target. The full set of cases
runs fast against the library and the `fcn` CLI (test_hostile_archives/_downloads/_files/_config.py)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from faultlib import Case, diff_trees, first_id, replace_file, run_cases, run_smk, spec_path, tree_digest
from hostile import big_png, long_chain_tar, zip_read_chain

pytestmark = pytest.mark.slow


def plant_long_chain(w: Path) -> str:
    p = w / "data/raw/VOCtrainval_11-May-2012.tar"
    p.unlink()
    long_chain_tar(p)
    return "data/raw/VOCtrainval_11-May-2012.tar"


def plant_zip_read_chain(w: Path) -> str:
    p = w / "data/raw/SiftFlowDataset.zip"
    p.unlink()
    zip_read_chain(p)
    return "data/raw/SiftFlowDataset.zip"


def plant_tgz_bomb(w: Path) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("zeros.bin")
        ti.size = 100 << 20
        tf.addfile(ti, io.BytesIO(bytes(ti.size)))
    p = w / "data/raw/trainval.tar.gz"
    p.unlink()
    p.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return "data/raw/trainval.tar.gz"


ARCHIVES = [
    Case("tar long-name symlink chain", plant_long_chain, "data/extracted/voc2012", "logs/extract/voc2012.log",
         ("delete",), also_absent=("data/extracted/PWNED.txt", "data/PWNED.txt", "PWNED.txt")),
    Case("zip l0→. read chain", plant_zip_read_chain, "data/extracted/siftflow", "logs/extract/siftflow.log",
         ("delete",)),
    Case("tar.gz bomb", plant_tgz_bomb, "data/extracted/context", "logs/extract/context.log",
         ("FCN_EXTRACT_MAX_RATIO",)),
]


def test_hostile_archives_through_the_extract_rule(work: Path, demo_run: Path) -> None:
    run_cases(work, ARCHIVES)
    # The fix (the genuine archives back), then the same targets: the trees match a clean run's.
    for name in ("VOCtrainval_11-May-2012.tar", "SiftFlowDataset.zip", "trainval.tar.gz"):
        shutil.copy2(demo_run / "data/raw" / name, work / "data/raw" / name)
    r = run_smk(work, *[c.target for c in ARCHIVES])
    assert r.returncode == 0, r.stdout[-3000:]
    tops = [c.target for c in ARCHIVES]
    ref = tree_digest(demo_run, tops)
    assert len(ref) > 10 and not diff_trees(ref, tree_digest(work, tops))


def plant_huge_image(w: Path) -> str:
    p = spec_path(w, "nyud", "test", "images", "rgb", first_id(w, "nyud", "test"))
    tmp = p.with_name("huge.tmp.png")
    big_png(tmp, 13000, 13000)
    replace_file(p, tmp.read_bytes())
    tmp.unlink()
    return p.name


def plant_nan_weights(w: Path) -> str:
    p = w / "results/siftflow/sift-fcn32s/weights.pt"
    obj = torch.load(p, weights_only=True)
    key = next(k for k in obj["state_dict"] if k.startswith("fc7"))
    obj["state_dict"][key].view(-1)[0] = float("nan")
    buf = io.BytesIO()
    torch.save(obj, buf)
    replace_file(p, buf.getvalue())
    return "results/siftflow/sift-fcn32s/weights.pt"


def plant_split_escape(w: Path) -> str:
    meta = json.loads((w / "data/context/dataset.json").read_text())
    lst = w / "data/context" / meta["splits"]["val"]["ids"]
    replace_file(lst, (lst.read_text().rstrip("\n") + "\n../../../../etc/passwd\n").encode())
    return lst.name


FILES = [
    Case("13000×13000 PNG as an image", plant_huge_image, "results/nyud/nyud-rgb-fcn32s/test/metrics.json",
         "logs/evaluate/nyud/nyud-rgb-fcn32s/test.log", ("FCN_MAX_IMAGE_PIXELS",)),
    Case("NaN in trained weights", plant_nan_weights, "results/siftflow/sift-fcn32s/test/metrics.json",
         "logs/evaluate/siftflow/sift-fcn32s/test.log", ("retrain",)),
    Case("split id climbing out with ..", plant_split_escape, "results/context/context-fcn32s/val/metrics.json",
         "logs/evaluate/context/context-fcn32s/val.log", ("remove or fix that line",)),
]


def test_hostile_files_through_the_evaluate_rule(work: Path) -> None:
    run_cases(work, FILES)
