"""HHA depth encoding (Gupta et al., ECCV 2014), vectorised; camera intrinsics presets."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .io import read_depth_png, set_max_pixels, write_png
from .progress import progress as progress_bar


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels, in Gupta's MATLAB convention: the pixel in 0-based column c, row r
    is at x = c + 1, y = r + 1 (MATLAB's 1-based meshgrid), and its ray is ((x - cx)/fx, (y - cy)/fy, 1).
    The NYU calibration values (and so CAMERAS) are given in this convention."""

    fx: float
    fy: float
    cx: float
    cy: float

    def crop(self, left: float, top: float) -> Camera:
        """Intrinsics of the image cropped by `left` columns and `top` rows."""
        return replace(self, cx=self.cx - left, cy=self.cy - top)

    def scaled(self, factor: float) -> Camera:
        """Intrinsics of the image resized by `factor` (pixel areas scale; 1-based centres)."""
        # 0-based centre u0 = cx - 1 maps to (u0 + 0.5) * f - 0.5; add the 1 back.
        return Camera(self.fx * factor, self.fy * factor,
                      (self.cx - 0.5) * factor + 0.5, (self.cy - 0.5) * factor + 0.5)


# NYU Depth v2 toolbox camera_params.m (colour camera), full 640×480 frame.
_NYU_COLOR = Camera(5.1885790117450188e02, 5.1946961112127485e02,
                    3.2558244941119034e02, 2.5373616633400465e02)
CAMERAS: dict[str, Camera] = {
    "nyu-color": _NYU_COLOR,
    "nyu-color-gupta-crop": _NYU_COLOR.crop(40, 45),
    "nyu-depth": Camera(582.62448167737955, 582.69103270988637, 313.04475870804731, 238.44389626620386),
}


# ---------------------------------------------------------------------------------------------------
# Core: Gupta's processDepthImage + saveHHA, vectorised over pixels.


def _window_sum(f: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Sum over the 2r+1 neighbours along `axis` (0 or 1 of a 2-D array), zeros beyond the border.

    Shifted-slice additions with doubling (sums of 1, 2, 4, 8, … neighbours, then the binary
    decomposition of 2r+1): ~log2(2r+1) array adds, no running sums, so a window of zeros sums to
    exactly 0 and round-off stays at the level of a direct sum, as MATLAB's filter2.
    """
    f = np.moveaxis(f, axis, 0)
    n = f.shape[0]
    width = 2 * r + 1
    p = np.zeros((n + 2 * r,) + f.shape[1:])
    p[r:r + n] = f
    out = None
    offset = 0
    block = p  # block[i] = sum of p[i : i + size]
    size = 1
    while True:
        if width & size:
            part = block[offset:offset + n]
            out = part.copy() if out is None else np.add(out, part, out=out)
            offset += size
        if size * 2 > width:
            break
        block = block[:-size] + block[size:]
        size *= 2
    return np.moveaxis(out, 0, axis)


def _line_sum(f: np.ndarray, r: int) -> np.ndarray:
    """1-D version of _window_sum for the separable (no missing data) case."""
    return _window_sum(f[None, :], r, 1)[0]


def _plane_normals(u: np.ndarray, v: np.ndarray, inv_z: np.ndarray, valid: np.ndarray | None, r: int
                   ) -> np.ndarray:
    """Gupta's computeNormalsSquareSupport: least-squares plane through each (2r+1)² patch.

    Each valid pixel contributes a = (X/Z, Y/Z, 1) = (u_col, v_row, 1) and b = 1/Z to the normal
    equations (Σ a aᵀ) n = Σ a b (window sums with zeros outside the image, MATLAB filter2 'same');
    n = adj(Σ a aᵀ) Σ a b, normalised (the determinant cancels, as in Gupta's code). Because u depends
    on the column only and v on the row only, window sums factor into a pass along rows then one
    along columns, and with no missing data adj(Σ a aᵀ) is built from 1-D sums alone.
    Returns 3×H×W unit normals, NaN where a patch holds no data, before orientation.
    """
    vc = v[:, None]
    g0 = _window_sum(inv_z, r, 1)
    b1 = _window_sum(_window_sum(inv_z * u, r, 1), r, 0)
    b2 = _window_sum(g0 * vc, r, 0)
    b3 = _window_sum(g0, r, 0)
    n = np.empty((3,) + inv_z.shape)
    if valid is None:
        h0, h1, h2 = _line_sum(np.ones_like(u), r), _line_sum(u, r), _line_sum(u * u, r)
        v0, v1, v2 = _line_sum(np.ones_like(v), r), _line_sum(v, r), _line_sum(v * v, r)
        # Σ a aᵀ = [[v0 h2, v1 h1, v0 h1], [v1 h1, v2 h0, v1 h0], [v0 h1, v1 h0, v0 h0]] (outer products);
        # its cofactors are outer products too (the (1,2) one vanishes identically).
        dv = (v0 * v2 - v1 * v1)[:, None]
        dh = (h0 * h2 - h1 * h1)[None, :]
        c1 = dv * (h0 * h0)[None, :]
        c3 = -dv * (h0 * h1)[None, :]
        c4 = (v0 * v0)[:, None] * dh
        c5 = -(v0 * v1)[:, None] * dh
        c6 = (v0 * v2)[:, None] * (h0 * h2)[None, :] - (v1 * v1)[:, None] * (h1 * h1)[None, :]
        np.multiply(c1, b1, out=n[0])
        n[0] += c3 * b3
        np.multiply(c4, b2, out=n[1])
        n[1] += c5 * b3
        np.multiply(c3, b1, out=n[2])
        n[2] += c5 * b2
        n[2] += c6 * b3
        empty = None
    else:
        m = valid.astype(np.float64)
        h0 = _window_sum(m, r, 1)
        h1 = _window_sum(m * u, r, 1)
        h2 = _window_sum(m * (u * u), r, 1)
        a6 = _window_sum(h0, r, 0)
        a5 = _window_sum(h0 * vc, r, 0)
        a4 = _window_sum(h0 * (vc * vc), r, 0)
        a3 = _window_sum(h1, r, 0)
        a2 = _window_sum(h1 * vc, r, 0)
        a1 = _window_sum(h2, r, 0)
        c1 = a4 * a6 - a5 * a5
        c2 = a3 * a5 - a2 * a6
        c3 = a2 * a5 - a3 * a4
        c4 = a1 * a6 - a3 * a3
        c5 = a2 * a3 - a1 * a5
        c6 = a1 * a4 - a2 * a2
        n[0] = c1 * b1 + c2 * b2 + c3 * b3
        n[1] = c2 * b1 + c4 * b2 + c5 * b3
        n[2] = c3 * b1 + c5 * b2 + c6 * b3
        empty = a6 == 0
        n[:, empty] = 0.0  # a window with no data sums to exactly 0 in the reference: 0/0 = NaN below
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
        n /= norm
    return n


def _orient(n: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Flip normals to +Z, then so that N·p ≥ 0 (away from the camera), as Gupta; sign 0 or NaN → +1.

    p = Z (u, v, 1) with Z > 0, so the sign of N·p is that of N·(u, v, 1).
    """
    s = np.where(n[2] < 0, -1.0, 1.0)
    dot = n[0] * u[None, :]
    dot += n[1] * v[:, None]
    dot += n[2]
    dot *= s
    s[dot < 0] *= -1.0
    n *= s
    return n


def estimate_gravity(normals: np.ndarray, thresholds_deg: tuple[float, ...] = (45.0, 15.0),
                     iterations: tuple[int, ...] = (5, 5), y0: tuple[float, float, float] = (0.0, 1.0, 0.0)
                     ) -> np.ndarray:
    """Gupta's getYDir: the direction most parallel to 'floor' normals and most perpendicular to 'wall'
    normals, refined by hard assignment (rounds of angle threshold × iterations).

    `normals` is 3×H×W (or 3×M); NaN normals are ignored. Returns the unit gravity vector pointing
    down, in camera coordinates (x right, y down, z forward).
    """
    nn = normals.reshape(3, -1)
    keep = ~np.isnan(nn[0])
    n0, n1, n2 = (np.ascontiguousarray(c) for c in nn) if keep.all() else nn[:, keep]
    # A = NWᵀNW − NFᵀNF. The first iteration sums over every normal; afterwards only normals whose
    # wall/floor class changed are added or removed (few), instead of re-summing all of them.
    m = np.zeros(6)
    cls = np.zeros(n0.shape, np.int8)  # +1 wall, −1 floor, 0 neither
    sim = np.empty_like(n0)
    tmp = np.empty_like(n0)
    y = np.asarray(y0, dtype=np.float64)
    for thresh, n_iter in zip(thresholds_deg, iterations, strict=True):
        cos_t, sin_t = np.cos(np.radians(thresh)), np.sin(np.radians(thresh))
        for _ in range(n_iter):
            np.multiply(n0, y[0], out=sim)
            sim += np.multiply(n1, y[1], out=tmp)
            sim += np.multiply(n2, y[2], out=tmp)
            np.abs(sim, out=sim)
            new_cls = (sim < sin_t).view(np.int8) - (sim > cos_t).view(np.int8)
            idx = np.flatnonzero(new_cls != cls)
            if idx.size == n0.size:
                dw = new_cls.astype(np.float64) - cls
                a0, a1, a2 = n0, n1, n2
            elif idx.size:
                dw = new_cls[idx].astype(np.float64) - cls[idx]
                a0, a1, a2 = n0[idx], n1[idx], n2[idx]
            if idx.size:
                # elementwise + sum, not BLAS dot: threaded BLAS stalls badly on a busy machine
                w0, w1, w2 = dw * a0, dw * a1, dw * a2
                m += [np.sum(p * q) for p, q in ((w0, a0), (w0, a1), (w0, a2), (w1, a1), (w1, a2), (w2, a2))]
            cls = new_cls
            a = np.array([[m[0], m[1], m[2]], [m[1], m[3], m[4]], [m[2], m[4], m[5]]])
            vals, vecs = np.linalg.eigh(a)
            new = vecs[:, int(np.argmin(vals))]
            y = new * np.sign(y @ new)
    return y


def _rotation(yi: np.ndarray, yf: np.ndarray) -> np.ndarray:
    """Gupta's getRMatrix: rotation taking yi to yf about yi×yf; identity below 0.1°."""
    yi = yi / np.linalg.norm(yi)
    yf = yf / np.linalg.norm(yf)
    phi = np.degrees(np.arccos(yi @ yf))
    if not abs(phi) > 0.1:
        return np.eye(3)
    ax = np.cross(yi, yf)
    ax = ax / np.linalg.norm(ax)
    phi = np.radians(phi)
    k = np.array([[0.0, -ax[2], ax[1]], [ax[2], 0.0, -ax[0]], [-ax[1], ax[0], 0.0]])
    return np.eye(3) + np.sin(phi) * k + (1 - np.cos(phi)) * (k @ k)


def _matlab_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB uint8(): round half away from zero, saturate to 0..255, NaN → 0.

    Every negative value saturates to 0 anyway, so rounding only matters for x ≥ 0: floor(x + 0.5).
    """
    y = np.fmax(x, 0.0)  # NaN → 0 as well
    y += 0.5
    np.floor(y, out=y)
    np.minimum(y, 255.0, out=y)
    return y.astype(np.uint8)


def hha_components(depth_m: np.ndarray, camera: Camera, raw_depth_m: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """The unrounded HHA pieces: disparity, height (cm), angle (deg), gravity, normals (radius 3)."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if depth_m.ndim != 2:
        raise ValueError(f"encode_hha: depth must be H×W, got shape {depth_m.shape}")
    raw = None if raw_depth_m is None else np.asarray(raw_depth_m, dtype=np.float64)
    if raw is not None and raw.shape != depth_m.shape:
        raise ValueError(f"encode_hha: raw depth shape {raw.shape} differs from depth {depth_m.shape}")
    # Missing = raw == 0 as Gupta; non-finite or negative values also count (they would poison
    # every window they touch). With no raw map the depth itself decides (getHHA(C, D, D)).
    finite = np.isfinite(depth_m).all()
    z_cm = depth_m * 100.0 if finite else np.where(np.isfinite(depth_m), depth_m, 0.0) * 100.0
    bad = ~(z_cm > 0) if raw is None else ~(raw > 0) | ~np.isfinite(raw) | ~(z_cm > 0)
    if bad.all():  # all zero / NaN / inf: the HHA would be a constant image, not an error
        raise DataError(f"encode_hha: depth map {depth_m.shape[1]}×{depth_m.shape[0]} has no valid (finite, "
                        f"positive) pixel; pass a real depth map (the file is empty, corrupt or not depth)")
    valid = None if not bad.any() else ~bad
    h, w = z_cm.shape
    u = (np.arange(1, w + 1, dtype=np.float64) - camera.cx) / camera.fx  # X/Z of each column
    v = (np.arange(1, h + 1, dtype=np.float64) - camera.cy) / camera.fy  # Y/Z of each row
    # processDepthImage hands computeNormalsSquareSupport z/100, which multiplies by 100 again.
    z_n = z_cm / 100.0
    z_n *= 100.0
    with np.errstate(divide="ignore"):
        inv_z = np.divide(1.0, z_n, out=z_n) if valid is None else np.divide(
            1.0, z_n, out=np.zeros_like(z_n), where=valid)
    n1 = _orient(_plane_normals(u, v, inv_z, valid, 3), u, v)
    g = estimate_gravity(_orient(_plane_normals(u, v, inv_z, valid, 10), u, v))

    # pcRot = Rᵀ p (R turns the y axis into gravity), so its y = (column 2 of R)·p; height is up.
    rot = _rotation(np.array([0.0, 1.0, 0.0]), g)
    height = (-rot[2, 1] - rot[0, 1] * u)[None, :] - (rot[1, 1] * v)[:, None]
    height *= z_cm
    y_min = float(height.min())
    if y_min > -90:  # floor not seen: assume the camera is 1.3 m above it
        y_min = -130.0
    height -= y_min

    cosang = n1[0] * g[0]
    cosang += n1[1] * g[1]
    cosang += n1[2] * g[2]
    # MATLAB's max(-1, NaN) is -1, so empty patches end up at 180° (the reference's behaviour).
    np.clip(cosang, -1.0, 1.0, out=cosang)
    cosang[np.isnan(cosang)] = -1.0
    angle = np.degrees(np.arccos(cosang, out=cosang), out=cosang)
    disparity = 31000.0 / np.maximum(z_cm, 100.0)
    return {"disparity": disparity, "height": height, "angle": angle, "gravity": g,
            "normals": np.moveaxis(n1, 0, -1)}


def encode_hha(depth_m: np.ndarray, camera: Camera, raw_depth_m: np.ndarray | None = None) -> np.ndarray:
    """HHA of a depth map in metres: uint8 H×W×3, R = disparity, G = height (cm), B = angle + 38.

    `raw_depth_m` gives the missing-data mask (raw == 0); None means the depth itself (Gupta's
    getHHA(C, D, D), which is what the released MATLAB reference output used).
    """
    c = hha_components(depth_m, camera, raw_depth_m)
    c["angle"] += 128.0 - 90.0
    out = np.empty(c["disparity"].shape + (3,), np.uint8)
    for i, k in enumerate(("disparity", "height", "angle")):
        out[..., i] = _matlab_uint8(c[k])
    return out


# ---------------------------------------------------------------------------------------------------
# Files: depth reading with explicit units, a resumable parallel encoder, the `fcn hha` command.

_SCALE_HINT = {0.001: "millimetres", 0.0001: "0.1 mm", 1.0: "metres"}


def read_depth(path: Path | str, scale_m: float) -> np.ndarray:
    """Read a depth PNG and convert it to metres (value × scale_m; 0 stays 0 = missing).

    Refuses files whose valid depths cannot be an indoor scene in metres (median outside 0.3–15 m):
    that means the units are wrong, and an HHA computed from them would be silently garbage.
    """
    if not scale_m > 0:
        raise ConfigError(f"{path}: depth scale {scale_m} must be positive (metres per stored unit)")
    raw = read_depth_png(path).astype(np.float64)
    inv = 1.0 / scale_m
    # Divide by an integral unit count (e.g. /1000) as Gupta's code does, so values match bit for bit.
    depth = raw / round(inv) if abs(inv - round(inv)) < 1e-9 * inv else raw * scale_m
    valid = depth[depth > 0]
    if valid.size == 0:
        raise DataError(f"{path}: depth map has no valid (non-zero) pixels; the file is empty or corrupt")
    med = float(np.median(valid))
    if not 0.3 <= med <= 15.0:
        units = _SCALE_HINT.get(scale_m, f"{scale_m} m per unit")
        guess = float(np.median(raw[raw > 0]))
        fits = [s for s in (0.001, 0.0001, 1.0) if 0.3 <= guess * s <= 15.0]
        fix = (f"set datasets.nyud.depth_scale: {fits[0]:g} in the config (CLI: --depth-scale {fits[0]:g})"
               if fits else "check that this is a depth map in a known unit")
        raise DataError(f"{path}: median depth {med:.4g} m assuming {units} (depth scale {scale_m:g}) is "
                        f"not an indoor scene (expected 0.3–15 m); {fix}")
    return depth


def tune_allocator() -> bool:
    """Make glibc keep freed memory instead of returning every large block to the OS.

    encode_hha allocates dozens of frame-sized temporaries; by default each is a fresh mmap whose pages
    fault in on first touch, which costs more than the arithmetic (≈2× slower per frame, worse on a busy
    machine). Process-wide, so it is called by encode_dataset (and its workers) and the bench, not at
    import. Returns False where it does not apply (not glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: heap-allocate blocks up to 32 MB
        ok &= libc.mallopt(-1, 512 * 1024 * 1024)  # M_TRIM_THRESHOLD: keep up to 512 MB of free heap
        return bool(ok)
    except (OSError, AttributeError):
        return False


def _encode_one(args: tuple) -> str:
    depth_path, raw_path, out_path, camera, scale = args
    depth = read_depth(depth_path, scale)
    raw = None if raw_path is None else read_depth(raw_path, scale)
    if raw is not None and raw.shape != depth.shape:
        raise DataError(f"{raw_path}: raw depth size {raw.shape[::-1]} differs from {depth_path} "
                        f"{depth.shape[::-1]}; pair each depth with its own raw depth")
    write_png(out_path, encode_hha(depth, camera, raw))
    return str(out_path)


def encode_dataset(depth_paths: list[Path], out_dir: Path, camera: Camera, depth_scale: float,
                   raw_paths: list[Path] | None = None, workers: int | None = None,
                   progress: bool = True) -> list[Path]:
    """Encode every depth map to out_dir/<stem>.png (HHA), in parallel; existing outputs are kept.

    Each PNG is written atomically, so a killed run leaves only complete files and a rerun resumes.
    Returns the output paths in input order.
    """
    depth_paths = [Path(p) for p in depth_paths]
    out_dir = Path(out_dir)
    if raw_paths is not None and len(raw_paths) != len(depth_paths):
        raise ConfigError(f"{out_dir}: {len(raw_paths)} raw depth files for {len(depth_paths)} depth files; "
                          f"give one --raw-depth per depth map, in the same order")
    outs = [out_dir / (p.stem + ".png") for p in depth_paths]
    if len(set(outs)) != len(outs):
        raise ConfigError(f"{out_dir}: two inputs share a file name stem, their HHA outputs would collide; "
                          f"encode them into separate output folders")
    raws = [None] * len(depth_paths) if raw_paths is None else [Path(p) for p in raw_paths]
    todo = [(d, r, o, camera, depth_scale) for d, r, o in zip(depth_paths, raws, outs, strict=True)
            if not o.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    bar = progress_bar(total=len(todo), desc="hha", unit="img", disable=not progress or not todo)
    if workers <= 1 or len(todo) <= 1:
        if todo:
            tune_allocator()
        for job in todo:
            _encode_one(job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=tune_allocator) as pool:
            for _ in pool.map(_encode_one, todo, chunksize=max(1, len(todo) // (8 * workers))):
                bar.update()
    bar.close()
    return outs


def _parse_intrinsics(text: str) -> Camera:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4 or min(vals[:2]) <= 0:
        raise ConfigError(f"--intrinsics {text!r}: expected fx,fy,cx,cy (pixels, fx and fy > 0, "
                          f"cx/cy 1-based as in the NYU toolbox), e.g. 518.8579,519.4696,325.5824,253.7362")
    return Camera(*vals)


def cli(argv: list[str] | None = None) -> int:
    """`fcn hha DEPTH... -o DIR [--raw-depth RAW...] [--camera NAME | --intrinsics fx,fy,cx,cy]
    [--depth-scale S] [--workers N]`."""
    from .cliopts import Parser, add_out, add_progress

    ap = Parser(prog="fcn hha", description="Encode depth PNGs as HHA (Gupta et al. 2014).")
    ap.add_argument("depth", nargs="+", type=Path, help="depth PNGs (16-bit)")
    add_out(ap, "output folder (<stem>.png per input)", required=True, type=Path)
    ap.add_argument("--raw-depth", nargs="+", type=Path, default=None,
                    help="raw depth PNGs (0 = missing), one per depth map, same order")
    cam = ap.add_mutually_exclusive_group()
    cam.add_argument("--camera", choices=sorted(CAMERAS), default="nyu-color",
                     help="intrinsics preset (default nyu-color, full 640×480 NYU frame)")
    cam.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels (cx, cy 1-based)")
    ap.add_argument("--depth-scale", type=float, default=0.001,
                    help="metres per stored depth unit: 0.001 mm (default), 0.0001 for 0.1 mm, 1 for metres")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    add_progress(ap)
    ap.add_argument("--max-pixels", type=int, default=None,
                    help="refuse depth maps with more pixels (default FCN_MAX_IMAGE_PIXELS or 40,000,000)")
    args = ap.parse_args(argv)
    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    camera = _parse_intrinsics(args.intrinsics) if args.intrinsics else CAMERAS[args.camera]
    outs = encode_dataset(args.depth, args.out, camera, args.depth_scale, raw_paths=args.raw_depth,
                          workers=args.workers, progress=not args.no_progress)
    print(f"{len(outs)} HHA images in {args.out}")
    return 0
