"""`fcn train EXPERIMENT`: train one experiment of a pipeline config outside Snakemake, as the train
rule does (same resolved trainer dict, output layout and resume state), to (re)train or debug one net."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from fcnlib.cli.options import add_device, add_out, add_progress
from fcnlib.errors import ConfigError
from fcnlib.pipeline import config as fcncfg
from fcnlib.pipeline.config import load_config
from fcnlib.pipeline.experiment import train_to


def _experiment_name(config: dict, name: str, source: str) -> str:
    if name not in config["experiments"]:
        raise ConfigError(f"{source}: no experiment {name!r}; have {sorted(config['experiments'])}")
    return name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fcn train", description="Train one experiment of a pipeline config, as the "
                                "workflow's train rule does (run from the pipeline's folder: paths are relative "
                                "to it). A killed run resumes from <out dir>/.train/resume.pt when rerun.")
    p.add_argument("experiment", help="experiment name from the config (e.g. voc-fcn32s)")
    p.add_argument("-c", "--configfile", action="append", default=[], metavar="FILE",
                   help="config file (repeatable, later files merge over earlier ones); one without "
                        "'experiments' is merged over config/config.yaml (default: config/config.yaml)")
    add_out(p, "weights file to write (default: results/<dataset>/<experiment>/weights.pt, as the rule)")
    p.add_argument("--log", type=Path, default=None,
                   help="training log, JSON lines (default: log.jsonl beside the weights)")
    add_device(p)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the config's training.threads)")
    add_progress(p)
    return p


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fcn train`; fcnlib errors propagate for the dispatcher to print (exit 2)."""
    args = build_parser().parse_args(argv)
    config, source = load_config(args.configfile)
    name = _experiment_name(config, args.experiment, source)
    cfg = fcncfg.train_config(config, name)
    init = cfg["init"]
    for path in init.get("paths") or [init["path"]]:
        if not Path(path).exists():
            raise ConfigError(f"{path}: initial weights of {name} not found; build them first "
                              f"(snakemake {path} --configfile …, or fcn train <parent experiment>)")
    if not Path(cfg["dataset_json"]).exists():
        raise ConfigError(f"{cfg['dataset_json']}: dataset of {name} not prepared; build it first "
                          f"(snakemake {cfg['dataset_json']} --configfile …)")
    out = Path(args.out or fcncfg.weights_path(config, name))
    log = args.log or out.with_name("log.jsonl")
    if args.no_progress:
        os.environ["FCN_PROGRESS"] = "0"
    torch.set_num_threads(max(1, int(args.threads or config["training"]["threads"])))
    if train_to(cfg, out, log, device=args.device if args.device != "auto" else config["device"],
                gpus=fcncfg.gpus(config, name), tensorboard=fcncfg.tensorboard(config)):
        last = [json.loads(s) for s in log.read_text().splitlines() if '"loss"' in s][-1:]
        loss = f", final loss {last[0]['loss']:.4g}" if last else ""
        print(f"{name}: {cfg['iterations']} iterations{loss} → {out}")
    return 0
