"""MAT v5 files read under the pixel cap: every array's size is read from its header (compressed elements
decompressed only as far as their headers) and one over FCN_MAX_IMAGE_PIXELS is refused before any data is
decompressed — a 379 KB SBD .mat can hold a 20000×20000 label. `read_mat` is the one .mat reader of the
datasets (SBD, SIFT Flow, NYUD, PASCAL-Context)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import IO

from scipy.io import loadmat

from fcnlib.errors import DataError
from fcnlib.files.io import PathLike, PixelLimitError, max_image_pixels
from fcnlib.files.paths import open_regular

_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MX_CELL, _MX_STRUCT, _MX_OBJECT = 1, 2, 3
_MAT_MAX_DEPTH = 16  # SBD's GTcls nests three levels (struct → cell → sparse)


class _MatStream:
    """Sequential reads of a MAT v5 element stream: the file itself, or one zlib-compressed element
    decompressed piecewise (headers only are kept; array data is skipped without being stored)."""

    def __init__(self, f: IO[bytes], n: int, compressed: bool) -> None:
        self.f, self.left, self.z, self.buf = f, n, zlib.decompressobj() if compressed else None, b""

    def _more(self, want: int) -> bytes:
        if self.z is None:
            data = self.f.read(min(want, self.left))
            self.left -= len(data)
            return data
        out = self.z.decompress(self.z.unconsumed_tail, want) if self.z.unconsumed_tail else b""
        while not out and self.left > 0:
            chunk = self.f.read(min(1 << 16, self.left))
            if not chunk:
                break
            self.left -= len(chunk)
            out = self.z.decompress(chunk, want)
        if not out and self.z.unconsumed_tail:
            out = self.z.decompress(self.z.unconsumed_tail, want)
        return out

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            need = n - len(self.buf)
            more = self._more(need if self.z is None else max(need, 1 << 16))  # no read-ahead in the file
            if not more:
                raise EOFError("the file ends inside an array")
            self.buf += more
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            take = min(n, 1 << 20)
            self.read(take)
            n -= take


def _mat_check_arrays(path: Path, f: IO[bytes], cap: int, kind: str, fix: str) -> None:
    """Walk every array header of a MAT v5 file and refuse one whose H×W exceeds `cap` pixels."""
    head = f.read(128)
    if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a MATLAB .mat file (no MAT v5 header); {fix}")
    if b"\x02" in head[124:126]:  # v7.3 = HDF5, which scipy cannot read
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file; {kind} files are MAT v5 — {fix}")
    end = "<" if head[126:128] == b"IM" else ">"

    def tag(s: _MatStream) -> tuple[int, int, bytes | None]:
        raw = s.read(8)
        t, n = struct.unpack(end + "II", raw)
        if t >> 16:  # small element: type, size and up to 4 bytes of data in 8 bytes
            return t & 0xFFFF, t >> 16, raw[4:4 + (t >> 16)]
        return t, n, None

    def padded(n: int) -> int:
        return n + (-n % 8)

    def matrix(s: _MatStream, n: int, depth: int) -> None:
        if n == 0:
            return
        if depth > _MAT_MAX_DEPTH:
            raise DataError(f"{path}: arrays nested over {_MAT_MAX_DEPTH} levels; not a {kind} file — {fix}")
        used = 0
        _t, fn, small = tag(s)
        flags = small if small is not None else s.read(padded(fn))
        used += 8 + (0 if small is not None else padded(fn))
        cls = struct.unpack(end + "I", flags[:4])[0] & 0xFF
        _t, dn, small = tag(s)
        dims_raw = small if small is not None else s.read(padded(dn))
        used += 8 + (0 if small is not None else padded(dn))
        dims = struct.unpack(end + f"{dn // 4}i", dims_raw[:dn - dn % 4])
        if any(d < 0 for d in dims):
            raise DataError(f"{path}: array with negative size {dims}; the file is damaged — {fix}")
        count = 1
        for d in dims:
            count *= d
        pixels = dims[0] * (dims[1] if len(dims) > 1 else 1) if dims else 0
        if pixels > cap or count > 4 * cap:
            shape = "×".join(map(str, dims))
            raise PixelLimitError(f"{path}: {kind} holds a {shape} array ({pixels} pixels), over the limit of "
                                  f"{cap}; a crafted or damaged file — {fix} (if genuine, raise "
                                  f"FCN_MAX_IMAGE_PIXELS)")
        _t, nn, small = tag(s)
        if small is None:
            s.skip(padded(nn))
        used += 8 + (0 if small is not None else padded(nn))
        if cls in (_MX_STRUCT, _MX_OBJECT):
            if cls == _MX_OBJECT:
                _t, cn, small = tag(s)
                if small is None:
                    s.skip(padded(cn))
                used += 8 + (0 if small is not None else padded(cn))
            _t, _ln, small = tag(s)
            flen = struct.unpack(end + "i", (small or s.read(8))[:4])[0]
            used += 8 + (0 if small is not None else 8)
            _t, fnames, small = tag(s)
            if small is None:
                s.skip(padded(fnames))
            used += 8 + (0 if small is not None else padded(fnames))
            children = count * (fnames // flen if flen > 0 else 0)
        elif cls == _MX_CELL:
            children = count
        else:
            s.skip(n - used)  # numeric, char, sparse, logical: their data is not needed to decide
            return
        if children > cap:
            raise PixelLimitError(f"{path}: {kind} holds {children} nested arrays, over the limit of {cap}; {fix}")
        for _ in range(children):
            t, cn, _small = tag(s)
            if t != _MI_MATRIX:
                raise DataError(f"{path}: malformed struct or cell (element type {t}); the file is damaged — {fix}")
            matrix(s, cn, depth + 1)
            used += 8 + cn
        if n > used:
            s.skip(n - used)

    while True:
        raw = f.read(8)
        if len(raw) < 8:
            return
        t, n = struct.unpack(end + "II", raw)
        if t == _MI_COMPRESSED:
            z = _MatStream(f, n, compressed=True)
            zt, zn, _small = tag(z)
            if zt == _MI_MATRIX:
                matrix(z, zn, 0)
            f.seek(z.left, 1)  # the rest of the compressed element is not needed
        elif t == _MI_MATRIX:
            matrix(_MatStream(f, n, compressed=False), n, 0)
            f.seek(-n % 8, 1)
        else:
            f.seek(padded(n), 1)


def read_mat(path: PathLike, kind: str = "label .mat file", fix: str = "re-extract the raw archive") -> dict:
    """scipy.io.loadmat under the pixel cap: every array's size is read from its header (compressed
    elements decompressed only up to their headers) and one over FCN_MAX_IMAGE_PIXELS is refused before
    any data is decompressed. Every .mat reader of the datasets goes through here; a missing, foreign or
    damaged file is one DataError naming it, ending in `fix`."""
    path = Path(path)
    cap = max_image_pixels()
    try:
        with open_regular(path, kind) as f:  # one open: checked, then read by loadmat from the start
            _mat_check_arrays(path, f, cap, kind, fix)
            f.seek(0)
            return loadmat(f)
    except FileNotFoundError:
        raise DataError(f"{path}: {kind} is missing; {fix}") from None
    except (EOFError, ValueError, TypeError, OSError, NotImplementedError, struct.error, zlib.error) as e:
        raise DataError(f"{path}: cannot read {kind} ({type(e).__name__}: {e}); the file is truncated or not a "
                        f"MATLAB file — {fix}") from None


