"""Validation during training: the four metrics of the primary head on whole images, one at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def _primary_head(heads: Mapping[str, int]) -> str:
    from ..inference import primary_head

    return primary_head(heads)


@torch.no_grad()
def validate(model: nn.Module, dataset: Any, device: torch.device, amp: torch.dtype | None = None,
             channels_last: bool = False, stop: Any = None) -> dict[str, float] | None:
    """The four metrics on `dataset` (one image at a time, whole images) for the primary head, plus
    `<head>_pixel_acc` for other heads. Returns None if `stop` was raised mid-way (preemption)."""
    from ..metrics import ConfusionMatrix

    heads = dataset.num_classes
    cms = {h: ConfusionMatrix(n) for h, n in heads.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(len(dataset)):
            if stop is not None and stop.signum:
                return None
            x, y = dataset[i]
            x = x.unsqueeze(0).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = model(x)
            outs = out if isinstance(out, dict) else {next(iter(heads)): out}
            ys = y if isinstance(y, dict) else {next(iter(heads)): y}
            for h, cm in cms.items():
                cm.update(ys[h], outs[h][0].argmax(0).cpu())
    finally:
        model.train(was_training)
    p = _primary_head(heads)
    s = cms[p].scores()
    res = {k: float(s[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")}
    for h, cm in cms.items():
        if h != p:
            res[f"{h}_pixel_acc"] = float(cm.scores()["pixel_acc"])
    return res


# --------------------------------------------------------------------------------------------------
