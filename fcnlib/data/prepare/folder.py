"""A dataset of your own from a folder → the dataset.json layout every dataset here uses.

The folder holds images/<id>.<jpg|jpeg|png> and masks/<id>.png. A mask is either class indices (greyscale
or palette PNG: 0..N-1, 255 = void) or, when the config gives a `palette`, an RGB picture in the classes'
colours. Every mask is checked (integral class ids in range, the size of its image) and written as a
class-id PNG; images are linked (or copied) in. Without split lists, train/val are made from the ids with
a seeded hash order, the same whatever the file system's listing order. Declared in the config alone:
fcnlib.facts.datasets.folder_spec, README "Your own data".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fcnlib.data.dataset import link_or_copy, read_ids, staged_prepare, write_split_lists
from fcnlib.errors import DataError
from fcnlib.files.io import (
    IGNORE_INDEX,
    atomic_write_json,
    colour_to_label,
    image_size,
    read_image,
    read_label,
    write_label_png,
)
from fcnlib.files.paths import inside
from fcnlib.runtime.parallel import map_parallel

PathLike = str | os.PathLike

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
INDEX_MODES = ("L", "P", "I", "I;16")  # PNG modes holding integral class ids (RGB/RGBA need a palette)


def find_images(images_dir: Path) -> tuple[dict[str, Path], str]:
    """{id: image file} of a folder and their one extension (mixed extensions: DataError naming them)."""
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found; put your images there (<id>.jpg or <id>.png)")
    found: dict[str, Path] = {}
    for p in sorted(images_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS or not p.is_file():
            continue
        if p.is_symlink():  # the path policy: what the folder holds, not what its links lead to
            inside(images_dir, p.name, "image", "copy the file into the folder instead of linking it")
        if p.stem in found:
            raise DataError(f"{p}: id {p.stem!r} has two images ({found[p.stem].name}, {p.name}); keep one")
        found[p.stem] = p
    if not found:
        raise DataError(f"{images_dir}: no images ({', '.join(IMAGE_EXTS)}); put your images there")
    exts = sorted({p.suffix for p in found.values()})
    if len(exts) > 1:
        raise DataError(f"{images_dir}: images with several extensions {exts}; convert them to one format "
                        f"(the dataset layout reads one extension per folder)")
    return found, exts[0]


def make_splits(ids: Sequence[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """train/val from `ids`: ordered by sha256(seed, id) (independent of listing order and of numpy's RNG),
    the first round(val_fraction × n) (at least 1) to val; each list sorted."""
    if len(ids) < 2:
        raise DataError(f"{len(ids)} image(s): a train/val split needs at least 2; add images or give split lists")
    order = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val])}


def mask_to_label(path: Path, shape: tuple[int, int], num_classes: int,
                  palette: Sequence[Sequence[int]] | None) -> np.ndarray:
    """One mask as H×W uint8 class ids (255 void), checked: integral ids in 0..num_classes-1 or 255 (or colours
    of the palette), the size of its image. One DataError naming the file and the fix otherwise (16-bit masks
    are range-checked before any narrowing)."""
    if not path.is_file():
        raise DataError(f"{path}: mask not found; every image needs masks/<id>.png")
    if path.is_symlink():
        inside(path.parent, path.name, "mask", "copy the file into the folder instead of linking it")
    image_size(path, "mask", "replace the mask")  # the pixel cap, from the header
    if palette is None:
        with Image.open(path) as im:
            mode = im.mode
        if mode not in INDEX_MODES:
            raise DataError(f"{path}: mask is a {mode} image, not class indices; save masks as greyscale or "
                            f"palette PNGs of class ids (255 = void), or give the classes' colours as "
                            f"'palette' in the config")
        return read_label(path, num_classes, shape, fix="fix the mask (class ids in the order of the dataset's "
                          "'classes', 255 = void, the image's size) or the 'classes' list")
    rgb = read_image(path, "RGB")
    label = colour_to_label(rgb, np.asarray(palette, np.uint8))  # a colour not in the palette → 255
    unknown = label == IGNORE_INDEX  # never a class: at most 255 classes (fcnlib.facts.datasets.MAX_CLASSES)
    if unknown.any():
        cols = [tuple(c) for c in np.unique(rgb[unknown], axis=0)[:4].tolist()]
        raise DataError(f"{path}: colours {cols} are not in the dataset's palette; paint every pixel in a "
                        f"class colour or add the colour to 'palette' (and its class to 'classes')")
    if label.shape != tuple(shape):
        raise DataError(f"{path}: mask size {label.shape[1]}×{label.shape[0]} differs from its image "
                        f"{shape[1]}×{shape[0]}; save the mask at the image's size")
    return label


def _item(args: tuple[str, str, str, str, int, Any]) -> str:
    iid, image, mask, out, num_classes, palette = args
    w, h = image_size(image, f"image of id {iid}", "replace the image")
    label = mask_to_label(Path(mask), (h, w), num_classes, palette)
    write_label_png(Path(out) / "labels" / f"{iid}.png", label)
    link_or_copy(image, Path(out) / "rgb" / Path(image).name)
    return iid


def prepare_folder(out_dir: PathLike, images_dir: PathLike, masks_dir: PathLike, *, name: str,
                   classes: Sequence[str], palette: Sequence[Sequence[int]] | None = None,
                   val_fraction: float = 0.2, seed: int = 0, lists: Mapping[str, PathLike] | None = None,
                   classes_file: PathLike | None = None, palette_file: PathLike | None = None,
                   source: str = "real", workers: int | None = None) -> dict[str, Any]:
    """images/ + masks/ → out_dir/{rgb,labels,splits}/ + dataset.json, built whole. `lists` {split: id list file},
    else train/val made with `seed`. `classes_file`/`palette_file` are the files `classes`/`palette` were read
    from (inputs of the rule, so editing them reruns it); their content arrives parsed."""
    del classes_file, palette_file
    with staged_prepare(out_dir, source, f"prepare_{name}") as out:
        images, ext = find_images(Path(images_dir))
        if lists:
            splits = {s: read_ids(f) for s, f in lists.items()}
            for s, ids in splits.items():
                unknown = [i for i in ids if i not in images]
                if unknown:
                    raise DataError(f"{lists[s]}: ids {unknown[:4]} of split {s!r} have no image in {images_dir}; "
                                    f"fix the list or add the images")
                if not ids:
                    raise DataError(f"{lists[s]}: split {s!r} lists no ids; list at least one")
        else:
            splits = make_splits(sorted(images), val_fraction, seed)
        used = sorted({i for ids in splits.values() for i in ids})
        n = len(classes)
        pal = [list(c) for c in palette] if palette is not None else None
        map_parallel(_item, [(i, str(images[i]), str(Path(masks_dir) / f"{i}.png"), str(out), n, pal) for i in used],
                     workers, desc=name)
        rel = write_split_lists(out, splits)
        layout = {"images": {"rgb": {"dir": "rgb", "ext": ext}}, "labels": {"sem": {"dir": "labels", "ext": ".png"}}}
        meta = {
            "name": name, "source": source, "ignore_index": IGNORE_INDEX,
            "heads": {"sem": n}, "classes": {"sem": list(classes)},
            "splits": {s: {"ids": rel[s], **layout} for s in rel},
            "sizes": {s: len(ids) for s, ids in splits.items()},
        }
        atomic_write_json(out / "dataset.json", meta)
        print(f"{name}: " + ", ".join(f"{s} {len(ids)}" for s, ids in splits.items()))
        return meta
