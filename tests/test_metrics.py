"""ConfusionMatrix: the released FCN-8s demo score, an independent per-class reference, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers_paths import SHARED_DATA

from fcnlib.eval.metrics import ConfusionMatrix
from fcnlib.files.io import colour_to_label, read_image, read_label

DEMO = SHARED_DATA / "fcn_berkeleyvision" / "demo"


def reference_scores(label: np.ndarray, pred: np.ndarray, n: int) -> dict:
    """Straightforward per-class masks, written independently of the bincount implementation."""
    valid = (label >= 0) & (label < n)
    lab, prd = label[valid], pred[valid]
    ius, accs, ts = [], [], []
    correct = 0
    for c in range(n):
        g, p = lab == c, prd == c
        inter = int(np.sum(g & p))
        union = int(np.sum(g | p))
        t = int(g.sum())
        correct += inter
        ts.append(t)
        ius.append(inter / union if union else math.nan)
        accs.append(inter / t if t else math.nan)
    total = int(valid.sum())
    fw = sum(t * iu for t, iu in zip(ts, ius, strict=True) if t) / total
    return {"pixel_acc": correct / total, "mean_acc": float(np.nanmean(accs)),
            "mean_iu": float(np.nanmean(ius)), "fw_iu": fw, "per_class_iu": ius, "per_class_acc": accs}


def test_released_fcn8s_demo_output_scores_as_published():
    if not DEMO.is_dir():
        pytest.skip(f"real demo data not found at {DEMO} (needs /work/shared beside the repo)")
    label = read_label(DEMO / "label.png", 21)
    pred = colour_to_label(read_image(DEMO / "output.png"))
    s = ConfusionMatrix(21).update(label, pred).scores()
    assert s["pixel_acc"] == pytest.approx(0.8425, abs=5e-4)
    assert s["per_class_iu"][0] == pytest.approx(0.7773, abs=5e-4)   # background
    assert s["per_class_iu"][2] == pytest.approx(0.6621, abs=5e-4)   # bicycle
    assert s["per_class_iu"][15] == pytest.approx(0.7195, abs=5e-4)  # person
    # Only 3 classes occur in GT or prediction; the other 18 must drop out of the mean, not count as 0.
    assert s["mean_iu"] == pytest.approx(np.mean([0.7773, 0.6621, 0.7195]), abs=5e-4)
    assert sum(not math.isnan(v) for v in s["per_class_iu"]) == 3


@pytest.mark.parametrize("ldtype,pdtype", [(np.uint8, np.int64), (np.int64, np.uint8), (np.int32, np.int32)])
def test_random_maps_match_independent_reference(ldtype, pdtype):
    rng = np.random.default_rng(7)
    n = 21
    label = rng.integers(0, n, (3, 61, 47)).astype(ldtype)
    label[:, :5] = 255 if np.dtype(ldtype).kind == "u" or np.dtype(ldtype).itemsize > 1 else -1
    label[0, 10:20, :] = 3  # a big class so the classes are unbalanced
    pred = np.where(rng.random(label.shape) < 0.6, label % n, rng.integers(0, n, label.shape)).astype(pdtype)
    pred[pred >= n] = 0
    cm = ConfusionMatrix(n)
    for i in range(3):
        cm.update(label[i], pred[i])
    got = cm.scores()
    ref = reference_scores(label.astype(np.int64), pred.astype(np.int64), n)
    for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert got[k] == pytest.approx(ref[k], rel=1e-12), k
    np.testing.assert_allclose(got["per_class_iu"], ref["per_class_iu"], rtol=1e-12)
    np.testing.assert_allclose(got["per_class_acc"], ref["per_class_acc"], rtol=1e-12)
    assert cm.mat.sum() == np.sum(label.astype(np.int64) < n)


def test_negative_void_labels_and_torch_inputs():
    rng = np.random.default_rng(1)
    label = rng.integers(-1, 4, (40, 30))  # SIFT Flow style -1 void, 3 geometric classes + noise
    pred = rng.integers(0, 3, (40, 30))
    a = ConfusionMatrix(3).update(label, pred)
    b = ConfusionMatrix(3).update(torch.from_numpy(label), torch.from_numpy(pred))
    assert a == b
    assert a.mat.sum() == np.sum((label >= 0) & (label < 3))
    ref = reference_scores(label, pred, 3)
    assert a.scores()["mean_iu"] == pytest.approx(ref["mean_iu"], rel=1e-12)


def test_all_correct_is_one_and_void_never_counts():
    rng = np.random.default_rng(2)
    label = rng.integers(0, 5, (50, 50)).astype(np.uint8)
    pred = label.copy()
    label[::3] = 255
    pred[::3] = rng.integers(0, 5, pred[::3].shape)  # garbage under void must not matter
    s = ConfusionMatrix(5).update(label, pred).scores()
    for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert s[k] == 1.0, k
    # Everything void: nothing counted, metrics undefined (NaN), not 0 and not an exception.
    cm = ConfusionMatrix(5).update(np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.int64))
    assert cm.mat.sum() == 0 and math.isnan(cm.scores()["mean_iu"])


def test_only_predicted_class_counts_zero_iu_but_no_accuracy():
    label = np.array([[0, 0], [0, 0]], np.uint8)
    pred = np.array([[0, 0], [0, 1]], np.int64)
    s = ConfusionMatrix(3).update(label, pred).scores()
    assert s["per_class_iu"][:2] == [0.75, 0.0] and math.isnan(s["per_class_iu"][2])
    assert s["mean_iu"] == pytest.approx(0.375)
    assert s["mean_acc"] == pytest.approx(0.75)  # class 1 has no GT pixels: accuracy undefined, dropped
    assert s["fw_iu"] == pytest.approx(0.75)


def test_merge_equals_single_accumulation():
    rng = np.random.default_rng(3)
    maps = [(rng.integers(0, 8, (20, 25)).astype(np.uint8), rng.integers(0, 7, (20, 25))) for _ in range(6)]
    whole = ConfusionMatrix(7)
    for lab, prd in maps:
        whole.update(lab, prd)  # label 7 is out of range → ignored
    shards = [ConfusionMatrix(7) for _ in range(3)]
    for i, (lab, prd) in enumerate(maps):
        shards[i % 3].update(lab, prd)
    assert shards[0] + shards[1] + shards[2] == whole
    merged = ConfusionMatrix(7).merge(shards[0]).merge(shards[1])
    merged += shards[2]
    assert merged == whole
    assert ConfusionMatrix.from_matrix(whole.mat.tolist()) == whole
    with pytest.raises(ValueError):
        whole.merge(ConfusionMatrix(5))


def test_bad_inputs_raise():
    cm = ConfusionMatrix(4)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((3, 3), np.uint8), np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.zeros((3, 3), np.uint8), np.full((3, 3), 9))
    assert cm.mat.sum() == 0  # a failed update leaves the counts untouched


def test_device_path_counts_like_numpy_path():
    """The GPU path (bincount on the tensors' device) is exercised here on CPU tensors."""
    from fcnlib.eval.metrics import _torch_counts

    rng = np.random.default_rng(4)
    label = rng.integers(0, 23, (2, 30, 40)).astype(np.uint8)  # 21, 22 → ignored like 255
    label[:, 0] = 255
    pred = rng.integers(0, 21, (2, 30, 40))
    ref = ConfusionMatrix(21).update(label, pred)
    got = _torch_counts(torch.from_numpy(label), torch.from_numpy(pred), 21)
    np.testing.assert_array_equal(got, ref.mat)
    with pytest.raises(ValueError, match="outside"):
        _torch_counts(torch.zeros(3, dtype=torch.uint8), torch.tensor([0, 1, 21]), 21)
