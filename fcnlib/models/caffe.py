"""A .caffemodel (NetParameter protobuf) reader and a small writer, with no caffe or protobuf dependency.

Only what weight conversion needs is decoded: layer names and their blobs. Both layer lists are handled:
V1 `layers` (NetParameter field 2; V1LayerParameter name=4, blobs=6; an embedded V0 `layer` field 1 with
name=1, blobs=50) and the current `layer` (field 100; LayerParameter name=1, blobs=7). BlobProto: legacy
num/channels/height/width (1–4), data (5, packed or not), shape (7: BlobShape dim=1), double_data (8).
The writer emits the same wire format so tests can round-trip a real-format file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fcnlib.errors import DataError, WeightsError
from fcnlib.files.io import atomic_write
from fcnlib.files.paths import open_regular
from fcnlib.models.io import max_weights_bytes


class _Bad(Exception):
    pass


#: torch.save's file starts: a zip archive (torch ≥ 1.6) or a pickle (protocol 2+, older torch / torchvision)
TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def sniff_format(path: str | os.PathLike) -> str | None:
    """"torchvision" for a torch.save file (.pth/.pt, by its magic bytes), "caffe" for what may be a
    caffemodel (a protobuf starting with a NetParameter field), None for neither or an unreadable file (a
    FIFO or device is not opened: reading one would block; the reader that follows names it)."""
    try:
        with open_regular(path) as f:
            head = f.read(4)
    except (DataError, OSError):
        return None
    if head.startswith(TORCH_MAGIC):
        return "torchvision"
    # NetParameter's first field: name (1) or V1 layers (2), length-delimited; or layer (100): key 0xa2 0x06
    if head[:1] in (b"\x0a", b"\x12") or head[:2] == b"\xa2\x06":
        return "caffe"
    return None


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Bad("varint runs past the end of the data")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 10 bytes")


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, object, int]]:
    """(field number, wire type, value, position after) — value is an int, or (start, end) for bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = (pos, pos + 8), pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = (pos, pos + n), pos + n
        elif wt == 5:
            val, pos = (pos, pos + 4), pos + 4
        else:
            raise _Bad(f"unsupported wire type {wt} (field {field})")
        if pos > end:
            raise _Bad(f"field {field} runs past the end of its message")
        yield field, wt, val, pos


def _packed_varints(buf, s: int, e: int) -> list[int]:
    out, pos = [], s
    while pos < e:
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _floats_run(buf, pos: int, end: int) -> tuple[np.ndarray, int]:
    """Unpacked `repeated float data = 5`: consecutive 5-byte records (tag 0x2d + float32), read at once."""
    raw = np.frombuffer(buf, np.uint8, count=end - pos, offset=pos)
    n_max = len(raw) // 5
    ok = raw[: n_max * 5 : 5] == 0x2D
    n = n_max if ok.all() else int(np.argmin(ok))  # the run ends at the first record with another tag
    recs = raw[: n * 5].reshape(n, 5)[:, 1:].copy().view("<f4").reshape(-1)
    return recs, pos + 5 * n


def _blob(buf, s: int, e: int) -> np.ndarray:
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}
    shape: list[int] | None = None
    chunks: list[np.ndarray] = []
    pos = s
    while pos < e:
        key, p2 = _varint(buf, pos)
        if key == (5 << 3) | 5:  # unpacked float data: read the whole run vectorised
            arr, pos = _floats_run(buf, pos, e)
            chunks.append(arr)
            continue
        field, wt, val, pos = next(_fields(buf, pos, e))
        if field in legacy and wt == 0:
            legacy[field] = val
        elif field == 5 and wt == 2:
            a, b = val
            chunks.append(np.frombuffer(buf, "<f4", count=(b - a) // 4, offset=a).copy())
        elif field == 8 and wt == 2:
            a, b = val
            chunks.append(np.frombuffer(buf, "<f8", count=(b - a) // 8, offset=a).astype(np.float32))
        elif field == 8 and wt == 1:
            chunks.append(np.frombuffer(buf, "<f8", count=1, offset=val[0]).astype(np.float32))
        elif field == 7 and wt == 2:
            shape = []
            for f2, wt2, v2, _ in _fields(buf, *val):
                if f2 == 1:
                    shape += _packed_varints(buf, *v2) if wt2 == 2 else [v2]
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if shape is None:
        shape = [legacy[1], legacy[2], legacy[3], legacy[4]]
        if all(d == 0 for d in shape):
            shape = [data.size]
    if int(np.prod(shape)) != data.size:
        raise _Bad(f"blob shape {shape} holds {int(np.prod(shape))} values but the data has {data.size}")
    return data.reshape(shape)


def _layer(buf, s: int, e: int, name_f: int, blobs_f: int, v0_f: int | None) -> tuple[str, list[np.ndarray]]:
    name, blobs = "", []
    for field, wt, val, _ in _fields(buf, s, e):
        if wt != 2:
            continue
        if field == name_f:
            name = bytes(buf[val[0]:val[1]]).decode("utf-8", "replace")
        elif field == blobs_f:
            blobs.append(_blob(buf, *val))
        elif v0_f is not None and field == v0_f:  # V1 layer wrapping a V0 layer (very old files)
            n0, b0 = _layer(buf, *val, name_f=1, blobs_f=50, v0_f=None)
            name, blobs = name or n0, blobs or b0
    return name, blobs


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Layer name → list of float32 blobs (weights, bias, …), in file order; layers without blobs omitted."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a .caffemodel file; give the path of the .caffemodel "
                           f"inside it")
    try:
        f = open_regular(path, "caffemodel")
    except DataError as e:
        raise WeightsError(str(e)) from None
    except FileNotFoundError:
        raise WeightsError(f"{path}: caffemodel not found; download it (see data/REFERENCE_URLS.md) or "
                           f"give the right path") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise WeightsError(f"{path}: file is empty; delete it and download it again")
        if f.read(4).startswith(TORCH_MAGIC):
            raise WeightsError(f"{path}: a PyTorch file (.pth/.pt), not a caffemodel; convert a torchvision "
                               f"classifier with `fcn convert-weights {path.name} --format torchvision`")
        cap = max_weights_bytes()
        if size > cap:
            raise WeightsError(f"{path}: {size} B, over the limit of {cap} B for a weights file; if it is "
                               f"genuine raise FCN_MAX_WEIGHTS_BYTES, else delete it and download it again")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            out: dict[str, list[np.ndarray]] = {}
            for field, wt, val, _ in _fields(buf, 0, size):
                if wt != 2 or field not in (2, 100):
                    continue
                if field == 100:
                    name, blobs = _layer(buf, *val, name_f=1, blobs_f=7, v0_f=None)
                else:
                    name, blobs = _layer(buf, *val, name_f=4, blobs_f=6, v0_f=1)
                if blobs:
                    out[name] = blobs
        except (_Bad, ValueError, IndexError) as e:
            raise WeightsError(f"{path}: not a readable caffemodel ({e}); the download is truncated or "
                               f"this is a .prototxt/other file — download it again") from None
        finally:
            del buf  # release the mapping before the file closes
    if not out:
        raise WeightsError(f"{path}: no layers with weights found; is this a deploy .prototxt instead of a "
                           f".caffemodel?")
    return out


# --------------------------------------------------------------------------------------------- writer
def _enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wt: int) -> bytes:
    return _enc_varint((field << 3) | wt)


def _ld(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _enc_varint(len(payload)) + payload


def _enc_blob(a: np.ndarray, packed: bool, legacy_shape: bool) -> bytes:
    a = np.asarray(a, np.float32)
    out = b""
    if legacy_shape:
        dims = [1] * (4 - a.ndim) + list(a.shape)
        if len(dims) != 4:
            raise ValueError("legacy blob dims need ndim <= 4")
        out += b"".join(_key(i + 1, 0) + _enc_varint(d) for i, d in enumerate(dims))
    else:
        out += _ld(7, _ld(1, b"".join(_enc_varint(d) for d in a.shape)))
    flat = a.reshape(-1).astype("<f4")
    if packed:
        out += _ld(5, flat.tobytes())
    else:
        rec = np.empty((flat.size, 5), np.uint8)
        rec[:, 0] = 0x2D
        rec[:, 1:] = flat.view(np.uint8).reshape(-1, 4)
        out += rec.tobytes()
    return out


def write_caffemodel(path: str | os.PathLike, layers: dict[str, list[np.ndarray]], v1: bool = False,
                     packed: bool = True, legacy_shape: bool = False, net_name: str = "net") -> None:
    """Write layer blobs as a NetParameter (V1 `layers` or current `layer`), atomically."""
    msg = _ld(1, net_name.encode())
    for name, blobs in layers.items():
        body_blobs = b"".join(_ld(6 if v1 else 7, _enc_blob(b, packed, legacy_shape)) for b in blobs)
        if v1:
            body = _ld(4, name.encode()) + _key(5, 0) + _enc_varint(4) + body_blobs  # type CONVOLUTION
            msg += _ld(2, body)
        else:
            body = _ld(1, name.encode()) + _ld(2, b"Convolution") + body_blobs
            msg += _ld(100, body)
    with atomic_write(path, "wb") as f:
        f.write(msg)
