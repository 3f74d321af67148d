"""Every net of the paper, plain fp32 against fcnlib's fast path, each row also as a fraction of this
machine's measured convolution peak.

    python bench/variants.py [--width 1.0] [--size 500] [--reps 3] [--json out.json]   (or via bench/run.py)

* `conv_peak`: the 3×3, 256→256-channel, channels_last convolution (VGG16's conv3) timed in fp32 and in
  bf16 (fp16 too on CUDA): the practical roofline of the dtype on this device.
* `bench_forward`: FCN-32s/16s/8s (VGG16), FCN-AlexNet, FCN-GoogLeNet at 1×3×500×500. Baseline = the same
  fcnlib net run plainly (fp32, NCHW, eager, `torch.no_grad`, every upsampler a full C×C transposed
  convolution: `Upsampler.per_class = False`); ours = `fast.FastFCN(fast.inference_setup(net))`, the path
  evaluation and `fcn segment` use. Same weights (all layers random, so argmax agreement means something).
* `bench_train`: FCN-8s and FCN-32s training step (forward, cross-entropy, backward, SGD), baseline plain
  fp32 vs ours through `FastFCN` (the device's autocast and channels_last).

GFLOP are counted by hooks on the convolutions that actually run (a per-class upsampler counts C× fewer
than a full one); a training step counts 3× the forward (input and weight gradients). "of peak" divides the
achieved GFLOP/s by the conv peak of the dtype the path computes in.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from fcnlib.runtime import allocator, compute, fast  # noqa: E402

FORWARD_NETS = (("FCN-32s", "fcn32s", "vgg16"), ("FCN-16s", "fcn16s", "vgg16"), ("FCN-8s", "fcn8s", "vgg16"),
                ("FCN-AlexNet", "fcn32s", "alexnet"), ("FCN-GoogLeNet", "fcn32s", "googlenet"))
TRAIN_NETS = (("FCN-8s", "fcn8s", "vgg16"), ("FCN-32s", "fcn32s", "vgg16"))


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _median_times(fns: dict[str, Callable[[], Any]], reps: int, sync: Callable[[], None]) -> dict[str, float]:
    """Interleaved: each rep runs every fn once, so a slow spell of a shared machine hits all alike; the
    order rotates by one per rep, because whichever net runs first after the others was measured slowest
    (allocator and cache state), whatever net it was."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for i in range(reps):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            f = fns[k]
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def conv_peak(device: torch.device, reps: int = 15, size: int = 64, batch: int = 4) -> dict[str, Any]:
    """GFLOP/s of a 3×3 256→256 conv (pad 1, channels_last) per dtype: the device's practical limit."""
    conv = nn.Conv2d(256, 256, 3, padding=1).to(device).to(memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 256, size, size, device=device).contiguous(memory_format=torch.channels_last)
    flop = 2 * 256 * 256 * 9 * size * size * batch
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    out: dict[str, Any] = {"shape": f"{batch}×256×{size}×{size}, 3×3, 256 out, channels_last", "gflop": flop / 1e9}
    sync = _sync(device)
    for name, dt in dtypes.items():
        def f(dt: torch.dtype | None = dt) -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dt or torch.float32,
                                                        enabled=dt is not None):
                conv(x)
        f()
        times = []
        for _ in range(reps):  # a peak: the best rep (a shared machine only ever slows it down)
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times.append(time.perf_counter() - t0)
        out[f"{name}_gflops"] = flop / min(times) / 1e9
    return out


def count_gflop(model: nn.Module, x: torch.Tensor) -> float:
    """GFLOP (2 per multiply-add) of the convolutions one forward of `model` actually runs."""
    from fcnlib.models.fcn import Upsampler

    total = [0]

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):
            per_class = isinstance(m, Upsampler) and m.per_class and not m.weight.requires_grad \
                and m._diagonal() is not None
            total[0] += 2 * inp[0].numel() * k * (1 if per_class else m.out_channels // m.groups)
        else:
            total[0] += 2 * out.numel() * k * (m.in_channels // m.groups)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return total[0] / 1e9


def random_net(variant: str, backbone: str, width: float = 1.0, seed: int = 0) -> nn.Module:
    """fcnlib net with every conv random (He-normal, small biases, random score layers)."""
    from fcnlib.models import build_fcn

    torch.manual_seed(seed)
    m = build_fcn(variant, backbone, 21, width)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if type(mod) is nn.Conv2d:
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                if name.startswith("score"):
                    mod.weight.mul_(0.5)
                if mod.bias is not None:
                    nn.init.normal_(mod.bias, 0.0, 0.05)
    return m


def plain(model: nn.Module) -> nn.Module:
    """The baseline: every upsampler a full C×C transposed convolution (today's computation before)."""
    from fcnlib.models.fcn import Upsampler

    for m in model.modules():
        if isinstance(m, Upsampler):
            m.per_class = False
    return model


def _compute_dtype(device: torch.device) -> str:
    dt = compute.autocast_dtype(device)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dt]


def _forward_pair(variant: str, backbone: str, width: float, x: torch.Tensor, device: torch.device) -> tuple:
    """(baseline net, fast-path net, its input, baseline forward, fast forward) on the same weights."""
    base = plain(random_net(variant, backbone, width)).to(device).eval()
    ours_net = fast.FastFCN(fast.inference_setup(copy.deepcopy(base), compute.resolve_runtime(device)))
    for m in ours_net.modules():
        if hasattr(m, "per_class"):
            m.per_class = True
    xin = x.contiguous(memory_format=torch.channels_last) if compute.use_channels_last(device) else x

    def b() -> torch.Tensor:
        with torch.no_grad():
            return base(x)

    def o() -> torch.Tensor:
        with torch.inference_mode():
            return ours_net(xin)

    return base, ours_net, xin, b, o


def bench_forward(device: torch.device, size: int = 500, reps: int = 3, width: float = 1.0,
                  peak: dict[str, Any] | None = None, nets: tuple = FORWARD_NETS) -> dict[str, Any]:
    """All nets' baselines and fast paths timed interleaved (each rep runs every one once), so that the
    nets can be compared with each other on a shared machine, not only each with its baseline."""
    x = torch.randn(1, 3, size, size, device=device) * 50  # Caffe-scale (mean-subtracted 0–255) input
    pairs = {label: _forward_pair(variant, backbone, width, x, device) for label, variant, backbone in nets}
    fns: dict[str, Callable[[], Any]] = {}
    for label, (_, _, _, b, o) in pairs.items():
        fns[f"{label}/baseline"], fns[f"{label}/ours"] = b, o
    for f in fns.values():
        f()
    t = _median_times(fns, reps, _sync(device))
    dt = _compute_dtype(device)
    rows = {}
    for (label, variant, backbone) in nets:
        base, ours_net, xin, b, o = pairs[label]
        ref, out = b().float(), o().float()
        tb, to = t[f"{label}/baseline"], t[f"{label}/ours"]
        g_base, g_ours = count_gflop(base, x), count_gflop(ours_net.model, xin)
        row = {"variant": variant, "backbone": backbone, "baseline_s": tb, "ours_s": to, "ratio": tb / to,
               "ours_dtype": dt, "winograd": fast.winograd_available(device),
               "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean()),
               "max_rel_logit_diff": float((out - ref).abs().max() / ref.abs().max()),
               "gflop_baseline": g_base, "gflop_ours": g_ours}
        if peak:
            row["baseline_of_fp32_peak"] = g_base / tb / peak["fp32_gflops"]
            row["ours_of_peak"] = g_ours / to / peak[f"{dt}_gflops"]
        rows[label] = row
    return {"size": size, "width": width, "reps": reps, "device": str(device), "interleaved": True,
            "rows": rows}


def bench_train(device: torch.device, size: int = 500, reps: int = 3, width: float = 1.0,
                peak: dict[str, Any] | None = None, nets: tuple = TRAIN_NETS) -> dict[str, Any]:
    sync = _sync(device)
    x = torch.randn(1, 3, size, size, device=device) * 50
    lab = torch.randint(0, 21, (1, size, size), device=device)
    lab[:, : size // 10] = 255
    cl = compute.use_channels_last(device)
    rows = {}
    for label, variant, backbone in nets:
        base = plain(random_net(variant, backbone, width)).to(device)
        mine = random_net(variant, backbone, width).to(device)
        if cl:
            mine = mine.to(memory_format=torch.channels_last)
        ours = fast.FastFCN(mine)
        xin = x.contiguous(memory_format=torch.channels_last) if cl else x
        steps = {}
        for name, net, inp in (("baseline", base, x), ("ours", ours, xin)):
            opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-10, momentum=0.9)

            def step(net: nn.Module = net, opt: torch.optim.Optimizer = opt, inp: torch.Tensor = inp) -> None:
                net.train()
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(net(inp), lab, ignore_index=255)
                loss.backward()
                opt.step()

            step()
            steps[name] = step
        t = _median_times(steps, reps, sync)
        dt = _compute_dtype(device)
        g_base, g_ours = 3 * count_gflop(base.eval(), x), 3 * count_gflop(mine.eval(), xin)
        row = {"variant": variant, "backbone": backbone, "baseline_s": t["baseline"], "ours_s": t["ours"],
               "ratio": t["baseline"] / t["ours"], "ours_dtype": dt, "gflop_baseline": g_base,
               "gflop_ours": g_ours}
        if peak:
            row["baseline_of_fp32_peak"] = g_base / t["baseline"] / peak["fp32_gflops"]
            row["ours_of_peak"] = g_ours / t["ours"] / peak[f"{dt}_gflops"]
        rows[label] = row
    return {"size": size, "width": width, "reps": reps, "device": str(device), "rows": rows}


def merge_peaks(*peaks: dict[str, Any] | None) -> dict[str, Any] | None:
    """The best of several peak measurements (before and after the rows): load only lowers a peak."""
    ps = [p for p in peaks if p]
    if not ps:
        return None
    out = dict(ps[0])
    for p in ps[1:]:
        for k, v in p.items():
            if k.endswith("_gflops"):
                out[k] = max(out.get(k, 0.0), v)
    out["measurements"] = len(ps)
    return out


def attach_peak(section: dict[str, Any] | None, peak: dict[str, Any] | None) -> None:
    """Each row's achieved GFLOP/s as a fraction of the peak of the dtype it computes in."""
    if not section or not peak:
        return
    for row in section.get("rows", {}).values():
        row["baseline_of_fp32_peak"] = row["gflop_baseline"] / row["baseline_s"] / peak["fp32_gflops"]
        row["ours_of_peak"] = row["gflop_ours"] / row["ours_s"] / peak[f"{row['ours_dtype']}_gflops"]


def table_rows(r: dict[str, Any], row: Callable[..., str]) -> list[str]:
    """Lines for bench/run.py's table (its `_row` formatter)."""
    lines = []
    pk = r.get("peak")
    if pk:
        lines.append(row("conv peak 3×3 256ch NHWC (GFLOP/s)", f"fp32 {pk['fp32_gflops']:.0f}",
                         f"bf16 {pk['bf16_gflops']:.0f}", "", pk["shape"]))
    for sec, what in (("variants", "forward"), ("variants_train", "train step")):
        for label, v in r.get(sec, {}).get("rows", {}).items():
            note = f"{v['ours_dtype']}; {v['gflop_ours']:.0f} GFLOP"
            if "ours_of_peak" in v:
                note += (f", {100 * v['ours_of_peak']:.0f}% of {v['ours_dtype']} peak (baseline "
                         f"{100 * v['baseline_of_fp32_peak']:.0f}% of fp32)")
                if v.get("winograd"):
                    note += " [Winograd: direct-conv GFLOP, fewer multiplies run]"
            if "argmax_agreement" in v:
                note += f"; argmax {100 * v['argmax_agreement']:.2f}%"
            lines.append(row(f"  {what} {label}", f"{v['baseline_s']:.2f} s", f"{v['ours_s']:.2f} s",
                             f"{v['ratio']:.2f}×", note))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    allocator.tune_malloc()
    first = conv_peak(dev)
    r: dict[str, Any] = {"variants": bench_forward(dev, a.size, a.reps, a.width),
                         "variants_train": bench_train(dev, a.size, a.reps, a.width)}
    r["peak"] = merge_peaks(first, conv_peak(dev))
    attach_peak(r["variants"], r["peak"])
    attach_peak(r["variants_train"], r["peak"])
    print("\n".join(table_rows(r, lambda *c: "  ".join(str(s) for s in c))))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
