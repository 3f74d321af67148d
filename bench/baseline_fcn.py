"""The comparison point: a straightforward FCN-8s (VGG16, pad 100) in plain fp32 NCHW eager PyTorch.

Written independently of fcnlib.models (one nn.Sequential per pooling stage, crops typed as the authors'
constants 5/9/31), so the bench compares our fast paths against what a plain implementation does, not
against our own code with flags off. `from_fcn(model)` copies the weights of a built fcnlib FCN-8s by
name, so both nets compute the same function and their outputs can be compared pixel by pixel.
"""

from __future__ import annotations

import torch
from torch import nn

_CFG = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _stage(cin: int, chans: tuple[int, ...], first_pad: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for i, co in enumerate(chans):
        layers += [nn.Conv2d(cin, co, 3, padding=first_pad if i == 0 else 1), nn.ReLU(inplace=True)]
        cin = co
    layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    return nn.Sequential(*layers), cin


class BaselineFCN8s(nn.Module):
    """VGG16 FCN-8s exactly as in the paper's Caffe net; `names` maps our layers to the Caffe names."""

    def __init__(self, num_classes: int = 21, width: float = 1.0) -> None:
        super().__init__()
        cfg = tuple(tuple(max(1, round(c * width)) for c in blk) for blk in _CFG)
        self.names: dict[str, str] = {}  # caffe name → attribute path here
        stages, cin = [], 3
        for b, chans in enumerate(cfg, start=1):
            st, cin = _stage(cin, chans, 100 if b == 1 else 1)
            stages.append(st)
            for i in range(len(chans)):
                self.names[f"conv{b}_{i + 1}"] = f"stage{b}.{2 * i}"
        self.stage1, self.stage2, self.stage3, self.stage4, self.stage5 = stages
        f = max(1, round(4096 * width))
        self.fc6, self.fc7 = nn.Conv2d(cin, f, 7), nn.Conv2d(f, f, 1)
        self.drop = nn.Dropout(0.5)
        n = num_classes
        self.score_fr = nn.Conv2d(f, n, 1)
        self.score_pool4 = nn.Conv2d(cfg[3][-1], n, 1)
        self.score_pool3 = nn.Conv2d(cfg[2][-1], n, 1)
        self.upscore2 = nn.ConvTranspose2d(n, n, 4, 2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n, n, 4, 2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n, n, 16, 8, bias=False)
        for nm in ("fc6", "fc7", "score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4",
                   "upscore8"):
            self.names[nm] = nm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p3 = self.stage3(self.stage2(self.stage1(x)))
        p4 = self.stage4(p3)
        p5 = self.stage5(p4)
        f = self.drop(torch.relu(self.fc6(p5)))
        f = self.drop(torch.relu(self.fc7(f)))
        up2 = self.upscore2(self.score_fr(f))
        s4 = self.score_pool4(p4)[:, :, 5:5 + up2.shape[2], 5:5 + up2.shape[3]]
        up4 = self.upscore_pool4(up2 + s4)
        s3 = self.score_pool3(p3)[:, :, 9:9 + up4.shape[2], 9:9 + up4.shape[3]]
        up8 = self.upscore8(up4 + s3)
        return up8[:, :, 31:31 + h, 31:31 + w]


def from_fcn(model: nn.Module) -> BaselineFCN8s:
    """A baseline net holding a copy of the weights of a single-head fcnlib FCN-8s (VGG16)."""
    arch = getattr(model, "arch", {})
    if arch.get("variant") not in ("fcn8s", "fcn8s-atonce") or arch.get("backbone") != "vgg16" \
            or arch.get("heads"):
        raise ValueError(f"baseline is single-head VGG16 FCN-8s; got arch {arch}")
    base = BaselineFCN8s(arch["num_classes"], arch["width"])
    sd = model.state_dict()
    with torch.no_grad():
        for caffe, path in base.names.items():
            mod = base.get_submodule(path)
            mod.weight.copy_(sd[f"{caffe}.weight"])
            if mod.bias is not None:
                mod.bias.copy_(sd[f"{caffe}.bias"])
    if arch["variant"] == "fcn8s-atonce":
        raise ValueError("fcn8s-atonce scales its skips; compare the plain fcn8s")
    return base
