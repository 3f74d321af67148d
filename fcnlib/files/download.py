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

Two downloads of one destination at once (two workflows, a user beside a rule) are serialised by a lock
beside it (`.<name>.lock`, fcnlib.files.sharedfs): the second waits, then finds the verified file. The part
file is only ever written under that lock, and the final rename is checked to have put the verified file
in place before its sha256 is recorded.

This module is the policy (sources in order, which checksums, the rename); fcnlib.files.httpfetch fetches one URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from fcnlib.errors import DownloadError
from fcnlib.files.httpfetch import (
    Bounds,
    Clock,
    DeadlineReached,
    MirrorFailed,
    check_file,
    fetch,
    part_meta_path,
    part_path,
)
from fcnlib.files.io import atomic_write_text, place_file, sha256_file
from fcnlib.files.sharedfs import locked

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
    if dest.is_dir():
        raise DownloadError(f"{dest}: is a folder; give the downloaded file's path (`fcn download -o FOLDER` "
                            f"puts the file inside it under the URL's name)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{dest.parent}: cannot create the folder ({e.strerror or e}); fix the path or its "
                            f"permissions and rerun") from None
    published = {k: v for k, v in (("md5", md5), ("sha1", sha1), ("sha256", sha256)) if v}
    with locked(dest, "no other download of it is running"), \
            Clock(bounds, time.monotonic() + bounds.deadline) as clock:
        return _download_locked(urls, dest, size, published, cache_dirs, progress, timeout, retries, clock)


def _deadline_error(dest: Path, url: str, bounds: Bounds) -> DownloadError:
    return DownloadError(
        f"{dest}: not complete after the deadline of {bounds.deadline:g} s (from {url}); the partial file is "
        f"kept for resuming — rerun, raise FCN_DOWNLOAD_DEADLINE, or fetch it by hand and put it at {dest}")


def _download_locked(urls: Sequence[str], dest: Path, size: int | None, published: dict[str, str],
                     cache_dirs: Sequence[Path], progress: bool, timeout: float, retries: int,
                     clock: Clock) -> Path:
    """download() once it holds the destination's lock (the checksums are read here: a download that held
    it before may just have recorded one)."""
    bounds = clock.bounds
    sums, pinned_by = _expected_sums(dest, urls, published)
    tried: list[str] = []
    if dest.exists():
        reason = check_file(dest, size, sums)
        if reason is None:
            return dest
        tried.append(f"existing {dest} ({reason}; replaced)")
        dest.unlink()

    for d in cache_dirs:
        cand = Path(d) / dest.name
        if not cand.is_file():
            tried.append(f"cache {cand} (not present)")
            continue
        reason = check_file(cand, size, sums)
        if reason is not None:
            tried.append(f"cache {cand} ({reason}; left untouched)")
            continue
        place_file(cand, dest)  # a verified file, hard-linked where possible
        return dest

    for url in urls:
        reason = "not tried"
        for _ in range(max(1, retries)):
            try:
                fetch(url, dest, size, sums, timeout, progress, clock)
            except MirrorFailed as e:
                if clock.expired or clock.left() <= 0:  # the watchdog cut the connection
                    raise _deadline_error(dest, url, bounds) from None
                reason = str(e)
                if e.transient:
                    continue  # transient: resume from the same mirror
                break
            except DeadlineReached:
                raise _deadline_error(dest, url, bounds) from None
            except OSError as e:  # local disk trouble: no mirror will fix it
                raise DownloadError(f"{dest}: cannot write the download ({e}); free disk space or fix "
                                    f"permissions on {dest.parent} and rerun") from None
            if clock.expired:  # an answer the watchdog cut short may look complete (headers ended by EOF)
                raise _deadline_error(dest, url, bounds)
            _put_in_place(dest, record=not sums)
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


def _put_in_place(dest: Path, record: bool) -> None:
    """Rename the verified part file to `dest`, check that `dest` is now that file, and (for a source with no
    published checksum) pin its sha256 for later downloads."""
    part = part_path(dest)
    st = os.stat(part, follow_symlinks=False)
    digest = sha256_file(part) if record else ""
    os.replace(part, dest)
    now = os.stat(dest, follow_symlinks=False)
    if (now.st_dev, now.st_ino, now.st_size) != (st.st_dev, st.st_ino, st.st_size):
        raise DownloadError(f"{dest}: changed while being put in place (something else writes there); delete "
                            f"it, make sure nothing else writes to {dest.parent}, and rerun")
    with contextlib.suppress(FileNotFoundError):
        part_meta_path(dest).unlink()
    if record:  # pin a source with no published checksum: later downloads (and resumes) must match it
        atomic_write_text(record_path(dest), f"{digest}  {dest.name}\n")
