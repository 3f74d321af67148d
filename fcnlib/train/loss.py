"""The loss: per-pixel cross-entropy with 255 void, median-frequency class weights, and one accumulated
optimizer update over a rank's micro-batches."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.errors import ConfigError
from fcnlib.files.io import IGNORE_INDEX
from fcnlib.train.loader import labels_to_device, normalize_batch
from fcnlib.train.sampling import _sampled_labels


def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, reduction: str = "sum",
                      weight: torch.Tensor | None = None, keep_prob: float = 1.0,
                      generator: torch.Generator | None = None,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-pixel softmax cross-entropy over N×C×H×W logits, `ignore_index` pixels left out.

    reduction "sum" = Caffe's unnormalised SoftmaxWithLoss (released recipe); "mean" = divided by the
    number (weighted: the summed class weights) of kept pixels. keep_prob < 1 keeps each valid pixel
    with that probability (loss sampling, drawn from `generator`).
    """
    per = F.cross_entropy(logits.float(), label, weight=weight, ignore_index=ignore_index, reduction="none")
    keep = label != ignore_index
    if keep_prob < 1.0:
        draw = torch.rand(label.shape, generator=generator, device=label.device)
        keep = keep & (draw < keep_prob)
    total = (per * keep).sum()
    if reduction == "sum":
        return total
    if weight is not None:
        denom = weight[label.clamp(0, weight.numel() - 1)].mul(keep).sum()
    else:
        denom = keep.sum().to(per.dtype)
    return total / denom.clamp_min(1e-12 if weight is not None else 1.0)


def median_frequency_weights(dataset: Any) -> dict[str, torch.Tensor]:
    """Median-frequency class weights per head (Eigen & Fergus): freq_c = pixels of c / pixels of the
    images where c occurs; w_c = median(freq) / freq_c; classes never seen get weight 1."""
    counts = {h: np.zeros(n, np.int64) for h, n in dataset.num_classes.items()}
    present = {h: np.zeros(n, np.int64) for h, n in dataset.num_classes.items()}
    for i in range(len(dataset)):
        for h, lab in dataset.load_labels(i).items():
            n = dataset.num_classes[h]
            valid = lab[lab < n]
            c = np.bincount(valid.ravel(), minlength=n)[:n]
            counts[h] += c
            present[h] += (c > 0) * lab.size
    out = {}
    for h in counts:
        seen = counts[h] > 0
        freq = np.where(seen, counts[h] / np.maximum(present[h], 1), 0.0)
        w = np.ones_like(freq)
        if seen.any():
            w[seen] = np.median(freq[seen]) / freq[seen]
        out[h] = torch.tensor(w, dtype=torch.float32)
    return out


# --------------------------------------------------------------------------------------------------


def _valid_weight(lab: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The 'mean' loss's denominator for one label batch: kept pixels, or their summed class weights
    (as segmentation_loss computes it)."""
    keep = lab != IGNORE_INDEX
    if weight is not None:
        return weight[lab.clamp(0, weight.numel() - 1)].mul(keep).sum()
    return keep.sum().to(torch.float32)


def _accumulated_step(net: nn.Module, guard: Any, scaler: Any, micro: list[tuple[Any, Any]],
                      *, dist: Any, dev: torch.device, amp: torch.dtype | None, cl: bool, reduction: str,
                      weights: Mapping[str, torch.Tensor] | None, keep_prob: float, seed: int, it: int,
                      slots: Sequence[Sequence[int]], where: str, pres: Sequence[Any] | None = None) -> None:
    """One optimizer update over this rank's micro-batches (gradient accumulation, Caffe's iter_size),
    equal to ONE batch of all world × iter_size micro-batches: the 'mean' loss divides every
    micro-batch's summed loss by the valid-pixel count of the whole global batch (counted before any
    backward, all-reduced over ranks), the 'sum' loss adds plain sums; DDP sums gradients over ranks.
    `guard` (fcnlib.train.finite.StepGuard) checks the global loss and the gradients before the update and keeps
    the loss on the device. `pres`: uint8 batches (fcnlib.train.loader) are normalised here, on the device."""
    ys_all = []
    for (_, y), sl in zip(micro, slots, strict=True):
        y = _sampled_labels(labels_to_device(y, dev), keep_prob, seed, it, sl, dev)
        ys_all.append(y if isinstance(y, dict) else {"_": y})
    denom: dict[str, torch.Tensor] = {}
    if reduction == "mean":
        for h in ys_all[0]:
            w = None if weights is None else weights[h]
            d = sum(_valid_weight(ys[h], w) for ys in ys_all)
            d = dist.all_reduce(d.reshape(1)).reshape(())
            denom[h] = d.clamp_min(1e-12 if w is not None else 1.0)
    guard.opt.zero_grad(set_to_none=True)
    total = torch.zeros((), device=dev)
    for m, ((x, _), ys) in enumerate(zip(micro, ys_all, strict=True)):
        x = x.to(dev, non_blocking=True)
        if pres is not None:
            x = normalize_batch(x, pres)  # uint8 → float32 on the device, bitwise the CPU result
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        last = m == len(micro) - 1
        sync = contextlib.nullcontext() if last or not dist.active else net.no_sync()
        with sync:
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = net(x)
            outs = out if isinstance(out, dict) else {"_": out}
            if set(outs) != set(ys):
                raise ConfigError(f"{where}: label heads {sorted(ys)} do not match the net's "
                                  f"outputs {sorted(outs)}; set arch.heads to the dataset's heads")
            terms = []
            for h in outs:
                # looked up on the package, so a test's monkeypatch of fcnlib.train.segmentation_loss applies
                loss_fn = sys.modules[__package__].segmentation_loss
                t = loss_fn(outs[h], ys[h], "sum", None if weights is None else weights[h])
                terms.append(t / denom[h] if reduction == "mean" else t)
            loss = sum(terms)
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
        total = total + loss.detach()
    guard.step(dist.all_reduce(total.reshape(1)).reshape(()), it)  # finite loss and gradients, then the update
