"""Training loader throughput: batches/s at batch 20, 500×500 (the paper recipe's padded batches), through
the trainer's own pipeline (SegDataset → collate_shared → DataLoader workers → pinned/device copy), against
the step time it has to feed.

    python bench/loader.py                      # workers = the slurm profile's cpus_per_gpu (2)
    python bench/loader.py --workers 4 --batches 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The step the loader must keep fed, one padded batch of 20 at 500²: the issue-19 estimate for an H100
# in bf16 (50–100 ms; not measured here, no GPU was lent).
H100_STEP_MS = (50.0, 100.0)


def _dataset(root: Path, n: int, size: int) -> Path:
    from PIL import Image

    from fcnlib.files.io import atomic_write_json, write_label_png

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "img" / f"{i:04d}.jpg", quality=90)  # VOC images are JPEGs
        lab = rng.integers(0, 21, (size, size), dtype=np.uint8)
        lab[:8] = 255
        write_label_png(root / "sem" / f"{i:04d}.png", lab)
        ids.append(f"{i:04d}")
    (root / "ids.txt").write_text("\n".join(ids) + "\n")
    split = {"ids": "ids.txt", "images": {"rgb": {"dir": "img", "ext": ".jpg"}},
             "labels": {"sem": {"dir": "sem", "ext": ".png"}}}
    atomic_write_json(root / "dataset.json", {"name": "bench", "source": "demo", "ignore_index": 255,
                                              "heads": {"sem": 21}, "classes": {"sem": [str(c) for c in range(21)]},
                                              "splits": {"train": split}})
    return root / "dataset.json"


def _profile_workers() -> int:
    from fcnlib.pipeline.config import load_yaml

    prof = load_yaml(ROOT / "profiles" / "slurm" / "config.yaml")
    return int(prof["set-resources"]["train"]["cpus_per_gpu"])


def measure(batch: int = 20, size: int = 500, batches: int = 6, workers: int | None = None,
            device: torch.device | str = "cpu", n_images: int = 24, raw: bool = True) -> dict[str, Any]:
    """Batches/s of the trainer's loader (first batch excluded: worker start-up); raw=False: the float32
    items of the previous pipeline, for comparison."""
    from fcnlib import train as T
    from fcnlib.data import SegDataset
    from fcnlib.models.preprocessing import CAFFE_VGG
    from fcnlib.train.loader import collate_shared, labels_to_device, normalize_batch

    dev = torch.device(device)
    workers = _profile_workers() if workers is None else workers
    with tempfile.TemporaryDirectory() as d:
        ds = SegDataset(_dataset(Path(d), n_images, size), "train", ["rgb"], {"rgb": CAFFE_VGG}, raw=raw)
        dl = torch.utils.data.DataLoader(
            T._Keyed(ds, batch), batch_sampler=T._Batches(0, 0, batches + 1, len(ds), batch),
            collate_fn=collate_shared, num_workers=workers, pin_memory=dev.type == "cuda",
            worker_init_fn=T._worker_init if workers else None)
        it = iter(dl)
        x, y = next(it)
        moved = {"image_bytes": x.element_size() * x.numel(), "label_bytes": y.element_size() * y.numel(),
                 "image_dtype": str(x.dtype).replace("torch.", ""), "label_dtype": str(y.dtype).replace("torch.", "")}
        t0 = time.perf_counter()
        for x, y in it:
            x = x.to(dev, non_blocking=True)
            x = normalize_batch(x, [CAFFE_VGG]) if raw else x
            y = labels_to_device(y, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
    bps = batches / dt
    return {"batch": batch, "size": size, "workers": workers, "batches_per_s": round(bps, 3),
            "ms_per_batch": round(1000 / bps, 1), **moved, "device": str(dev),
            "h100_step_ms_estimate": list(H100_STEP_MS),
            "feeds_h100": 1000 / bps <= H100_STEP_MS[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--float", action="store_true",
                    help="float32 items (fp32 labels and images across processes: the baseline)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(measure(workers=a.workers, batches=a.batches, device=a.device, raw=not a.float), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
