"""Deterministic encoders: JPEG/PNG/MAT/text bytes and tar/zip archives with fixed mtimes, owners and order."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.io import savemat

from fcnlib.files.io import atomic_write

TAR_MTIME = 1306281600  # 2011-05-25, fixed so archives are byte-identical across runs
ZIP_DATE = (2011, 5, 25, 0, 0, 0)



def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma so one-pixel coloured structures keep their colour after compression
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
    return buf.getvalue()


def png_bytes(arr: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    buf = io.BytesIO()
    if palette is not None:
        im = Image.fromarray(arr.astype(np.uint8), mode="P")
        im.putpalette(palette.reshape(-1).tolist())
    else:
        im = Image.fromarray(arr)
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def mat_bytes(obj: dict[str, Any]) -> bytes:
    """MATLAB v5 .mat bytes; scipy stamps the creation time into the 116-byte header, so we fix it."""
    buf = io.BytesIO()
    savemat(buf, obj, format="5", do_compression=True, oned_as="column")
    data = bytearray(buf.getvalue())
    header = b"MATLAB 5.0 MAT-file, Platform: fcnlib demo, Created on: Wed May 25 00:00:00 2011"
    data[:116] = header.ljust(116, b" ")
    return bytes(data)


def text_bytes(lines: Iterable[str]) -> bytes:
    return "".join(f"{s}\n" for s in lines).encode()


def _dirs_of(names: Iterable[str]) -> list[str]:
    out: set[str] = set()
    for n in names:
        parts = n.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            out.add("/".join(parts[:k]))
    return sorted(out)


def write_tar(path: Path, members: dict[str, bytes], gz: bool = False) -> None:
    """A tar (optionally gzip) with directory entries, sorted members, fixed owner/mode/mtime."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in _dirs_of(members):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, TAR_MTIME
            tf.addfile(ti)
        for name in sorted(members):
            data = members[name]
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, TAR_MTIME
            tf.addfile(ti, io.BytesIO(data))
    payload = raw.getvalue()
    if gz:
        zbuf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=zbuf, mtime=0, compresslevel=6) as g:
            g.write(payload)
        payload = zbuf.getvalue()
    with atomic_write(path, "wb") as f:
        f.write(payload)


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for d in _dirs_of(members):
            zi = zipfile.ZipInfo(d + "/", date_time=ZIP_DATE)
            zi.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(zi, b"")
        for name in sorted(members):
            zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o100644 << 16
            zf.writestr(zi, members[name], compresslevel=6)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
