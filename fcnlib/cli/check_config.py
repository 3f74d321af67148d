"""`fcn check-config FILE...`: validate config files exactly as the workflow does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcnlib.errors import ConfigError
from fcnlib.pipeline.config import PACKAGE_DIR, compose_config, config_problems, load_yaml


def cli(argv: list[str]) -> int:
    """`fcn check-config FILE...`: validate config files exactly as the workflow does."""
    p = argparse.ArgumentParser(prog="fcn check-config", description=cli.__doc__)
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="config YAML file(s), each checked on its own; one without 'experiments' is an "
                        "override, checked merged over config/config.yaml as the workflow merges it")
    args = p.parse_args(argv)
    default = Path("config/config.yaml")
    if not default.exists():
        default = PACKAGE_DIR.parent / "config" / "config.yaml"
    bad = 0
    for f in args.files:
        cfg = load_yaml(f)
        if not isinstance(cfg, dict):
            raise ConfigError(f"{f}: expected a mapping of config keys at the top level")
        cfg, sources = compose_config(cfg, [str(f)], default=default)
        problems = config_problems(cfg, source=" + ".join(sources))
        if problems:  # every one, so a file is fixed in one pass
            bad += 1
            print(f"{f}: {len(problems)} problem(s)", file=sys.stderr)
            for m in problems:
                print(f"error: {m}", file=sys.stderr)
            continue
        merged = f", merged over {default}" if len(sources) > 1 else ""
        print(f"{f}: ok ({len(cfg['experiments'])} experiments{merged})")
    return 2 if bad else 0
