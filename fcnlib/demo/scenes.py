"""Simple 3D rooms rendered through a pinhole camera: depth, NYU-40 labels, RGB, known gravity.

Used to test HHA against analytic truth (flat floor, vertical walls, known gravity) and to build the
offline demo NYUD. Everything is ray cast in closed form (axis-aligned boxes; one loop over the ~30
boxes, vectorised over pixels) and is deterministic per seed.

Conventions (shared with fcnlib.data.hha):
  camera coordinates: x right, y down, z forward (optical axis); pixel (row r, col c), 0-based, looks along
  ((c + 1 - cx) / fx, (r + 1 - cy) / fy, 1) — Gupta's MATLAB convention, where cx, cy are 1-based.
  gravity: unit vector pointing DOWN (the direction things fall) in camera coordinates; this is the
  vector Gupta's gravity estimate returns (`yDir`), so HHA's angle channel is acosd(N · gravity).
  normals: unit surface normals in camera coordinates facing the camera (outward from the surface).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fcnlib.data.hha import Camera

# NYU-40 class ids (Gupta et al. 2013 mapping), the ones the rooms use.
WALL, FLOOR, CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW, BOOKSHELF = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
PICTURE, COUNTER, DESK, CURTAIN, PILLOW, CEILING, BOX, LAMP = 11, 12, 14, 16, 18, 22, 29, 35
OTHERFURNITURE = 39

# Base colours per class: far apart in RGB so a tiny net can separate them.
_COLOURS: dict[int, tuple[int, int, int]] = {
    WALL: (200, 190, 170), FLOOR: (120, 80, 45), CABINET: (150, 40, 40), BED: (60, 90, 190),
    CHAIR: (230, 150, 20), SOFA: (40, 140, 60), TABLE: (90, 55, 30), DOOR: (170, 120, 200),
    WINDOW: (150, 220, 250), BOOKSHELF: (110, 110, 20), PICTURE: (220, 40, 160), COUNTER: (80, 80, 80),
    DESK: (140, 100, 60), CURTAIN: (200, 60, 60), PILLOW: (245, 245, 245), CEILING: (235, 235, 235),
    BOX: (200, 170, 100), LAMP: (250, 230, 90), OTHERFURNITURE: (30, 120, 130),
}
# Per-class texture: (spatial frequency in cycles/metre, direction weights over world x, y, z).
_TEXTURE: dict[int, tuple[float, tuple[float, float, float]]] = {
    FLOOR: (4.0, (1.0, 0.0, 0.0)), BED: (6.0, (1.0, 0.0, 1.0)), SOFA: (8.0, (0.0, 1.0, 0.0)),
    CABINET: (3.0, (0.0, 1.0, 0.0)), BOOKSHELF: (12.0, (1.0, 0.0, 1.0)), CURTAIN: (10.0, (1.0, 0.0, 1.0)),
    TABLE: (9.0, (1.0, 0.0, 1.0)), PICTURE: (7.0, (1.0, 1.0, 1.0)), WALL: (0.8, (1.0, 0.3, 1.0)),
}


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def camera_rotation(pitch_deg: float, roll_deg: float, yaw_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation; world = level camera frame (y down). Positive pitch looks down."""
    # Rotating about x by -pitch turns the optical axis (0,0,1) towards +y (down).
    return _rot_y(np.radians(yaw_deg)) @ _rot_x(-np.radians(pitch_deg)) @ _rot_z(np.radians(roll_deg))


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float], label: int) -> tuple:
    return (np.minimum(lo, hi).astype(np.float64), np.maximum(lo, hi).astype(np.float64), int(label))


def _furnish(rng: np.random.Generator, cam_h: float, x0: float, x1: float, z1: float,
             room_h: float) -> list[tuple]:
    """Boxes (world lo, hi, label) for a random furnished room; floor at y = cam_h, y down."""
    f = cam_h  # floor y
    boxes: list[tuple] = []

    def up(h: float) -> float:  # world y of a point h metres above the floor
        return f - h

    # Bed or sofa against the back wall.
    w = rng.uniform(1.4, 2.0)
    bx = rng.uniform(x0 + 0.2, x1 - w - 0.2)
    depth = rng.uniform(0.9, 2.0)
    kind = BED if rng.random() < 0.5 else SOFA
    top = rng.uniform(0.45, 0.6)
    boxes.append(_box((bx, up(top), z1 - depth), (bx + w, f, z1), kind))
    if kind == BED:
        boxes.append(_box((bx + 0.15, up(top + 0.12), z1 - 0.5), (bx + 0.7, up(top), z1 - 0.1), PILLOW))
    else:
        boxes.append(_box((bx, up(0.9), z1 - 0.25), (bx + w, up(top), z1), SOFA))

    # Table with four thin legs, somewhere in the middle of the floor.
    tw, td = rng.uniform(0.8, 1.4), rng.uniform(0.6, 1.0)
    tx = rng.uniform(x0 + 0.3, x1 - tw - 0.3)
    tz = rng.uniform(1.6, max(1.7, z1 - depth - td - 0.2))
    th = rng.uniform(0.70, 0.78)
    boxes.append(_box((tx, up(th), tz), (tx + tw, up(th - 0.04), tz + td), TABLE))
    leg = 0.05
    for lx in (tx + 0.03, tx + tw - 0.03 - leg):
        for lz in (tz + 0.03, tz + td - 0.03 - leg):
            boxes.append(_box((lx, up(th - 0.04), lz), (lx + leg, f, lz + leg), TABLE))

    # One or two chairs: seat, back, thin legs.
    for _ in range(int(rng.integers(1, 3))):
        cx_ = rng.uniform(x0 + 0.2, x1 - 0.7)
        cz = rng.uniform(1.4, max(1.5, z1 - 0.6))
        sh = rng.uniform(0.42, 0.48)
        boxes.append(_box((cx_, up(sh), cz), (cx_ + 0.45, up(sh - 0.05), cz + 0.45), CHAIR))
        boxes.append(_box((cx_, up(sh + 0.45), cz + 0.4), (cx_ + 0.45, up(sh), cz + 0.45), CHAIR))
        for lx in (cx_, cx_ + 0.41):
            for lz in (cz, cz + 0.41):
                boxes.append(_box((lx, up(sh - 0.05), lz), (lx + 0.04, f, lz + 0.04), CHAIR))

    # Tall cabinet or bookshelf against a side wall.
    side = x0 if rng.random() < 0.5 else x1
    cd, cw, ch = rng.uniform(0.4, 0.6), rng.uniform(0.6, 1.2), rng.uniform(1.2, 2.0)
    cz = rng.uniform(1.5, max(1.6, z1 - cw - 0.1))
    xa, xb = (side, side + cd) if side == x0 else (side - cd, side)
    boxes.append(_box((xa, up(ch), cz), (xb, f, cz + cw), CABINET if rng.random() < 0.5 else BOOKSHELF))

    # Floor lamp: a thin pole with a shade.
    lx, lz = rng.uniform(x0 + 0.3, x1 - 0.3), rng.uniform(2.0, max(2.1, z1 - 0.3))
    boxes.append(_box((lx, up(1.5), lz), (lx + 0.03, f, lz + 0.03), LAMP))
    boxes.append(_box((lx - 0.15, up(1.75), lz - 0.15), (lx + 0.18, up(1.5), lz + 0.18), LAMP))

    # Small box on the floor.
    bxx, bz, bs = rng.uniform(x0 + 0.2, x1 - 0.6), rng.uniform(1.3, max(1.4, z1 - 0.5)), rng.uniform(0.2, 0.4)
    boxes.append(_box((bxx, up(bs), bz), (bxx + bs * 1.3, f, bz + bs), BOX))

    # Wall-mounted flat things, 2-3 cm proud of the wall so they have their own depth.
    px = rng.uniform(x0 + 0.3, x1 - 1.0)
    boxes.append(_box((px, up(2.0), z1 - 0.02), (px + 0.7, up(1.5), z1), PICTURE))
    wx = rng.uniform(x0 + 0.3, x1 - 1.3)
    boxes.append(_box((wx, up(min(2.3, room_h - 0.2)), z1 - 0.03), (wx + 1.1, up(1.0), z1), WINDOW))
    dz = rng.uniform(1.5, max(1.6, z1 - 1.0))
    dside = x1 if side == x0 else x0
    da, db = (dside - 0.03, dside) if dside == x1 else (dside, dside + 0.03)
    boxes.append(_box((da, up(2.0), dz), (db, f, dz + 0.85), DOOR))
    return boxes


def render_room(seed: int, camera: Camera, height: int, width: int) -> dict[str, Any]:
    """Render a random furnished room seen by `camera` at `height`×`width` pixels.

    Returns depth_m (float32 H×W, metres along the optical axis), label (uint8 H×W, NYU-40 ids 1..40,
    0 = unlabelled), rgb (uint8 H×W×3), gravity ((3,) float64, unit, pointing down, camera coordinates),
    normals (float32 H×W×3, camera coordinates, facing the camera) and the pose parameters
    (pitch_deg, roll_deg, yaw_deg, camera_height_m). Deterministic in `seed`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"render_room: image size {height}x{width} must be positive")
    rng = np.random.default_rng(seed)
    cam_h = rng.uniform(1.1, 1.6)
    room_h = rng.uniform(2.5, 3.0)
    x0, x1 = -rng.uniform(1.5, 2.8), rng.uniform(1.5, 2.8)
    z1 = rng.uniform(3.8, 6.5)
    pitch, roll, yaw = rng.uniform(6.0, 16.0), rng.uniform(-6.0, 6.0), rng.uniform(-12.0, 12.0)
    r_cw = camera_rotation(pitch, roll, yaw)
    boxes = _furnish(rng, cam_h, x0, x1, z1, room_h)

    # Ray per pixel (camera coords, z = 1 so the ray parameter t is the depth), then to world.
    cols = np.arange(width, dtype=np.float64) + 1.0
    rows = np.arange(height, dtype=np.float64) + 1.0
    u = np.broadcast_to((cols - camera.cx) / camera.fx, (height, width))
    v = np.broadcast_to(((rows - camera.cy) / camera.fy)[:, None], (height, width))
    d_cam = np.stack([u, v, np.ones((height, width))], axis=-1).reshape(-1, 3)
    d = d_cam @ r_cw.T  # world directions, origin at the camera centre
    d[d == 0.0] = 1e-12  # keeps 0 * inf out of the slab tests
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
    n_pix = d.shape[0]

    # The room is a box we stand inside: the exit face is what we see.
    room_lo = np.array([x0, cam_h - room_h, -1.0])
    room_hi = np.array([x1, cam_h, z1])
    t_lo, t_hi = room_lo * inv, room_hi * inv
    t_exit_axis = np.maximum(t_lo, t_hi)
    axis = np.argmin(t_exit_axis, axis=1)
    t = t_exit_axis[np.arange(n_pix), axis]
    going_down = d[:, 1] > 0
    label = np.where(axis == 1, np.where(going_down, FLOOR, CEILING), WALL).astype(np.uint8)
    obj = np.full(n_pix, -1, np.int32)  # which box (or -1 = room) each ray hits

    for k, (lo, hi, lab) in enumerate(boxes):
        a, b = lo * inv, hi * inv
        near = np.minimum(a, b)
        far = np.maximum(a, b)
        t_near = near.max(axis=1)
        t_far = far.min(axis=1)
        hit = (t_near <= t_far) & (t_near > 1e-6) & (t_near < t)
        if hit.any():
            t[hit] = t_near[hit]
            label[hit] = lab
            obj[hit] = k
            axis[hit] = np.argmax(near[hit], axis=1)

    # Face normals (world), facing the camera: opposite to the ray along the hit axis.
    normal_w = np.zeros((n_pix, 3))
    normal_w[np.arange(n_pix), axis] = -np.sign(d[np.arange(n_pix), axis])
    point_w = d * t[:, None]

    rgb = _shade(rng, label, obj, len(boxes), point_w, normal_w, cam_h)
    depth = t.astype(np.float32).reshape(height, width)
    gravity = r_cw.T @ np.array([0.0, 1.0, 0.0])
    normals = (normal_w @ r_cw).astype(np.float32).reshape(height, width, 3)  # world -> camera = R^T n
    return {
        "depth_m": depth,
        "label": label.reshape(height, width),
        "rgb": rgb.reshape(height, width, 3),
        "gravity": gravity / np.linalg.norm(gravity),
        "normals": normals,
        "pitch_deg": float(pitch), "roll_deg": float(roll), "yaw_deg": float(yaw),
        "camera_height_m": float(cam_h),
    }


def _shade(rng: np.random.Generator, label: np.ndarray, obj: np.ndarray, n_obj: int, point_w: np.ndarray,
           normal_w: np.ndarray, cam_h: float) -> np.ndarray:
    """Class colour (jittered per object) × procedural texture × Lambert shading + a little noise."""
    lut = np.zeros((256, 3))
    for k, c in _COLOURS.items():
        lut[k] = c
    base = lut[label]
    jitter = rng.uniform(-18, 18, size=(n_obj + 1, 3))  # last row = the room's own surfaces
    base = base + jitter[obj]

    freq = np.zeros(256)
    dirs = np.zeros((256, 3))
    for k, (fq, dw) in _TEXTURE.items():
        freq[k], dirs[k] = fq, dw
    phase = rng.uniform(0, 2 * np.pi)
    coord = (point_w * dirs[label]).sum(axis=1) + 0.37 * (point_w[:, 1] - cam_h)
    tex = 1.0 + 0.12 * np.sin(2 * np.pi * freq[label] * coord + phase) * (freq[label] > 0)
    light = np.array([0.35, -1.0, -0.45])
    light /= np.linalg.norm(light)
    lambert = 0.55 + 0.45 * np.clip(normal_w @ light, 0.0, 1.0)
    noise = rng.normal(0.0, 3.0, size=base.shape)
    rgb = base * (tex * lambert)[:, None] + noise
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
