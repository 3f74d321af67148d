"""`fcn demo-data -o DIR`: the offline demo's synthetic raw files."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fcnlib.cli.options import add_out, replaced_out
from fcnlib.demo import ALL_PARTS, make_demo


def cli(argv: Sequence[str] | None = None) -> int:
    """`fcn demo-data -o DIR [--seed N] [--width W]`: write the offline demo raw files."""
    ap = argparse.ArgumentParser(prog="fcn demo-data", description=cli.__doc__)
    add_out(ap, "output folder, built whole (new, empty or an earlier demo-data output; e.g. data/demo_src)",
            required=True)
    ap.add_argument("--seed", type=int, default=0, help="generator seed: same seed, same bytes (default 0)")
    ap.add_argument("--width", type=float, default=0.0625, help="backbone channel factor of the stand-in weights")
    ap.add_argument("--n-train", type=int, default=48, help="training images per dataset (default 48)")
    ap.add_argument("--n-val", type=int, default=16, help="validation/test images per dataset (default 16)")
    ap.add_argument("--min-size", type=int, default=64, help="smallest image side in pixels (default 64)")
    ap.add_argument("--max-size", type=int, default=96, help="largest image side in pixels (default 96)")
    ap.add_argument("--parts", nargs="+", default=list(ALL_PARTS), choices=ALL_PARTS,
                    help="which datasets/weights to write (default: all)")
    ap.add_argument("--released", nargs="*", default=[], metavar="NAME",
                    help="released models to write stand-in caffemodels for (fcnlib.facts.released.MODELS)")
    a = ap.parse_args(argv)
    replaced_out(a.out, "manifest.json", "fcn demo-data")
    man = make_demo(a.out, seed=a.seed, width=a.width, n_train=a.n_train, n_val=a.n_val,
                    image_size=(a.min_size, a.max_size), parts=a.parts, released=a.released, log=print)
    print(f"demo: {len(man)} files in {a.out}")
    return 0
