"""Issue 23 class 3 through Snakemake: a wrong NYUD archive is run to the end (prepare, HHA, training,
evaluation), then the corrected archive arrives and the same targets are rerun: every file under the
dataset, the HHA folder and the experiment equals the uninterrupted reference run's — no label, link, HHA
image or weight of the wrong run survives (before the output contract, labels and HHA were kept by
existing and dataset.json rewritten over them)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from faultlib import diff_trees, leftovers, run_smk, tree_digest
from spoil import spoil_nyud

pytestmark = pytest.mark.slow

TARGETS = ("data/nyud/hha/manifest.json", "results/nyud/nyud-hha-fcn32s/test/metrics.json")
TOPS = ("data/extracted/nyud", "data/nyud", "results/nyud/nyud-hha-fcn32s")


def test_rerun_after_a_corrected_archive_equals_the_reference_run(work: Path, demo_run: Path,
                                                                  tmp_path: Path) -> None:
    raw = work / "data/raw/nyud.tar.gz"
    x = tmp_path / "x"
    with tarfile.open(raw) as tf:
        tf.extractall(x / "nyud", filter="data")
    spoil_nyud(x)
    raw.unlink()
    with tarfile.open(raw, "w:gz") as tf:  # a new file: Snakemake reruns what depends on it
        tf.add(x / "nyud" / "nyud", arcname="nyud")
    r = run_smk(work, *TARGETS)
    assert r.returncode == 0, r.stdout[-3000:]
    ref = tree_digest(demo_run, TOPS)
    wrong = diff_trees(ref, tree_digest(work, TOPS))
    assert any(d.startswith("differs: data/nyud/labels/") for d in wrong), wrong  # the wrong archive was used
    assert any(d.startswith("differs: data/nyud/hha/") for d in wrong), wrong

    shutil.copyfile(demo_run / "data/raw/nyud.tar.gz", raw)  # the corrected archive (new mtime)
    r = run_smk(work, *TARGETS)
    assert r.returncode == 0, r.stdout[-3000:]
    assert diff_trees(ref, tree_digest(work, TOPS)) == []
    assert leftovers(work) == []
