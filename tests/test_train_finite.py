"""Trainer finiteness: non-finite settings refused naming the key; a NaN at
iteration k refused before its optimizer step, naming k, with no checkpoint or weights holding NaN, and a
rerun resuming from the last clean state. Both the eager (CPU) and the device-side (CUDA) check paths
run here: the device-side one is forced on CPU with fused optimizers."""

from __future__ import annotations

import pytest
import torch
from helpers_train import make_cfg, make_dataset

from fcnlib import train as T
from fcnlib.errors import ConfigError
from fcnlib.train import finite

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("toyf"), n=2)


@pytest.mark.parametrize("key", ["weight_decay", "bias_lr_mult", "momentum", "lr", "score_lr_mult"])
def test_nonfinite_recipe_value_names_key(toy, key):
    with pytest.raises(ConfigError, match=rf"recipe\.{key}=nan"):
        T.check_config(make_cfg(toy, recipe={key: float("nan")}))


def test_nonfinite_loss_sampling_names_key(toy):
    with pytest.raises(ConfigError, match="loss_sampling=inf"):
        T.check_config(make_cfg(toy, loss_sampling=float("inf")))


def _poison_at(monkeypatch, k: int) -> None:
    """segmentation_loss returns NaN on its k-th call (= iteration k: one head, no validation loss)."""
    real = T.segmentation_loss
    calls = {"n": 0}

    def loss(*a, **kw):
        calls["n"] += 1
        out = real(*a, **kw)
        return out * float("nan") if calls["n"] == k else out

    monkeypatch.setattr(T, "segmentation_loss", loss)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager-cpu", "device-side"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nan_mid_run_names_iteration_and_never_writes_nan(toy, tmp_path, monkeypatch, lazy, optimizer):
    monkeypatch.setattr(finite, "LAZY", lazy)
    cfg = make_cfg(toy, iterations=8, checkpoint_every=2, log_every=4, amp="off", channels_last=False,
                   recipe={"optimizer": optimizer, "lr": 1e-3})
    out, resume, log = tmp_path / "w.pt", tmp_path / "resume.pt", tmp_path / "log.jsonl"
    _poison_at(monkeypatch, 5)
    with pytest.raises(ConfigError, match="iteration 5") as e:
        T.train(cfg, out, resume, log, device="cpu")
    assert "weight_decay" in str(e.value)  # the message quotes every setting, not only lr
    assert not out.exists()
    ck = T.load_checkpoint(resume)
    # eager: raised at 5, last checkpoint 4; device-side: raised at the next poll (log at 8 / checkpoint at
    # 6), before that checkpoint was written
    assert ck["iteration"] == 4
    assert not finite.state_nonfinite(ck["model"]) and not finite.state_nonfinite(ck["optimizer"])
    monkeypatch.undo()
    monkeypatch.setattr(finite, "LAZY", lazy)
    s = T.train(cfg, out, resume, log, device="cpu")
    assert s["resumed_from"] == 4 and out.exists()
    w = torch.load(out, weights_only=True)["state_dict"]
    assert not finite.state_nonfinite(w)
    # the rerun equals a straight clean run
    d = tmp_path / "straight"
    d.mkdir()
    T.train(cfg, d / "w.pt", d / "r.pt", d / "l.jsonl", device="cpu")
    w2 = torch.load(d / "w.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(w[k], w2[k]) for k in w)


def test_device_side_skip_leaves_weights_and_momentum_untouched():
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, fused=True)
    g = finite.StepGuard(opt, None, torch.device("cpu"), "x")
    g.lazy = True
    p.grad = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    g.step(torch.tensor(1.0), 1)  # no raise: recorded on the device
    assert torch.equal(p.data, torch.ones(4))
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.zeros(4))  # not garbage
    p.grad = torch.ones(4)
    g.step(torch.tensor(2.0), 2)
    ref = torch.nn.Parameter(torch.ones(4))
    ro = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=0.1)
    ref.grad = torch.ones(4)
    ro.step()
    assert torch.equal(p.data, ref.data)  # the skipped step changed nothing; the next is a first step
    with pytest.raises(ConfigError, match="a gradient became non-finite at iteration 1"):
        g.poll()


def test_poisoned_checkpoint_is_not_resumed(toy, tmp_path):
    cfg = make_cfg(toy, iterations=4, checkpoint_every=2, amp="off", channels_last=False,
                   recipe={"optimizer": "sgd", "lr": 1e-3})
    out, resume, log = tmp_path / "w.pt", tmp_path / "resume.pt", tmp_path / "log.jsonl"

    def stop(it):
        if it == 2:
            raise KeyboardInterrupt

    T._iteration_hook = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            T.train(cfg, out, resume, log, device="cpu")
    finally:
        T._iteration_hook = None
    ck = torch.load(resume, weights_only=True)
    assert ck["iteration"] == 2
    k = next(iter(ck["model"]))
    ck["model"][k] = ck["model"][k] * float("nan")
    torch.save(ck, resume)
    s = T.train(cfg, out, resume, log, device="cpu")
    assert s["resumed_from"] is None
    assert not finite.state_nonfinite(torch.load(out, weights_only=True)["state_dict"])


def test_deterministic_setting_trains_alexnet_lrn_bitwise(toy, tmp_path, monkeypatch):
    """`deterministic: true` applies every switch and the LRN net trains under
    torch.use_deterministic_algorithms(True) (avg_pool3d's backward would raise on CUDA); two runs equal."""
    from fcnlib.pipeline import config as fcncfg

    monkeypatch.delenv("FCN_DETERMINISTIC", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    base = fcncfg.load_yaml("config/test.yaml")
    base["training"]["deterministic"] = True
    assert fcncfg.train_config(base, "voc-fcn32s")["deterministic"] is True
    del base["training"]["deterministic"]
    assert "deterministic" not in fcncfg.train_config(base, "voc-fcn32s")  # hashes of existing runs kept

    cfg = make_cfg(toy, iterations=3, amp="off", channels_last=False, deterministic=True,
                   arch={"variant": "fcn32s", "backbone": "alexnet"}, recipe={"optimizer": "sgd", "lr": 1e-3})
    prev = torch.are_deterministic_algorithms_enabled()
    try:
        ws = []
        for name in ("a", "b"):
            T.train(cfg, tmp_path / f"{name}.pt", tmp_path / f"{name}.r.pt", tmp_path / f"{name}.jsonl",
                    device="cpu")
            assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
            ws.append(torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"])
    finally:
        torch.use_deterministic_algorithms(prev)
        torch.backends.cudnn.deterministic = False
    assert all(torch.equal(ws[0][k], ws[1][k]) for k in ws[0])
    with pytest.raises(ConfigError, match="deterministic="):
        T.check_config(make_cfg(toy, deterministic="yes"))


# --------------------------------------------------------------------------------------------------
# input pipeline: uint8 labels across processes, batches in shared memory, /dev/shm plan
# --------------------------------------------------------------------------------------------------
def test_collate_shared_uint8_labels_same_values(toy):
    from fcnlib.data import SegDataset, collate_pad
    from fcnlib.train.loader import collate_shared, labels_to_device

    ds = SegDataset(toy, "train")
    batch = [ds[0], ds[1]]
    x0, y0 = collate_pad(batch)
    x, y = collate_shared(batch)
    assert y.dtype == torch.uint8 and torch.equal(x, x0)
    yl = labels_to_device(y, torch.device("cpu"))
    assert yl.dtype == torch.int64 and torch.equal(yl, y0)


def test_collate_shared_in_worker_uses_shared_memory(toy):
    from fcnlib.data import SegDataset
    from fcnlib.train.loader import collate_shared

    ds = SegDataset(toy, "train")
    dl = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_shared, num_workers=1)
    x, y = next(iter(dl))
    assert y.dtype == torch.uint8 and x.is_shared() and y.is_shared()


def test_shm_plan():
    from fcnlib.train.loader import batch_nbytes, shm_plan

    b = batch_nbytes(20, 3, 500, 500)
    assert b == 20 * 500 * 500 * 13
    assert shm_plan(4, b, free=64 << 30)["message"] is None
    small = shm_plan(4, b, free=64 << 20)  # Docker's default 64 MB
    assert small["num_workers"] == 0 and "--shm-size" in small["message"]
    mid = shm_plan(4, b, free=int(b * 10))
    assert mid["num_workers"] == 4 and mid["prefetch_factor"] == 1 and mid["strategy"] == "file_system"


def test_training_result_unchanged_with_workers(toy, tmp_path):
    """Workers + uint8 labels + shared-memory batches train to the same weights as the in-process
    loader (fp32): the pipeline moves the same numbers."""
    cfg = make_cfg(toy, iterations=4, amp="off", channels_last=False, recipe={"batch_size": 2})
    ws = []
    for name, nw in (("w0", 0), ("w2", 2)):
        T.train({**cfg, "num_workers": nw}, tmp_path / f"{name}.pt", tmp_path / f"{name}.r.pt",
                tmp_path / f"{name}.jsonl", device="cpu")
        ws.append(torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(ws[0][k], ws[1][k]) for k in ws[0])


def test_training_result_unchanged_vs_old_collate(toy, tmp_path, monkeypatch):
    """The old contract (collate_pad, int64 labels moved as they are) trains to the same weights."""
    from fcnlib.data import collate_pad
    from fcnlib.train import loader

    cfg = make_cfg(toy, iterations=4, amp="off", channels_last=False, recipe={"batch_size": 2})
    T.train(cfg, tmp_path / "new.pt", tmp_path / "new.r.pt", tmp_path / "new.jsonl", device="cpu")
    monkeypatch.setattr(loader, "collate_shared", collate_pad)
    monkeypatch.setattr(loader, "labels_to_device", lambda y, d: y.to(d))
    T.train(cfg, tmp_path / "old.pt", tmp_path / "old.r.pt", tmp_path / "old.jsonl", device="cpu")
    a = torch.load(tmp_path / "new.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "old.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def toy_sizes(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("toys"), n=3, sizes=((64, 64), (48, 56), (40, 72)), hha=True)


@pytest.mark.parametrize("mods", [["rgb"], ["rgb", "hha"]])
def test_raw_uint8_items_normalised_on_device_equal_float_items(toy_sizes, mods):
    """SegDataset(raw=True) + collate + normalize_batch == the float32 path, bitwise, with mirror and
    jitter fills and batch padding (both 0) — Caffe (BGR, 0–255, mean) and torchvision (std) presets."""
    from fcnlib.data import SegDataset, collate_pad
    from fcnlib.models.preprocessing import CAFFE_VGG, HHA, TORCHVISION
    from fcnlib.train.loader import collate_shared, normalize_batch

    for pre in ({"rgb": CAFFE_VGG, "hha": HHA}, {"rgb": TORCHVISION, "hha": TORCHVISION}):
        aug = {"mirror": True, "jitter": 9, "seed": 3}
        f = SegDataset(toy_sizes, "train", mods, pre, aug)
        r = SegDataset(toy_sizes, "train", mods, pre, aug, raw=True)
        for epoch in range(3):
            f.set_epoch(epoch)
            r.set_epoch(epoch)
            xf, yf = collate_pad([f[i] for i in range(3)])
            xr, yr = collate_shared([r[i] for i in range(3)])
            assert xr.dtype == torch.uint8 and xr.shape[1] == xf.shape[1] + 1
            got = normalize_batch(xr, [pre[m] for m in mods])
            assert torch.equal(got, xf) and torch.equal(yr.long(), yf)
            assert (got == 0).any()  # fills were exercised


def test_training_result_unchanged_raw_vs_float_items(toy_sizes, tmp_path, monkeypatch):
    """fp32 training with uint8 items normalised on the device == with float items (batch padding,
    mirror + jitter)."""
    from fcnlib.train import loader

    cfg = make_cfg(toy_sizes, iterations=4, amp="off", channels_last=False, recipe={"batch_size": 2},
                   augment={"mirror": True, "jitter": 6})
    T.train(cfg, tmp_path / "raw.pt", tmp_path / "raw.r.pt", tmp_path / "raw.jsonl", device="cpu")
    monkeypatch.setattr(loader, "raw_ok", lambda mods: False)
    T.train(cfg, tmp_path / "flt.pt", tmp_path / "flt.r.pt", tmp_path / "flt.jsonl", device="cpu")
    a = torch.load(tmp_path / "raw.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "flt.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[ln.split('"time"')[0] for ln in (tmp_path / f"{n}.jsonl").read_text().splitlines()]
              for n in ("raw", "flt")]
    assert losses[0] == losses[1]


def test_trainer_fp16_summed_loss_scaler_skips_no_step(toy, tmp_path):
    """amp fp16 with the released recipe's summed loss through the trainer (CPU fp16 autocast): the
    scaler starts at the fitted scale and never has to lower it (no skipped step)."""
    from fcnlib.runtime import precision

    cfg = make_cfg(toy, iterations=4, amp="fp16", channels_last=False,
                   recipe={"optimizer": "sgd", "lr": 1e-10, "momentum": 0.99, "loss": "sum"})
    s = T.train(cfg, tmp_path / "w.pt", tmp_path / "r.pt", tmp_path / "l.jsonl", device="cpu")
    assert s["dtype"] == "float16"
    assert s["grad_scale"] == precision.scaler_init_scale("sum", 64 * 64, 1.0)  # 0–1 input ("none" init)
    assert s["grad_scale"] < 2.0**16
