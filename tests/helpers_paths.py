"""Where the tests find the real data (not a test module): ../shared/data beside the repo, never copied in."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def need_shared(rel: str | Path) -> Path:
    """`SHARED_DATA / rel`, or skip the test naming the missing path."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"real data {p} not present (needs ../shared/data beside the repo)")
    return p
