"""bench/trained.py: a trained net's bf16 fast path against fp32 on its own val split, in a run's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_eval import CLASSES, labels_of, make_dataset

from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG

ROOT = Path(__file__).resolve().parents[1]



def _run_layout(tmp_path: Path, score_std: float) -> Path:
    """<run>/data/tiny/dataset.json, <run>/results/tiny/exp/weights.pt, <run>/results/tiny/exp/val/metrics.json."""
    run = tmp_path / "run"
    make_dataset(run / "data" / "tiny")
    torch.manual_seed(0)
    model = build_fcn("fcn8s", "vgg16", num_classes=len(CLASSES), width=0.0625)
    with torch.no_grad():
        for name, mod in model.named_children():
            if name.startswith("score"):
                mod.weight.normal_(0, score_std)
    w = run / "results" / "tiny" / "exp" / "weights.pt"
    w.parent.mkdir(parents=True)
    save_model(model, {"arch": model.arch, "modalities": ["rgb"], "classes": CLASSES, "dataset": "tiny",
                       "experiment": "exp", "preprocessing": {"rgb": CAFFE_VGG.to_dict()}}, w)
    (w.parent / "val").mkdir()
    (w.parent / "val" / "metrics.json").write_text("{}")
    return w


def test_agreement_and_scores_on_a_run(bench_module, tmp_path, one_thread):
    bt = bench_module("trained")
    w = _run_layout(tmp_path, score_std=1.0)
    r = bt.bench_one(w)
    labs = labels_of(w.parents[3] / "data" / "tiny" / "dataset.json")
    assert r["split"] == "val" and r["images"] == 3 and r["experiment"] == "exp"
    assert r["pixels"] == sum(x.size for x in labs)
    assert 0.5 < r["argmax_agreement"] <= 1.0
    # independent: the same net in fp32 and under bf16 autocast, argmax compared pixel by pixel
    from fcnlib.data import SegDataset
    from fcnlib.models import load_model

    model, _ = load_model(w)
    ds = SegDataset(w.parents[3] / "data" / "tiny" / "dataset.json", "val", modalities=["rgb"],
                    preprocessing={"rgb": CAFFE_VGG})
    same = total = 0
    with torch.inference_mode():
        for i in range(len(ds)):
            x = ds[i][0].unsqueeze(0)
            a = model(x).argmax(1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                b = model(x.contiguous(memory_format=torch.channels_last)).float().argmax(1)
            same, total = same + int((a == b).sum()), total + a.numel()
    assert r["argmax_agreement"] == pytest.approx(same / total, abs=0.02)
    assert 0 <= r["fp32_mean_iu"] <= 1 and 0 <= r["bf16_mean_iu"] <= 1


def test_default_finds_the_runs_trained_nets_not_released(bench_module, tmp_path, monkeypatch, one_thread):
    bt = bench_module("trained")
    w = _run_layout(tmp_path, score_std=0.0)  # zero score layers: every pixel class 0 in both precisions
    rel = w.parents[2] / "released" / "x" / "weights.pt"
    rel.parent.mkdir(parents=True)
    rel.write_bytes(b"not a weights file: must not be read")
    monkeypatch.chdir(w.parents[3])
    r = bt.run(None)
    assert [Path(n["weights"]).resolve() for n in r["nets"]] == [w.resolve()]
    assert r["min_agreement"] == 1.0 and r["nets"][0]["fp32_mean_iu"] == r["nets"][0]["bf16_mean_iu"]


def test_no_results_names_what_to_run(bench_module, tmp_path, monkeypatch):
    bt = bench_module("trained")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    with pytest.raises(FileNotFoundError, match="make demo"):
        bt.run(None)
