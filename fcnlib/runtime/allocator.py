"""glibc malloc settings for our numeric processes (training, evaluation, HHA encoding, the bench), set once.

These processes allocate many large, short-lived arrays (activations; HHA's frame-sized temporaries). By
default glibc serves each block above its mmap threshold with a fresh mmap and unmaps it on free, so every
step faults its pages in again: ~9M page faults per 500×500 training step, and about 2× the arithmetic per
HHA frame. The settings below keep freed memory for reuse instead. They are process-wide and one-way, so
they are applied explicitly (at process start or through the environment of a child), never at import.

`SETTINGS` is the one definition; the environment-variable form (`MALLOC_ENV`, for a child started
later) and the mallopt form (`tune_malloc`, for the running process) are both derived from it.
"""

from __future__ import annotations

import ctypes
import os

#: (mallopt parameter number from glibc's malloc.h, its environment variable, value, why).
SETTINGS: tuple[tuple[int, str, int, str], ...] = (
    (-4, "MALLOC_MMAP_MAX_", 0, "M_MMAP_MAX: never mmap a block, so a big buffer is never unmapped on free"),
    (-1, "MALLOC_TRIM_THRESHOLD_", 2**31 - 1, "M_TRIM_THRESHOLD: keep freed heap (mallopt takes an int: "
                                              "the largest one)"),
    (-2, "MALLOC_TOP_PAD_", 256 << 20, "M_TOP_PAD: grow the heap 256 MB at a time"),
)

#: The environment form of SETTINGS; glibc reads it when a process starts.
MALLOC_ENV: dict[str, str] = {env: str(value) for _, env, value, _ in SETTINGS}


def malloc_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with MALLOC_ENV added, for a child process."""
    env = dict(os.environ if base is None else base)
    env.update(MALLOC_ENV)
    return env


def tune_malloc() -> bool:
    """Apply SETTINGS to this process (glibc mallopt; affects later allocations). Call it first thing in a
    training/evaluation/encoding process or worker, not at import. False where it does not apply (not
    glibc, or glibc refused a setting)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = True
        for param, _, value, _ in SETTINGS:
            ok &= libc.mallopt(param, value) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False
