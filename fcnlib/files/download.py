"""One download function for every rule: mirrors, cache dirs, resume, checksums, atomic rename.

The partial file lives at `<dest>.part` (not a declared output), so a killed job leaves `dest` absent and
the next run resumes with an HTTP Range request (or a seek, for file:// URLs). `dest` only ever appears by
`os.replace` after the size and checksums have been verified, so a file at `dest` is always a good one.

Hostile or broken servers are bounded: a body is cut off (and the part deleted) as soon as it passes the
declared size, the served Content-Length / Content-Range total, or `FCN_DOWNLOAD_MAX_BYTES`; the whole
download has a wall-clock deadline and each connection a minimum rate; every redirect must stay on
http/https. A resume is only trusted where the result can be verified: with a checksum (published, the
sha256 prefix of a torchvision-style name like `googlenet-1378be20.pth`, or the one recorded at
`<dest>.sha256` after the first download), or, for a source with none, when the server still reports the
same total and validators (ETag / Last-Modified, sent back as If-Range) as when the part was started and
the bytes it serves again over the last 64 KiB of the part are the same. Anything else restarts from zero.

This module is the policy (sources in order, which checksums, the rename); fcnlib.files.httpfetch fetches one URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from fcnlib.errors import DownloadError
from fcnlib.files.httpfetch import Bounds, _check, _Clock, _Deadline, _fetch, _MirrorFailed, part_meta_path, part_path
from fcnlib.files.io import place_file

_NAME_SHA256 = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt|pkl|tar|zip|tar\.gz|tgz)$")


def record_path(dest: Path) -> Path:
    """sha256 recorded after the first download of a file with no published checksum ("<hex>  <name>")."""
    return dest.with_name(dest.name + ".sha256")


def _expected_sums(dest: Path, urls: Sequence[str], sums: dict[str, str]) -> tuple[dict[str, str], str]:
    """The checksums to verify: the published ones, else a torchvision-style sha256 prefix in the file
    name, else the sha256 recorded after an earlier download. Returns (sums, where the pin came from)."""
    if sums:
        return sums, "published"
    names = [dest.name] + [Path(urllib.parse.urlsplit(u).path).name for u in urls]
    for n in names:
        m = _NAME_SHA256.search(n)
        if m:
            return {"sha256_prefix": m.group(1)}, f"the sha256 prefix in the name {n}"
    rec = record_path(dest)
    if rec.is_file():
        txt = rec.read_text().split()
        if txt and re.fullmatch(r"[0-9a-f]{64}", txt[0]):
            return {"sha256": txt[0]}, f"the sha256 recorded in {rec}"
    return {}, ""


def download(urls: Sequence[str], dest: Path, *, size: int | None = None, md5: str | None = None,
             sha256: str | None = None, sha1: str | None = None, cache_dirs: Sequence[Path] = (), progress: bool = True,
             timeout: float = 60.0, retries: int = 3, bounds: Bounds | None = None) -> Path:
    """Fetch `dest` from the first working source: `dest` itself, cache dirs, then each URL in order.

    Every candidate is verified against `size` and every checksum given (md5, sha1, sha256) before it
    is renamed to `dest`. With no published checksum the file name's sha256 prefix or `<dest>.sha256`
    (written after the first download, so later ones must match) is used instead.
    A dropped connection is retried `retries` times per URL, resuming from the kept part file.
    """
    dest = Path(dest)
    bounds = bounds or Bounds()
    clock = _Clock(bounds, time.monotonic() + bounds.deadline)
    dest.parent.mkdir(parents=True, exist_ok=True)
    published = {k: v for k, v in (("md5", md5), ("sha1", sha1), ("sha256", sha256)) if v}
    sums, pinned_by = _expected_sums(dest, urls, published)
    tried: list[str] = []
    if dest.exists():
        reason = _check(dest, size, sums)
        if reason is None:
            return dest
        tried.append(f"existing {dest} ({reason}; replaced)")
        dest.unlink()

    for d in cache_dirs:
        cand = Path(d) / dest.name
        if not cand.is_file():
            tried.append(f"cache {cand} (not present)")
            continue
        reason = _check(cand, size, sums)
        if reason is not None:
            tried.append(f"cache {cand} ({reason}; left untouched)")
            continue
        place_file(cand, dest)  # a verified file, hard-linked where possible
        return dest

    for url in urls:
        reason = "not tried"
        for _ in range(max(1, retries)):
            try:
                _fetch(url, dest, size, sums, timeout, progress, clock)
            except _MirrorFailed as e:
                reason = str(e)
                if e.transient and clock.left() > 0:
                    continue  # transient: resume from the same mirror
                break
            except _Deadline:
                raise DownloadError(
                    f"{dest}: not complete after the deadline of {bounds.deadline:.0f} s (from {url}); the "
                    f"partial file is kept for resuming — rerun, raise FCN_DOWNLOAD_DEADLINE, or fetch it by "
                    f"hand and put it at {dest}") from None
            except OSError as e:  # local disk trouble: no mirror will fix it
                raise DownloadError(f"{dest}: cannot write the download ({e}); free disk space or fix "
                                    f"permissions on {dest.parent} and rerun") from None
            os.replace(part_path(dest), dest)
            with contextlib.suppress(FileNotFoundError):
                part_meta_path(dest).unlink()
            if not sums:
                _record(dest)
            return dest
        tried.append(f"{url} ({reason})")
        if clock.left() <= 0:
            break

    checks = ", ".join(f"{k} {v}" for k, v in ({"size": size} | sums).items() if v)
    where = " or ".join([str(dest)] + [str(Path(d) / dest.name) for d in cache_dirs])
    pin = (f" (checksum from {pinned_by}; if the source really changed, delete {record_path(dest)})"
           if pinned_by.startswith("the sha256 recorded") else "")
    raise DownloadError(
        f"could not download {dest.name}: tried " + "; ".join(tried or ["no URL given"])
        + f". Fetch it by hand and put it at {where}" + (f" ({checks})" if checks else "")
        + pin + ", then rerun.")


def _record(dest: Path) -> None:
    """Pin a source with no published checksum: later downloads (and resumes) must give the same bytes."""
    from fcnlib.files.io import atomic_write_text, sha256_file

    atomic_write_text(record_path(dest), f"{sha256_file(dest)}  {dest.name}\n")


def _cli_bounds(deadline: float | None, min_rate: float | None) -> Bounds:
    import dataclasses
    import math

    b = Bounds()
    for name, v in (("deadline", deadline), ("min_rate", min_rate)):
        if v is not None:
            if not (math.isfinite(v) and v > 0):
                raise DownloadError(f"--{name.replace('_', '-')} {v}: must be a positive finite number")
            b = dataclasses.replace(b, **{name: v})
    return b


def cli(argv: Sequence[str] | None = None) -> int:
    """`fcn download URL... -o DEST [--md5 X] [--sha256 X] [--size N] [--cache-dir D]...`"""
    from fcnlib.cli.options import Parser, add_out, add_progress

    p = Parser(prog="fcn download", description="Download one file with mirrors, resume "
               "and checksum verification; URLs are tried in order.")
    p.add_argument("urls", nargs="+", metavar="URL", help="mirrors of the file, tried in order (http(s), file)")
    add_out(p, "destination file", required=True, type=Path)
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
    path = download(a.urls, a.out, size=a.size, md5=a.md5, sha256=a.sha256, sha1=a.sha1, cache_dirs=a.cache_dir,
                    progress=not a.no_progress, timeout=a.timeout, bounds=_cli_bounds(a.deadline, a.min_rate))
    print(path)
    return 0


if __name__ == "__main__":  # `python -m fcnlib.files.download ...`, same exit codes as `fcn download`
    from fcnlib.errors import FcnError

    try:
        sys.exit(cli())
    except FcnError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
