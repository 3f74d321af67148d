"""Determinism of the data order: per-iteration draws keyed by (seed, iteration), the keyed dataset and
batch sampler, loss-sampling masks, and the global RNG states a checkpoint carries."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fcnlib.files.io import IGNORE_INDEX


def _mix(*xs: int) -> int:
    """A well-spread 63-bit seed from a few integers (splitmix64 steps), so (seed, it) pairs never alias."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


def batch_indices(seed: int, it: int, n: int, batch_size: int) -> list[int]:
    """Indices of iteration `it` (1-based): uniform with replacement, a pure function of (seed, it)."""
    g = torch.Generator().manual_seed(_mix(seed, it, 1))
    return torch.randint(n, (batch_size,), generator=g).tolist()


def _rng_state() -> dict[str, Any]:
    """All global RNG states as tensors/plain types, so the checkpoint loads with weights_only=True."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }


def _set_rng_state(s: Mapping[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)




class _Keyed(torch.utils.data.Dataset):
    """Wraps a SegDataset so an item is fetched by (iteration, slot, index): augmentation draws are
    keyed by the (iteration, slot) pair, hence identical whichever process or run fetches them."""

    def __init__(self, base: Any, batch_size: int) -> None:
        self.base = base
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        it, slot, idx = key
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(it * self.batch_size + slot)
        return self.base[idx]


class _Batches(torch.utils.data.Sampler):
    """Batch sampler yielding [(it, slot, index), …] for iterations start+1 … end.

    One iteration's global batch = world × iter_size × batch_size images, drawn as ONE batch_indices
    call, so the images of an update do not depend on how they are split: micro-batch m of rank r
    holds the global slots `slots(...)[m]`. This process gets its iter_size micro-batches per iteration.
    """

    def __init__(self, seed: int, start: int, end: int, n: int, batch_size: int, iter_size: int = 1,
                 world: int = 1, rank: int = 0) -> None:
        self.seed, self.start, self.end, self.n, self.bs = seed, start, end, n, batch_size
        self.iter_size, self.world, self.rank = iter_size, world, rank

    @staticmethod
    def slots(batch_size: int, iter_size: int = 1, world: int = 1, rank: int = 0) -> list[list[int]]:
        """Global slot numbers of each micro-batch of `rank`: micro m = slots (m·world + rank)·bs + j."""
        return [[(m * world + rank) * batch_size + j for j in range(batch_size)] for m in range(iter_size)]

    def __len__(self) -> int:
        return max(0, self.end - self.start) * self.iter_size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        mine = self.slots(self.bs, self.iter_size, self.world, self.rank)
        for it in range(self.start + 1, self.end + 1):
            idx = batch_indices(self.seed, it, self.n, self.bs * self.iter_size * self.world)
            for slots in mine:
                yield [(it, k, idx[k]) for k in slots]


def _sampled_labels(y: Any, keep_prob: float, seed: int, it: int, slots: Sequence[int],
                    dev: torch.device) -> Any:
    """Loss sampling as void labels: each valid pixel of the image in global slot s is kept with
    probability p, from a draw keyed by (seed, it, s, head) — the same pixels whichever micro-batch or
    rank the image lands in (images of one size; padding changes the draw's shape)."""
    if keep_prob >= 1.0:
        return y
    ys = y if isinstance(y, dict) else {"_": y}
    out = {}
    for hi, (h, lab) in enumerate(ys.items()):
        drop = torch.empty(lab.shape, dtype=torch.bool, device=lab.device)
        for j, s in enumerate(slots):
            g = torch.Generator(device=dev).manual_seed(_mix(seed, it, 2, s, hi))
            drop[j] = torch.rand(lab.shape[1:], generator=g, device=dev) >= keep_prob
        out[h] = lab.masked_fill(drop, IGNORE_INDEX)
    return out if isinstance(y, dict) else out["_"]


def _rank_rng(ck: Mapping[str, Any], dist: Any) -> Mapping[str, Any]:
    """This rank's RNG state from a checkpoint (rank 0's for a checkpoint of another world size)."""
    per = ck.get("rng_ranks")
    if dist.active and per and len(per) == dist.world:
        return per[dist.rank]
    return ck["rng"]


def _worker_init(_: int) -> None:
    # The main process owns preemption handling; workers must not die first on SLURM's SIGTERM/SIGINT.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


