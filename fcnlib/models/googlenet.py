"""GoogLeNet (Inception v1, BVLC Caffe geometry) as an FCN backbone.

Follows bvlc_googlenet layer by layer (conv1/7x7_s2 … inception_5b, LRN after pool1 and conv2, ceil-mode
pools, max-pool branch 3×3 s1 p1) with Caffe names, '/' written '_' at the top level ("conv1_7x7_s2") and
'.' inside an inception block ("inception_3a.3x3_reduce"). Deviations, all from the paper's §4.1:
  * conv1 pad is 100 (not 3) so any input size survives 32× downsampling, as in the other FCNs;
  * the auxiliary classifiers are dropped ("we use only the final loss layer");
  * the final 7×7 average pool is discarded ("improve performance by discarding the final average pooling
    layer"); `keep_avgpool=True` keeps it, which is the net whose receptive field Table 1 reports (907;
    without it the computed field is 715).
"""

from __future__ import annotations

import torch
from torch import nn

from fcnlib.models.alexnet import local_response_norm
from fcnlib.models.vgg import Backbone, scaled

# (1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj) per block, from bvlc_googlenet
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """Four parallel branches concatenated along channels; every branch keeps H×W (centred kernels)."""

    def __init__(self, cin: int, spec: tuple[int, ...], width: float) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, cp = (scaled(c, width) for c in spec)
        self.add_module("1x1", nn.Conv2d(cin, c1, 1))
        self.add_module("3x3_reduce", nn.Conv2d(cin, c3r, 1))
        self.add_module("3x3", nn.Conv2d(c3r, c3, 3, padding=1))
        self.add_module("5x5_reduce", nn.Conv2d(cin, c5r, 1))
        self.add_module("5x5", nn.Conv2d(c5r, c5, 5, padding=2))
        self.add_module("pool", nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True))
        self.add_module("pool_proj", nn.Conv2d(cin, cp, 1))
        self.out_channels = c1 + c3 + c5 + cp
        self.relu = nn.ReLU(inplace=True)

    def branches(self) -> list[list[nn.Module]]:
        """Layer chains of the branches, for the geometry walker (stats.py)."""
        g = self._modules
        return [[g["1x1"]], [g["3x3_reduce"], g["3x3"]], [g["5x5_reduce"], g["5x5"]],
                [g["pool"], g["pool_proj"]]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.relu
        return torch.cat([
            r(self._modules["1x1"](x)),
            r(self._modules["3x3"](r(self._modules["3x3_reduce"](x)))),
            r(self._modules["5x5"](r(self._modules["5x5_reduce"](x)))),
            r(self._modules["pool_proj"](self._modules["pool"](x))),
        ], 1)


class GoogLeNet(Backbone):
    skip_taps = ()  # only FCN-32s in the paper (Table 1)

    def __init__(self, width: float = 1.0, in_channels: int = 3, conv1_pad: int = 100,
                 keep_avgpool: bool = False) -> None:
        super().__init__()
        c = scaled(64, width)
        self.add("conv1_7x7_s2", nn.Conv2d(in_channels, c, 7, stride=2, padding=conv1_pad))
        self.add("conv1_relu_7x7", nn.ReLU(inplace=True))
        self.add("pool1_3x3_s2", nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.add("pool1_norm1", local_response_norm())
        c2 = scaled(192, width)
        self.add("conv2_3x3_reduce", nn.Conv2d(c, c, 1))
        self.add("conv2_relu_3x3_reduce", nn.ReLU(inplace=True))
        self.add("conv2_3x3", nn.Conv2d(c, c2, 3, padding=1))
        self.add("conv2_relu_3x3", nn.ReLU(inplace=True))
        self.add("conv2_norm2", local_response_norm())
        self.add("pool2_3x3_s2", nn.MaxPool2d(3, stride=2, ceil_mode=True))
        c = c2
        for name, spec in INCEPTION.items():
            block = Inception(c, spec, width)
            self.add(f"inception_{name}", block)
            c = block.out_channels
            if name in ("3b", "4e"):
                p = "pool3_3x3_s2" if name == "3b" else "pool4_3x3_s2"
                self.add(p, nn.MaxPool2d(3, stride=2, ceil_mode=True))
        if keep_avgpool:
            self.add("pool5_7x7_s1", nn.AvgPool2d(7, stride=1, ceil_mode=True))
        self.add("pool5_drop_7x7_s1", nn.Dropout(0.4))
        self.out_channels = c
