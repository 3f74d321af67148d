"""`fcn segment IMAGE_OR_DIR... --weights W`: label maps (VOC-palette PNGs) for any images.

The preprocessing comes from the weights file (never guessed), and the net sees each image at its own
size: FCNs are fully convolutional and crop their output back to the input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from fcnlib.errors import DataError, WeightsError
from fcnlib.eval.inference import forward_logits, labels_of, load_for_inference
from fcnlib.files.io import UndecodableImage, atomic_write, read_image, voc_palette, write_label_png
from fcnlib.files.paths import file_kind, inside
from fcnlib.models.meta import primary_head
from fcnlib.runtime.compute import resolve_runtime

if TYPE_CHECKING:
    import PIL.Image

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


LEGEND_ROW = 16  # legend row height in pixels; the swatch is LEGEND_SWATCH² at the row's left
LEGEND_SWATCH = 12
DEMO_WARNING = "DEMO weights: synthetic data, not a real model"


def legend(label: np.ndarray, classes: Sequence[str], height: int, demo: bool = False) -> np.ndarray:
    """A white H'×W×3 panel naming each class present in `label` beside its palette swatch (void left out),
    with DEMO_WARNING in red on top for demo weights; H' = max(height, the rows it needs)."""
    font = ImageFont.load_default()
    present = [int(c) for c in np.unique(label) if c != 255]
    names = [classes[c] if c < len(classes) else f"class {c}" for c in present]
    lines = ([DEMO_WARNING] if demo else []) + names
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((probe.textbbox((0, 0), t, font=font)[2] for t in lines), default=0)
    panel = Image.new("RGB", (LEGEND_ROW + 8 + int(text_w) + 4, max(height, LEGEND_ROW * len(lines) + 4)), "white")
    draw = ImageDraw.Draw(panel)
    pal = voc_palette()
    y = 2
    if demo:
        draw.text((4, y), DEMO_WARNING, fill=(200, 0, 0), font=font)
        y += LEGEND_ROW
    for c, name in zip(present, names, strict=True):
        draw.rectangle((4, y + 2, 4 + LEGEND_SWATCH - 1, y + 1 + LEGEND_SWATCH), fill=tuple(int(v) for v in pal[c]))
        draw.text((LEGEND_ROW + 8, y + 2), name, fill="black", font=font)
        y += LEGEND_ROW
    return np.asarray(panel)


def overlay_with_legend(image: np.ndarray, label: np.ndarray, classes: Sequence[str], alpha: float = 0.5,
                        demo: bool = False) -> np.ndarray:
    """`overlay` with the `legend` panel on its right (the blend stays at the top-left, unscaled)."""
    blend = overlay(image, label, alpha)
    panel = legend(label, classes, blend.shape[0], demo)
    h = max(blend.shape[0], panel.shape[0])
    canvas = np.full((h, blend.shape[1] + panel.shape[1], 3), 255, np.uint8)
    canvas[:blend.shape[0], :blend.shape[1]] = blend
    canvas[:panel.shape[0], blend.shape[1]:] = panel
    return canvas


@dataclass(frozen=True)
class Segmentation:
    """One image's result for one head: `labels` H×W class ids (uint8 when < 256 classes), `scores` C×H×W
    float32 logits (labels = scores.argmax(0)), `classes` the C names, `image` the RGB input (for overlays);
    `heads` maps every head of the net (SIFT Flow: "sem" and "geo") to its Segmentation, this one included."""

    labels: np.ndarray
    scores: np.ndarray
    classes: list[str]
    head: str
    image: np.ndarray | None = None
    demo: bool = False
    heads: dict[str, Segmentation] = field(default_factory=dict, repr=False, compare=False)

    def overlay(self, alpha: float = 0.5, legend: bool = True) -> np.ndarray:
        """H×W'×3 uint8: palette colours blended over the input, with a class legend (and DEMO warning) beside."""
        if self.image is None:
            raise DataError("Segmentation.overlay: no RGB input kept (a model without an rgb modality)")
        if not legend:
            return overlay(self.image, self.labels, alpha)
        return overlay_with_legend(self.image, self.labels, self.classes, alpha, self.demo)


ImageInput = Union[str, os.PathLike, np.ndarray, "PIL.Image.Image"]


def _image_array(image: Any, modality: str, channels: int) -> np.ndarray:
    """A path, PIL image or array → the array `Preprocessing.apply` takes, checked (DataError otherwise)."""
    if isinstance(image, str | os.PathLike):
        if channels != 3:
            raise DataError(f"Segmenter: {modality} from {image}: pass depth as an H×W array in millimetres, not "
                            f"a file (depth PNGs store no unit)")
        return read_image(image, orient=True)  # a photo as viewers show it (EXIF orientation)
    if type(image).__module__.startswith("PIL.") and hasattr(image, "convert"):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise DataError(f"Segmenter: {modality} input is a {type(image).__name__}; pass a file path, a PIL image "
                        f"or an H×W×3 uint8 numpy array")
    if channels == 3:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise DataError(f"Segmenter: {modality} array of shape {image.shape} and dtype {image.dtype}; pass "
                            f"an H×W×3 uint8 array (RGB, 0–255), e.g. np.asarray(Image.open(p).convert('RGB'))")
    elif image.ndim != 2 or 0 in image.shape or not np.issubdtype(image.dtype, np.number):
        raise DataError(f"Segmenter: {modality} array of shape {image.shape}; pass an H×W depth map in millimetres")
    return image


class Segmenter:
    """A weights file loaded for prediction: `Segmenter("weights.pt")("image.jpg")` → a Segmentation.

    The input is a path, a PIL image or an H×W×3 uint8 RGB array; for a multi-modal net, a dict with one
    entry per modality of `.modalities` (e.g. {"rgb": ..., "hha": ...}; depth as an H×W array in mm), all
    of one size. Preprocessing comes from the weights file. device/precision ("auto", "fp32", "bf16",
    "fp16"): resolved once into a fcnlib.runtime.compute.Runtime (`.runtime`)."""

    def __init__(self, weights: PathLike, device: str | torch.device = "auto", precision: str = "auto") -> None:
        self.weights = Path(weights)
        self.runtime = resolve_runtime(device, precision)
        self.device = self.runtime.device
        self.model, self.meta = load_for_inference(weights, self.runtime)
        self.modalities = self.meta.modalities
        self.pre = self.meta.preprocessing(weights)
        self.heads = self.meta.heads
        self.main = primary_head(self.heads)
        self.demo = self.meta.is_demo

    def _input(self, image: ImageInput | Mapping[str, ImageInput]) -> tuple[torch.Tensor, np.ndarray | None]:
        """The net's C×H×W input (modalities concatenated in the weights' order) and the RGB array, if any."""
        mods = self.modalities
        if not isinstance(image, Mapping):
            if mods != ["rgb"]:
                raise DataError(f"Segmenter: {self.weights} takes modalities {mods}; pass a dict with one input "
                                f"per modality, e.g. {{{', '.join(repr(m) + ': ...' for m in mods)}}}")
            image = {"rgb": image}
        if sorted(image) != sorted(mods):
            raise DataError(f"Segmenter: got inputs {sorted(image)}; {self.weights} takes modalities {mods}")
        arrays = {m: _image_array(image[m], m, self.pre[m].channels) for m in mods}
        sizes = {m: a.shape[:2] for m, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"Segmenter: input sizes differ {sizes}; every modality must be of one H×W")
        x = torch.cat([self.pre[m].apply(arrays[m]) for m in mods]).to(self.device)
        return x, arrays.get("rgb")

    def __call__(self, image: ImageInput | Mapping[str, ImageInput]) -> Segmentation:
        x, rgb = self._input(image)
        out = forward_logits(self.model, x, self.heads)
        heads: dict[str, Segmentation] = {}
        for h, logits in out.items():
            n = logits.shape[1]
            names = self.meta.head_classes(h) or []
            names = names if len(names) == n else [f"class {i}" for i in range(n)]
            heads[h] = Segmentation(labels=labels_of(logits).numpy(), scores=logits[0].float().cpu().numpy(),
                                    classes=names, head=h, image=rgb, demo=self.demo, heads=heads)
        return heads[self.main]


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


def segment_paths(inputs: Sequence[PathLike], weights: PathLike | Segmenter, out_dir: PathLike, *,
                  overlay_png: bool = False, device: str | torch.device = "auto", precision: str = "auto",
                  progress: bool = True, follow_links: bool = False) -> list[Path]:
    """Segment every input image with `weights` (a file, or a loaded Segmenter: then `device` is its own);
    returns the label PNGs written (one per image, `<stem>.png`; overlays with a class legend). Links in a
    given folder that lead outside it are refused unless `follow_links`; photos are read as viewers show
    them (EXIF orientation)."""
    paths = collect_inputs(inputs, follow_links)
    seg = weights if isinstance(weights, Segmenter) else Segmenter(weights, device, precision)
    weights = seg.weights
    if seg.modalities != ["rgb"]:
        raise WeightsError(f"{weights}: this model needs input modalities {seg.modalities}, but `fcn segment` "
                           f"takes plain RGB images; use RGB-only weights, fcnlib.Segmenter with a dict of "
                           f"inputs, or `fcn evaluate` on a prepared dataset that has {seg.modalities}")
    out_dir = Path(out_dir)
    written = []
    names = _out_names(paths)
    _check_outputs(paths, names, seg.heads, seg.main, overlay_png, out_dir)
    for path, name in tqdm(list(zip(paths, names, strict=True)), desc="segment", unit="img",
                           disable=not progress or len(paths) < 2):
        try:
            image = read_image(path, orient=True)  # as viewers show a photo (EXIF orientation)
        except UndecodableImage:
            raise DataError(f"{path}: not an image that can be decoded (truncated, or another kind of file); "
                            f"pass JPEG/PNG/BMP/TIFF/WebP images to fcn segment") from None
        try:
            result = seg(image)
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
        write_label_png(target, result.labels)
        for h, other in result.heads.items():
            if h != result.head:
                write_label_png(out_dir / f"{name}_{h}.png", other.labels)
        if overlay_png:
            with atomic_write(out_dir / f"{name}_overlay.png") as f:
                Image.fromarray(result.overlay()).save(f, format="PNG")
        written.append(target)
    return written
