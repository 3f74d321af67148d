"""HHA's geometry (Gupta et al., ECCV 2014: computeNormalsSquareSupport, getYDir, getRMatrix), vectorised
over pixels: windowed sums, plane-fit surface normals, the gravity direction and the rotation onto it.
fcnlib.data.hha turns these into the three HHA channels; split off so that module stays the encoder and its files.
"""

from __future__ import annotations

import numpy as np


def window_sum(f: np.ndarray, r: int, axis: int) -> np.ndarray:
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


def line_sum(f: np.ndarray, r: int) -> np.ndarray:
    """1-D version of window_sum for the separable (no missing data) case."""
    return window_sum(f[None, :], r, 1)[0]


def plane_normals(u: np.ndarray, v: np.ndarray, inv_z: np.ndarray, valid: np.ndarray | None, r: int
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
    g0 = window_sum(inv_z, r, 1)
    b1 = window_sum(window_sum(inv_z * u, r, 1), r, 0)
    b2 = window_sum(g0 * vc, r, 0)
    b3 = window_sum(g0, r, 0)
    n = np.empty((3,) + inv_z.shape)
    if valid is None:
        h0, h1, h2 = line_sum(np.ones_like(u), r), line_sum(u, r), line_sum(u * u, r)
        v0, v1, v2 = line_sum(np.ones_like(v), r), line_sum(v, r), line_sum(v * v, r)
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
        h0 = window_sum(m, r, 1)
        h1 = window_sum(m * u, r, 1)
        h2 = window_sum(m * (u * u), r, 1)
        a6 = window_sum(h0, r, 0)
        a5 = window_sum(h0 * vc, r, 0)
        a4 = window_sum(h0 * (vc * vc), r, 0)
        a3 = window_sum(h1, r, 0)
        a2 = window_sum(h1 * vc, r, 0)
        a1 = window_sum(h2, r, 0)
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


def orient_normals(n: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def rotation_between(yi: np.ndarray, yf: np.ndarray) -> np.ndarray:
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
