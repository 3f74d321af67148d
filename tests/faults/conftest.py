"""A scratch copy of the reference demo run per test; processes left running in it are reaped after."""

import shutil
from pathlib import Path

import pytest
from faultlib import copy_workdir, reap


@pytest.fixture
def work(demo_run: Path, tmp_path: Path):
    w = copy_workdir(demo_run, tmp_path / "w")
    yield w
    reap(w)
    shutil.rmtree(w, ignore_errors=True)
