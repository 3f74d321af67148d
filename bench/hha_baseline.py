"""A straightforward per-pixel-loop HHA (Gupta's algorithm written the obvious way), kept only as the
comparison point for bench/hha.py. Far too slow for real use (tens of seconds per 640×480 frame), so
the bench times each stage on a few rows / a slice of the normals and extrapolates.

Same conventions as fcnlib.data.hha: depth in metres, 1-based pixel grid, missing = raw == 0.
"""

from __future__ import annotations

import math

import numpy as np

from fcnlib.data.hha import Camera


def moment_image(depth_m: np.ndarray, camera: Camera, missing: np.ndarray, rows: range | None = None
                 ) -> np.ndarray:
    """Per-pixel plane-fit moments (9×H×W), zero where depth is missing (one loop over pixels;
    only `rows` are filled when given)."""
    h, w = depth_m.shape
    f = np.zeros((9, h, w))
    for r in rows if rows is not None else range(h):
        for c in range(w):
            if missing[r, c]:
                continue
            z = depth_m[r, c] * 100.0
            x = (c + 1 - camera.cx) * z / camera.fx
            y = (r + 1 - camera.cy) * z / camera.fy
            xz, yz = x / z, y / z
            f[:, r, c] = (xz * xz, xz * yz, xz, yz * yz, yz, 1.0, x / (z * z), y / (z * z), 1.0 / z)
    return f


def normal_at(f: np.ndarray, depth_m: np.ndarray, camera: Camera, r: int, c: int, rad: int
              ) -> tuple[float, float, float]:
    """The patch normal at one pixel: window sums, adjugate solve, orientation (N·p ≥ 0)."""
    h, w = depth_m.shape
    s = f[:, max(r - rad, 0):min(r + rad + 1, h), max(c - rad, 0):min(c + rad + 1, w)].sum(axis=(1, 2))
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = (float(v) for v in s)
    if a6 == 0:
        return (math.nan, math.nan, math.nan)
    c1, c2, c3 = a4 * a6 - a5 * a5, a3 * a5 - a2 * a6, a2 * a5 - a3 * a4
    c4, c5, c6 = a1 * a6 - a3 * a3, a2 * a3 - a1 * a5, a1 * a4 - a2 * a2
    n = [c1 * b1 + c2 * b2 + c3 * b3, c2 * b1 + c4 * b2 + c5 * b3, c3 * b1 + c5 * b2 + c6 * b3]
    norm = math.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2)
    if norm == 0:
        return (math.nan, math.nan, math.nan)
    n = [v / norm for v in n]
    if n[2] < 0:
        n = [-v for v in n]
    z = depth_m[r, c] * 100.0
    p = ((c + 1 - camera.cx) * z / camera.fx, (r + 1 - camera.cy) * z / camera.fy, z)
    if n[0] * p[0] + n[1] * p[1] + n[2] * p[2] < 0:
        n = [-v for v in n]
    return (n[0], n[1], n[2])


def normals_rows(f: np.ndarray, depth_m: np.ndarray, camera: Camera, rows: range, rad: int) -> np.ndarray:
    out = np.empty((len(rows), depth_m.shape[1], 3))
    for i, r in enumerate(rows):
        for c in range(depth_m.shape[1]):
            out[i, c] = normal_at(f, depth_m, camera, r, c, rad)
    return out


def gravity_loop(normals: list[tuple[float, float, float]], iterations: int = 5, thresh_deg: float = 45.0,
                 y0: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> np.ndarray:
    """One round of Gupta's getYDir, accumulating NWᵀNW − NFᵀNF one normal at a time."""
    y = np.asarray(y0, float)
    cos_t, sin_t = math.cos(math.radians(thresh_deg)), math.sin(math.radians(thresh_deg))
    for _ in range(iterations):
        a = [[0.0] * 3 for _ in range(3)]
        for n in normals:
            s = abs(n[0] * y[0] + n[1] * y[1] + n[2] * y[2])
            wgt = 1.0 if s < sin_t else (-1.0 if s > cos_t else 0.0)
            if wgt:
                for i in range(3):
                    for j in range(3):
                        a[i][j] += wgt * n[i] * n[j]
        vals, vecs = np.linalg.eigh(np.array(a))
        new = vecs[:, int(np.argmin(vals))]
        y = new * np.sign(y @ new)
    return y


def height_min(depth_m: np.ndarray, camera: Camera, g: np.ndarray, rows: range) -> float:
    """Lowest −g·p over the given rows (the −130 floor rule is applied by the caller)."""
    lo = math.inf
    for r in rows:
        for c in range(depth_m.shape[1]):
            z = depth_m[r, c] * 100.0
            p = ((c + 1 - camera.cx) * z / camera.fx, (r + 1 - camera.cy) * z / camera.fy, z)
            lo = min(lo, -(g[0] * p[0] + g[1] * p[1] + g[2] * p[2]))
    return lo


def _u8(x: float) -> int:
    if math.isnan(x):
        return 0
    return int(min(255, max(0, math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1))))


def hha_rows(depth_m: np.ndarray, camera: Camera, n1_rows: np.ndarray, g: np.ndarray, y_min: float,
             rows: range) -> np.ndarray:
    """Final HHA bytes for some rows, one pixel at a time (R disparity, G height, B angle)."""
    out = np.zeros((len(rows), depth_m.shape[1], 3), np.uint8)
    if y_min > -90:
        y_min = -130.0
    for i, r in enumerate(rows):
        for c in range(depth_m.shape[1]):
            z = depth_m[r, c] * 100.0
            p = ((c + 1 - camera.cx) * z / camera.fx, (r + 1 - camera.cy) * z / camera.fy, z)
            n = n1_rows[i, c]
            cosang = n[0] * g[0] + n[1] * g[1] + n[2] * g[2]
            cosang = -1.0 if math.isnan(cosang) else min(1.0, max(-1.0, cosang))
            out[i, c] = (_u8(31000.0 / max(z, 100.0)),
                         _u8(-(g[0] * p[0] + g[1] * p[1] + g[2] * p[2]) - y_min),
                         _u8(math.degrees(math.acos(cosang)) + 128.0 - 90.0))
    return out
