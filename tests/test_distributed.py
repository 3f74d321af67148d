"""Gradient accumulation (iter_size), data-parallel training on torch.distributed (gloo, CPU) and
per-job GPU claims: an update is the same whatever way the global batch is split."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_train import make_cfg, make_dataset, read_log

from fcnlib import train as T
from fcnlib.errors import ConfigError
from fcnlib.runtime import devices as D
from fcnlib.train import distributed as dist

HERE = Path(__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def same_size(tmp_path_factory) -> Path:
    # one image size: padding inside a batch would otherwise change the activations (not the labels)
    return make_dataset(tmp_path_factory.mktemp("acc"), n=4, sizes=((48, 48),))


def _sgd(loss: str, **over) -> dict:
    return {"optimizer": "sgd", "loss": loss, "lr": 1e-2 if loss == "mean" else 2e-5, "momentum": 0.9,
            "weight_decay": 5e-4, "bias_lr_mult": 2.0, **over}


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_close(a: dict, b: dict, rtol=1e-5, atol=1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=rtol, atol=atol), (k, (a[k] - b[k]).abs().max())


def _train(cfg: dict, d: Path, name: str) -> tuple[dict, dict, list]:
    s = T.train(cfg, d / f"{name}.pt", d / f"{name}.resume.pt", d / f"{name}.jsonl", device="cpu")
    return s, _weights(d / f"{name}.pt"), read_log(d / f"{name}.jsonl")


# --------------------------------------------------------------------------------------------------
# gradient accumulation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss,extras", [("mean", {}), ("sum", {}),
                                         ("mean", {"loss_sampling": 0.6, "class_balance": True}),
                                         ("sum", {"loss_sampling": 0.6, "class_balance": True})])
def test_accumulation_equals_one_batch(same_size, tmp_path, loss, extras):
    base = dict(iterations=3, log_every=1, amp="fp32", channels_last=False, **extras)
    one, w1, l1 = _train(make_cfg(same_size, recipe=_sgd(loss, batch_size=4), **base), tmp_path, "b4")
    acc, w4, l4 = _train(make_cfg(same_size, recipe=_sgd(loss, batch_size=1, iter_size=4), **base),
                         tmp_path, "b1x4")
    mix, w22, _ = _train(make_cfg(same_size, recipe=_sgd(loss, batch_size=2, iter_size=2), **base),
                         tmp_path, "b2x2")
    _assert_close(w1, w4)
    _assert_close(w1, w22)
    losses1 = [d["loss"] for d in l1 if "loss" in d]
    assert losses1 == pytest.approx([d["loss"] for d in l4 if "loss" in d], rel=1e-5)
    fresh = T.build_model(make_cfg(same_size), "toy")[0].state_dict()
    assert any(not torch.allclose(w1[k], fresh[k]) for k in w1)  # it did train
    # and accumulation is not a no-op: a batch of 1 gives other weights
    _, w_single, _ = _train(make_cfg(same_size, recipe=_sgd(loss, batch_size=1), **base), tmp_path, "b1")
    assert any(not torch.allclose(w1[k], w_single[k], rtol=1e-4, atol=1e-6) for k in w1)


def test_iter_size_is_checked(same_size):
    with pytest.raises(ConfigError, match="iter_size"):
        T.check_config(make_cfg(same_size, recipe={"iter_size": 0}))


def test_micro_batches_split_the_global_draw():
    seed, it, n = 3, 7, 50
    b = T._Batches(seed, it - 1, it, n, 2, iter_size=3, world=2, rank=1)
    got = list(b)
    full = T.batch_indices(seed, it, n, 12)
    assert len(got) == 3 and len(b) == 3
    assert [[i for _, _, i in mb] for mb in got] == [full[2:4], full[6:8], full[10:12]]
    assert [k for mb in got for _, k, _ in mb] == [2, 3, 6, 7, 10, 11]
    # world 1, iter_size 1: exactly the single-process order
    assert [[i for _, _, i in mb] for mb in T._Batches(seed, 0, 3, n, 4)] == \
        [T.batch_indices(seed, t, n, 4) for t in (1, 2, 3)]


# --------------------------------------------------------------------------------------------------
# data parallel: 2 processes (gloo) == 1 process with the same global batch
# --------------------------------------------------------------------------------------------------
LAUNCH = """
import json, sys
from fcnlib.train.distributed import launch
n, target, kwargs = json.loads(sys.argv[1])
sys.exit(launch(n, target, kwargs))
"""


def _launch(tmp: Path, n: int, cfg: dict, name: str, kill_at: int = 0) -> subprocess.CompletedProcess:
    kwargs = {"cfg": cfg, "out_weights": str(tmp / f"{name}.pt"), "resume_path": str(tmp / f"{name}.resume.pt"),
              "log_path": str(tmp / f"{name}.jsonl"), "device": "cpu", "kill_at": kill_at}
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", LAUNCH, json.dumps([n, "dist_helpers:train_term_at", kwargs])],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
@pytest.mark.parametrize("loss", ["mean", "sum"])
def test_two_processes_equal_one(same_size, tmp_path, loss):
    base = dict(iterations=3, log_every=1, amp="fp32", channels_last=False, loss_sampling=0.7,
                class_balance=loss == "mean", val_every=3, val_max_images=2)
    two = _launch(tmp_path, 2, make_cfg(same_size, recipe=_sgd(loss, batch_size=1, iter_size=2), **base), "ddp")
    assert two.returncode == 0, two.stderr
    _, w_one, l_one = _train(make_cfg(same_size, recipe=_sgd(loss, batch_size=4), **base), tmp_path, "one")
    _assert_close(_weights(tmp_path / "ddp.pt"), w_one)
    l_two = read_log(tmp_path / "ddp.jsonl")  # written by rank 0 only: no duplicate lines
    assert [d["iter"] for d in l_two] == [d["iter"] for d in l_one] == [1, 2, 3, 3]
    assert [d["loss"] for d in l_two if "loss" in d] == pytest.approx([d["loss"] for d in l_one if "loss" in d],
                                                                      rel=1e-5)
    assert l_two[-1]["val"] == pytest.approx(l_one[-1]["val"], abs=1e-6)
    assert not (tmp_path / "ddp.resume.pt").exists()


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
def test_two_processes_sigterm_then_resume_is_bitwise_identical(same_size, tmp_path):
    cfg = make_cfg(same_size, iterations=8, log_every=1, checkpoint_every=0, amp="fp32", channels_last=False,
                   recipe=_sgd("mean", batch_size=1, dropout=None))  # dropout 0.5: per-rank RNGs restored
    straight = _launch(tmp_path, 2, cfg, "straight")
    assert straight.returncode == 0, straight.stderr
    term = _launch(tmp_path, 2, cfg, "resumed", kill_at=3)
    assert term.returncode == 128 + signal.SIGTERM, term.stderr
    assert "SIGTERM at iteration" in term.stderr
    ck = torch.load(tmp_path / "resumed.resume.pt", weights_only=True)
    assert 3 <= ck["iteration"] < 8 and len(ck["rng_ranks"]) == 2
    assert not (tmp_path / "resumed.pt").exists()
    again = _launch(tmp_path, 2, cfg, "resumed")
    assert again.returncode == 0, again.stderr
    assert f"resuming toy-fcn32s from iteration {ck['iteration']}" in again.stderr
    a, b = _weights(tmp_path / "straight.pt"), _weights(tmp_path / "resumed.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = [{k: v for k, v in d.items() if k != "time"} for d in read_log(tmp_path / "straight.jsonl")]
    assert strip == [{k: v for k, v in d.items() if k != "time"} for d in read_log(tmp_path / "resumed.jsonl")]


def test_a_crashing_rank_fails_the_launch(same_size, tmp_path):
    cfg = make_cfg(same_size, iterations=2, dataset_json=str(tmp_path / "missing.json"))
    r = _launch(tmp_path, 2, cfg, "bad")
    assert r.returncode != 0 and r.returncode != 128 + signal.SIGTERM


def test_world_from_env():
    assert dist.world_from_env({}) == dist.WorldEnv(0, 1, 0, "127.0.0.1", 0)
    w = dist.world_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
                             "MASTER_PORT": "1234"})
    assert w == dist.WorldEnv(1, 2, 1, "h", 1234)
    slurm = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "77",
             "SLURM_STEP_NODELIST": "gpu[07-08,11]", "SLURM_NTASKS": "4"}
    assert dist.world_from_env(slurm) == dist.WorldEnv(3, 4, 1, "gpu07", 20077)
    # the batch script of a 4-task job is ONE process: it must not wait for peers
    assert dist.world_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"}).world == 1
    assert dist.first_host("node1,node2") == "node1" and dist.first_host("a-b[3]") == "a-b3"


# --------------------------------------------------------------------------------------------------
# one GPU per concurrent job (fake GPU ids)
# --------------------------------------------------------------------------------------------------
# another job: claims one GPU, prints its index, holds it
_HOLD_ONE = ("import time\nfrom fcnlib.runtime.devices import claimed\nwith claimed(1) as c:\n"
             "    print(' '.join(str(i) for i in c.indices), flush=True)\n    time.sleep(120)\n")


def _holder(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _HOLD_ONE], env=env, stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_claim_different_gpus_and_sigkill_frees(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_FAKE_GPUS", "2")
    monkeypatch.setenv("FCN_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    env = dict(os.environ)
    a = _holder(env)
    try:
        ia = int(a.stdout.readline())
        b = _holder(env)
        try:
            ib = int(b.stdout.readline())
            assert {ia, ib} == {0, 1}
            with pytest.raises(ConfigError, match="no 1 free GPU"):
                D.claim(1, wait_s=0)
            a.kill()  # SIGKILL: no cleanup code runs, the kernel drops the flock
            a.wait()
            t0 = time.monotonic()
            with D.claimed(1, wait_s=20) as c:
                assert c.indices == [ia] and c.devices() == ["cpu"]  # fake ids train on CPU
            assert time.monotonic() - t0 < 20
        finally:
            b.kill()
            b.wait()
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    with D.claimed(2, wait_s=5) as c:  # both free again
        assert c.indices == [0, 1]


def test_gpu_ids_and_slurm(monkeypatch):
    assert D.gpu_ids({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert D.gpu_ids({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert D.gpu_ids({"CUDA_VISIBLE_DEVICES": "0,-1,2"}) == ["0"]
    assert D.visible_gpu_count({"FCN_FAKE_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"}) == 3
    monkeypatch.setenv("FCN_FAKE_GPUS", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    c = D.claim(2, wait_s=0)  # SLURM bound the GPUs already: no locks
    assert c.indices == [0, 1] and c._fds == []
    with pytest.raises(ConfigError, match="resources.gpu=3"):
        D.claim(3)
    monkeypatch.delenv("FCN_FAKE_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert D.claim(1).devices() == ["cpu"]  # CPU box: nothing to claim


RUN = """
import json, sys
from fcnlib.pipeline.experiment import run_training
run_training(**json.loads(sys.argv[1]))
"""


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
def test_rule_entry_point_claims_gpus_and_launches_the_ranks(same_size, tmp_path, monkeypatch):
    """fcnlib.pipeline.experiment.run_training (what workflow/scripts/train.py calls): with gpus=2 on a box of 2
    (fake) GPUs it claims both and trains 2 ranks — the same weights as one process with the same batch."""
    base = dict(iterations=2, log_every=1, amp="fp32", channels_last=False)
    kwargs = {"cfg": make_cfg(same_size, recipe=_sgd("mean", batch_size=1), **base),
              "out_weights": str(tmp_path / "r.pt"), "resume_path": str(tmp_path / "r.resume.pt"),
              "log_path": str(tmp_path / "r.jsonl"), "device": "auto", "gpus": 2}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FCN_FAKE_GPUS": "2", "FCN_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("SLURM_JOB_ID", None)
    r = subprocess.run([sys.executable, "-c", RUN, json.dumps(kwargs)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "GPU(s) ['fake0', 'fake1'] claimed" in r.stderr
    _, w_one, _ = _train(make_cfg(same_size, recipe=_sgd("mean", batch_size=2), **base), tmp_path, "one")
    _assert_close(_weights(tmp_path / "r.pt"), w_one)
    monkeypatch.setenv("FCN_FAKE_GPUS", "2")
    monkeypatch.setenv("FCN_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with D.claimed(2, wait_s=0) as c:  # both released when the job ended
        assert c.indices == [0, 1]


def test_gpu_ids_without_cuda_mean_cpu(monkeypatch):
    # SLURM's fake GRES (tests/cluster) sets CUDA_VISIBLE_DEVICES on a box without CUDA: train on CPU
    monkeypatch.delenv("FCN_FAKE_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert D.claim(1).devices() == ["cpu"]
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert D.claim(1).devices() == ["cuda:0"] and D.claim(1).devices("cpu") == ["cpu"]


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
def test_torchrun_around_the_rule_script(same_size, tmp_path):
    """`torchrun --nproc-per-node=2 workflow/scripts/train.py …` (the script standalone): each rank joins
    from torchrun's environment, rank 0 alone moves the outputs; same weights as our own launcher."""
    cfg = make_cfg(same_size, iterations=2, log_every=1, amp="fp32", channels_last=False,
                   recipe=_sgd("mean", batch_size=1))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node=2",
                        str(HERE.parent / "workflow" / "scripts" / "train.py"),
                        "--input", f"dataset_json={same_size}",
                        "--output", f"weights={out / 'weights.pt'}", f"log={out / 'log.jsonl'}",
                        "--params", f"cfg={json.dumps(cfg)}", 'device="cpu"', "gpus=2", "--threads", "1"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 ranks (gloo)" in r.stderr
    ours = _launch(tmp_path, 2, cfg, "ours")
    assert ours.returncode == 0, ours.stderr
    a, b = _weights(out / "weights.pt"), _weights(tmp_path / "ours.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [d["iter"] for d in read_log(out / "log.jsonl")] == [1, 2, 2]
