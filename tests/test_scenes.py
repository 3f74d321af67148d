"""Rendered rooms: deterministic, geometrically exact (gravity, camera convention), usable at demo sizes."""

from __future__ import annotations

import numpy as np
import pytest

from fcnlib.data.hha import CAMERAS
from fcnlib.demo.scenes import FLOOR, WALL, camera_rotation, render_room

CAM = CAMERAS["nyu-color"].scaled(0.25)  # 160×120


@pytest.fixture(scope="module")
def scene():
    return render_room(5, CAM, 120, 160)


def _points(scene: dict, cam=CAM) -> np.ndarray:
    """Back-project with the documented convention: pixel (r, c) → ((c+1−cx)/fx, (r+1−cy)/fy, 1)·depth."""
    h, w = scene["depth_m"].shape
    u = (np.arange(1, w + 1) - cam.cx) / cam.fx
    v = (np.arange(1, h + 1) - cam.cy) / cam.fy
    d = scene["depth_m"].astype(np.float64)
    return np.stack([u[None, :] * d, v[:, None] * d, d], axis=-1)


def test_outputs_shapes_types_and_classes(scene):
    assert scene["depth_m"].shape == (120, 160) and scene["depth_m"].dtype == np.float32
    assert scene["label"].shape == (120, 160) and scene["label"].dtype == np.uint8
    assert scene["rgb"].shape == (120, 160, 3) and scene["rgb"].dtype == np.uint8
    assert scene["normals"].shape == (120, 160, 3)
    assert 0.3 < scene["depth_m"].min() and scene["depth_m"].max() < 10
    present = set(np.unique(scene["label"]).tolist())
    assert present <= set(range(1, 41))
    assert {WALL, FLOOR} <= present and len(present) >= 6


def test_deterministic_per_seed():
    a, b, c = render_room(9, CAM, 60, 80), render_room(9, CAM, 60, 80), render_room(10, CAM, 60, 80)
    for k in ("depth_m", "label", "rgb"):
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["depth_m"], c["depth_m"])


def test_gravity_and_floor_geometry(scene):
    g = scene["gravity"]
    assert abs(np.linalg.norm(g) - 1) < 1e-12
    # pitched down: gravity has a forward (+z) component; rolled: a sideways one
    assert g[2] > np.sin(np.radians(5)) and abs(g[0]) > 1e-3
    p = _points(scene)
    floor = scene["label"] == FLOOR
    # every floor point lies on the plane g·p = camera height (float32 depth: ~1e-6 relative)
    assert np.allclose(p[floor] @ g, scene["camera_height_m"], atol=1e-5)
    # floor normals point up (towards the camera), wall normals are horizontal
    n = scene["normals"].astype(np.float64)
    assert np.allclose(n[floor] @ g, -1.0, atol=1e-6)
    assert np.abs(n[scene["label"] == WALL] @ g).max() < 1e-6
    # normals face the camera
    assert (np.einsum("hwc,hwc->hw", n, p) < 0).all()


def test_camera_rotation_convention():
    r = camera_rotation(pitch_deg=10.0, roll_deg=0.0)
    forward_world = r @ np.array([0.0, 0.0, 1.0])
    assert forward_world[1] == pytest.approx(np.sin(np.radians(10)))  # looks down (world y is down)


def test_small_demo_size_and_distinct_colours():
    s = render_room(2, CAMERAS["nyu-color"].scaled(0.15), 72, 96)
    assert s["depth_m"].shape == (72, 96) and np.isfinite(s["depth_m"]).all()
    labels, rgb = s["label"], s["rgb"].astype(np.float64)
    means = {k: rgb[labels == k].mean(axis=0) for k in np.unique(labels) if (labels == k).sum() >= 20}
    assert len(means) >= 5
    keys = list(means)
    dists = [np.linalg.norm(means[a] - means[b]) for i, a in enumerate(keys) for b in keys[i + 1:]]
    assert min(dists) > 15, dists  # classes visibly different
    # texture + shading: a surface is not one flat colour
    assert rgb[labels == FLOOR].std(axis=0).max() > 3
