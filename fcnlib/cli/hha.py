"""`fcn hha DEPTH... -o DIR`: depth maps encoded as HHA (horizontal disparity, height, angle)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnlib.cli.options import add_out, add_progress
from fcnlib.data.hha import CAMERAS, Camera, encode_dataset
from fcnlib.errors import ConfigError
from fcnlib.files.io import set_max_pixels


def _parse_intrinsics(text: str) -> Camera:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise ConfigError(f"--intrinsics {text!r}: expected fx,fy,cx,cy (pixels, fx and fy > 0, "
                          f"cx/cy 1-based as in the NYU toolbox), e.g. 518.8579,519.4696,325.5824,253.7362")
    try:
        return Camera(*vals)
    except ConfigError as e:
        raise ConfigError(f"--intrinsics {text!r}: {e}") from None


def cli(argv: list[str] | None = None) -> int:
    """`fcn hha DEPTH... -o DIR [--raw-depth RAW...] [--camera NAME | --intrinsics fx,fy,cx,cy]
    [--depth-scale S] [--workers N]`."""
    ap = argparse.ArgumentParser(prog="fcn hha", description="Encode depth PNGs as HHA (Gupta et al. 2014).")
    ap.add_argument("depth", nargs="+", type=Path, help="depth PNGs (16-bit)")
    add_out(ap, "output folder (<stem>.png per input)", required=True, type=Path)
    ap.add_argument("--raw-depth", nargs="+", type=Path, default=None,
                    help="raw depth PNGs (0 = missing), one per depth map, same order")
    cam = ap.add_mutually_exclusive_group()
    cam.add_argument("--camera", choices=sorted(CAMERAS), default="nyu-color",
                     help="intrinsics preset (default nyu-color, full 640×480 NYU frame)")
    cam.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels (cx, cy 1-based)")
    ap.add_argument("--depth-scale", type=float, default=0.001,
                    help="metres per stored depth unit: 0.001 mm (default), 0.0001 for 0.1 mm, 1 for metres")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    add_progress(ap)
    ap.add_argument("--max-pixels", type=int, default=None,
                    help="refuse depth maps with more pixels (default FCN_MAX_IMAGE_PIXELS or 40,000,000)")
    args = ap.parse_args(argv)
    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    camera = _parse_intrinsics(args.intrinsics) if args.intrinsics else CAMERAS[args.camera]
    outs = encode_dataset(args.depth, args.out, camera, args.depth_scale, raw_paths=args.raw_depth,
                          workers=args.workers, progress=not args.no_progress)
    print(f"{len(outs)} HHA images in {args.out}")
    return 0
