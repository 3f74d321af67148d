"""`fcn evaluate WEIGHTS`: the evaluate rule's metrics.json, from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fcnlib.cli.options import add_device, add_out, add_precision, add_progress
from fcnlib.errors import ConfigError
from fcnlib.eval.evaluate import SCORE_KEYS, evaluate_file
from fcnlib.facts import datasets as registry
from fcnlib.files import layout
from fcnlib.models.io import safe_torch_load
from fcnlib.models.meta import ModelMeta
from fcnlib.pipeline import config as fcncfg
from fcnlib.pipeline.config import load_config


def _evaluate_defaults(weights: Path, meta: ModelMeta, configfiles: list[str]) -> dict[str, Any]:
    """Dataset and split the workflow would use for these weights: the split their trainer validated on
    (recorded in the meta), else their experiment's (or dataset's) val split in the config."""
    dataset = meta.dataset
    out: dict[str, Any] = {"dataset_json": layout.dataset_json(dataset) if dataset else None,
                           "split": meta.val_split}
    if out["split"] is not None:
        return out
    exp = meta.experiment
    try:
        config, _ = load_config(configfiles)
    except ConfigError:
        if configfiles:
            raise
        return out  # no pipeline config here: --split must be given
    if exp in config["experiments"]:
        out["split"] = fcncfg.experiment(config, exp)["val_split"]
    elif dataset in config["datasets"]:
        out["split"] = registry.splits_of(dataset, config)[1]
    return out


def cli(argv: list[str] | None = None) -> int:
    """Entry point of `fcn evaluate WEIGHTS`: the evaluate rule's metrics.json, from the shell."""
    p = argparse.ArgumentParser(prog="fcn evaluate", description="Score trained weights on a split of a prepared "
                                "dataset with the paper's metrics (pixel acc., mean acc., mean IU, f.w. IU), as "
                                "the evaluate rule does.")
    p.add_argument("weights", type=Path, help="weights file written by the pipeline (weights.pt)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset.json of a prepared dataset (default: data/<the weights' dataset>/dataset.json)")
    p.add_argument("--split", default=None,
                   help="split to score (default: the split the weights were validated on, as recorded in them; "
                        "else the experiment's val split in the config, e.g. seg11valid)")
    p.add_argument("-c", "--configfile", action="append", default=[], metavar="FILE",
                   help="config file(s) giving the default split (default: config/config.yaml)")
    add_out(p, "metrics.json to write (default: <weights dir>/<split>/metrics.json, as the rule)", type=Path)
    add_device(p)
    add_precision(p)
    p.add_argument("--max-images", type=int, default=None, help="score only the first N images of the split")
    p.add_argument("--predictions", type=Path, default=None, metavar="DIR",
                   help="also write each image's predicted label PNG into DIR")
    add_progress(p)
    args = p.parse_args(argv)
    obj = safe_torch_load(args.weights)
    meta = ModelMeta(obj.get("meta", {}) if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {})
    defaults = _evaluate_defaults(args.weights, meta, args.configfile)
    dataset_json = args.dataset or defaults["dataset_json"]
    split = args.split or defaults["split"]
    if dataset_json is None or split is None:
        missing = "--dataset" if dataset_json is None else "--split"
        said = f"dataset {meta.dataset!r}, experiment {meta.experiment!r}" if meta.dataset else "no dataset"
        raise ConfigError(f"{args.weights}: cannot tell which {missing[2:]} to score (the weights record {said}, "
                          f"and no config file here names it); pass {missing}")
    out = args.out or args.weights.parent / split / "metrics.json"
    result = evaluate_file(args.weights, dataset_json, split, out_json=out, device=args.device,
                           precision=args.precision,
                           max_images=args.max_images, predictions_dir=args.predictions,
                           progress=not args.no_progress)
    scores = ", ".join(f"{k} {100 * result[k]:.1f}" for k in SCORE_KEYS if result.get(k) is not None)
    print(f"{args.weights} on {split} ({result['n_images']} images): {scores} → {out}")
    return 0
