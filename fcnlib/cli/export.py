"""`fcn export WEIGHTS --format torchscript|onnx`: a weights file as a TorchScript or ONNX net."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from fcnlib.cli.options import out_file
from fcnlib.models.export import FORMATS, default_out, export


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fcn export", description="Export trained weights as TorchScript or ONNX "
                                "(input: a preprocessed float32 N×C×H×W batch; output: logits per head).")
    p.add_argument("weights", type=Path, help="weights file written by the pipeline (weights.pt)")
    p.add_argument("--format", choices=FORMATS, default="torchscript", dest="fmt",
                   help="torchscript (default, needs only torch) or onnx (needs pip install 'fcnlib[export]')")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output file, or a folder to put it in (default: beside the weights, "
                        "<stem>.torchscript.pt or <stem>.onnx)")
    p.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"),
                   help="height and width of the example input used for tracing (default 224 224); "
                        "the exported net takes any size")
    return p


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fcn export`; fcnlib errors propagate for the dispatcher to print (exit 2)."""
    args = build_parser().parse_args(argv)
    default = default_out(args.weights, args.fmt)
    out = out_file(args.out, default.name) if args.out else default  # -o FOLDER: the default name inside
    info = export(args.weights, out, args.fmt, size=tuple(args.size))
    print(f"wrote {out} ({args.fmt}; outputs {info['outputs']}) and {out}.json (preprocessing, classes)")
    return 0
