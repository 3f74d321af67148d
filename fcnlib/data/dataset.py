"""The one dataset loader: any `data/<dataset>/dataset.json` (see ARCHITECTURE.md) as a torch Dataset.

Every prepare step (pascal, nyud, siftflow, context, demo) writes the same layout, so training and
evaluation never know which dataset they read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fcnlib.data.splits import unique_id
from fcnlib.data.transforms import augment_pair, pad_to
from fcnlib.errors import ConfigError, DataError
from fcnlib.facts.datasets import MODALITY_CHANNELS, REGISTRY, split_list_source
from fcnlib.files.io import (
    IGNORE_INDEX,
    atomic_write_text,
    place_file,
    read_depth_png,
    read_image,
    read_json,
    read_label,
    staged_dir,
)
from fcnlib.files.paths import inside, open_regular
from fcnlib.models.preprocessing import Preprocessing

PathLike = str | os.PathLike

# Channels each modality contributes (concatenated in the order the caller asks for).
_DEPTH_MODALITIES = ("depth", "rawdepth")


def load_dataset_meta(dataset_json: PathLike) -> dict[str, Any]:
    """Read and check a dataset.json; returns it with `root` (its folder) and every path made absolute."""
    path = Path(dataset_json)
    meta = read_json(path)
    fix = "rerun the prepare rule that writes it"
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object; {fix}")
    for key in ("name", "heads", "classes", "splits"):
        if key not in meta:
            raise DataError(f"{path}: missing key '{key}'; {fix}")
    heads = meta["heads"]
    if (not isinstance(heads, dict) or not heads
            or not all(isinstance(v, int) and v > 0 for v in heads.values())):
        raise DataError(f"{path}: 'heads' must map head names to class counts, got {heads!r}; {fix}")
    for head, n in heads.items():
        names = meta["classes"].get(head) if isinstance(meta["classes"], dict) else None
        if names is None or len(names) != n:
            raise DataError(f"{path}: classes['{head}'] must list {n} names; {fix}")
    root = path.resolve().parent
    meta = dict(meta)
    meta["root"] = str(root)
    meta.setdefault("ignore_index", IGNORE_INDEX)
    splits = {}
    # every path a dataset.json names stays inside its folder (the path policy, fcnlib.files.paths.inside)
    where = f"rerun the prepare rule that writes it (a dataset's files live inside its folder {root})"

    # A path outside the dataset's folder is allowed only inside a folder the file names in "roots" (relative
    # to it, or absolute): the extracted archives a prepare step reads in place (PASCAL's VOCdevkit), or
    # data kept elsewhere — folders named on purpose, never reached by accident or by '..'.
    roots = meta.get("roots", [])
    if not (isinstance(roots, list) and all(isinstance(r, str) and r for r in roots)):
        raise DataError(f"{path}: 'roots' must list folders (relative to the file, or absolute), got {roots!r}; "
                        f"{fix}")
    extra = [Path(os.path.normpath(root / r)) for r in roots]

    def at(rel: str, what: str) -> str:
        if not isinstance(rel, str):
            raise TypeError(f"{what} must be a path string, got {rel!r}")
        q = Path(os.path.normpath(root / rel))
        for r in extra:
            if q.is_relative_to(r):
                return str(inside(r, q, f"{path.name}: {what}", where))
        return str(inside(root, rel, f"{path.name}: {what}", where))

    for name, sp in meta["splits"].items():
        try:
            sp = {
                "ids": at(sp["ids"], f"split '{name}' ids"),
                "images": {m: {**spec, "dir": at(spec["dir"], f"split '{name}' {m} dir")}
                           for m, spec in sp["images"].items()},
                "labels": {h: {**spec, "dir": at(spec["dir"], f"split '{name}' {h} labels dir")}
                           for h, spec in sp.get("labels", {}).items()},
            }
        except (KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{path}: split '{name}' is malformed ({e!r}); {fix}") from None
        splits[name] = sp
    meta["splits"] = splits
    return meta


def read_ids(path: PathLike) -> list[str]:
    """A split list: one id per line, blank lines and surrounding whitespace ignored."""
    try:
        with open_regular(path, "split list") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: split list not found; rerun the prepare rule") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: split list is not UTF-8 text ({e.reason} at byte {e.start}); rerun the prepare "
                        f"rule or save the list as UTF-8") from None
    ids: list[str] = []
    first: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        parts = s.replace("\\", "/").split("/")
        if s.startswith(("/", "\\")) or (len(s) > 1 and s[1] == ":") or ".." in parts or "\x00" in s:
            raise DataError(f"{path}: line {n}: id {s!r} is an absolute path or climbs out with '..' (an id names "
                            f"files inside the dataset); remove or fix that line, or rerun the prepare rule")
        unique_id(path, s, n, first)
        ids.append(s)
    return ids



class SegDataset(Dataset):
    """(image, label) pairs of one split of a prepared dataset.

    image: float32 C×H×W, the requested modalities concatenated on channels, each passed through its
    Preprocessing (or left as raw floats — 0–255 for rgb/hha, millimetres for depth — when none is given).
    label: int64 H×W with 255 = void, or {head: label} when the dataset has several heads.
    augment: {"mirror": bool, "jitter": int, "seed": int}; the draw for item i depends only on
    (seed, epoch, i), so runs are repeatable — the trainer calls `set_epoch(e)` each epoch.
    raw=True (8-bit modalities only: rgb, hha; the trainer's loader): image is uint8 (C+1)×H×W as
    stored, before preprocessing, whose last channel is 1 on image pixels and 0 where jitter uncovered
    them (collate_pad pads it with 0 too); `fcnlib.train.loader.normalize_batch` turns it into exactly the
    float32 `raw=False` gives (0 at those pixels), on the device. Labels stay int64 here.
    """

    def __init__(self, dataset_json: PathLike, split: str, modalities: Sequence[str] = ("rgb",),
                 preprocessing: Mapping[str, Any] | None = None, augment: Mapping[str, Any] | None = None,
                 max_images: int | None = None, raw: bool = False) -> None:
        self.json_path = Path(dataset_json)
        self.raw = bool(raw)
        self.meta = load_dataset_meta(dataset_json)
        if split not in self.meta["splits"]:
            raise DataError(f"{self.json_path}: no split '{split}' (has {sorted(self.meta['splits'])}); "
                            f"pick one of those in the config")
        self.split = split
        self._spec = self.meta["splits"][split]
        if isinstance(modalities, str):
            modalities = (modalities,)
        self.modalities = tuple(modalities)
        if self.raw and any(m in _DEPTH_MODALITIES for m in self.modalities):
            raise DataError(f"{self.json_path}: raw (uint8) items need 8-bit modalities, not {self.modalities}")
        for m in self.modalities:
            if m not in self._spec["images"]:
                raise DataError(f"{self.json_path}: split '{split}' has no '{m}' images (has "
                                f"{sorted(self._spec['images'])}); make them first (e.g. the HHA rule) or "
                                f"change the modalities in the config")
        missing = [h for h in self.meta["heads"] if h not in self._spec["labels"]]
        if missing:
            raise DataError(f"{self.json_path}: split '{split}' has no labels for heads {missing}; "
                            f"rerun the prepare rule")
        self.preprocessing = dict(preprocessing) if preprocessing else None
        if self.preprocessing is not None and any(isinstance(v, Mapping) for v in self.preprocessing.values()):
            # as stored in a weights file's meta: turn the plain dicts back into Preprocessing objects

            self.preprocessing = {k: Preprocessing.from_dict(dict(v)) if isinstance(v, Mapping) else v
                                  for k, v in self.preprocessing.items()}
        if self.preprocessing is not None:
            absent = [m for m in self.modalities if m not in self.preprocessing]
            if absent:
                raise DataError(f"{self.json_path}: no preprocessing given for modalities {absent}; the "
                                f"weights file must carry one per modality")
        self.augment = dict(augment) if augment else {}
        self.epoch = 0
        ids = read_ids(self._spec["ids"])
        if max_images is not None:
            ids = ids[: int(max_images)]
        self.ids: list[str] = ids
        self.heads: dict[str, int] = dict(self.meta["heads"])
        self.ignore_index: int = int(self.meta.get("ignore_index", IGNORE_INDEX))

    # -- metadata -------------------------------------------------------------------------------
    @property
    def num_classes(self) -> dict[str, int]:
        return dict(self.heads)

    @property
    def classes(self) -> dict[str, list[str]]:
        return {h: list(v) for h, v in self.meta["classes"].items()}

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def in_channels(self) -> int:
        return sum(MODALITY_CHANNELS.get(m, 3) for m in self.modalities)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of this epoch (trainer calls it; workers see it after re-fork)."""
        self.epoch = int(epoch)

    def _path(self, spec: Mapping[str, Any], i: int) -> Path:
        return Path(spec["dir"]) / f"{self.ids[i]}{spec.get('ext', '.png')}"

    def image_path(self, i: int, modality: str | None = None) -> Path:
        """Path of item i's image for `modality` (default: the first requested one)."""
        return self._path(self._spec["images"][modality or self.modalities[0]], i)

    def label_path(self, i: int, head: str | None = None) -> Path:
        return self._path(self._spec["labels"][head or next(iter(self.heads))], i)

    def __len__(self) -> int:
        return len(self.ids)

    def files(self) -> list[Path]:
        """Every file this split reads: each item's image per modality and its label per head."""
        specs = [self._spec["images"][m] for m in self.modalities] + [self._spec["labels"][h] for h in self.heads]
        return [self._path(s, i) for i in range(len(self.ids)) for s in specs]

    # -- loading --------------------------------------------------------------------------------
    def _check_exists(self, path: Path, i: int, what: str) -> None:
        if path.is_symlink():  # a link planted in a dataset folder must not read a file elsewhere
            inside(self.meta["root"], path, f"{what} of id '{self.ids[i]}'",
                   "replace the link by the file (or a hard link), or rerun the prepare rule")
        if not path.is_file():
            raise DataError(f"{path}: {what} of id '{self.ids[i]}' (split '{self.split}' of "
                            f"{self.json_path}) is missing; rerun the prepare rule or remove the id from "
                            f"the split list")

    def _load_modality(self, m: str, i: int) -> torch.Tensor:
        spec = self._spec["images"][m]
        path = self._path(spec, i)
        self._check_exists(path, i, f"the {m} image")
        pre = self.preprocessing[m] if self.preprocessing else None
        if m in _DEPTH_MODALITIES:
            # depth PNGs store integers; scale_m converts to metres, the nets' log-depth wants millimetres
            to_mm = np.float32(float(spec.get("scale_m", 0.001)) * 1000.0)
            mm = read_depth_png(path).astype(np.float32) * to_mm
            arr = mm[:, :, None]
        else:
            arr = read_image(path, "RGB")
        if self.raw:
            return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if pre is not None:
            t = pre.apply(arr)
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.ascontiguousarray(t))
            return t.float()
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))

    def load_labels(self, i: int, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Item i's label arrays (uint8 H×W) per head, checked for range and, if given, size."""
        out = {}
        for head, n in self.heads.items():
            path = self._path(self._spec["labels"][head], i)
            self._check_exists(path, i, f"the '{head}' label")
            out[head] = read_label(path, n, shape=shape, ignore_index=self.ignore_index)
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor]]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        parts = [self._load_modality(m, i) for m in self.modalities]
        shape = tuple(parts[0].shape[-2:])
        for m, p in zip(self.modalities, parts, strict=True):
            if tuple(p.shape[-2:]) != shape:
                raise DataError(f"{self.image_path(i, m)}: size {p.shape[-1]}×{p.shape[-2]} differs from the "
                                f"{self.modalities[0]} image {shape[1]}×{shape[0]} of id '{self.ids[i]}'; "
                                f"regenerate that modality")
        if self.raw:  # the validity channel: 1 on image pixels, 0 where jitter/padding fills
            parts.append(torch.ones((1, *shape), dtype=torch.uint8))
        image = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        labels = {h: torch.from_numpy(a.astype(np.int64)) for h, a in self.load_labels(i, shape).items()}
        label: torch.Tensor | dict[str, torch.Tensor] = (
            labels if len(labels) > 1 else next(iter(labels.values())))
        mirror, jitter = bool(self.augment.get("mirror", False)), int(self.augment.get("jitter", 0) or 0)
        if mirror or jitter:
            rng = np.random.default_rng([int(self.augment.get("seed", 0)), self.epoch, i])
            image, label = augment_pair(image, label, rng, mirror=mirror, jitter=jitter,
                                        ignore_index=self.ignore_index)
        return image.contiguous(), label


def collate_pad(batch: Sequence[tuple[torch.Tensor, Any]], ignore_index: int = IGNORE_INDEX
                ) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor]]:
    """Stack variable-size items: pad bottom/right to the largest H×W, 0 for inputs, 255 for labels."""
    h = max(int(img.shape[-2]) for img, _ in batch)
    w = max(int(img.shape[-1]) for img, _ in batch)
    images = torch.stack([pad_to(img, h, w, 0.0) for img, _ in batch])
    first = batch[0][1]
    if isinstance(first, dict):
        labels: torch.Tensor | dict[str, torch.Tensor] = {
            k: torch.stack([pad_to(lab[k], h, w, ignore_index) for _, lab in batch]) for k in first}
    else:
        labels = torch.stack([pad_to(lab, h, w, ignore_index) for _, lab in batch])
    return images, labels


# -- helpers shared by the prepare steps (nyud, siftflow, context) -------------------------------------


def link_or_copy(src: PathLike, dst: PathLike) -> None:
    """Put `src` at `dst` without a half-written file: hard link when possible, else an atomic copy.
    An existing `dst` is replaced (its content may be an older archive's)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        place_file(src, dst)
    except OSError:
        if not Path(src).is_file():
            raise DataError(f"{src}: file not found; re-extract the raw archive") from None
        raise


def write_split_lists(out_dir: PathLike, splits: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """splits/<name>.txt for each split (ids in the given order); returns {name: relative path}."""
    out = {}
    for name, ids in splits.items():
        rel = f"splits/{name}.txt"
        atomic_write_text(Path(out_dir) / rel, "".join(f"{i}\n" for i in ids))
        out[name] = rel
    return out


def resolve_lists(dataset: str, lists: Mapping[str, PathLike] | None, lists_dir: PathLike | None,
                  default_dir: Path) -> dict[str, Path]:
    """Where each of `dataset`'s split lists (fcnlib.facts.datasets: DatasetSpec.split_lists) is: `lists` ({split:
    file}, as the workflow passes them), else `lists_dir`/<split>.txt, else <default_dir>/<split>.txt (inside
    the archive)."""
    names = REGISTRY[dataset].split_lists
    if lists:
        missing = [n for n in names if n not in lists]
        if missing:
            raise DataError(f"split lists {missing} not given (got {sorted(lists)}); add the sources "
                            f"{', '.join(split_list_source(dataset, n) for n in missing)} to the config")
        return {n: Path(lists[n]) for n in names}
    base = Path(lists_dir) if lists_dir is not None else default_dir
    return {n: base / f"{n}.txt" for n in names}


@contextlib.contextmanager
def staged_prepare(out_dir: PathLike, source: str, what: str) -> Iterator[Path]:
    """Common frame of a prepare step: check `source`, then build the whole dataset folder in a staging
    folder swapped in for `out_dir` at the end (fcnlib.files.io.staged_dir): a rerun after a corrected archive
    leaves no file of the old set, and a failed one keeps the old set whole."""
    if source not in ("real", "demo"):
        raise ConfigError(f"{what}: source must be 'real' or 'demo', got {source!r}")
    with staged_dir(out_dir) as out:
        yield out
