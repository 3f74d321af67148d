"""GPU cases (precision, loader, finite step guard), for the first run on a CUDA machine (bench/gpu_check.py imports
`CASES` and runs each `fn(device) -> dict` under try/except). Each case returns numbers plus an "ok" verdict; none
was run yet (no GPU was lent while they were written) — they also run on CPU, where they check the same logic.

python -c "import torch, bench.gpu_cases as g; print([f(torch.device('cuda')) for f in g.CASES])"
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dtype_per_generation(device: torch.device) -> dict[str, Any]:
    """The autocast dtype chosen for this device, the capability it came from, and a conv timing in each
    reduced dtype (a bf16 conv far slower than fp16 below sm_80 is what the rule avoids)."""
    from fcnlib.runtime import compute, precision

    out: dict[str, Any] = {"chosen": precision.dtype_name(compute.autocast_dtype(device))}
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        out.update(capability=list(cap), name=torch.cuda.get_device_name(device),
                   is_bf16_supported=bool(torch.cuda.is_bf16_supported()),
                   expected=precision.dtype_name(precision.cuda_autocast_dtype(cap)))
    c, n, hw = (256, 4, 128) if device.type == "cuda" else (32, 1, 32)  # CPU: a smoke run only
    conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device)
    x = torch.randn(n, c, hw, hw, device=device)
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        try:
            with torch.no_grad(), torch.autocast(device.type, dtype=dt, enabled=dt != torch.float32):
                for _ in range(2):
                    conv(x)
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(5):
                    conv(x)
                _sync(device)
            out[f"conv_ms_{precision.dtype_name(dt)}"] = round((time.perf_counter() - t0) / 5 * 1000, 3)
        except RuntimeError as e:  # e.g. CPU fp16 conv unsupported on some builds
            out[f"conv_ms_{precision.dtype_name(dt)}"] = f"error: {e}"[:120]
    out["ok"] = out.get("expected", out["chosen"]) == out["chosen"]
    return out


def fp16_summed_loss_scaler(device: torch.device, size: int = 500, steps: int = 6) -> dict[str, Any]:
    """FCN-32s VGG16 (full width on CUDA, 1/16 elsewhere) at size², summed loss, fp16 autocast with the
    fitted GradScaler: skipped steps after the first must be 0; the default 2^16 for comparison."""
    from fcnlib.models import build_fcn
    from fcnlib.runtime import precision

    width = 1.0 if device.type == "cuda" else 0.0625
    if device.type != "cuda":
        size = min(size, 64)
    res: dict[str, Any] = {"width": width, "size": size}
    for label, init in (("fitted", precision.scaler_init_scale("sum", size * size, 255.0)), ("default", 2.0**16)):
        torch.manual_seed(0)
        net = build_fcn("fcn32s", "vgg16", num_classes=21, width=width).to(device)
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-10, momentum=0.99)
        scaler = torch.amp.GradScaler(device.type, init_scale=init)
        g = torch.Generator(device=device).manual_seed(1)
        skipped = []
        for _ in range(steps):
            x = (torch.rand(1, 3, size, size, device=device, generator=g) * 255.0) - 117.0
            y = torch.randint(0, 21, (1, size, size), device=device, generator=g)
            with torch.autocast(device.type, dtype=torch.float16):
                out = net(x)
            loss = F.cross_entropy(out.float(), y, reduction="sum")
            opt.zero_grad()
            scaler.scale(loss).backward()
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped.append(bool(scaler.get_scale() < before))
        res[label] = {"init_scale": init, "skipped": skipped}
    res["ok"] = not any(res["fitted"]["skipped"][1:])
    return res


def fp16_lrn_vs_fp32(device: torch.device) -> dict[str, Any]:
    """CaffeLRN under fp16 autocast vs fp32 on Caffe-scale activations (0–600); PyTorch's own LRN in fp16
    for contrast (it collapses to 0 where squares pass 65504)."""
    from fcnlib.models.alexnet import CaffeLRN

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(2, 96, 55, 55, device=device, generator=g) * 600.0
    assert bool((x > 256).any())
    lrn = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
    ref = lrn(x)
    with torch.autocast(device.type, dtype=torch.float16):
        got = lrn(x.half()).float()
        plain = F.local_response_norm(x.half(), 5, alpha=1e-4, beta=0.75, k=1.0).float()
    rel = float(((got - ref).abs() / ref.abs().clamp_min(1e-6)).max())
    rel_plain = float(((plain - ref).abs() / ref.abs().clamp_min(1e-6)).max())
    return {"max_rel_err_caffe_lrn_fp16": rel, "max_rel_err_torch_lrn_fp16": rel_plain, "ok": rel < 1e-2}


def deterministic_repeat(device: torch.device, steps: int = 3) -> dict[str, Any]:
    """Three SGD steps of FCN-AlexNet (LRN) and FCN-8s VGG16 twice under the deterministic switches:
    bitwise-equal weights, and no 'does not have a deterministic implementation' error."""
    from fcnlib.models import build_fcn
    from fcnlib.runtime import determinism
    from fcnlib.train import segmentation_loss

    prev = torch.are_deterministic_algorithms_enabled()
    determinism.apply_switches(determinism.resolve_switches(device.type, True, False))
    res: dict[str, Any] = {}
    try:
        for variant, backbone in (("fcn32s", "alexnet"), ("fcn8s", "vgg16")):
            finals = []
            for _ in range(2):
                torch.manual_seed(0)
                net = build_fcn(variant, backbone, num_classes=21, width=0.25).to(device)
                for m in net.modules():
                    if isinstance(m, torch.nn.Conv2d):
                        torch.nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
                opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
                g = torch.Generator(device=device).manual_seed(1)
                for _ in range(steps):
                    x = torch.randn(2, 3, 160, 192, device=device, generator=g)
                    y = torch.randint(0, 21, (2, 160, 192), device=device, generator=g)
                    # the trainer's loss (per-pixel reduction="none", then summed): NLLLoss with a
                    # reduction has no deterministic CUDA kernel and would raise here
                    loss = segmentation_loss(net(x), y, "mean")
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                finals.append({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
            res[f"{backbone}_{variant}_bitwise"] = all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    finally:
        torch.use_deterministic_algorithms(prev)
        torch.backends.cudnn.deterministic = False
    res["ok"] = all(v for k, v in res.items() if k.endswith("bitwise"))
    return res


def loader_throughput(device: torch.device) -> dict[str, Any]:
    """Batches/s of the training loader at batch 20, 500² (bench/loader.py), with this box's CPUs."""
    sys.path.insert(0, str(ROOT / "bench"))
    import loader

    r = loader.measure(batch=20, size=500, batches=6, workers=None, device=device)
    r["ok"] = True
    return r


CASES = [dtype_per_generation, fp16_summed_loss_scaler, fp16_lrn_vs_fp32, deterministic_repeat, loader_throughput]
