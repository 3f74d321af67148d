"""`fcn prepare-pascal`: SBD merged into VOC and the paper's PASCAL splits, as the prepare_pascal rule."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from fcnlib.cli.options import add_out, replaced_out
from fcnlib.data.prepare.voc import prepare_pascal


def cli(argv: Sequence[str] | None = None) -> int:
    """`fcn prepare-pascal -o OUT --voc2011 DIR --sbd DIR [--voc2012 DIR] [--seg11valid F] [--train-noval F]`"""
    p = argparse.ArgumentParser(prog="fcn prepare-pascal", description="SBD merge + the paper's PASCAL "
                                "splits → OUT/dataset.json (the *_dir args are extracted archive roots)")
    add_out(p, "folder for dataset.json, labels and split lists (built whole: new, empty or an earlier "
                    "prepare-pascal output)", required=True, type=Path)
    p.add_argument("--voc2011", required=True, type=Path, help="extracted VOC2011 trainval archive root")
    p.add_argument("--sbd", required=True, type=Path, help="extracted SBD benchmark.tgz root")
    p.add_argument("--voc2012", type=Path, help="extracted VOC2012 trainval root (adds trainaug / val12)")
    p.add_argument("--seg11valid", type=Path, help="the authors' seg11valid.txt, to cross-check")
    p.add_argument("--train-noval", type=Path, help="SBD train_noval.txt (adds split train_noval)")
    p.add_argument("--source", choices=("real", "demo"), default="real",
                   help="real (checks the paper's split sizes) or demo (synthetic data; default real)")
    p.add_argument("--workers", type=int, help="processes for the SBD conversion (default: all cores)")
    a = p.parse_args(argv)
    replaced_out(a.out, "dataset.json", "fcn prepare-pascal")
    prepare_pascal(a.out, voc2011_dir=a.voc2011, sbd_dir=a.sbd, voc2012_dir=a.voc2012,
                   seg11valid_list=a.seg11valid, train_noval_list=a.train_noval, source=a.source,
                   workers=a.workers)
    print(a.out / "dataset.json")
    return 0
