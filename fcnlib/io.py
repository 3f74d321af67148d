"""Atomic writes and checked reading of images, labels and JSON.

Every file the pipeline produces goes through `atomic_write` (temp file in the same directory,
fsync, rename), so a killed job never leaves a truncated file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from .errors import DataError

PathLike = str | os.PathLike


def _remove_stale_tmps(path: Path) -> None:
    """Temp files of `path` left by a killed writer (SIGKILL skips cleanup): their pid no longer runs."""
    for t in path.parent.glob(f".{glob_escape(path.name)}.*-*.tmp"):
        pid = t.name[len(path.name) + 2:].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                t.unlink()
        except PermissionError:
            pass


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Deterministic JSON (sorted keys) so reruns produce byte-identical files."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_save_torch(obj: Any, path: PathLike) -> None:
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weights and archives can be GBs)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: PathLike) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete it and rerun the rule that makes it") from None


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC colour map (bit-interleaved class index), n×3 uint8; 255 maps to (224, 224, 192)."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def read_image(path: PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode an image fully (so truncation is caught here, not mid-training) as H×W×C uint8."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert(mode))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found; check the split list and the dataset folder") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({e}); the file is truncated or not an image — "
                        f"delete it and rerun the extract/prepare rule") from None
    return arr


def read_depth_png(path: PathLike) -> np.ndarray:
    """A 16-bit depth PNG as a uint16/int32 H×W array, units left to the caller (see fcnlib.hha)."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: depth file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode depth PNG ({e}); the file is truncated") from None
    if arr.ndim != 2:
        raise DataError(f"{path}: depth PNG must be single-channel, got shape {arr.shape}")
    return arr


def read_label(path: PathLike, num_classes: int, shape: tuple[int, int] | None = None,
               ignore_index: int = 255) -> np.ndarray:
    """Read a label PNG (palette or grey) as H×W uint8 class ids, checking range and size."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{path}: label PNG has mode {im.mode}; expected palette (P) or greyscale "
                                f"class ids — convert colour labels with fcnlib.io.colour_to_label")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found; check the split list and the dataset folder") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode label PNG ({e}); the file is truncated") from None
    bad = (arr >= num_classes) & (arr != ignore_index)
    if bad.any():
        vals = np.unique(arr[bad])[:8].tolist()
        raise DataError(f"{path}: label values {vals} are outside 0..{num_classes - 1} (and not the ignore "
                        f"value {ignore_index}); the file belongs to another dataset or was saved in colour — "
                        f"regenerate it (delete it and rerun the prepare rule) or remove its id from the split "
                        f"list")
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(f"{path}: label size {arr.shape[1]}×{arr.shape[0]} differs from its image "
                        f"{shape[1]}×{shape[0]}; the label belongs to another image — regenerate it (delete it "
                        f"and rerun the prepare rule) or remove its id from the split list")
    return arr.astype(np.uint8)


def write_label_png(path: PathLike, label: np.ndarray) -> None:
    """Write H×W class ids as a VOC-palette PNG, atomically."""
    im = Image.fromarray(np.asarray(label, np.uint8), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    with atomic_write(path, "wb") as f:
        im.save(f, format="PNG")


def write_png(path: PathLike, arr: np.ndarray) -> None:
    """Write a uint8 H×W×3 / H×W or uint16 H×W array as PNG, atomically."""
    with atomic_write(path, "wb") as f:
        Image.fromarray(arr).save(f, format="PNG")


def colour_to_label(rgb: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Map an H×W×3 palette-coloured image back to class ids; unknown colours become 255."""
    palette = voc_palette() if palette is None else palette
    key = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pkey = (palette[:, 0].astype(np.int64) << 16) | (palette[:, 1].astype(np.int64) << 8) | palette[:, 2]
    lut = dict(zip(pkey.tolist(), range(len(palette)), strict=True))
    uniq, inv = np.unique(key, return_inverse=True)
    mapped = np.array([lut.get(k, 255) for k in uniq.tolist()], np.uint8)
    return mapped[inv].reshape(key.shape)
