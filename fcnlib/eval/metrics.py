"""Streaming confusion matrix and the paper's four segmentation metrics (SPEC §4).

One matrix is accumulated over a whole split and scored once: per-image means would weight small
images like large ones, which is not what the paper (or the authors' `score.py`) reports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "SCORE_KEYS"]

#: The scalar metrics every scores() dict carries, in the paper's column order.
SCORE_KEYS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


def _as_int_array(x: Any) -> np.ndarray:
    """A numpy integer view of a label/prediction map (torch tensors are moved to CPU, not copied twice)."""
    if hasattr(x, "detach"):  # torch.Tensor, imported lazily so metrics stay usable without torch
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype.kind == "b":
        return a.astype(np.uint8)
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and a.size and not np.all(np.isfinite(a)):
            raise ValueError("label/prediction map contains NaN or inf")
        return a.astype(np.int64)
    return a


def _on_gpu(x: Any) -> bool:
    return hasattr(x, "detach") and x.device.type != "cpu"


def _torch_counts(label: Any, pred: Any, n: int) -> np.ndarray:
    """Counts on the tensors' device (GPU evaluation): only the n×n result crosses to the host."""
    if label.shape != pred.shape:
        raise ValueError(f"label shape {tuple(label.shape)} differs from prediction shape {tuple(pred.shape)}")
    lab = label.reshape(-1).long()
    prd = pred.reshape(-1).long()
    valid = (lab >= 0) & (lab < n)
    lv, pv = lab[valid], prd[valid]
    bad = (pv < 0) | (pv >= n)
    if bool(bad.any()):
        raise ValueError(f"predictions {torch.unique(pv[bad])[:8].tolist()} are outside 0..{n - 1}")
    counts = torch.bincount(lv * n + pv, minlength=n * n)
    return counts.cpu().numpy().astype(np.int64).reshape(n, n)


class ConfusionMatrix:
    """n×n pixel counts: row = ground-truth class, column = predicted class.

    Labels outside [0, n) (the void label 255, −1, …) are ignored. Predictions must lie in [0, n)
    wherever the label is valid: a prediction outside that range cannot be placed in the matrix and
    is an error in the caller, so it raises rather than being silently folded into another cell.
    """

    def __init__(self, n: int) -> None:
        if int(n) < 1:
            raise ValueError(f"ConfusionMatrix needs at least one class, got n={n}")
        self.n = int(n)
        self.mat = np.zeros((self.n, self.n), np.int64)

    # -- accumulation -------------------------------------------------------------------------
    def update(self, label: Any, pred: Any) -> ConfusionMatrix:
        """Add one map (or a batch of maps) of ground truth `label` and predicted `pred` class ids."""
        if _on_gpu(label) and _on_gpu(pred):
            self.mat += _torch_counts(label, pred, self.n)
            return self
        lab = _as_int_array(label)
        prd = _as_int_array(pred)
        if lab.shape != prd.shape:
            raise ValueError(f"label shape {lab.shape} differs from prediction shape {prd.shape}")
        if lab.size == 0:
            return self
        lab = lab.ravel()
        prd = prd.ravel()
        counts = self._fast_counts(lab, prd)
        if counts is None:  # a range check failed: mask, so bad predictions only matter at valid labels
            counts = self._masked_counts(lab, prd)
        self.mat += counts
        return self

    def _fast_counts(self, lab: np.ndarray, prd: np.ndarray) -> np.ndarray | None:
        """One bincount over n*label + pred with no boolean mask; None if a range check fails.

        With every prediction in [0, n), n*label + pred < n*n exactly for valid labels, so void and
        out-of-range labels fall in bins beyond n*n that are dropped. (Tried: clamping labels or a
        pred-major layout to let bincount check the range — slower; bincount dominates either way.)
        """
        n = self.n
        if lab.dtype.itemsize > 1 or lab.dtype.kind == "i":
            # wide/signed labels: negatives would break bincount, huge values would make it huge
            if int(lab.min()) < 0 or int(lab.max()) >= 1 << 16:
                return None
        if (prd.dtype.kind == "i" and int(prd.min()) < 0) or int(prd.max()) >= n:
            return None
        idx = lab.astype(np.intp)
        idx *= n
        idx += prd
        return np.bincount(idx, minlength=n * n)[: n * n].reshape(n, n)

    def _masked_counts(self, lab: np.ndarray, prd: np.ndarray) -> np.ndarray:
        n = self.n
        valid = (lab >= 0) & (lab < n)
        lv = lab[valid].astype(np.intp)
        pv = prd[valid]
        if pv.size and (int(pv.min()) < 0 or int(pv.max()) >= n):
            bad = pv[(pv < 0) | (pv >= n)]
            raise ValueError(f"predictions {np.unique(bad)[:8].tolist()} are outside 0..{n - 1}")
        lv *= n
        lv += pv
        return np.bincount(lv, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts into this one (shards, workers); returns self."""
        if not isinstance(other, ConfusionMatrix) or other.n != self.n:
            raise ValueError(f"cannot merge a {getattr(other, 'n', type(other).__name__)}-class matrix "
                             f"into a {self.n}-class one")
        self.mat += other.mat
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        out = ConfusionMatrix(self.n)
        out.mat = self.mat.copy()
        return out.merge(other)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfusionMatrix) and other.n == self.n
                and bool(np.array_equal(self.mat, other.mat)))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"ConfusionMatrix(n={self.n}, pixels={int(self.mat.sum())})"

    def reset(self) -> None:
        self.mat[...] = 0

    @classmethod
    def from_matrix(cls, mat: Any) -> ConfusionMatrix:
        """Rebuild an accumulator from saved counts (e.g. a shard's JSON)."""
        m = np.asarray(mat, dtype=np.int64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or (m < 0).any():
            raise ValueError(f"a confusion matrix must be square with non-negative counts, "
                             f"got shape {m.shape}")
        cm = cls(m.shape[0])
        cm.mat = m.copy()
        return cm

    # -- scoring ------------------------------------------------------------------------------
    def scores(self) -> dict[str, Any]:
        """The four metrics of SPEC §4 plus per-class IU and accuracy (NaN for classes with no data).

        Means are nanmeans: a class absent from both ground truth and prediction has IU 0/0 and drops
        out; a class only predicted has IU 0 (counted) and accuracy 0/0 (dropped), as in the authors' code.
        """
        m = self.mat.astype(np.float64)
        tp = np.diag(m)
        t = m.sum(axis=1)  # ground-truth pixels per class
        p = m.sum(axis=0)  # predicted pixels per class
        total = t.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = tp / t
            iu = tp / (t + p - tp)
        pixel_acc = float(tp.sum() / total) if total > 0 else math.nan
        fw_iu = float((t[t > 0] * iu[t > 0]).sum() / total) if total > 0 else math.nan
        return {
            "pixel_acc": pixel_acc,
            "mean_acc": _nanmean(acc),
            "mean_iu": _nanmean(iu),
            "fw_iu": fw_iu,
            "per_class_iu": [float(v) for v in iu],
            "per_class_acc": [float(v) for v in acc],
        }


def _nanmean(v: np.ndarray) -> float:
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else math.nan
