"""A minimal MAT v5 writer for hostile tests: one numeric uint8 array (optionally inside a 1×1 struct, as
SBD's GTcls.Segmentation), zeros streamed through zlib so a 48-megapixel label costs a few KB on disk and
no memory to make — the files scipy.io.loadmat reads, real format, absurd sizes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

MI_INT8, MI_UINT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 2, 5, 6, 14, 15
MX_STRUCT, MX_UINT8, MX_DOUBLE = 2, 9, 6


def _el(t: int, data: bytes) -> bytes:
    return struct.pack("<II", t, len(data)) + data + b"\0" * (-len(data) % 8)


def _head(cls: int, dims: tuple[int, ...], name: str) -> bytes:
    return (_el(MI_UINT32, struct.pack("<II", cls, 0)) + _el(MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
            + _el(MI_INT8, name.encode()))


def _numeric_chunks(dims: tuple[int, ...], name: str, fill: bytes) -> tuple[int, Iterator[bytes]]:
    n = 1
    for d in dims:
        n *= d
    head = _head(MX_UINT8, dims, name)
    data_tag = struct.pack("<II", MI_UINT8, n)
    total = len(head) + 8 + n + (-n % 8)

    def gen() -> Iterator[bytes]:
        yield head + data_tag
        left = n
        block = (fill * (1 << 20))[:1 << 20]
        while left:
            k = min(left, len(block))
            yield block[:k]
            left -= k
        yield b"\0" * (-n % 8)
    return total, gen()


def write_mat(path: Path, var: str, dims: tuple[int, ...], field: str | None = None, fill: bytes = b"\0",
              compressed: bool = True) -> Path:
    """`var` = a uint8 array of `dims` filled with `fill`, or a 1×1 struct whose `field` is that array."""
    if field is None:
        size, chunks = _numeric_chunks(dims, var, fill)
        parts: Iterator[bytes] = iter([struct.pack("<II", MI_MATRIX, size)])
        body = [parts, chunks]
    else:
        inner_size, inner = _numeric_chunks(dims, "", fill)
        fname = field.encode().ljust(32, b"\0")
        shead = (_head(MX_STRUCT, (1, 1), var) + struct.pack("<HHI", MI_INT32, 4, 32)
                 + _el(MI_INT8, fname) + struct.pack("<II", MI_MATRIX, inner_size))
        body = [iter([struct.pack("<II", MI_MATRIX, len(shead) + inner_size)]), iter([shead]), inner]
    header = b"MATLAB 5.0 MAT-file, written by a hostile test".ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM"
    with open(path, "wb") as f:
        f.write(header)
        if not compressed:
            for it in body:
                for c in it:
                    f.write(c)
            return path
        z = zlib.compressobj(9)
        comp = bytearray()
        for it in body:
            for c in it:
                comp += z.compress(c)
        comp += z.flush()
        f.write(struct.pack("<II", MI_COMPRESSED, len(comp)) + bytes(comp))
    return path
