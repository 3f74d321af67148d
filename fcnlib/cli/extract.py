"""`fcn extract ARCHIVE -o DEST`: safe, all-or-nothing extraction of a tar or zip archive."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnlib.cli.options import add_out
from fcnlib.files.archive import safe_extract


def cli(argv: list[str] | None = None) -> int:
    """`fcn extract ARCHIVE -o DEST`: safe, all-or-nothing extraction."""
    p = argparse.ArgumentParser(prog="fcn extract", description=cli.__doc__)
    p.add_argument("archive", type=Path, help="tar (.tar, .tgz, .tar.gz, …) or zip archive")
    add_out(p, "folder to create (replaced if present)", required=True, type=Path)
    a = p.parse_args(argv)
    print(safe_extract(a.archive, a.out))
    return 0
