"""Validation during training: the four metrics of the primary head on whole images, one at a time."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fcnlib.eval.inference import predict, score_dataset
from fcnlib.models.meta import primary_head


@torch.no_grad()
def validate(model: nn.Module, dataset: Any, device: torch.device, amp: torch.dtype | None = None,
             channels_last: bool = False, stop: Any = None) -> dict[str, float] | None:
    """The four metrics on `dataset` (one image at a time, whole images) for the primary head, plus
    `<head>_pixel_acc` for other heads: evaluation's loop (inference.score_dataset) under the training
    autocast. Returns None if `stop` was raised mid-way (preemption)."""
    heads = list(dataset.num_classes)
    was_training = model.training
    model.eval()
    try:
        scored = score_dataset(dataset, lambda x: predict(model, x.to(device), heads, amp=amp,
                                                          channels_last=channels_last, training_model=True),
                               stop=stop)
    finally:
        model.train(was_training)
    if scored is None:
        return None
    cms = scored[0]
    p = primary_head(heads)
    s = cms[p].scores()
    res = {k: float(s[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")}
    for h, cm in cms.items():
        if h != p:
            res[f"{h}_pixel_acc"] = float(cm.scores()["pixel_acc"])
    return res


# --------------------------------------------------------------------------------------------------
