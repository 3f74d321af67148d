"""VGG16 as the authors' Caffe FCN uses it, plus the small base class every backbone shares.

A backbone is an ordered list of named layers (Caffe names, so converted weights load by name) with
"taps" — layers whose output a skip connection reads (pool3, pool4). `FCN` re-registers these layers at
its top level, which is what makes the state-dict keys `conv1_1.weight` … `fc7.bias`.
"""

from __future__ import annotations

import torch
from torch import nn

# The geometry walker in stats.py understands these; keep layers within this vocabulary.
_PLAIN = (nn.ReLU, nn.Dropout, nn.LocalResponseNorm, nn.Identity)


def scaled(c: int, width: float, multiple: int = 1) -> int:
    """Channel count at a width multiplier: round(c·width), at least `multiple`, a multiple of `multiple`
    (grouped Caffe convs need even counts)."""
    n = round(c * width / multiple) * multiple
    return max(multiple, int(n))


class Backbone(nn.Module):
    """Ordered named layers; `forward` returns the last output and the requested taps."""

    #: skip taps in the order FCN-16s then FCN-8s use them; empty → only fcn32s is supported
    skip_taps: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.tap_channels: dict[str, int] = {}
        self.out_channels = 0

    def add(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)

    def forward(self, x: torch.Tensor, taps: tuple[str, ...] = ()) -> tuple[torch.Tensor, dict]:
        return run_trunk(self.named_children(), x, taps)


def run_trunk(layers, x: torch.Tensor, taps: tuple[str, ...]) -> tuple[torch.Tensor, dict]:
    feats: dict[str, torch.Tensor] = {}
    for name, m in layers:
        x = m(x)
        if name in taps:
            feats[name] = x
    return x, feats


def conv_relu(bb: Backbone, name: str, relu: str, cin: int, cout: int, k: int, stride: int = 1,
              pad: int = 0, groups: int = 1) -> int:
    bb.add(name, nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups))
    bb.add(relu, nn.ReLU(inplace=True))
    return cout


def fc67(bb: Backbone, cin: int, width: float, k: int) -> int:
    """fc6 as a k×k conv and fc7 as 1×1, each with ReLU and dropout 0.5 (VGG16's and AlexNet's classifier as
    convolutions); returns fc7's channels."""
    f = scaled(4096, width)
    conv_relu(bb, "fc6", "relu6", cin, f, k)
    bb.add("drop6", nn.Dropout(0.5))
    conv_relu(bb, "fc7", "relu7", f, f, 1)
    bb.add("drop7", nn.Dropout(0.5))
    return f


class VGG16(Backbone):
    """Caffe VGG16 for FCN: conv1_1 pad 100 (so any input survives 32× downsampling), ceil-mode pools,
    fc6 as a 7×7 conv and fc7 as 1×1, ReLU + dropout 0.5 after both."""

    skip_taps = ("pool4", "pool3")
    BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

    def __init__(self, width: float = 1.0, in_channels: int = 3, conv1_pad: int = 100) -> None:
        super().__init__()
        c = in_channels
        for b, chans in enumerate(self.BLOCKS, start=1):
            for i, co in enumerate(chans, start=1):
                pad = conv1_pad if (b, i) == (1, 1) else 1
                c = conv_relu(self, f"conv{b}_{i}", f"relu{b}_{i}", c, scaled(co, width), 3, pad=pad)
            self.add(f"pool{b}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
            self.tap_channels[f"pool{b}"] = c
        self.out_channels = fc67(self, c, width, 7)
