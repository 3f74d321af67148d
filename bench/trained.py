"""Trained nets through the bf16 fast path against fp32: argmax agreement and mean IU on real val images.

    python bench/trained.py results/pascal/voc-fcn8s/weights.pt [more weights.pt ...] [--max-images 50]
    python bench/run.py --only trained        # every results/*/*/weights.pt of a finished demo run

The random nets of bench/run.py's forward row check the arithmetic; this row checks what a user sees: a net
the pipeline trained, scored on its own dataset's val split (the split its experiment validates on, from
results/<dataset>/<exp>/<split>/metrics.json when present, else "val"/"seg11valid"), once in plain fp32 and once
through fcnlib.runtime.fast.FastFCN with bf16 autocast and channels_last forced (the path a CPU with native bf16
takes; on an AVX2 CPU oneDNN emulates bf16, so the numbers are the same but the time is not). Reports
pixel argmax agreement over all val pixels, both mean IUs and both times.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from fcnlib.eval.inference import predict, score_dataset  # noqa: E402
from fcnlib.files import layout  # noqa: E402
from fcnlib.models import load_model  # noqa: E402
from fcnlib.models.meta import primary_head  # noqa: E402
from fcnlib.runtime import compute, fast  # noqa: E402

_SPLITS = ("seg11valid", "val", "test")


def _dataset_json(weights: Path, meta: dict[str, Any]) -> Path:
    """data/<dataset>/dataset.json of the run the weights belong to (results/<dataset>/<exp>/weights.pt)."""
    run = weights.resolve().parents[3]
    return run / layout.dataset_json(str(meta.get("dataset")))


def _split(weights: Path, ds_json: Path) -> str:
    scored = sorted(weights.parent.glob("*/metrics.json"))
    if scored:  # results/<dataset>/<exp>/<split>/metrics.json: the split the workflow evaluated
        return scored[0].parent.name
    splits = json.loads(ds_json.read_text())["splits"]
    found = [s for s in _SPLITS if s in splits]
    if not found:
        raise ValueError(f"{ds_json}: no evaluated split for {weights} and none of {_SPLITS}; pass a finished run")
    return found[0]


def bench_one(weights: Path, max_images: int | None = None) -> dict[str, Any]:
    """fp32 plain vs bf16 fast path on one trained net: agreement, mean IU of each, seconds of each."""
    from fcnlib.data import SegDataset

    model, meta = load_model(weights, "cpu")
    ds_json = _dataset_json(weights, meta)
    split = _split(weights, ds_json)
    pre = meta.preprocessing(weights)
    ds = SegDataset(ds_json, split, modalities=meta.modalities, preprocessing=pre,
                    max_images=max_images)
    heads = list(ds.num_classes)
    head = primary_head(heads)
    fast_net = fast.FastFCN(copy.deepcopy(model).to(memory_format=torch.channels_last), amp=torch.bfloat16,
                            winograd=False)
    preds: dict[str, list[torch.Tensor]] = {"fp32": [], "bf16": []}
    runs = {"fp32": lambda x: predict(model, x, heads, amp=None),
            "bf16": lambda x: predict(fast_net, x, heads, channels_last=True)}
    out: dict[str, Any] = {"weights": str(weights), "experiment": meta.get("experiment"), "split": split,
                           "images": len(ds), "head": head}
    for name, fwd in runs.items():
        def keep(_i: int, p: dict[str, torch.Tensor], name: str = name) -> None:
            preds[name].append(p[head])

        t0 = time.perf_counter()
        cms, _n = score_dataset(ds, fwd, on_prediction=keep)
        out[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        out[f"{name}_mean_iu"] = round(float(cms[head].scores()["mean_iu"]), 4)
    same = sum(int((a == b).sum()) for a, b in zip(preds["fp32"], preds["bf16"], strict=True))
    total = sum(a.numel() for a in preds["fp32"])
    out["argmax_agreement"] = same / max(total, 1)
    out["pixels"] = total
    return out


def run(weights: list[Path] | None = None, max_images: int | None = None) -> dict[str, Any]:
    """bench_one over `weights` (default: every results/*/*/weights.pt of the run in the current directory,
    else of the repository root; the released stand-ins are converted, not trained, and left out)."""
    results = next((d for d in (Path.cwd() / "results", ROOT / "results") if d.is_dir()), ROOT / "results")
    if not weights:
        weights = sorted(p for p in results.glob("*/*/weights.pt") if p.parent.parent.name != "released")
    if not weights:
        raise FileNotFoundError(f"{results}: no trained weights; run `make demo` first")
    threads = torch.get_num_threads()
    nets = [bench_one(w, max_images) for w in weights]
    return {"nets": nets, "min_agreement": min(n["argmax_agreement"] for n in nets), "threads": threads,
            "cpu_native_bf16": compute.cpu_has_native_bf16()}


def table_rows(r: dict[str, Any], row: Any) -> list[str]:
    """Rows for bench/run.py's table: one per net."""
    lines = []
    for n in (r.get("trained") or {}).get("nets", []):
        lines.append(row(f"trained {n['experiment']} ({n['images']} img)", f"{n['fp32_s']:.2f}", f"{n['bf16_s']:.2f}",
                         f"{n['fp32_s'] / n['bf16_s']:.2f}×",
                         f"argmax agree {100 * n['argmax_agreement']:.2f}%; mean IU fp32 {n['fp32_mean_iu']:.4f} "
                         f"bf16 {n['bf16_mean_iu']:.4f}"))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="*", type=Path)
    ap.add_argument("--max-images", type=int, default=None)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.weights, a.max_images), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
