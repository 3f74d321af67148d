"""`fcn convert-weights`: an ImageNet classifier, or one of the authors' released FCN caffemodels, into
our weights file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fcnlib.cli.options import add_out
from fcnlib.errors import WeightsError
from fcnlib.eval.released import convert
from fcnlib.facts import released
from fcnlib.models.caffe import read_caffemodel, sniff_format
from fcnlib.models.fcn import BACKBONES
from fcnlib.models.surgery import FORMATS, convert_imagenet_file


def _is_fcn_caffemodel(src: str | os.PathLike) -> bool:
    """A trained FCN (has score layers) rather than an ImageNet classifier — decided from the file."""
    if not str(src).endswith(".caffemodel") or not Path(src).is_file():
        return False
    return any(n.startswith("score_fr") for n in read_caffemodel(src))


def cli(argv: list[str] | None = None) -> int:
    """`fcn convert-weights SRC -o DST --backbone vgg16 --format caffe|torchvision` (ImageNet classifier), or
    `fcn convert-weights fcn8s-heavy-pascal.caffemodel -o DST [--released voc-fcn8s]` (the authors' FCN)."""
    ap = argparse.ArgumentParser(prog="fcn convert-weights",
                                 description="ImageNet classifier → fully convolutional weights file, or one of "
                                             "the authors' released FCN caffemodels → our weights file")
    ap.add_argument("src", help="classifier weights (.caffemodel or torchvision .pth), or a released FCN "
                                ".caffemodel")
    add_out(ap, "output .pt file", required=True)
    ap.add_argument("--backbone", default="vgg16", choices=sorted(BACKBONES), help="classifier architecture")
    ap.add_argument("--format", default=None, choices=FORMATS, dest="fmt",
                    help="caffe (.caffemodel, BGR 0-255) or torchvision (.pth, RGB 0-1); default: detected "
                         "from the file")
    ap.add_argument("--width", type=float, default=None,
                    help="channel width of a reduced stand-in (default: detected from the layers' shapes; "
                         "1.0 = the paper's nets)")
    ap.add_argument("--released", choices=sorted(released.MODELS), default=None,
                    help="which released FCN the caffemodel is (default: from its file name, e.g. "
                         "fcn8s-heavy-pascal.caffemodel → voc-fcn8s)")
    a = ap.parse_args(argv)
    name = a.released or released.by_caffemodel(a.src)
    if name is not None:
        out = convert(a.src, a.out, name, a.width)
    else:
        try:
            out = convert_imagenet_file(a.src, a.out, a.backbone, a.fmt, a.width)
        except WeightsError:
            # not a classifier: a trained FCN under another file name
            if sniff_format(a.src) == "caffe" and _is_fcn_caffemodel(a.src):
                raise WeightsError(f"{a.src}: a trained FCN caffemodel, not an ImageNet classifier; say "
                                   f"which with --released (one of {', '.join(sorted(released.MODELS))})"
                                   ) from None
            raise
    print(f"wrote {out}" + (f" (released {name})" if name else ""))
    return 0
