"""Training throughput of FCN-8s (VGG16, width 1.0) at 500×500: fp32 vs the fastest CPU/GPU setting.

Each setting runs in its own subprocess, so the allocator environment (fcnlib.runtime.allocator.MALLOC_ENV, the
settings training uses: keep glibc from returning and re-faulting the large activation buffers every
step) takes effect from interpreter start. Prints iterations/s per setting and the speed-up ratio.

    python bench/train.py [--iters 3] [--size 500] [--width 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fcnlib.runtime.allocator import MALLOC_ENV

_CHILD = r"""
import json, sys, time, torch
import torch.nn.functional as F
from fcnlib.models import build_fcn
from fcnlib.runtime.compute import resolve_device
from fcnlib.train import _param_groups
a = json.loads(sys.argv[1])
dev = resolve_device(a["device"])
if dev.type == "cuda":
    torch.backends.cudnn.benchmark = True
amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a["amp"]]
model = build_fcn("fcn8s", "vgg16", 21, a["width"]).to(dev).train()
x = torch.randn(1, 3, a["size"], a["size"], device=dev)
y = torch.randint(0, 21, (1, a["size"], a["size"]), device=dev)
if a["channels_last"]:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
opt = torch.optim.SGD(_param_groups(model, {"lr": 1e-14, "weight_decay": 5e-4, "bias_lr_mult": 2.0,
                                            "bias_decay": False}), lr=1e-14, momentum=0.99)
def step():
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        out = model(x)
    loss = F.cross_entropy(out.float(), y, ignore_index=255, reduction="sum")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
step()  # warm-up (allocations, cudnn autotune)
t = time.perf_counter()
for _ in range(a["iters"]):
    step()
dt = time.perf_counter() - t
print("RESULT", json.dumps({"it_per_s": a["iters"] / dt, "device": str(dev), "threads": torch.get_num_threads()}))
"""

SETTINGS = {
    "fp32": {"amp": "off", "channels_last": False, "env": {}},
    "fp32+channels_last+malloc": {"amp": "off", "channels_last": True,
                                  "env": MALLOC_ENV},
    "bf16+channels_last+malloc": {"amp": "bf16", "channels_last": True,
                                  "env": MALLOC_ENV},
}


def _one(name: str, iters: int, size: int, width: float, device: str, timeout: float) -> dict[str, Any]:
    s = SETTINGS[name]
    args = {"amp": s["amp"], "channels_last": s["channels_last"], "iters": iters, "size": size,
            "width": width, "device": device}
    env = {**os.environ, **s["env"]}
    try:  # bf16 autocast is emulated (very slow) on CPUs without AVX512-BF16/AMX: bound each setting
        r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                           env=env, cwd=Path(__file__).resolve().parent.parent, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"setting": name, "error": [f"slower than {timeout:.0f} s for {iters + 1} steps"]}
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not line:
        return {"setting": name, "error": (r.stderr or r.stdout).strip().splitlines()[-1:]}
    return {"setting": name, **json.loads(line[0][7:])}


def run(json_out: str | os.PathLike | None = None, iters: int = 3, size: int = 500, width: float = 1.0,
        device: str = "auto", timeout: float = 600.0) -> dict[str, Any]:
    """Measure every setting; returns {"results": [...], "speedup": fastest / fp32} (and writes JSON)."""
    results = [_one(n, iters, size, width, device, timeout) for n in SETTINGS]
    base = results[0].get("it_per_s")
    best = max((r for r in results if "it_per_s" in r), key=lambda r: r["it_per_s"], default=None)
    out = {"model": "fcn8s-vgg16", "size": size, "width": width, "iters": iters, "results": results,
           "fastest": best["setting"] if best else None,
           "speedup": (best["it_per_s"] / base) if (best and base) else None}
    if json_out is not None:
        from fcnlib.files.io import atomic_write_json

        atomic_write_json(json_out, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per setting")
    a = ap.parse_args(argv)
    out = run(a.json, a.iters, a.size, a.width, a.device, a.timeout)
    for r in out["results"]:
        print(f"{r['setting']:>28}: " + (f"{r['it_per_s']:.3f} it/s on {r['device']} ({r['threads']} threads)"
                                         if "it_per_s" in r else f"failed: {r['error']}"))
    if out["speedup"] is not None:
        print(f"fastest = {out['fastest']}: {out['speedup']:.2f}× fp32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
