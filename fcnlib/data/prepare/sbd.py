"""SBD (Hariharan et al. 2011, benchmark.tgz): find the dataset folder, convert cls/*.mat to palette PNGs.

Conversion runs in a process pool (fcnlib.runtime.parallel); every PNG is written (the prepare step builds its
whole folder afresh: fcnlib.files.io.staged_dir), so none can be left from an older archive.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcnlib.errors import DataError
from fcnlib.files.io import label_ids, write_label_png
from fcnlib.files.matio import read_mat
from fcnlib.runtime.parallel import map_parallel

SBD_SUBDIR = Path("benchmark_RELEASE") / "dataset"


def find_sbd_root(sbd_dir: Path) -> Path:
    """The folder holding cls/, img/, train.txt, val.txt inside an extracted benchmark.tgz."""
    sbd_dir = Path(sbd_dir)
    for cand in (sbd_dir / SBD_SUBDIR, sbd_dir / "dataset", sbd_dir):
        if (cand / "cls").is_dir() and (cand / "train.txt").is_file():
            return cand
    raise DataError(f"{sbd_dir}: no SBD dataset folder (expected {sbd_dir / SBD_SUBDIR} with cls/, img/, "
                    f"train.txt, val.txt); point sbd_dir at the extracted benchmark.tgz, or delete the "
                    f"extracted folder and rerun the extract rule")


def read_sbd_cls(mat_path: Path) -> np.ndarray:
    """Class-id map (H×W uint8, 0 = background, 1..20) of one SBD cls/*.mat file (sizes checked from the
    file's headers under the pixel cap before decompressing; ids integral and in range)."""
    fix = "the file is truncated or not SBD's — delete benchmark.tgz and its extracted folder and rerun"
    mat = read_mat(mat_path, "SBD label file", fix)
    try:
        seg = mat["GTcls"][0]["Segmentation"][0]
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise DataError(f"{mat_path}: not an SBD GTcls .mat file ({type(e).__name__}: {e}); {fix}") from None
    seg = np.asarray(seg)
    if seg.ndim != 2 or seg.size == 0:
        raise DataError(f"{mat_path}: GTcls.Segmentation has shape {seg.shape}, expected H×W")
    return label_ids(mat_path, seg, 0, 20, "GTcls.Segmentation", "not an SBD class label file (ids 0..20): "
                     + fix).astype(np.uint8)


def _convert_one(args: tuple[str, str]) -> str:
    mat, png = args
    write_label_png(png, read_sbd_cls(Path(mat)))
    return png


def convert_sbd(sbd_root: Path, out_dir: Path, ids: Sequence[str], *, workers: int | None = None,
                progress: bool = True) -> Path:
    """Write out_dir/<id>.png for every id from sbd_root/cls/<id>.mat; returns out_dir."""
    sbd_root, out_dir = Path(sbd_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (sbd_root / "cls").is_dir():
        raise DataError(f"{sbd_root / 'cls'}: SBD cls folder not found; pass the dataset folder "
                        f"(see find_sbd_root), or delete the extracted SBD folder and rerun the extract rule")
    have = {p.name[:-4] for p in os.scandir(sbd_root / "cls") if p.name.endswith(".mat")}
    todo = list(dict.fromkeys(ids))
    missing = [i for i in todo if i not in have]
    if missing:
        raise DataError(f"{sbd_root / 'cls' / (missing[0] + '.mat')}: SBD label for id {missing[0]} is "
                        f"missing ({len(missing)} ids in all); the SBD archive is incomplete — delete it "
                        f"and its extracted folder and rerun")
    jobs = [(str(sbd_root / "cls" / f"{i}.mat"), str(out_dir / f"{i}.png")) for i in todo]
    map_parallel(_convert_one, jobs, workers, "SBD .mat → PNG", progress=progress)
    return out_dir
