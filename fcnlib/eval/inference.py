"""Loading a weights file for inference on a job's Runtime (fcnlib.runtime.compute), the device's name,
prediction and the scoring loop (score_dataset): the one place evaluation, the trainer, figures and
`fcn segment` get them from."""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fcnlib.errors import DataError
from fcnlib.eval.metrics import ConfusionMatrix
from fcnlib.models import load_model
from fcnlib.progress import progress as progress_bar
from fcnlib.runtime import fast
from fcnlib.runtime.compute import Runtime, resolve_device

if TYPE_CHECKING:
    from fcnlib.eval.metrics import ConfusionMatrix
    from fcnlib.models.meta import ModelMeta

PathLike = str | os.PathLike

# ---------------------------------------------------------------------------------------------------
# Device names
# ---------------------------------------------------------------------------------------------------
@functools.cache
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def device_name(device: str | torch.device = "auto") -> str:
    """A human name for tables: the CUDA device name, or the CPU model with the threads torch uses."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{_cpu_name()} ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------
def load_for_inference(weights: PathLike, runtime: Runtime) -> tuple[torch.nn.Module, ModelMeta]:
    """The net for inference on the job's Runtime: eval mode, its device, memory format and compute dtype,
    wrapped in fcnlib.runtime.fast's measured fast path (Winograd 3×3 convs on CPU fp32 — argmax agreement
    with plain fp32 ≥ 99.99%)."""
    model, meta = load_model(Path(weights), runtime.device)
    return fast.FastFCN(fast.inference_setup(model, runtime), amp=runtime.dtype), meta


def _as_heads(out: Any, heads: list[str]) -> dict[str, torch.Tensor]:
    """Model output (tensor or {head: tensor}) → {head: N×C×H×W logits} keyed like the dataset."""
    if isinstance(out, dict):
        return out
    return {heads[0]: out}


def forward_logits(model: torch.nn.Module, x: torch.Tensor, heads: list[str], *,
                   amp: torch.dtype | None | str = "model", channels_last: bool = False,
                   training_model: bool = False) -> dict[str, torch.Tensor]:
    """{head: 1×C×H×W logits} for one C×H×W input (batch of 1), checked to be at the input's H×W.

    amp: "model" runs the model as it is (a FastFCN autocasts itself); a dtype or None (fp32) wraps the
    forward in that autocast, as validation during training does. training_model: the model trains on
    afterwards, so torch.no_grad, not inference_mode (an inference tensor cached in it, e.g. Upsampler's
    diagonal, could not be saved for backward later)."""
    x1 = x.unsqueeze(0)
    if channels_last:
        x1 = x1.contiguous(memory_format=torch.channels_last)
    with torch.no_grad() if training_model else torch.inference_mode():
        if amp == "model":
            out = model(x1)
        else:
            with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = model(x1)
        out = _as_heads(out, heads)
    for logits in out.values():
        if logits.shape[-2:] != x.shape[-2:]:
            raise DataError(f"model output {tuple(logits.shape[-2:])} differs from input "
                            f"{tuple(x.shape[-2:])}; the weights' architecture does not crop to the input")
    return out


def labels_of(logits: torch.Tensor) -> torch.Tensor:
    """Class ids of 1×C×H×W logits: argmax over C, as a uint8 H×W CPU tensor when the classes fit."""
    p = logits[0].argmax(0)
    return (p.to(torch.uint8) if logits.shape[1] <= 256 else p).cpu()


def predict(model: torch.nn.Module, x: torch.Tensor, heads: list[str], *, amp: torch.dtype | None | str = "model",
            channels_last: bool = False, training_model: bool = False) -> dict[str, torch.Tensor]:
    """Argmax class ids per head for one C×H×W input (batch of 1); arguments as `forward_logits`."""
    out = forward_logits(model, x, heads, amp=amp, channels_last=channels_last, training_model=training_model)
    return {h: labels_of(logits) for h, logits in out.items()}


def score_dataset(dataset: Any, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], *, stop: Any = None,
                  desc: str | None = None, on_prediction: Callable[[int, dict[str, torch.Tensor]], None] | None = None
                  ) -> tuple[dict[str, ConfusionMatrix], int] | None:
    """The scoring loop evaluation and validation share: each image of `dataset` through `forward`
    (C×H×W → {head: H×W class ids}, e.g. predict), one ConfusionMatrix per dataset head accumulated.

    Returns (matrices, images scored), or None when `stop.signum` is set before an image (preemption).
    `desc` shows a progress bar; `on_prediction(i, preds)` sees each image's predictions before they count.
    """
    heads = list(dataset.num_classes)
    cms = {h: ConfusionMatrix(n) for h, n in dataset.num_classes.items()}
    n_images = 0
    for i in progress_bar(range(len(dataset)), desc=desc, unit="img", disable=desc is None):
        if stop is not None and stop.signum:
            return None
        x, y = dataset[i]
        labels = y if isinstance(y, dict) else {heads[0]: y}
        preds = forward(x)
        if on_prediction is not None:
            on_prediction(i, preds)
        for h, cm in cms.items():
            cm.update(labels[h], preds[h])
        n_images += 1
    return cms, n_images
