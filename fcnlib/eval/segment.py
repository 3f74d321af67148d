"""`fcn segment IMAGE_OR_DIR... --weights W`: label maps (VOC-palette PNGs) for any images.

The preprocessing comes from the weights file (never guessed), and the net sees each image at its own
size: FCNs are fully convolutional and crop their output back to the input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fcnlib.errors import DataError, WeightsError
from fcnlib.files.io import PixelLimitError, atomic_write, read_image, voc_palette, write_label_png

PathLike = str | os.PathLike

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def collect_inputs(inputs: Sequence[PathLike]) -> list[Path]:
    """Files as given (any extension: a non-image fails clearly when read) + image files of directories."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise DataError(f"{p}: directory holds no images ({', '.join(IMAGE_EXTS)}); "
                                f"pass image files or another directory")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or directory; check the path")
    return out


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend palette colours over the image; void (255) pixels keep the image."""
    colour = voc_palette()[label]
    blend = (image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).round()
    return np.where((label == 255)[..., None], image, blend.astype(np.uint8))


class Segmenter:
    """A loaded RGB model + its preprocessing; `__call__(image_uint8_HWC) -> {head: uint8 H×W labels}`."""

    def __init__(self, weights: PathLike, device: str | torch.device = "auto") -> None:
        from fcnlib.eval.inference import load_for_inference, resolve_device

        self.device = resolve_device(device)
        self.model, self.meta = load_for_inference(weights, self.device)
        mods = self.meta.modalities
        if mods != ["rgb"]:
            raise WeightsError(f"{weights}: this model needs input modalities {mods}, but `fcn segment` "
                               f"takes plain RGB images; use RGB-only weights, or `fcn evaluate` on a "
                               f"prepared dataset that has {mods}")
        self.pre = self.meta.preprocessing(weights)["rgb"]
        self.heads = self.meta.heads

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        from fcnlib.eval.inference import predict

        x = self.pre.apply(image).to(self.device)
        return {h: p.numpy().astype(np.uint8) for h, p in predict(self.model, x, self.heads).items()}


def _out_names(paths: list[Path]) -> list[str]:
    """Output stems: the file stem, or the full name where two inputs share a stem (a.jpg, a.png)."""
    stems = [p.stem for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [p.name if p.stem in dup else p.stem for p in paths]


def segment_paths(inputs: Sequence[PathLike], weights: PathLike, out_dir: PathLike, *,
                  overlay_png: bool = False, device: str | torch.device = "auto",
                  progress: bool = True) -> list[Path]:
    """Segment every input image; returns the label PNGs written (one per image, `<stem>.png`)."""
    from tqdm import tqdm

    from fcnlib.eval.inference import primary_head

    paths = collect_inputs(inputs)
    seg = Segmenter(weights, device)
    out_dir = Path(out_dir)
    written = []
    main = primary_head(seg.heads)
    for path, name in tqdm(list(zip(paths, _out_names(paths), strict=True)), desc="segment", unit="img",
                           disable=not progress or len(paths) < 2):
        try:
            image = read_image(path)
        except PixelLimitError:
            raise
        except DataError:
            raise DataError(f"{path}: not an image that can be decoded (truncated, or another kind of file); "
                            f"pass JPEG/PNG/BMP/TIFF/WebP images to fcn segment") from None
        try:
            preds = seg(image)
        except (MemoryError, RuntimeError) as e:
            if not isinstance(e, MemoryError) and not any(w in str(e) for w in ("alloc", "out of memory")):
                raise
            h, w = image.shape[:2]
            raise DataError(f"{path}: not enough memory to segment this {w}×{h} image ({type(e).__name__}); "
                            f"downscale it, use --device cpu/cuda with more memory, or lower --max-pixels "
                            f"so such images are refused up front") from None
        target = out_dir / f"{name}.png"
        if target.resolve() == path.resolve():
            raise DataError(f"{path}: output would overwrite the input image; pass --out to another folder")
        write_label_png(target, preds[main])
        for h, lab in preds.items():
            if h != main:
                write_label_png(out_dir / f"{name}_{h}.png", lab)
        if overlay_png:
            from PIL import Image

            with atomic_write(out_dir / f"{name}_overlay.png") as f:
                Image.fromarray(overlay(image, preds[main])).save(f, format="PNG")
        written.append(target)
    return written
