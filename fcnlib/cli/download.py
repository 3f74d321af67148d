"""`fcn download URL... -o DEST`: one file with mirrors, resume and checksum verification."""

from __future__ import annotations

import argparse
import dataclasses
import math
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from fcnlib.cli.options import add_out, add_progress, out_file
from fcnlib.errors import DownloadError
from fcnlib.files.download import download
from fcnlib.files.httpfetch import Bounds


def _cli_bounds(deadline: float | None, min_rate: float | None) -> Bounds:
    b = Bounds()
    for name, v in (("deadline", deadline), ("min_rate", min_rate)):
        if v is not None:
            if not (math.isfinite(v) and v > 0):
                raise DownloadError(f"--{name.replace('_', '-')} {v}: must be a positive finite number")
            b = dataclasses.replace(b, **{name: v})
    return b


def cli(argv: Sequence[str] | None = None) -> int:
    """`fcn download URL... -o DEST [--md5 X] [--sha256 X] [--size N] [--cache-dir D]...`"""
    p = argparse.ArgumentParser(prog="fcn download", description="Download one file with mirrors, resume "
               "and checksum verification; URLs are tried in order.")
    p.add_argument("urls", nargs="+", metavar="URL", help="mirrors of the file, tried in order (http(s), file)")
    add_out(p, "destination file, or a folder to put it in (under the URL's file name)", required=True,
            type=Path)
    p.add_argument("--md5", help="expected MD5 (hex); a mismatch rejects the mirror")
    p.add_argument("--sha256", help="expected SHA-256 (hex)")
    p.add_argument("--sha1", help="expected SHA-1 (hex)")
    p.add_argument("--size", type=int, help="expected size in bytes")
    p.add_argument("--cache-dir", action="append", type=Path, default=[],
                   help="folder where a hand-downloaded copy may be found (repeatable)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds without data before a mirror fails (default 60)")
    p.add_argument("--deadline", type=float, help="seconds the whole download may take (FCN_DOWNLOAD_DEADLINE)")
    p.add_argument("--min-rate", type=float, help="B/s below which a mirror is dropped (FCN_DOWNLOAD_MIN_RATE)")
    add_progress(p)
    a = p.parse_args(argv)
    name = urllib.parse.unquote(Path(urllib.parse.urlsplit(a.urls[0]).path).name)
    dest = out_file(a.out, name, "downloaded file")  # -o FOLDER: the URL's file name inside
    path = download(a.urls, dest, size=a.size, md5=a.md5, sha256=a.sha256, sha1=a.sha1, cache_dirs=a.cache_dir,
                    progress=not a.no_progress, timeout=a.timeout, bounds=_cli_bounds(a.deadline, a.min_rate))
    print(path)
    return 0
