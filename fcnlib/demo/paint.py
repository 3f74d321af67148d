"""Painting toy scenes: the class palette and textures, object shapes, void bands and VOC image ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

BACKGROUND_RGB = (118.0, 112.0, 100.0)  # VOC's muted grey-brown background, as in real photos


def _palette_order(levels: Sequence[float] = (20.0, 90.0, 160.0, 230.0)) -> np.ndarray:
    """The 64 colours of a 4×4×4 RGB grid in farthest-point order, starting away from the background:
    the first k colours are as far apart as the grid allows for every k, so any dataset's classes (and
    the first classes of each) differ clearly by colour, as real object classes do to a trained net."""
    grid = np.array([(r, g, b) for r in levels for g in levels for b in levels], np.float64)
    dist = np.linalg.norm(grid - np.array(BACKGROUND_RGB), axis=1)  # to the nearest colour taken so far
    order: list[int] = []
    for _ in range(len(grid)):
        k = int(np.argmax(dist))
        order.append(k)
        dist = np.minimum(dist, np.linalg.norm(grid - grid[k], axis=1))  # grid[k] itself drops to 0
    return grid[order].astype(np.float32)


_PALETTE = _palette_order()


def class_appearance(n: int, salt: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: base colour (n×3 float), texture kind (0–4) and texture period (px); fixed, seed-free.

    Appearance j = i + salt takes colour j of a farthest-point ordering of a 64-colour RGB grid (so a
    dataset's classes differ clearly by colour) and a texture kind/period cycling with co-prime periods.
    """
    j = np.arange(n) + salt
    colours = _PALETTE[j % len(_PALETTE)].copy()
    kinds = (j % 5).astype(np.int64)
    periods = (3.0 + (j * 3) % 5).astype(np.float32)
    return colours, kinds, periods


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int = 4) -> np.ndarray:
    """A low-frequency random field in about [-1, 1] (bilinear upsampling of a tiny grid)."""
    small = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR), np.float32)


def paint(classes: np.ndarray, appearance: tuple[np.ndarray, np.ndarray, np.ndarray],
          rng: np.random.Generator, noise: float = 6.0, amp: float = 18.0) -> np.ndarray:
    """RGB uint8 for a class-id map: class colour + class texture + soft shading + pixel noise."""
    colours, kinds, periods = appearance
    h, w = classes.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    per = periods[classes]
    two_pi = np.float32(2 * np.pi)
    pats = np.stack([
        rng.normal(0.0, 0.5, size=(h, w)).astype(np.float32),            # speckle
        np.sin(two_pi * yy / per),                                        # horizontal stripes
        np.sin(two_pi * xx / per),                                        # vertical stripes
        np.sign(np.sin(two_pi * xx / per) * np.sin(two_pi * yy / per)),   # checker
        np.sin(two_pi * (xx + yy) / per),                                 # diagonal stripes
    ])
    tex = np.take_along_axis(pats, kinds[classes][None], 0)[0]
    shade = 1.0 + 0.12 * _smooth_field(rng, h, w)
    rgb = colours[classes] * shade[..., None] + amp * tex[..., None]
    rgb += rng.normal(0.0, noise, size=rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def ellipse_mask(h: int, w: int, cy: float, cx: float, ry: float, rx: float, ang: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(ang), np.sin(ang)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _segment(h: int, w: int, y0: float, x0: float, y1: float, x1: float, width: float) -> np.ndarray:
    """Pixels within width/2 of the segment (y0,x0)–(y1,x1): poles, wires, bars."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2 <= (width / 2.0) ** 2


def shape_mask(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    m = min(h, w)
    if kind == "blob":
        return ellipse_mask(h, w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w,
                        rng.uniform(0.16, 0.4) * m, rng.uniform(0.16, 0.4) * m, rng.uniform(0, np.pi))
    if kind == "rect":
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        mask = np.zeros((h, w), bool)
        mask[y0:y0 + int(rng.integers(8, max(9, h // 2))), x0:x0 + int(rng.integers(8, max(9, w // 2)))] = True
        return mask
    if kind == "thin":  # pole, wire or bar, 3–6 px wide: resolvable at stride 8, lost at stride 32
        orient = rng.integers(0, 3)
        width = float(rng.choice([3.0, 4.5, 6.0]))
        if orient == 0:  # vertical pole
            x = rng.uniform(0.05, 0.95) * w
            return _segment(h, w, rng.uniform(0, 0.3) * h, x, rng.uniform(0.7, 1.0) * h, x, width)
        if orient == 1:  # horizontal wire/bar
            y = rng.uniform(0.05, 0.95) * h
            return _segment(h, w, y, rng.uniform(0, 0.3) * w, y, rng.uniform(0.7, 1.0) * w, width)
        return _segment(h, w, rng.uniform(0, 0.3) * h, rng.uniform(0, 1) * w,
                        rng.uniform(0.7, 1.0) * h, rng.uniform(0, 1) * w, width)
    # "small": a cluster of 2–5 small discs
    mask = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(2, 6))):
        r = rng.uniform(2.5, 5.0)
        mask |= ellipse_mask(h, w, rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w, r, r, 0.0)
    return mask


SHAPES = ("blob", "rect", "thin", "small")
SHAPE_P = (0.55, 0.25, 0.15, 0.05)  # mostly whole objects, as in VOC; enough thin ones for Figure 4


def void_band(classes: np.ndarray) -> np.ndarray:
    """Background pixels touching an object (4-neighbourhood): VOC marks object outlines void."""
    obj = classes != 0
    near = np.zeros_like(obj)
    near[1:] |= obj[:-1]
    near[:-1] |= obj[1:]
    near[:, 1:] |= obj[:, :-1]
    near[:, :-1] |= obj[:, 1:]
    return near & ~obj


def draw_size(rng: np.random.Generator, image_size: tuple[int, int]) -> tuple[int, int]:
    lo, hi = image_size
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


# -- PASCAL VOC 2011/2012 + SBD ---------------------------------------------------------------------


def voc_ids(rng: np.random.Generator, n: int, years: Sequence[int], taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        i = f"{int(rng.choice(years))}_{int(rng.integers(1, 9000)):06d}"
        if i not in taken:
            taken.add(i)
            out.append(i)
    return sorted(out)


def voc_scene(rng: np.random.Generator, h: int, w: int, objects: Sequence[int]) -> np.ndarray:
    classes = np.zeros((h, w), np.uint8)
    for c in objects:
        classes[shape_mask(rng, h, w, str(rng.choice(SHAPES, p=SHAPE_P)))] = c
    return classes
