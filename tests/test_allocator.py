"""fcnlib.runtime.allocator: glibc really applies the settings, in both forms. Each check runs in a fresh child
process (the settings are process-wide and one-way): it mallocs a 64 MB block, reads glibc's own
accounting (mallinfo2: bytes in mmapped blocks, free bytes kept in the heap), frees it, and reads again."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from fcnlib.runtime import allocator

_CHILD = r"""
import ctypes, json, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
tuned = None
if sys.argv[1] == "mallopt":
    from fcnlib.runtime.allocator import tune_malloc
    tuned = tune_malloc()
before = libc.mallinfo2()  # blocks mapped earlier (e.g. while importing) stay mapped
p = libc.malloc(64 << 20)
held = libc.mallinfo2()
libc.free(p)
freed = libc.mallinfo2()
print(json.dumps({"tuned": tuned, "mmapped_held": held.hblkhd - before.hblkhd, "free_kept": freed.fordblks}))
"""

BLOCK = 64 << 20


def _child(mode: str, env: dict[str, str]) -> dict:
    if not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("glibc < 2.33: no mallinfo2")
    r = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, capture_output=True, text=True,
                       timeout=120, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def plain_env() -> dict[str, str]:
    try:
        ctypes.CDLL("libc.so.6")
    except OSError:
        pytest.skip("not glibc")
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and not k.startswith("GLIBC_")}


def test_default_glibc_maps_and_unmaps_the_block(plain_env) -> None:
    """The measurement tells the two apart: glibc's default mmaps a 64 MB block and returns it on free."""
    r = _child("plain", plain_env)
    assert r["mmapped_held"] >= BLOCK and r["free_kept"] < BLOCK


@pytest.mark.parametrize("form", ["env", "mallopt"])
def test_settings_keep_the_block_on_the_heap(plain_env, form: str) -> None:
    env = allocator.malloc_env(plain_env) if form == "env" else plain_env
    r = _child(form, env)
    assert r["mmapped_held"] == 0  # M_MMAP_MAX 0: the block came from the heap
    assert r["free_kept"] >= BLOCK  # M_TRIM_THRESHOLD: freed memory stays for the next step
    if form == "mallopt":
        assert r["tuned"] is True  # glibc accepted every mallopt


def test_both_forms_come_from_one_table() -> None:
    assert allocator.MALLOC_ENV == {env: str(value) for _, env, value, _ in allocator.SETTINGS}
    base = {"KEEP": "1", "MALLOC_MMAP_MAX_": "7"}
    assert allocator.malloc_env(base) == {"KEEP": "1", **allocator.MALLOC_ENV} and base["MALLOC_MMAP_MAX_"] == "7"
