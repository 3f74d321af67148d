"""Fast paths for FCN inference and training, each with a stated tolerance against the plain fp32 net.

What is here (all of it FastFCN's / inference_setup's runtime policy, on by default where it pays), and why:

* The dtype (bf16 only where the device runs it natively: emulated CPU bf16 is ~10× *slower* than fp32)
  and memory format are the job's fcnlib.runtime.compute.Runtime. Reduced precision changes logits by ~1e-2
  relative; argmax agreement with fp32 is measured (≥98.5% of pixels, tests/test_fast.py).
* The exact padding skip is bench/padskip.py (measured there; not faster than this path where measured).
* `winograd_forward`: on CPU fp32 inference (FastFCN's default there), 3×3 convolutions go through
  NNPACK's Winograd kernels (≈2× per conv on AVX2, 1.5× for the whole net; fp32 arithmetic, different
  rounding: ≈1e-5 relative per layer, 4e-6 of the largest logit on VGG16-FCN at 500×500, argmax 99.999%
  equal; tests allow 1e-4).
* `inference_setup` (eval, no grads, the Runtime's device and memory format, cudnn.benchmark for fixed
  sizes only). The glibc allocator settings that go with it are fcnlib.runtime.allocator's. (torch.compile is
  measured by bench/run.py only: 1.26× fp32 on that CPU after a 46 s compile, not worth it for the pipeline's
  runs.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.runtime import compute
from fcnlib.runtime.compute import Runtime, autocast_dtype
from fcnlib.runtime.determinism import deterministic_requested

# ---------------------------------------------------------------------------------------------------
# settings (the dtype / memory-format / device rules are fcnlib.runtime.compute's)


def winograd_available(device: torch.device | str) -> bool:
    """NNPACK Winograd 3×3 convolutions: CPU only, fp32, and worth it only without native bf16."""
    dev = torch.device(device)
    return dev.type == "cpu" and not compute.cpu_has_native_bf16() and bool(torch._nnpack_available())


def inference_setup(model: nn.Module, runtime: Runtime, fixed_size: bool = False) -> nn.Module:
    """eval, no parameter grads, on the runtime's device and memory format; cudnn.benchmark only for
    `fixed_size` inputs (timing): evaluation at native sizes would re-tune ~50 conv plans for each of
    hundreds of H×W."""
    dev = runtime.device
    model = model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = bool(fixed_size) and not deterministic_requested()
    return model


# ---------------------------------------------------------------------------------------------------
# Winograd forward (CPU fp32 inference)

# NNPACK pays from 64 channels in and out (VGG16 at width 1: every 3×3 conv); on narrow nets (width 0.25:
# 16–128 channels) it was 0.76× of oneDNN for the whole net, so those convs stay on oneDNN.
WINOGRAD_MIN_CHANNELS = 64


def _nnpack_ok(x: torch.Tensor, w: torch.Tensor, winograd: bool) -> bool:
    return (winograd and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and w.shape[-1] == 3 and w.shape[-2] == 3 and min(w.shape[0], w.shape[1]) >= WINOGRAD_MIN_CHANNELS
            and not torch.is_autocast_enabled("cpu"))


def conv_padded(conv: nn.Conv2d, x: torch.Tensor, pad: tuple[int, int, int, int], winograd: bool) -> torch.Tensor:
    """conv (padding given explicitly as left, right, top, bottom) on a slice; NNPACK Winograd for 3×3."""
    if conv.groups == 1 and _nnpack_ok(x, conv.weight, winograd) and pad[0] == pad[1] == pad[2] == pad[3] \
            and conv.stride in (1, (1, 1)) and min(x.shape[-2:]) + 2 * pad[0] >= 10:  # tiny maps: NNPACK fails
        return torch._nnpack_spatial_convolution(x.contiguous(), conv.weight, conv.bias, [pad[2], pad[0]])
    if any(pad):
        x = F.pad(x, pad)
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def kernel_stride_pad(m: nn.Module) -> tuple[int, int, int]:
    def one(v: Any) -> int:
        return int(v[0]) if isinstance(v, tuple) else int(v)

    s = m.stride if m.stride is not None else m.kernel_size
    return one(m.kernel_size), one(s), one(m.padding)


def padded_first(model: nn.Module) -> bool:
    """An fcnlib FCN whose first conv pads by ≥ its kernel (FCN's pad 100): padskip_forward can run it."""
    names = getattr(model, "trunk_names", None)
    if not names or not hasattr(model, "heads"):
        return False
    first = getattr(model, names[0])
    return isinstance(first, nn.Conv2d) and kernel_stride_pad(first)[2] >= kernel_stride_pad(first)[0]


def dense_layer(m: nn.Module, x: torch.Tensor, winograd: bool) -> torch.Tensor:
    """One trunk layer over its whole input: 3×3 stride-1 convs through conv_padded (NNPACK where it pays), the
    rest as the module itself."""
    if isinstance(m, nn.Conv2d) and kernel_stride_pad(m)[0] == 3 and m.groups == 1 and m.stride in (1, (1, 1)):
        p = kernel_stride_pad(m)[2]
        return conv_padded(m, x, (p, p, p, p), winograd)
    return m(x)


def winograd_trunk(model: nn.Module, x: torch.Tensor, taps: tuple[str, ...] = ()
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The trunk of an fcnlib FCN whose first conv pads by ≥ its kernel (padded_first), dense, with NNPACK
    Winograd for its wide 3×3 convs. Returns (last activation, {tap: activation}) like
    fcnlib.models.vgg.run_trunk. The first conv runs on the input padded once up front (pad 100), fused with
    its ReLU; every later layer is the plain module except 3×3 stride-1 convs (conv_padded)."""
    layers = [(n, getattr(model, n)) for n in model.trunk_names]
    feats: dict[str, torch.Tensor] = {}
    first = layers[0][1]
    p0 = kernel_stride_pad(first)[2]
    x = conv_padded(first, F.pad(x, (p0, p0, p0, p0)), (0, 0, 0, 0), True)
    i = 0
    if len(layers) > 1 and isinstance(layers[1][1], nn.ReLU):
        x = torch.relu(x)
        i = 1
        if layers[1][0] in taps:
            feats[layers[1][0]] = x
    if layers[0][0] in taps:
        feats[layers[0][0]] = x
    for name, m in layers[i + 1:]:
        x = dense_layer(m, x, True)
        if name in taps:
            feats[name] = x
    return x, feats


def winograd_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
    """FCN forward (any variant, single or multi-head) whose trunk runs through winograd_trunk."""
    feat, taps = winograd_trunk(model, x, tuple(model.taps))
    return model.run_heads(feat, taps, x)


class FastFCN(nn.Module):
    """Wraps a built FCN: forward under the device's autocast, with Winograd where it was measured to pay
    (bench/run.py). Parameters, state dict and train/eval mode are the wrapped model's; outputs are fp32.

    amp: a dtype, None (fp32), or "auto" (fcnlib.runtime.compute.autocast_dtype of the input's device); jobs
    pass their Runtime's dtype.
    winograd: None = auto (winograd_available); inference only: in training the backward dominates,
    and a Winograd forward did not change the step time (VGG16-FCN, 2-core AVX2 CPU), so it stays on oneDNN.
    The exact padding skip is bench/padskip.py's PadSkipFCN, a subclass (not faster where measured).
    """

    def __init__(self, model: nn.Module, amp: torch.dtype | None | str = "auto",
                 winograd: bool | None = None) -> None:
        super().__init__()
        self.model = model
        self.amp = amp
        self.winograd = winograd
        self.dense_ok = padded_first(model)

    def _forward(self, x: torch.Tensor, wino: bool, training: bool) -> torch.Tensor | dict[str, torch.Tensor]:
        """The net under autocast: Winograd trunk where chosen, else the plain module."""
        return winograd_forward(self.model, x) if wino else self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        dt = autocast_dtype(x.device) if self.amp == "auto" else self.amp
        wino = (winograd_available(x.device) if self.winograd is None else self.winograd) and self.dense_ok
        training = self.model.training and torch.is_grad_enabled()
        wino = wino and not training
        with torch.autocast(x.device.type, dtype=dt or torch.float32, enabled=dt is not None):
            out = self._forward(x, wino, training)
        if isinstance(out, dict):
            return {k: v.float() for k, v in out.items()}
        return out.float()
