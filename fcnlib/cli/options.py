"""The option spellings every `fcn` subcommand shares: `-o/--out` for what it writes, `--no-progress` to
silence progress bars, `--device`. One definition each, so no two commands spell the same thing apart."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError
from fcnlib.runtime.compute import PRECISIONS

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: auto)"
PRECISION_HELP = ("compute dtype: auto (bf16/fp16 where the device runs it natively, else fp32), fp32, bf16 or "
                  "fp16 (default: auto)")


def add_out(p: argparse.ArgumentParser, help: str, *, required: bool = False, **kwargs: Any) -> None:
    """`-o/--out`: what the command writes."""
    if required:
        help = f"{help} (required)"
    p.add_argument("-o", "--out", dest="out", help=help, required=required, **kwargs)


def add_progress(p: argparse.ArgumentParser) -> None:
    """`--no-progress`; read it as `args.no_progress`."""
    p.add_argument("--no-progress", action="store_true", dest="no_progress",
                   help="no progress bar (in a log file the bar is one line every 30 s anyway)")


def add_device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help=DEVICE_HELP)


def add_precision(p: argparse.ArgumentParser) -> None:
    """`--precision {auto,fp32,bf16,fp16}`: the compute dtype (fcnlib.runtime.compute.resolve_runtime)."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)


def replaced_out(out: str | os.PathLike, marker: str, command: str) -> Path:
    """`-o DIR` for a command that builds DIR whole and swaps it in (fcnlib.files.io.staged_dir): DIR must be
    new, empty, or a folder this command wrote before (it holds `marker`), so nobody's other files are
    replaced. Else one ConfigError naming the folder and the fix."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: -o names a file; {command} writes a folder (give a new or empty one)")
    if path.is_dir() and not (path / marker).is_file() and any(path.iterdir()):
        raise ConfigError(f"{path}: -o is a folder with other files and no {marker}; {command} replaces its "
                          f"output folder whole, so give a new or empty folder")
    return path


def out_file(out: Path, name: str, what: str = "file") -> Path:
    """What `-o OUT` means for a command writing one file named `name` by default: an existing folder (or a
    link to one) means "put it inside, as `name`"; anything else is the file's path. `name` empty (nothing
    to name the file after) with a folder is one ConfigError asking for a file path."""
    out = Path(out)
    if not out.is_dir():
        return out
    if not name or name in (".", "..") or "/" in name:
        raise ConfigError(f"-o {out}: is a folder and there is no {what} name to put inside it; give the "
                          f"{what}'s path, e.g. -o {out / ('NAME')}")
    return out / name
