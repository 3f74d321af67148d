"""HHA depth encoding (Gupta et al., ECCV 2014), vectorised; camera intrinsics presets."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fcnlib.data.dataset import load_dataset_meta, read_ids
from fcnlib.data.hha.geometry import (
    estimate_gravity,
    orient_normals,
    plane_normals,
    rotation_between,
)
from fcnlib.errors import ConfigError, DataError
from fcnlib.files.io import atomic_write_json, read_depth_png, read_json, sha256_file, staged_dir, write_png
from fcnlib.runtime.allocator import tune_malloc
from fcnlib.runtime.parallel import map_parallel

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels, in Gupta's MATLAB convention: the pixel in 0-based column c, row r
    is at x = c + 1, y = r + 1 (MATLAB's 1-based meshgrid), and its ray is ((x - cx)/fx, (y - cy)/fy, 1).
    The NYU calibration values (and so CAMERAS) are given in this convention."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        # NaN/inf or a zero focal length give rays of NaN: an HHA image of constant channels, no error
        vals = {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}
        bad = {k: v for k, v in vals.items()
               if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating)
               or not np.isfinite(v) or v <= 0}
        if bad:
            k, v = next(iter(bad.items()))
            raise ConfigError(f"camera intrinsics {vals}: {k}={v!r} must be a finite number > 0 (pixels; cx, cy "
                              f"1-based as in the NYU toolbox), e.g. 518.8579,519.4696,325.5824,253.7362")

    @classmethod
    def from_dict(cls, d: object, source: str | Path) -> Camera:
        """The intrinsics a file states (a dataset.json's "camera"), checked; one DataError naming it."""
        if not isinstance(d, dict) or set(d) != {"fx", "fy", "cx", "cy"}:
            raise DataError(f"{source}: 'camera' must be {{fx, fy, cx, cy}} in pixels, got {d!r}; rerun the "
                            f"prepare rule that writes it")
        try:
            return cls(**d)
        except ConfigError as e:
            raise DataError(f"{source}: {e}") from None

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
# Core: Gupta's processDepthImage + saveHHA, vectorised over pixels (normals and gravity: fcnlib.data.hha.geometry).


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
    n1 = orient_normals(plane_normals(u, v, inv_z, valid, 3), u, v)
    g = estimate_gravity(orient_normals(plane_normals(u, v, inv_z, valid, 10), u, v))

    # pcRot = Rᵀ p (R turns the y axis into gravity), so its y = (column 2 of R)·p; height is up.
    rot = rotation_between(np.array([0.0, 1.0, 0.0]), g)
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
    """Encode every depth map to out_dir/<stem>.png (HHA), in parallel, replacing what is there.

    Each PNG is written atomically. Nothing is skipped: a PNG already in out_dir may come from other
    intrinsics or depth maps (the workflow builds its folder whole: encode_nyud). Returns the output
    paths in input order.
    """
    depth_paths = [Path(p) for p in depth_paths]
    out_dir = Path(out_dir)
    if isinstance(depth_scale, bool) or not isinstance(depth_scale, int | float) or not 0 < depth_scale < np.inf:
        raise ConfigError(f"depth scale {depth_scale!r}: must be a finite number of metres per depth unit > 0 "
                          f"(0.001 for millimetres)")
    if raw_paths is not None and len(raw_paths) != len(depth_paths):
        raise ConfigError(f"{out_dir}: {len(raw_paths)} raw depth files for {len(depth_paths)} depth files; "
                          f"give one --raw-depth per depth map, in the same order")
    outs = [out_dir / (p.stem + ".png") for p in depth_paths]
    if len(set(outs)) != len(outs):
        raise ConfigError(f"{out_dir}: two inputs share a file name stem, their HHA outputs would collide; "
                          f"encode them into separate output folders")
    raws = [None] * len(depth_paths) if raw_paths is None else [Path(p) for p in raw_paths]
    todo = [(d, r, o, camera, depth_scale) for d, r, o in zip(depth_paths, raws, outs, strict=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    # glibc's default mmaps each frame-sized temporary afresh (its page faults cost ~2× the arithmetic)
    map_parallel(_encode_one, todo, workers, "hha", progress=progress, initializer=tune_malloc)
    return outs


def _split_paths(dataset_json: Path, modality: str) -> list[Path]:
    """Every file of `modality` listed by any split of a dataset.json (sorted, once each), read through the
    dataset loader's reader: paths kept inside the dataset (fcnlib.files.paths.inside), ids checked."""
    paths = set()
    for split in load_dataset_meta(dataset_json)["splits"].values():
        spec = split["images"].get(modality)
        if spec is None:
            return []
        for i in read_ids(split["ids"]):
            paths.add(Path(spec["dir"]) / f"{i}{spec['ext']}")
    return sorted(paths)


def encode_nyud(dataset_json: PathLike, manifest: PathLike, camera: str = "nyu-color-gupta-crop",
                depth_scale: float = 0.001, workers: int | None = None, progress: bool = True) -> dict[str, str]:
    """The HHA of every depth map of a prepared NYUD (the encode_hha rule): the folder of `manifest`
    is built whole (fcnlib.files.io.staged_dir) with one PNG per depth map and the manifest ({png: sha256}),
    so a rerun with other intrinsics or depth maps leaves no PNG of the old run. The dataset's own
    intrinsics ("camera" in dataset.json) win over the `camera` preset. Returns the manifest."""
    dataset_json, manifest = Path(dataset_json), Path(manifest)
    meta = read_json(dataset_json)
    cam = Camera.from_dict(meta["camera"], dataset_json) if "camera" in meta else CAMERAS[camera]
    depth = _split_paths(dataset_json, "depth")
    raw = _split_paths(dataset_json, "rawdepth") or None
    scale = meta["splits"][next(iter(meta["splits"]))]["images"]["depth"].get("scale_m", depth_scale)
    with staged_dir(manifest.parent) as out:
        outs = encode_dataset(depth, out, cam, float(scale), raw_paths=raw, workers=workers, progress=progress)
        sums = {p.name: sha256_file(p) for p in outs}
        atomic_write_json(out / manifest.name, sums)
    return sums
