"""FCN-AlexNet backbone exactly as the authors' voc-fcn-alexnet net: CaffeNet layer order (pool before
LRN), conv1 11×11 stride 4 pad 100, grouped conv2/4/5, fc6 as a 6×6 conv, fc7 1×1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.models.vgg import Backbone, conv_relu, fc67, scaled
from fcnlib.runtime.precision import fp32_region


class CaffeLRN(nn.LocalResponseNorm):
    """Cross-channel LRN, x / (k + alpha/n · Σ_window x²)^beta — PyTorch's formula — computed in fp32 with
    autocast off (in fp16 any activation above 256 squares past 65504: the window turns inf and the output
    0) and as a sum of n shifted channel slices instead of avg_pool3d, whose CUDA backward has no
    deterministic kernel (torch.use_deterministic_algorithms raises). Same state dict (none), same class
    for the geometry walker (a LocalResponseNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with fp32_region(x) as xf:
            n = self.size
            sq = F.pad((xf * xf).unsqueeze(1), (0, 0, 0, 0, n // 2, (n - 1) // 2)).squeeze(1)
            c = xf.shape[1]
            acc = sq[:, 0:c]
            for i in range(1, n):
                acc = acc + sq[:, i:i + c]
            out = xf / (acc * (self.alpha / n) + self.k).pow(self.beta)
        # under autocast the next conv casts anyway; outside it keep the input's dtype
        return out if torch.is_autocast_enabled(x.device.type) else out.to(dtype)


def local_response_norm() -> nn.LocalResponseNorm:
    # Caffe LRN (ACROSS_CHANNELS, local_size 5, alpha 1e-4, beta 0.75, k 1): same formula as PyTorch's.
    return CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)


class AlexNet(Backbone):
    """Channel counts at width<1 are rounded to even numbers because conv2/4/5 use two groups."""

    skip_taps = ()  # the paper (Table 1) only has FCN-32s for AlexNet

    def __init__(self, width: float = 1.0, in_channels: int = 3, conv1_pad: int = 100) -> None:
        super().__init__()
        w = lambda c: scaled(c, width, multiple=2)  # noqa: E731
        c = conv_relu(self, "conv1", "relu1", in_channels, w(96), 11, stride=4, pad=conv1_pad)
        self.add("pool1", nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.add("norm1", local_response_norm())
        c = conv_relu(self, "conv2", "relu2", c, w(256), 5, pad=2, groups=2)
        self.add("pool2", nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.add("norm2", local_response_norm())
        c = conv_relu(self, "conv3", "relu3", c, w(384), 3, pad=1)
        c = conv_relu(self, "conv4", "relu4", c, w(384), 3, pad=1, groups=2)
        c = conv_relu(self, "conv5", "relu5", c, w(256), 3, pad=1, groups=2)
        self.add("pool5", nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.out_channels = fc67(self, c, width, 6)
