"""Finite numbers in training: settings checked up front, loss and gradients before every optimizer step,
weights before every checkpoint and weights.pt — without a host sync per step on CUDA.

Why: a NaN setting (e.g. `weight_decay`) trains a net of NaNs; a NaN loss seen only after `opt.step()` would
leave the last checkpoint holding NaN (and a rerun would resume from it); `float(loss)` each step stalls the GPU
queue.

How (`StepGuard.step(loss, it)` replaces `opt.step()`):
* The loss stays on the device; its window sum is fetched at the log interval (`poll`), one sync there.
* Eager mode (CPU, where a sync costs nothing): loss and gradient norms are checked before the step and
  a non-finite one raises at once, naming the iteration; the optimizer never sees it.
* Lazy mode (CUDA): one fused check gives a device flag; the optimizer is a fused SGD/Adam, whose kernel
  reads `found_inf` and skips the whole update (parameters, momentum, Adam's step count) on the device —
  the same protocol GradScaler uses. The first bad iteration is kept on the device and raised at the next
  poll (log interval, checkpoint, end), before anything is written. Fused SGD leaves a fresh momentum
  buffer uninitialised when its first step is skipped (measured on torch 2.13), so momentum buffers are
  created as zeros up front — numerically the same as PyTorch's first step (0.9·0 + g = g).
  Without a fused optimizer the lazy mode falls back to one sync per step (documented, CUDA only).
* Under a GradScaler (fp16) inf/NaN gradients are the scaler's normal signal (skip + halve the scale);
  only a non-finite loss (computed in fp32) is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fcnlib.errors import ConfigError

#: None: lazy (device-side) checks on CUDA only; True/False forces it (tests run the lazy path on CPU).
LAZY: bool | None = None


def check_finite_settings(values: Mapping[str, Any], where: str) -> None:
    """Every number in `values` (nested mappings walked, bools skipped) must be finite; the key is named."""
    def walk(v: Any, key: str) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, f"{key}.{k}" if key else str(k))
        elif isinstance(v, int | float) and not isinstance(v, bool) and not math.isfinite(float(v)):
            raise ConfigError(f"{where}: {key}={v!r} is not a finite number; set a finite value")

    walk(values, "")


def lazy_for(device: torch.device) -> bool:
    return device.type == "cuda" if LAZY is None else bool(LAZY)


def optimizer_kwargs(device: torch.device) -> dict[str, Any]:
    """Optimizer constructor options: fused kernels where the lazy check is on (they honour found_inf)."""
    return {"fused": True} if lazy_for(device) else {}


def zero_momentum(opt: torch.optim.Optimizer) -> None:
    """Create SGD momentum buffers as zeros (see module doc: a skipped first fused step leaves garbage)."""
    if not isinstance(opt, torch.optim.SGD):
        return
    for g in opt.param_groups:
        if g.get("momentum", 0):
            for p in g["params"]:
                st = opt.state[p]
                if st.get("momentum_buffer") is None:
                    st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def nonfinite_tensors(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A 0-dim bool device tensor: does any tensor hold inf/NaN? One fused kernel per device, no sync."""
    ts = [t.detach() for t in tensors if t is not None and t.is_floating_point()]
    if not ts:
        return torch.zeros((), dtype=torch.bool)
    found = torch.zeros(1, dtype=torch.float32, device=ts[0].device)
    by_key: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in ts:
        by_key.setdefault((t.device, t.dtype), []).append(t)
    for group in by_key.values():
        norms = torch._foreach_norm(group)  # NaN/inf propagate into the norm
        bad = ~torch.isfinite(torch.stack(norms).sum())
        found = found + bad.to(found.device, torch.float32)
    return found[0] > 0


class StepGuard:
    """Checks and performs the optimizer step; owns the on-device loss window (see module doc)."""

    def __init__(self, opt: torch.optim.Optimizer, scaler: Any, device: torch.device, experiment: str,
                 settings: str = "", window: tuple[float, int] = (0.0, 0)) -> None:
        self.opt, self.scaler, self.device, self.exp, self.settings = opt, scaler, device, experiment, settings
        self.lazy = lazy_for(device)
        # every group (a resumed CPU checkpoint restores its groups' fused=False)
        self.fused = all(g.get("fused") for g in opt.param_groups)
        if self.fused:
            zero_momentum(opt)
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self.bad = torch.zeros(2, dtype=torch.int64, device=device)  # [first bad iteration, 1 loss / 2 grads]
        self.loss_sum = torch.tensor(float(window[0]), dtype=torch.float64, device=device)
        self.count = int(window[1])
        self.last = torch.tensor(math.nan, dtype=torch.float64, device=device)

    # -- the step ----------------------------------------------------------------------------------
    def step(self, loss: torch.Tensor, it: int) -> None:
        """After backward: check, then step (or refuse), and add the loss to the window."""
        ld = loss.detach().to(torch.float64)
        loss_bad = ~torch.isfinite(ld)
        if self.scaler is not None:
            flag = loss_bad  # inf gradients: the scaler skips that step and lowers its scale
        else:
            flag = loss_bad | nonfinite_tensors([p.grad for p in self.params if p.grad is not None])
        if not self.lazy or not self.fused:
            # CPU: the sync is free. CUDA without a fused optimizer: one sync per step, the only way to
            # keep a non-finite update out of the weights.
            if bool(flag):
                raise self._error(it, 1 if bool(loss_bad) else 2)
            self._opt_step(None)
        else:
            kind = torch.where(loss_bad, 1, 2)
            cand = torch.stack([torch.full_like(kind, it), kind])
            self.bad = torch.where(flag & (self.bad[0] == 0), cand, self.bad)
            self._opt_step(flag)
        self.loss_sum += ld
        self.count += 1
        self.last = ld

    def _opt_step(self, flag: torch.Tensor | None) -> None:
        if self.scaler is not None:
            # a non-finite loss makes non-finite gradients: the scaler's own found_inf skips that update
            # (on the device when the optimizer is fused)
            self.scaler.step(self.opt)
            self.scaler.update()
            return
        if flag is None:
            self.opt.step()
            return
        self.opt.found_inf = flag.to(torch.float32).reshape(())  # 0-dim, as GradScaler passes it (fused
        # Adam subtracts it from its 0-dim step counts)
        self.opt.grad_scale = None
        try:
            self.opt.step()
        finally:
            del self.opt.found_inf, self.opt.grad_scale

    # -- host side ---------------------------------------------------------------------------------
    def poll(self) -> tuple[float, int]:
        """One sync: raise for a non-finite step since the start; return the loss window (sum, count)."""
        vals = torch.cat([self.bad.to(torch.float64), self.loss_sum.view(1)]).tolist()
        if vals[0]:
            raise self._error(int(vals[0]), int(vals[1]))
        return float(vals[2]), self.count

    def reset_window(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0

    def last_loss(self) -> float:
        return float(self.last)

    def _error(self, it: int, kind: int) -> ConfigError:
        what = "the loss" if kind == 1 else "a gradient"
        return ConfigError(
            f"train config of {self.exp}: {what} became non-finite at iteration {it} (before its optimizer "
            f"step: no weights or checkpoint with it were written; {self.settings}); the usual cause is an lr "
            f"too high for the loss normalisation — an unnormalised 'sum' loss needs lr ~1e-10 (released "
            f"recipe), a 'mean' loss ~1e-4 (paper): lower recipe.lr")


def state_nonfinite(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating tensors in a (model or nested optimizer) state that hold inf/NaN."""
    flat: list[tuple[str, torch.Tensor]] = []

    def walk(v: Any, key: str) -> None:
        if isinstance(v, torch.Tensor):
            if v.is_floating_point():
                flat.append((key, v))
        elif isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, f"{key}.{k}" if key else str(k))
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                walk(x, f"{key}.{i}")

    walk(state, "")
    if not flat:
        return []
    return [k for k, t in flat if not bool(torch.isfinite(t).all())]  # checkpoints only: syncs are fine


def check_model_finite(model: nn.Module, what: str, it: int, exp: str) -> None:
    """Refuse to write `what` (a checkpoint or weights.pt) from a model holding inf/NaN."""
    bad = state_nonfinite(model.state_dict())
    if bad:
        raise ConfigError(f"train config of {exp}: weights {bad[:3]} are non-finite at iteration {it}; "
                          f"{what} not written — lower recipe.lr or check the recipe's numbers")


__all__ = ["StepGuard", "check_finite_settings", "check_model_finite", "state_nonfinite", "optimizer_kwargs",
           "nonfinite_tensors", "zero_momentum", "LAZY"]
