"""Forward and forward+backward time of FCN-8s, with achieved GFLOP/s, for fp32 vs bf16 autocast and
channels_last off/on — all four settings in one run, with ratios against fp32/contiguous.

    python bench/models.py --width 1.0 --size 500            # the paper's net at Table 1's input size
    python bench/models.py --width 0.25 --size 256 --reps 3   # a quick look on a shared CPU

FLOPs are counted from the modules (2 × multiply-adds of every conv and deconvolution for this input size,
via shape hooks), not typed in. Backward is counted as 2× forward, the usual convention.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fcnlib.models import build_fcn
from fcnlib.models.stats import conv_flops


def _time(fn, reps: int, device: torch.device) -> float:
    fn()  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]  # median


def _forward(model: torch.nn.Module, x: torch.Tensor, bf16: bool) -> None:
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        model.eval()(x)


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, bf16: bool) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    out.float().sum().backward()


def bench(width: float, size: int, reps: int, device: torch.device,
          variant: str = "fcn8s") -> tuple[list[dict], int]:
    with torch.device("meta"):  # counting FLOPs needs shapes only
        flops = conv_flops(build_fcn(variant, width=width).eval(), (1, 3, size, size))
    model = build_fcn(variant, width=width).to(device)
    x0 = torch.randn(1, 3, size, size, device=device)
    rows = []
    for cl in (False, True):
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = x0.contiguous(memory_format=fmt)
        for dtype in (torch.float32, torch.bfloat16):
            bf16 = dtype is torch.bfloat16
            fwd = lambda m=model, x=x, bf16=bf16: _forward(m, x, bf16)  # noqa: E731
            fwd_bwd = lambda m=model, x=x, bf16=bf16: _forward_backward(m, x, bf16)  # noqa: E731
            tf, tb = _time(fwd, reps, device), _time(fwd_bwd, reps, device)
            rows.append({"dtype": str(dtype).removeprefix("torch."), "channels_last": cl,
                         "forward_ms": 1e3 * tf, "fwd_bwd_ms": 1e3 * tb,
                         "forward_gflops": flops / tf / 1e9, "fwd_bwd_gflops": 3 * flops / tb / 1e9})
    base = rows[0]
    for r in rows:
        r["forward_speedup"] = base["forward_ms"] / r["forward_ms"]
        r["fwd_bwd_speedup"] = base["fwd_bwd_ms"] / r["fwd_bwd_ms"]
    return rows, flops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variant", default="fcn8s")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows, flops = bench(a.width, a.size, a.reps, device, a.variant)
    print(f"{a.variant} width {a.width} input {a.size}×{a.size} on {device} "
          f"({torch.get_num_threads()} threads): {flops / 1e9:.1f} GFLOP per forward")
    print(f"{'dtype':>8} {'ch_last':>7} {'fwd ms':>9} {'GFLOP/s':>8} {'×':>5} {'fwd+bwd ms':>11} "
          f"{'GFLOP/s':>8} {'×':>5}")
    for r in rows:
        print(f"{r['dtype']:>8} {str(r['channels_last']):>7} {r['forward_ms']:9.1f} {r['forward_gflops']:8.1f} "
              f"{r['forward_speedup']:5.2f} {r['fwd_bwd_ms']:11.1f} {r['fwd_bwd_gflops']:8.1f} "
              f"{r['fwd_bwd_speedup']:5.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"width": a.width, "size": a.size, "device": str(device), "flops": flops, "rows": rows},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
