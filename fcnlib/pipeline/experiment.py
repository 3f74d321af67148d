"""One experiment of a pipeline config, outside Snakemake: `fcn train EXPERIMENT` runs what the `train`
rule runs (same resolved trainer dict, same output layout, same resume state), so a single net can be
(re)trained or debugged from the shell. `train_to` is the rule's own body (workflow/scripts/train.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcnlib.cli.options import Parser, add_device, add_out, add_progress
from fcnlib.errors import ConfigError
from fcnlib.files.io import atomic_write
from fcnlib.pipeline import config as fcncfg

DEFAULT_CONFIG = Path("config/config.yaml")


def train_to(cfg: dict[str, Any], out_weights: str | os.PathLike, out_log: str | os.PathLike,
             device: str = "auto", gpus: int = 0) -> bool:
    """Train `cfg` (fcnlib.pipeline.config.train_config) into `out_weights` + `out_log` (JSONL), in 1 or `gpus`
    data-parallel processes (fcnlib.train.distributed.run_training: the same call for 1 and N).

    Resume state sits beside the outputs in `<out dir>/.train/` (not an output: it survives a killed job,
    so rerunning resumes); the log is copied out and the weights moved into place last. Returns False in
    a rank > 0 started by torchrun/srun around the caller (rank 0 moves the outputs).
    """
    from fcnlib.train.distributed import run_training

    out = Path(out_weights)
    work = out.parent / ".train"
    work.mkdir(parents=True, exist_ok=True)
    if not run_training(dict(cfg), work / "weights.pt", work / "resume.pt", work / "log.jsonl", device=device,
                        gpus=gpus):
        return False
    with open(work / "log.jsonl", "rb") as src, atomic_write(out_log, "wb") as dst:
        shutil.copyfileobj(src, dst)
    (work / "weights.pt").replace(out)  # declared weights last
    return True


def with_inputs(cfg: dict[str, Any], dataset_json: str | os.PathLike,
                init: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """`cfg` reading the files a rule declares instead of the paths config resolution wrote into it: its
    dataset.json and its initial weights (one file; one per member of a late fusion). The config hash stays
    the resolved one."""
    spec = dict(cfg["init"])
    paths = [str(p) for p in init]
    want = len(spec["paths"]) if "paths" in spec else 1
    if len(paths) != want:
        raise ConfigError(f"train config of {cfg['experiment']}: init {spec['kind']} takes {want} weights "
                          f"file(s), the rule gives {len(paths)} ({paths}); fix the train rule's input.init")
    spec.update({"paths": paths} if "paths" in spec else {"path": paths[0]})
    return {**cfg, "dataset_json": str(dataset_json), "init": spec}


def load_config(files: Sequence[str | os.PathLike], default: str | os.PathLike = DEFAULT_CONFIG) -> tuple[dict, str]:
    """Config files composed as the workflow composes --configfile (fcnlib.pipeline.config.compose_config), validated."""
    given: dict[str, Any] = {}
    for f in files:
        part = fcncfg.load_yaml(f)
        if not isinstance(part, dict):
            raise ConfigError(f"{f}: expected a mapping of config keys at the top level")
        given = fcncfg.deep_merge(given, part)
    cfg, sources = fcncfg.compose_config(given, [str(f) for f in files], default=default)
    source = " + ".join(sources)
    fcncfg.validate_config(cfg, source=source)
    return cfg, source


def _experiment_name(config: dict, name: str, source: str) -> str:
    if name not in config["experiments"]:
        raise ConfigError(f"{source}: no experiment {name!r}; have {sorted(config['experiments'])}")
    return name


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="fcn train", description="Train one experiment of a pipeline config, as the workflow's "
               "train rule does (run from the pipeline's folder: paths are relative to it). A killed run "
               "resumes from <out dir>/.train/resume.pt when rerun.")
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
    import torch

    torch.set_num_threads(max(1, int(args.threads or config["training"]["threads"])))
    if train_to(cfg, out, log, device=args.device if args.device != "auto" else config["device"],
                gpus=fcncfg.gpus(config, name)):
        last = [json.loads(s) for s in log.read_text().splitlines() if '"loss"' in s][-1:]
        loss = f", final loss {last[0]['loss']:.4g}" if last else ""
        print(f"{name}: {cfg['iterations']} iterations{loss} → {out}")
    return 0
