"""`fcn segment IMAGE_OR_DIR... --weights W`: label maps (VOC-palette PNGs) for any images.

The preprocessing comes from the weights file (never guessed), and the net sees each image at its own
size: FCNs are fully convolutional and crop their output back to the input.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fcnlib.errors import DataError, WeightsError
from fcnlib.files.io import UndecodableImage, atomic_write, read_image, set_max_pixels, voc_palette, write_label_png
from fcnlib.files.paths import file_kind, inside

PathLike = str | os.PathLike

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def collect_inputs(inputs: Sequence[PathLike], follow_links: bool = False) -> list[Path]:
    """Files as given (any extension: a non-image fails clearly when read) + image files of directories.
    Inside a directory, a link to a file outside it is refused naming the link (the path policy,
    fcnlib.files.paths.inside) unless `follow_links`; a file reached twice is segmented once."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS and q.is_file())
            if not found:
                raise DataError(f"{p}: directory holds no images ({', '.join(IMAGE_EXTS)}); "
                                f"pass image files or another directory")
            if not follow_links:
                for q in found:
                    if q.is_symlink():
                        inside(p, q.name, "image", "pass that file itself, or --follow-links to read what links "
                                                   "in the folder lead to")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise DataError(f"{p}: {file_kind(p)}, not an image file; pass image files or folders of images")
        else:
            raise DataError(f"{p}: no such file or directory; check the path")
    seen: set[Path] = set()
    unique = []
    for q in out:
        if q.resolve() not in seen:
            seen.add(q.resolve())
            unique.append(q)
    return unique


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


def _check_outputs(paths: list[Path], names: list[str], heads: Sequence[str], main: str, overlay_png: bool,
                   out_dir: Path) -> None:
    """Refuse, before anything is written, two inputs whose outputs would be the same file (d1/a.jpg and
    d2/a.jpg; a.png and a_overlay.png with --overlay), naming both: one would silently replace the other."""
    owner: dict[str, Path] = {}
    for path, name in zip(paths, names, strict=True):
        outs = [f"{name}.png"] + [f"{name}_{h}.png" for h in heads if h != main]
        outs += [f"{name}_overlay.png"] if overlay_png else []
        for o in outs:
            if o in owner:
                raise DataError(f"{path}: its output {out_dir / o} would also be written for {owner[o]}; "
                                f"segment the two into separate --out folders (or rename one)")
            owner[o] = path


def segment_paths(inputs: Sequence[PathLike], weights: PathLike, out_dir: PathLike, *,
                  overlay_png: bool = False, device: str | torch.device = "auto",
                  progress: bool = True, follow_links: bool = False) -> list[Path]:
    """Segment every input image; returns the label PNGs written (one per image, `<stem>.png`)."""
    from tqdm import tqdm

    from fcnlib.eval.inference import primary_head

    paths = collect_inputs(inputs, follow_links)
    seg = Segmenter(weights, device)
    out_dir = Path(out_dir)
    written = []
    main = primary_head(seg.heads)
    names = _out_names(paths)
    _check_outputs(paths, names, seg.heads, main, overlay_png, out_dir)
    for path, name in tqdm(list(zip(paths, names, strict=True)), desc="segment", unit="img",
                           disable=not progress or len(paths) < 2):
        try:
            image = read_image(path, orient=True)  # as viewers show a photo (EXIF orientation)
        except UndecodableImage:
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


def build_parser() -> argparse.ArgumentParser:
    from fcnlib.cli.options import Parser, add_device, add_out, add_progress

    p = Parser(prog="fcn segment", description="Write VOC-palette label PNGs for images "
                                "with a trained FCN (preprocessing is read from the weights file).")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--weights", required=True, help="weights file written by the pipeline (weights.pt)")
    add_out(p, "output folder (default: ./segmentation)", default="segmentation")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png blends")
    p.add_argument("--follow-links", action="store_true",
                   help="read images that links inside a given folder lead to outside it (refused by default)")
    add_device(p)
    add_progress(p)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse larger images before decoding (default FCN_MAX_IMAGE_PIXELS or 40,000,000)")
    return p


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fcn segment`; fcnlib errors propagate for the dispatcher to print (exit 2)."""
    args = build_parser().parse_args(argv)
    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    written = segment_paths(args.inputs, args.weights, args.out, overlay_png=args.overlay,
                            device=args.device, progress=not args.no_progress, follow_links=args.follow_links)
    print(f"wrote {len(written)} label map(s) to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(cli(sys.argv[1:]))
