"""Score a weights file on a dataset split (metrics.json) and time its forward pass.

Whole images, batch 1, no resizing: FCNs take any input size and the paper scores at full resolution.
Loading, preprocessing, device choice and prediction live in fcnlib.eval.inference (shared with train,
figures, segment).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fcnlib.data import SegDataset
from fcnlib.errors import ConfigError, DataError
from fcnlib.eval.inference import device_name, load_for_inference, predict, score_dataset
from fcnlib.eval.metrics import SCORE_KEYS, ConfusionMatrix
from fcnlib.files.io import atomic_write_json, read_json, sha256_file, write_label_png
from fcnlib.models.meta import primary_head
from fcnlib.runtime import fast
from fcnlib.runtime.compute import AMP_DEFAULT, CHANNELS_LAST_DEFAULT, resolve_runtime

if TYPE_CHECKING:
    pass

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------
def _named(values: list[float], names: list[str]) -> dict[str, float | None]:
    return {name: (None if math.isnan(v) else v) for name, v in zip(names, values, strict=True)}


def scores_to_json(cm: ConfusionMatrix, class_names: list[str] | None) -> dict[str, Any]:
    """ConfusionMatrix.scores() in metrics.json form: NaN → null, per-class values keyed by class name."""
    s = cm.scores()
    names = list(class_names) if class_names and len(class_names) == cm.n else [str(i) for i in range(cm.n)]
    out: dict[str, Any] = {k: (None if math.isnan(s[k]) else s[k]) for k in SCORE_KEYS}
    out["per_class_iu"] = _named(s["per_class_iu"], names)
    out["per_class_acc"] = _named(s["per_class_acc"], names)
    out["pixels"] = int(cm.mat.sum())
    return out


def evaluate(weights: PathLike, dataset_json: PathLike, split: str, *, device: str | torch.device = "auto",
             precision: str = AMP_DEFAULT, channels_last: Any = CHANNELS_LAST_DEFAULT,
             max_images: int | None = None, predictions_dir: PathLike | None = None, progress: bool = True,
             config_hash: str | None = None) -> dict[str, Any]:
    """Score `weights` on `split` of a prepared dataset; returns the metrics.json content.

    device/precision/channels_last: the job's settings (config `device`, `training.amp`,
    `training.channels_last`), resolved once into a fcnlib.runtime.compute.Runtime; "dtype" in the result is
    the dtype the convolutions ran in. One confusion matrix per head accumulated over the whole split.
    For a two-headed net (SIFT Flow) the semantic head's metrics are at top level, the geometric head's
    under "geo", plus "geo_acc".
    """

    rt = resolve_runtime(device, precision, channels_last)
    dev = rt.device
    model, meta = load_for_inference(weights, rt)
    pre = meta.preprocessing(weights)
    mods = meta.modalities
    ds = SegDataset(dataset_json, split, modalities=mods, preprocessing=pre, max_images=max_images)
    heads = list(ds.num_classes)
    classes = ds.classes
    mclasses = meta.classes
    if isinstance(mclasses, list) and len(heads) == 1 and len(mclasses) != ds.num_classes[heads[0]]:
        raise DataError(f"{weights}: weights predict {len(mclasses)} classes but {dataset_json} has "
                        f"{ds.num_classes[heads[0]]}; evaluate them on the dataset they were trained for")
    pred_dir = Path(predictions_dir) if predictions_dir is not None else None

    def checked(i: int, preds: dict[str, torch.Tensor]) -> None:
        missing = [h for h in heads if h not in preds]
        if missing:
            raise DataError(f"{weights}: model has no output for heads {missing} of {dataset_json}; "
                            f"evaluate it on the dataset it was trained for")
        for h in heads if pred_dir is not None else ():
            sub = pred_dir if h == heads[0] else pred_dir / h
            write_label_png(sub / f"{ds.ids[i]}.png", preds[h].numpy())

    cms, n_images = score_dataset(ds, lambda x: predict(model, x.to(dev), heads), on_prediction=checked,
                                  desc=f"evaluate {Path(weights).name} on {split}" if progress else None)
    if n_images == 0:
        raise DataError(f"{dataset_json}: split '{split}' has no images to evaluate; check its split list")

    main = primary_head(heads)
    result = scores_to_json(cms[main], classes.get(main))
    for h in heads:
        if h != main:
            result[h] = scores_to_json(cms[h], classes.get(h))
    if "geo" in result:
        result["geo_acc"] = result["geo"]["pixel_acc"]
    dmeta = read_json(dataset_json)
    result.update({
        "n_images": n_images,
        "split": split,
        "dataset": ds.name,
        "dataset_source": dmeta.get("source"),
        "heads": {h: ds.num_classes[h] for h in heads},
        "weights": str(weights),
        "weights_sha256": sha256_file(weights),
        "config_hash": config_hash if config_hash is not None else meta.get("config_hash"),
        "device": device_name(dev),
        "dtype": rt.dtype_name,
    })
    return result


def evaluate_file(weights: PathLike, dataset_json: PathLike, split: str, out_json: PathLike,
                  **kwargs: Any) -> dict[str, Any]:
    """evaluate(...) and write the result to `out_json` atomically (the metrics.json of a rule)."""
    result = evaluate(weights, dataset_json, split, **kwargs)
    atomic_write_json(out_json, result)
    return result


# ---------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------
def _model_in_channels(model: torch.nn.Module) -> int:
    """Input channels from the model's build arguments (late fusion: both members), else its first conv."""
    arch = getattr(model, "arch", None)
    if isinstance(arch, dict):
        if arch.get("fusion") == "late":
            return sum(int(m.get("in_channels", 3)) for m in arch.get("members", []))
        if "in_channels" in arch:
            return int(arch["in_channels"])
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            return int(mod.in_channels)
    raise ConfigError("time_forward: model has no Conv2d; pass in_channels explicitly")


def time_forward(model: torch.nn.Module, size: int = 500, runs: int = 5, warmup: int = 1,
                 device: str | torch.device = "auto", in_channels: int | None = None,
                 fast_path: bool = True, precision: str = AMP_DEFAULT,
                 channels_last: Any = CHANNELS_LAST_DEFAULT) -> dict[str, Any]:
    """Median wall time of `runs` forward passes of a 1×C×size×size input after `warmup` passes, through
    the same fast path and Runtime evaluation uses (`fast_path=False`: plain eager fp32).

    The paper averages 20 trials on a K40c; the median is robust to the other jobs sharing our machine.
    """

    if runs < 1 or warmup < 0 or size < 1:
        raise ConfigError(f"time_forward: need runs ≥ 1, warmup ≥ 0, size ≥ 1 (got {runs}, {warmup}, {size})")
    rt = resolve_runtime(device, precision if fast_path else "off", channels_last if fast_path else False)
    dev = rt.device
    if isinstance(model, fast.FastFCN):
        model = model.model
    model = model.to(dev).eval()
    c = in_channels if in_channels is not None else _model_in_channels(model)
    if fast_path:
        model = fast.FastFCN(fast.inference_setup(model, rt, fixed_size=True), amp=rt.dtype)
    x = torch.zeros(1, c, size, size, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for k in range(warmup + runs):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if k >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    return {"median_ms": statistics.median(times), "runs": runs, "warmup": warmup, "size": size,
            "times_ms": [round(t, 3) for t in times], "device": device_name(dev), "fast_path": fast_path,
            "dtype": rt.dtype_name, "channels_last": rt.channels_last}
