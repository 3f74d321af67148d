"""Atomic writes and checked reading of images, labels and JSON.

Every file the pipeline produces goes through `atomic_write` (temp file in the same directory,
fsync, rename), so a killed job never leaves a truncated file that looks complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps

from fcnlib.errors import DataError, DiskError, FcnError, disk_full
from fcnlib.files.envcaps import env_int
from fcnlib.files.paths import open_regular

#: The void label of every dataset here (dataset.json "ignore_index"): left out of loss and scores, the
#: padding of batches; uint8 label batches (fcnlib.train.loader) carry it. Defined once, imported elsewhere.
IGNORE_INDEX = 255

PathLike = str | os.PathLike


def _remove_stale_tmps(path: Path, suffix: str = ".tmp") -> None:
    """Temp files (or staging folders) of `path` left by a killed writer (SIGKILL skips cleanup): their pid
    no longer runs. Names are `.<name>.<pid>-<random><suffix>`."""
    for t in path.parent.glob(f".{glob_escape(path.name)}.*-*{suffix}"):
        pid = t.name[len(path.name) + 2:].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            if t.is_dir() and not t.is_symlink():
                shutil.rmtree(t, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    t.unlink()
        except PermissionError:
            pass


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished folder `tmp` at `target` (its old content removed); a failure leaves the old set in
    place and is one DiskError naming the folder."""
    try:
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp)  # now the old content
        else:
            old = tmp.with_name(tmp.name[: -len(".staging")] + ".old")
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except OSError:
                os.rename(old, target)
                raise
            shutil.rmtree(old)
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EBUSY):
            raise DiskError(f"{target}: cannot replace it with the new set built beside it ({e.strerror}): it is "
                            f"a mount point or in use; mount or link its parent folder instead, or write the "
                            f"output elsewhere (the previous {target.name} is kept)") from None
        raise disk_error(target, e) from None


@contextlib.contextmanager
def staged_dir(target: PathLike) -> Iterator[Path]:
    """The output contract of every step that writes a set of files: build the whole set in a fresh
    folder beside `target` (same filesystem), then swap it in for `target`'s old content.

    Readers see the old set or the new one, never a mix; nothing of the old set survives a rerun (a
    rerun gives exactly the files a clean run gives); a failure or a kill leaves the old set untouched
    (the staging folder is removed, or by the next run when the writer was killed). A link at `target`
    is kept: its folder's content is replaced.
    """
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    if target.exists() and not target.is_dir():
        raise DiskError(f"{target}: exists and is not a folder; move it away or choose another output folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".staging", ".old"):
        _remove_stale_tmps(target, suffix)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".staging",
                                    dir=target.parent))
    except OSError as e:
        raise disk_error(target, e) from None
    try:
        tmp.chmod(0o777 & ~current_umask())  # as mkdir would make it (mkdtemp's 0700 would hide the results)
        yield tmp
        _swap_in(tmp, target)
        with contextlib.suppress(OSError):
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, FcnError) and str(tmp) in str(e):  # name the folder the user knows, not a deleted one
            raise type(e)(str(e).replace(str(tmp), str(target))) from None
        raise


def place_file(src: PathLike, dst: PathLike) -> None:
    """Put `src` at `dst` atomically: a hard link where possible (no copy of a 2 GB archive), else a copy,
    through a temp name unique to this process; the temp file never outlives a failure."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, in every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`.

    The temp file is private (mkstemp's 0600) while it is written; the finished file gets the mode
    `open()` would give it (0666 minus the umask), so colleagues on a shared folder can read results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # our own temp file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = disk_full(path, e) if isinstance(e, OSError) else None
        if full is not None:
            raise full from None
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


def _os_error_in(e: BaseException | None) -> OSError | None:
    """The OSError behind an exception (torch.save hides it under an inline_container RuntimeError)."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def disk_error(path: PathLike, e: OSError) -> DiskError:
    """One line naming the file and the cause of a failed write."""
    path = Path(path)
    full = disk_full(path, e)
    if full is not None:
        return full
    return DiskError(f"{path}: cannot write it ({e.strerror or e}); fix permissions on {path.parent} and rerun "
                     f"(the previous {path.name}, if any, is kept)")


def atomic_save_torch(obj: Any, path: PathLike) -> None:
    """torch.save through atomic_write; a failed write (disk full) is one DiskError naming `path`."""
    import torch  # io is imported while the Snakefile is parsed: torch only when a tensor file is written

    try:
        with atomic_write(path, "wb") as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as e:
        ose = _os_error_in(e)
        if ose is None:
            raise
        raise disk_error(path, ose) from None


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (weights and archives can be GBs)."""
    h = hashlib.sha256()
    with open_regular(path, "file to checksum") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: PathLike) -> Any:
    """A JSON file the pipeline wrote; a FIFO/device/folder, undecodable or invalid one is a DataError naming it."""
    try:
        with open_regular(path, "JSON file") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
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


DEFAULT_MAX_PIXELS = 40_000_000  # ≈ 7300×5500; the paper's images are ≤ 0.3 MP


class PixelLimitError(DataError):
    """An image, label or depth map has more pixels than FCN_MAX_IMAGE_PIXELS allows."""


class UndecodableImage(DataError):
    """A file given as an image is truncated or of another kind (callers may reword the advice)."""


def max_image_pixels() -> int:
    """The pixel cap for every decoded image (FCN_MAX_IMAGE_PIXELS, which `--max-pixels` flags set), so a
    small hostile file (a 13000×13000 PNG of 500 KB) fails before it is decoded into gigabytes."""
    return env_int("FCN_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS, "pixels")


def set_max_pixels(n: int) -> None:
    """What a `--max-pixels` flag does: the cap for this process and the workers it spawns."""
    if not n > 0:
        raise DataError(f"--max-pixels {n}: must be a positive number of pixels")
    os.environ["FCN_MAX_IMAGE_PIXELS"] = str(int(n))


@contextlib.contextmanager
def _open_capped(path: PathLike, kind: str) -> Iterator[Image.Image]:
    """Image.open with the pixel cap checked from the header, before any pixel is decoded."""
    cap = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = cap  # process-wide; PIL itself refuses above 2× this, we refuse above 1×
    fix = ("downscale it, or if it is genuine raise the limit (FCN_MAX_IMAGE_PIXELS, or --max-pixels "
           "on fcn segment / fcn hha)")
    with open_regular(path, kind) as f:  # PIL reads lazily from f: it stays open while the image is used
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(f)
        except Image.DecompressionBombError as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{m.group(1)} pixels" if m else f"more than {2 * cap} pixels"
            raise PixelLimitError(f"{path}: {kind} has {size}, over the limit of {cap} (a decompression bomb or "
                                  f"a huge file); {fix}") from None
        with im:
            w, h = im.size
            if w * h > cap:
                raise PixelLimitError(f"{path}: {kind} is {w}×{h} = {w * h} pixels, over the limit of {cap}; "
                                      f"{fix}")
            yield im


def image_size(path: PathLike, kind: str = "image", fix: str = "re-extract the raw archive") -> tuple[int, int]:
    """(width, height) from the header alone, under the same pixel cap as reading it (a bomb is refused here,
    not met later in a worker). Missing or unreadable: a DataError naming the file, ending in `fix`."""
    try:
        with _open_capped(path, kind) as im:
            return im.size
    except FileNotFoundError:
        raise DataError(f"{path}: {kind} is missing; {fix}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read {kind} ({e}); {fix}") from None


def read_image(path: PathLike, mode: str = "RGB", orient: bool = False) -> np.ndarray:
    """Decode an image fully (so truncation is caught here, not mid-training) as H×W×C uint8.

    16-bit greyscale is scaled to 8 bits (top byte: 65535 → 255, the full range kept; converting it the
    way PIL does would clip everything above 255), float images are refused. `orient` applies the EXIF
    orientation as viewers show the photo: `fcn segment` does, for user photos; dataset images are read
    as stored (no EXIF rotation), as the authors' layers read them, since their labels are drawn on the
    stored pixels."""
    try:
        with _open_capped(path, "image") as im:
            im.load()
            if orient:
                im = ImageOps.exif_transpose(im)
            arr = _to_8bit(path, im, mode)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found; check the split list and the dataset folder") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UndecodableImage(f"{path}: cannot decode image ({e}); the file is truncated or not an image — "
                               f"delete it and rerun the extract/prepare rule") from None
    return arr


def _to_8bit(path: PathLike, im: Image.Image, mode: str) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(f"{path}: a 32-bit integer image (values {int(a.min())}..{int(a.max())}); give an "
                            f"8- or 16-bit image")
        grey = Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8), mode="L")
        return np.asarray(grey.convert(mode))
    if im.mode == "F":
        raise DataError(f"{path}: a floating-point image (mode F); its range is unknown — save it as an 8- or "
                        f"16-bit image")
    return np.asarray(im.convert(mode))


def read_depth_png(path: PathLike) -> np.ndarray:
    """A 16-bit depth PNG as a uint16/int32 H×W array, units left to the caller (see fcnlib.data.hha)."""
    try:
        with _open_capped(path, "depth map") as im:
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
               ignore_index: int = IGNORE_INDEX, fix: str | None = None) -> np.ndarray:
    """Read a label PNG (palette or grey) as H×W uint8 class ids, checking range and size. `fix`: what the
    error tells the user to do (default: regenerate a prepared label, as a prepare step wrote it)."""
    try:
        with _open_capped(path, "label map") as im:
            im.load()
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{path}: label PNG has mode {im.mode}; expected palette (P) or greyscale "
                                f"class ids — convert colour labels with fcnlib.files.io.colour_to_label")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found; check the split list and the dataset folder") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode label PNG ({e}); the file is truncated") from None
    bad = ((arr < 0) | (arr >= num_classes)) & (arr != ignore_index)  # 32-bit labels: negatives would wrap
    if bad.any():
        vals = np.unique(arr[bad])[:8].tolist()
        raise DataError(f"{path}: label values {vals} are outside 0..{num_classes - 1} (and not the ignore "
                        f"value {ignore_index}); " + (fix or "the file belongs to another dataset or was saved in "
                                                      "colour — regenerate it (delete it and rerun the prepare "
                                                      "rule) or remove its id from the split list"))
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(f"{path}: label size {arr.shape[1]}×{arr.shape[0]} differs from its image "
                        f"{shape[1]}×{shape[0]}; " + (fix or "the label belongs to another image — regenerate it "
                                                      "(delete it and rerun the prepare rule) or remove its id "
                                                      "from the split list"))
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


def label_ids(path: PathLike, arr: Any, lo: int, hi: int, what: str, fix: str) -> np.ndarray:
    """Class ids of a label array as int64, refused (one DataError naming the file and the first bad value)
    unless every value is an integer in lo..hi: a float or NaN label is not truncated into a class, a
    negative one not wrapped into one."""
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind not in "iuf":
        raise DataError(f"{path}: {what} holds {a.dtype} values, not class ids; {fix}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        bad[~bad] = a[~bad] != np.round(a[~bad])
        if bad.any():
            v = a[bad].flat[0]
            raise DataError(f"{path}: {what} holds {int(bad.sum())} non-integral value(s) (e.g. {float(v)!r}); "
                            f"class ids are integers {lo}..{hi} — {fix}")
    if a.size and (a.min() < lo or a.max() > hi):
        out = a[(a < lo) | (a > hi)]
        raise DataError(f"{path}: {what} values {sorted({int(v) for v in np.unique(out)[:8]})} are outside "
                        f"{lo}..{hi}; {fix}")
    return a.astype(np.int64)
