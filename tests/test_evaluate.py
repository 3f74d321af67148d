"""evaluate(): a tiny real FCN saved to disk, scored on a tiny dataset.json in the real layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlib.errors import ConfigError, DataError
from fcnlib.eval import evaluate as ev
from fcnlib.eval.metrics import ConfusionMatrix
from fcnlib.files.io import read_label, write_label_png
from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG

CLASSES = ["background", "thing", "stuff"]


@pytest.fixture(autouse=True, params=[False, True], ids=["fp32-host", "bf16-host"])
def native_bf16(request, monkeypatch) -> bool:
    """evaluation runs through fcnlib.runtime.fast, whose precision follows the CPU: force each kind of CPU's choice
    (fp32 + Winograd, or bf16 autocast + channels_last) so the results checked hold for both on any host."""
    from fcnlib.runtime import fast

    monkeypatch.setattr(fast, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def save_tiny(path: Path, *, variant: str = "fcn32s", heads: dict | None = None, winner: int | None = None,
              modalities: tuple[str, ...] = ("rgb",)) -> torch.nn.Module:
    """A real build_fcn net at 1/16 width; score layers are zero (the paper's init) so every pixel predicts
    class 0, unless `winner` biases score_fr so that class wins everywhere."""
    model = build_fcn(variant, "vgg16", num_classes=len(CLASSES), width=0.0625, heads=heads)
    if winner is not None:
        with torch.no_grad():
            for name, mod in model.named_children():
                if name.startswith("score_fr"):
                    mod.bias[winner] = 5.0
    meta = {"arch": model.arch, "modalities": list(modalities), "classes": CLASSES,
            "preprocessing": {m: CAFFE_VGG.to_dict() for m in modalities}, "config_hash": "abc123"}
    save_model(model, meta, path)
    return model


def make_dataset(root: Path, n: int = 3, heads: dict | None = None,
                 sizes=((37, 45), (40, 33), (29, 51))) -> Path:
    """dataset.json + JPEG images + palette label PNGs (255 = void) in the ARCHITECTURE layout."""
    heads = heads or {"sem": len(CLASSES)}
    rng = np.random.default_rng(0)
    ids = [f"img_{i:03d}" for i in range(n)]
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "val.txt").write_text("\n".join(ids) + "\n")
    for i, id_ in enumerate(ids):
        h, w = sizes[i % len(sizes)]
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        (root / "rgb").mkdir(exist_ok=True)
        Image.fromarray(img).save(root / "rgb" / f"{id_}.jpg", quality=90)
        for head, k in heads.items():
            lab = rng.integers(0, k, (h, w)).astype(np.uint8)
            lab[:3] = 255
            write_label_png(root / f"labels_{head}" / f"{id_}.png", lab)
    spec = {"name": "tiny", "source": "demo", "ignore_index": 255, "heads": heads,
            "classes": {h: (CLASSES if k == len(CLASSES) else [f"{h}{j}" for j in range(k)])
                        for h, k in heads.items()},
            "splits": {"val": {"ids": "splits/val.txt", "images": {"rgb": {"dir": "rgb", "ext": ".jpg"}},
                               "labels": {h: {"dir": f"labels_{h}", "ext": ".png"} for h in heads}}}}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root / "dataset.json"


def labels_of(ds_json: Path, head: str = "sem", n: int = 3) -> list[np.ndarray]:
    root = ds_json.parent
    return [read_label(root / f"labels_{head}" / f"img_{i:03d}.png", 256) for i in range(n)]


def test_zero_init_net_scores_as_all_background(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w)
    preds_dir = tmp_path / "preds"
    r = ev.evaluate(w, ds, "val", device="cpu", progress=False, predictions_dir=preds_dir)
    # Independent expectation: predicting 0 everywhere → pixel acc = share of class-0 pixels, IU_0 the same,
    # IU of the other classes 0 (present in GT, never predicted) → mean IU = share/3.
    labs = np.concatenate([x.ravel() for x in labels_of(ds)])
    valid = labs != 255
    share = float(np.mean(labs[valid] == 0))
    assert r["n_images"] == 3 and r["pixels"] == int(valid.sum())
    assert r["pixel_acc"] == pytest.approx(share)
    assert r["per_class_iu"] == {"background": pytest.approx(share), "thing": 0.0, "stuff": 0.0}
    assert r["mean_iu"] == pytest.approx(share / 3)
    assert r["mean_acc"] == pytest.approx(1 / 3)
    assert r["split"] == "val" and r["dataset"] == "tiny" and r["dataset_source"] == "demo"
    assert r["config_hash"] == "abc123"
    assert r["weights_sha256"] == ev.sha256_file(w) and len(r["weights_sha256"]) == 64
    assert r["device"] == ev.device_name("cpu") and "threads" in r["device"]
    # predicted PNGs: same size as each image, all zeros
    outs = sorted(preds_dir.glob("*.png"))
    assert [p.stem for p in outs] == ["img_000", "img_001", "img_002"]
    for p, lab in zip(outs, labels_of(ds), strict=True):
        a = np.asarray(Image.open(p))
        assert Image.open(p).mode == "P" and a.shape == lab.shape and not a.any()


def test_biased_net_matches_confusion_matrix_and_file_is_json(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w, variant="fcn8s", winner=2)
    out = tmp_path / "m" / "metrics.json"
    r = ev.evaluate_file(w, ds, "val", out, device="cpu", progress=False, max_images=2, config_hash="cfg")
    cm = ConfusionMatrix(3)
    for lab in labels_of(ds, n=2):
        cm.update(lab, np.full(lab.shape, 2))
    s = cm.scores()
    assert r["n_images"] == 2 and r["config_hash"] == "cfg"
    assert r["mean_iu"] == pytest.approx(s["mean_iu"]) and r["fw_iu"] == pytest.approx(s["fw_iu"])
    assert r["per_class_iu"]["stuff"] == pytest.approx(s["per_class_iu"][2])
    assert r["per_class_iu"]["stuff"] > 0 and r["per_class_iu"]["background"] == 0.0

    def no_nan(tok):
        raise AssertionError(f"metrics.json holds {tok}; it must be strict JSON")

    on_disk = json.loads(out.read_text(), parse_constant=no_nan)
    assert on_disk["mean_iu"] == pytest.approx(r["mean_iu"])
    assert not list(out.parent.glob(".*.tmp"))


def test_two_headed_net_reports_geo(tmp_path):
    heads = {"sem": 3, "geo": 4}
    ds = make_dataset(tmp_path / "ds", n=2, heads=heads)
    w = tmp_path / "w.pt"
    save_tiny(w, variant="fcn16s", heads=heads)
    r = ev.evaluate(w, ds, "val", device="cpu", progress=False)
    geo = np.concatenate([x.ravel() for x in labels_of(ds, "geo", 2)])
    share0 = float(np.mean(geo[geo != 255] == 0))
    assert r["geo_acc"] == pytest.approx(share0) and r["geo"]["pixel_acc"] == r["geo_acc"]
    assert set(r["geo"]["per_class_iu"]) == {"geo0", "geo1", "geo2", "geo3"}
    assert "mean_iu" in r and set(r["per_class_iu"]) == set(CLASSES)


def test_errors_are_clear(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w)
    with pytest.raises(DataError, match="no split 'test'"):
        ev.evaluate(w, ds, "test", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="device"):
        ev.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            ev.resolve_device("cuda")
    assert ev.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_time_forward_reports_median_and_device(native_bf16, monkeypatch):
    import fcnlib.models.fcn as fcn

    calls = []
    orig = fcn.per_class_upsample
    monkeypatch.setattr(fcn, "per_class_upsample", lambda *a: calls.append(1) or orig(*a))
    model = build_fcn("fcn32s", "vgg16", num_classes=3, width=0.0625)
    t = ev.time_forward(model, size=32, runs=3, warmup=1, device="cpu")
    assert t["runs"] == 3 and t["size"] == 32 and len(t["times_ms"]) == 3
    assert t["median_ms"] == pytest.approx(sorted(t["times_ms"])[1], abs=1e-3) and t["median_ms"] > 0
    assert "threads" in t["device"]
    assert not math.isnan(t["median_ms"])
    # the net's own fast path, its dtype recorded; the frozen bilinear upsampler ran per class every time
    assert t["fast_path"] and t["dtype"] == ("bfloat16" if native_bf16 else "float32")
    assert t["channels_last"] == native_bf16 and len(calls) == 4
    plain = ev.time_forward(model, size=32, runs=1, warmup=0, device="cpu", fast_path=False)
    assert plain["dtype"] == "float32" and not plain["fast_path"]


def test_fig4_from_weights_picks_images_where_nets_differ(tmp_path):
    from fcnlib.report.figures import fig4_from_weights

    ds = make_dataset(tmp_path / "ds", n=2)
    paths = {}
    for name, winner in (("FCN-32s", None), ("FCN-16s", None), ("FCN-8s", 1)):
        paths[name] = tmp_path / f"{name}.pt"
        save_tiny(paths[name], variant=name.lower().replace("-", ""), winner=winner)
    out = fig4_from_weights(paths, ds, "val", 1, tmp_path / "fig4.png", device="cpu")
    with Image.open(out) as im:  # one row of five panels
        assert im.format == "PNG" and im.width > 3 * im.height
