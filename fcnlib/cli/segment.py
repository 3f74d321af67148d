"""`fcn segment IMAGE_OR_DIR... --weights W`: VOC-palette label PNGs for images."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fcnlib.cli.options import add_device, add_out, add_precision, add_progress
from fcnlib.eval.segment import Segmenter, segment_paths
from fcnlib.files.io import set_max_pixels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fcn segment", description="Write VOC-palette label PNGs for images "
                                "with a trained FCN (preprocessing is read from the weights file).")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--weights", required=True, help="weights file written by the pipeline (weights.pt)")
    add_out(p, "output folder (default: ./segmentation)", default="segmentation")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png blends")
    p.add_argument("--follow-links", action="store_true",
                   help="read images that links inside a given folder lead to outside it (refused by default)")
    add_device(p)
    add_precision(p)
    add_progress(p)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse larger images before decoding (default FCN_MAX_IMAGE_PIXELS or 40,000,000)")
    return p


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fcn segment`; fcnlib errors propagate for the dispatcher to print (exit 2)."""
    args = build_parser().parse_args(argv)
    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    seg = Segmenter(args.weights, args.device, args.precision)
    if seg.demo:
        print(f"warning: {args.weights} are demo weights (trained on the synthetic demo data); their labels "
              f"say nothing about real images — use weights trained on a real dataset", file=sys.stderr)
    written = segment_paths(args.inputs, seg, args.out, overlay_png=args.overlay, progress=not args.no_progress,
                            follow_links=args.follow_links)
    print(f"wrote {len(written)} label map(s) to {args.out}")
    return 0
