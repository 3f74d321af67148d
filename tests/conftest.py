"""Fixtures shared by the suites: one run of the reduced demo DAG per session (tests/workflow, tests/faults
reuse it as their reference), the paper's config, one torch thread.
Helpers a test module imports live in tests/helpers_*.py (never in another test module)."""

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, config: str | list[str] = "config/test.yaml", check: bool = True,
              timeout: int = 900) -> subprocess.CompletedProcess:
    # --configfile takes several values (merged in order): it goes last, or it would swallow the targets
    configs = [config] if isinstance(config, str) else config
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args,
           "--configfile", *(str(ROOT / c) for c in configs)]
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


#: env var naming the folder of the `scontrol` stub put first on PATH for the session (tests/workflow/test_slurm.py
#: takes it off again for its real SLURM)
SCONTROL_STUB_ENV = "FCN_TEST_SCONTROL_STUB"


@pytest.fixture(scope="session", autouse=True)
def no_slurm_controller_probe(tmp_path_factory) -> None:
    """Every `snakemake` start imports the installed SLURM executor plugin, which asks `scontrol show config`
    for the cluster's MinJobAge: where slurm-client is installed but no controller runs (any machine after
    test_slurm's SLURM was stopped), that waits ~9 s per start (~15 min of this suite). Outside the SLURM
    tests, an `scontrol` that answers "no cluster" at once (the plugin treats a failure as no value)."""
    stub = tmp_path_factory.mktemp("no-slurm")
    (stub / "scontrol").write_text("#!/bin/sh\n# no SLURM controller in this test session\nexit 1\n")
    (stub / "scontrol").chmod(0o755)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{stub}{os.pathsep}{old}"
    os.environ[SCONTROL_STUB_ENV] = str(stub)
    yield
    os.environ["PATH"] = old
    os.environ.pop(SCONTROL_STUB_ENV, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """tests/workflow and tests/faults are the slow tier whole (`make test-fast` = `-m "not slow"` skips them)."""
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(ROOT / "tests").parts
        if rel and rel[0] in ("workflow", "faults"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smk():
    """`smk(workdir, *args, config=..., check=True)` runs Snakemake on this repo's Snakefile (`config`: a file
    or a list of files, merged in order)."""
    return snakemake


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The reduced demo DAG (config/test.yaml) run once to completion. FCN_DEMO_RUN=<dir> reuses a finished
    run instead (local iteration on the end-to-end suites; they copy it and never modify it)."""
    if os.environ.get("FCN_DEMO_RUN"):
        return Path(os.environ["FCN_DEMO_RUN"])
    work = tmp_path_factory.mktemp("demo_run")
    snakemake(work, "results/tables.md", "all", "--cores", "2")
    return work


@pytest.fixture(scope="session")
def _paper_config() -> dict:
    from fcnlib.pipeline import config as fcncfg

    return fcncfg.load_yaml(ROOT / "config" / "config.yaml")


@pytest.fixture
def paper(_paper_config: dict) -> dict:
    """config/config.yaml (the paper's experiments), parsed once per session; each test gets its own copy."""
    return copy.deepcopy(_paper_config)


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: on 2 shared cores that is ~10× faster than oversubscribing
    them (trainer tests use it via `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def bench_module():
    """`bench_module("trained")` imports bench/trained.py as module `trained` (bench/ holds scripts, not a
    package); the module is registered in sys.modules first, so its dataclasses and pickling work."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    return load
