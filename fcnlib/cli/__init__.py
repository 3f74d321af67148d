"""The `fcn` command: one module per subcommand in this package (its `cli(argv) -> int`); library modules
hold no command-line code."""

from __future__ import annotations

import importlib
import sys

from fcnlib import __version__
from fcnlib.errors import one_line

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fcnlib.cli.train", "train one experiment of a config, as the workflow's train rule"),
    "evaluate": ("fcnlib.cli.evaluate", "score trained weights on a dataset split (metrics.json)"),
    "export": ("fcnlib.cli.export", "export trained weights as TorchScript or ONNX"),
    "segment": ("fcnlib.cli.segment", "segment images with trained weights (palette PNGs, overlays)"),
    "hha": ("fcnlib.cli.hha", "encode depth maps as HHA (horizontal disparity, height, angle)"),
    "convert-weights": ("fcnlib.cli.convert_weights", "ImageNet classifier or released FCN caffemodel → our weights"),
    "download": ("fcnlib.cli.download", "fetch a file: mirrors, checksum, resume, atomic"),
    "extract": ("fcnlib.cli.extract", "extract a tar/zip safely (no paths leaving the target)"),
    "prepare-pascal": ("fcnlib.cli.prepare_pascal", "merge SBD into VOC and write the paper's splits"),
    "demo-data": ("fcnlib.cli.demo_data", "write the offline demo's synthetic datasets"),
    "check-config": ("fcnlib.cli.check_config", "validate a pipeline config file"),
}


def _usage() -> str:
    lines = ["usage: fcn [--version] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`fcn COMMAND --help` describes each command. Shared options: -o/--out (what a command",
              "writes), --no-progress, --device. `python -m fcnlib` is the same as `fcn`."]
    return "\n".join(lines)


def version() -> str:
    return f"fcn (fcnlib) {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(version())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.cli(rest) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - mapped to one line where it is an input/OS failure, else re-raised
        err = one_line(e)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
