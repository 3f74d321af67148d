"""The option spellings every `fcn` subcommand shares: `-o/--out` for what it writes, `--no-progress` to
silence progress bars, `--device`. Old spellings (`--output`, `--quiet`) still parse, hidden from --help,
with a deprecation note on stderr, so existing scripts keep working."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: auto)"


class _Deprecated(argparse.Action):
    """A hidden old spelling: stores like the new option and says which one to use."""

    def __init__(self, option_strings: list[str], dest: str, new: str, const: Any = None, nargs: Any = None,
                 **kwargs: Any):
        self.new = new
        super().__init__(option_strings, dest, nargs=nargs, const=const, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose `-o/--out` may be required while its hidden alias still satisfies it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._required_out = False

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        if self._required_out and getattr(ns, "out", None) is None:
            self.error("the following arguments are required: -o/--out")
        return ns


def add_out(p: argparse.ArgumentParser, help: str, *, required: bool = False, **kwargs: Any) -> None:
    """`-o/--out` (+ the hidden old `--output`). `required` needs a `Parser` (the alias satisfies it)."""
    if required:
        if not isinstance(p, Parser):
            raise TypeError("add_out(required=True) needs fcnlib.cli.options.Parser")
        p._required_out = True
        help = f"{help} (required)"
    p.add_argument("-o", "--out", dest="out", help=help, **kwargs)
    p.add_argument("--output", dest="out", action=_Deprecated, new="-o/--out", **kwargs)


def add_progress(p: argparse.ArgumentParser) -> None:
    """`--no-progress` (+ the hidden old `--quiet`); read it as `args.no_progress`."""
    p.add_argument("--no-progress", action="store_true", dest="no_progress",
                   help="no progress bar (in a log file the bar is one line every 30 s anyway)")
    p.add_argument("--quiet", dest="no_progress", action=_Deprecated, new="--no-progress", nargs=0, const=True)


def add_device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help=DEVICE_HELP)
