"""`fcn extract ARCHIVE -o DEST`: safe, all-or-nothing extraction of a tar or zip archive."""

from __future__ import annotations

import argparse
from pathlib import Path

from fcnlib.cli.options import add_out
from fcnlib.files.archive import safe_extract


def cli(argv: list[str] | None = None) -> int:
    """`fcn extract ARCHIVE -o DEST`: safe, all-or-nothing extraction into a new folder, or into an existing
    one like `tar -C` when nothing there would be overwritten."""
    p = argparse.ArgumentParser(prog="fcn extract", description=cli.__doc__)
    p.add_argument("archive", type=Path, help="tar (.tar, .tgz, .tar.gz, …) or zip archive")
    add_out(p, "folder to extract into: created if absent; an existing folder gets the archive's files added "
               "(refused, nothing changed, if any would overwrite something there)", required=True, type=Path)
    a = p.parse_args(argv)
    print(safe_extract(a.archive, a.out, merge=True))
    return 0
