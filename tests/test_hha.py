"""HHA: bit-level agreement with Gupta's MATLAB output, analytic checks on rendered rooms, units, reruns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_paths import need_shared
from PIL import Image

from fcnlib.cli import hha as hha_cli
from fcnlib.data import hha
from fcnlib.data.hha import CAMERAS, Camera, encode_dataset, encode_hha, hha_components, read_depth
from fcnlib.data.hha import geometry as hha_geometry
from fcnlib.demo.scenes import CEILING, FLOOR, WALL, render_room
from fcnlib.errors import ConfigError, DataError


def _demo() -> Path:
    return need_shared("hha_python/demo/0.png").parent


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    diff = np.abs(ours.astype(np.int32) - ref.astype(np.int32))
    return float((diff == 0).mean()), int(diff.max())


# --- camera -------------------------------------------------------------------------------------------

def test_camera_presets_and_transforms():
    c = CAMERAS["nyu-color"]
    assert (c.fx, c.fy, c.cx, c.cy) == (518.85790117450188, 519.46961112127485,
                                        325.58244941119034, 253.73616633400465)
    crop = CAMERAS["nyu-color-gupta-crop"]
    assert crop.fx == c.fx and crop.cx == pytest.approx(c.cx - 40) and crop.cy == pytest.approx(c.cy - 45)
    assert CAMERAS["nyu-depth"].fx == pytest.approx(582.62448167737955)
    half = c.scaled(0.5)
    assert half.fx == pytest.approx(c.fx / 2)
    # the image centre stays the image centre: 1-based centre of 640 px is 320.5, of 320 px 160.5
    assert Camera(1, 1, 320.5, 240.5).scaled(0.5) == Camera(0.5, 0.5, 160.5, 120.5)
    with pytest.raises(AttributeError):
        c.fx = 1.0  # frozen


# --- the real reference frame -----------------------------------------------------------------------

def test_matches_matlab_reference_exactly():
    d = _demo()
    depth = read_depth(d / "0.png", 0.0001)
    ours = encode_hha(depth, CAMERAS["nyu-color"])
    ref = np.asarray(Image.open(d / "matlab_hha.png"))
    assert ours.shape == ref.shape == (480, 640, 3) and ours.dtype == np.uint8
    equal, max_diff = _agreement(ours, ref)
    print(f"vs MATLAB matlab_hha.png: {equal:.6%} of values equal, max abs diff {max_diff}")
    assert equal >= 0.999 and max_diff <= 1
    # the channels really are R = disparity, G = height, B = angle: disparity is a closed formula
    expect_r = hha._matlab_uint8(31000.0 / np.maximum(depth * 100.0, 100.0))
    assert np.array_equal(ours[..., 0], expect_r)


def test_raw_depth_mask_agrees_with_python_port():
    d = _demo()
    depth = read_depth(d / "0.png", 0.0001)
    raw = read_depth(d / "0_raw.png", 0.0001)
    ours = encode_hha(depth, CAMERAS["nyu-color"], raw)
    ref = np.asarray(Image.open(d / "hha.png"))
    equal, max_diff = _agreement(ours, ref)
    per = [float((ours[..., c] == ref[..., c]).mean()) for c in range(3)]
    print(f"vs python-port hha.png (raw mask): {equal:.4%} equal, per channel {per}, max diff {max_diff}")
    assert per[0] == 1.0  # disparity ignores the mask
    assert equal >= 0.99
    # where the whole 7x7 patch is missing the normal is NaN, which the reference turns into 180°
    holes = hha_geometry.window_sum(hha_geometry.window_sum((raw > 0).astype(float), 3, 0), 3, 1) == 0
    assert holes.any() and np.all(ours[..., 2][holes] == 218) and np.all(ref[..., 2][holes] == 218)


# --- analytic checks on rendered rooms -------------------------------------------------------------

@pytest.fixture(scope="module")
def room():
    cam = CAMERAS["nyu-color"].scaled(0.5)
    scene = render_room(7, cam, 240, 320)
    comp = hha_components(scene["depth_m"], cam)
    return scene, comp, encode_hha(scene["depth_m"], cam)


def _interior(scene: dict, label: int, r: int = 4) -> np.ndarray:
    """Pixels of `label` whose whole (2r+1)² patch lies on one plane (same label and same true normal),
    so their estimated normal should be exact (corners between two walls are excluded)."""
    keys = np.concatenate([scene["label"][..., None], np.round(scene["normals"] * 1000)], axis=-1)
    _, region = np.unique(keys.reshape(-1, 4), axis=0, return_inverse=True)
    region = region.reshape(scene["label"].shape).astype(np.float64)

    def box(a: np.ndarray) -> np.ndarray:
        return hha_geometry.window_sum(hha_geometry.window_sum(a, r, 0), r, 1)

    k = (2 * r + 1) ** 2
    constant = (box(region) == k * region) & (box(region ** 2) == k * region ** 2)
    return constant & (scene["label"] == label)


def test_gravity_estimate_matches_known(room):
    scene, comp, _ = room
    err = np.degrees(np.arccos(np.clip(comp["gravity"] @ scene["gravity"], -1, 1)))
    print(f"gravity error {err:.4f} deg (pitch {scene['pitch_deg']:.1f}, roll {scene['roll_deg']:.1f})")
    assert err < 2.0
    assert abs(scene["gravity"][1]) < 0.999  # the camera is tilted: gravity is not just the image y axis


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gravity_estimate_other_rooms(seed):
    cam = CAMERAS["nyu-color"].scaled(0.5)
    scene = render_room(seed, cam, 240, 320)
    g = hha_components(scene["depth_m"], cam)["gravity"]
    assert np.degrees(np.arccos(min(1.0, g @ scene["gravity"]))) < 2.0


def test_floor_walls_ceiling_in_encoded_units(room):
    scene, _, out = room
    floor, wall, ceil = (_interior(scene, k) for k in (FLOOR, WALL, CEILING))
    assert floor.sum() > 500 and wall.sum() > 500
    g, b = out[..., 1].astype(int), out[..., 2].astype(int)
    print("floor G", np.percentile(g[floor], [0, 50, 100]), "B", np.percentile(b[floor], [0, 50, 100]),
          "| wall B", np.percentile(b[wall], [0, 50, 100]))
    assert np.abs(g[floor]).max() <= 3  # floor height ≈ 0 cm (the floor is the lowest surface)
    assert np.abs(b[floor] - 38).max() <= 2  # angle 0° + 38
    assert np.abs(b[wall] - 128).max() <= 2  # angle 90° + 38
    if ceil.sum():
        assert np.abs(b[ceil] - 218).max() <= 2  # 180° + 38
    # heights of other surfaces: a table top is ~0.7 m above the floor
    cam_h = scene["camera_height_m"] * 100
    wall_h = g[wall]
    assert wall_h.max() <= min(255, cam_h + 300)


def test_disparity_is_the_formula(room):
    scene, _, out = room
    z_cm = scene["depth_m"].astype(np.float64) * 100
    expect = np.floor(np.clip(31000.0 / np.maximum(z_cm, 100.0), 0, 255) + 0.5)
    assert np.array_equal(out[..., 0], expect.astype(np.uint8))


def test_floor_rule_when_floor_not_seen():
    # A level camera facing a wall 3 m ahead under a ceiling 0.5 m above it: the lowest point seen is
    # 88.5 cm below the camera (> −90), so Gupta assumes the floor 130 cm below the camera.
    cam = Camera(100.0, 100.0, 40.5, 30.5)
    v = (np.arange(1, 61) - cam.cy) / cam.fy
    with np.errstate(divide="ignore"):
        z_ceiling = np.where(v < 0, -0.5 / v, np.inf)
    depth = np.broadcast_to(np.minimum(3.0, z_ceiling)[:, None], (60, 80)).copy()
    comp = hha_components(depth, cam)
    g = comp["gravity"]
    assert g[1] > 0.999  # crease normals tilt it a little; it is still ~ the image y axis
    u = (np.arange(1, 81) - cam.cx) / cam.fx
    p_cm = np.stack([u[None, :] * depth, v[:, None] * depth, depth]) * 100
    height_above_camera = -np.tensordot(g, p_cm, axes=1)
    assert height_above_camera.min() > -90
    assert np.allclose(comp["height"], height_above_camera + 130.0, atol=1e-6)  # h − (−130)


def test_matlab_rounding_and_saturation():
    x = np.array([0.5, 1.5, 2.5, -0.4, 254.5, 255.49, 300.0, np.nan])
    assert hha._matlab_uint8(x).tolist() == [1, 2, 3, 0, 255, 255, 255, 0]


def test_missing_region_gives_nan_angle():
    cam = CAMERAS["nyu-color"].scaled(0.25)
    scene = render_room(3, cam, 120, 160)
    raw = scene["depth_m"].copy()
    raw[40:70, 50:90] = 0  # a hole larger than the 7×7 patch
    out = encode_hha(scene["depth_m"], cam, raw)
    assert np.all(out[50:60, 60:80, 2] == 218)  # NaN normal → 180° + 38, as the reference
    full = encode_hha(scene["depth_m"], cam)
    assert np.array_equal(out[..., 0], full[..., 0])  # the mask does not touch disparity


# --- units, files, reruns -----------------------------------------------------------------------------

def _write_depth(path: Path, depth_m: np.ndarray, scale: float) -> None:
    Image.fromarray(np.round(depth_m / scale).astype(np.uint16)).save(path)


def test_read_depth_refuses_wrong_units(tmp_path):
    depth = render_room(1, CAMERAS["nyu-color"].scaled(0.125), 60, 80)["depth_m"]
    p = tmp_path / "d.png"
    _write_depth(p, depth, 0.0001)  # NYU-toolbox style 0.1 mm units
    got = read_depth(p, 0.0001)
    assert np.allclose(got, depth, atol=6e-5) and got.dtype == np.float64
    fix = r"datasets\.nyud\.depth_scale: 0\.0001.*--depth-scale 0\.0001"
    with pytest.raises(DataError, match=r"d\.png.*assuming millimetres.*" + fix):
        read_depth(p, 0.001)  # read as mm: tens of metres
    mm = tmp_path / "mm.png"
    _write_depth(mm, depth, 0.001)
    with pytest.raises(DataError, match=r"mm\.png.*not an indoor scene.*--depth-scale 0\.001"):
        read_depth(mm, 1.0)  # read as metres: kilometres
    with pytest.raises(ConfigError):
        read_depth(p, 0.0)


def test_encode_dataset_replaces_and_is_deterministic(tmp_path):
    cam = CAMERAS["nyu-color"].scaled(0.125)
    paths = []
    for seed in (11, 12):
        p = tmp_path / "depth" / f"img_{seed}.png"
        p.parent.mkdir(exist_ok=True)
        _write_depth(p, render_room(seed, cam, 60, 80)["depth_m"], 0.001)
        paths.append(p)
    outs = encode_dataset(paths, tmp_path / "hha", cam, 0.001, workers=1, progress=False)
    assert [o.name for o in outs] == ["img_11.png", "img_12.png"]
    first = [o.read_bytes() for o in outs]
    expect = encode_hha(read_depth(paths[0], 0.001), cam)
    assert np.array_equal(np.asarray(Image.open(outs[0])), expect)
    assert sorted(f.name for f in (tmp_path / "hha").iterdir()) == ["img_11.png", "img_12.png"]
    # an existing output is not taken as done (it may be of other intrinsics): encoded again, same bytes
    outs[0].write_bytes(b"an older run's")
    outs[1].unlink()
    again = encode_dataset(paths, tmp_path / "hha", cam, 0.001, workers=2, progress=False)
    assert [o.read_bytes() for o in again] == first


def test_cli(tmp_path):
    cam = CAMERAS["nyu-color"].scaled(0.125)
    p = tmp_path / "a.png"
    _write_depth(p, render_room(5, cam, 60, 80)["depth_m"], 0.001)
    intr = f"{cam.fx},{cam.fy},{cam.cx},{cam.cy}"
    assert hha_cli.cli([str(p), "-o", str(tmp_path / "out"), "--intrinsics", intr, "--workers", "1",
                    "--no-progress"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert out.shape == (60, 80, 3)
    with pytest.raises(ConfigError, match="intrinsics"):
        hha_cli.cli([str(p), "-o", str(tmp_path / "o2"), "--intrinsics", "1,2,3"])
    with pytest.raises(DataError, match="depth-scale"):
        hha_cli.cli([str(p), "-o", str(tmp_path / "o3"), "--depth-scale", "1", "--workers", "1", "--no-progress"])
