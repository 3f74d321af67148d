"""Recipe learn_upsampling: false (the authors' released nets) freezes every upscore* at bilinear and re-sets
it after the parent's weights are copied; true (CVPR) lets the 2× ones learn and carries them into 8s."""

import torch
from torch import nn

from fcnlib import train as T
from fcnlib.models import build_fcn, save_model
from fcnlib.models.fcn import bilinear_
from fcnlib.models.preprocessing import Preprocessing

WIDTH = 0.0625
PRE = Preprocessing("RGB", 1.0, (0.5, 0.5, 0.5)).to_dict()


def _parent(path, variant="fcn16s", modality="rgb"):
    torch.manual_seed(0)
    net = build_fcn(variant, "vgg16", num_classes=3, width=WIDTH)
    with torch.no_grad():
        for name, mod in net.named_modules():
            if isinstance(mod, nn.ConvTranspose2d):
                mod.weight.add_(torch.rand_like(mod.weight))  # "learned" kernels, off-diagonals too
            elif name.startswith("score") and isinstance(mod, nn.Conv2d):
                mod.weight.normal_()
    save_model(net, {"preprocessing": {modality: PRE}, "modalities": [modality]}, path)
    return net


def _cfg(init, variant="fcn8s", learn=False, modalities=("rgb",), arch=None):
    recipe = {"name": "t", "batch_size": 1, "lr": 1e-3, "momentum": 0.9, "weight_decay": 5e-4,
              "bias_lr_mult": 2.0, "bias_decay": False, "loss": "sum", "optimizer": "sgd",
              "iter_size": 1, "learn_upsampling": learn}
    return T.check_config({
        "experiment": "t", "dataset_json": "unused.json", "train_split": "train", "val_split": "val",
        "modalities": list(modalities), "init": init, "recipe": recipe, "iterations": 1,
        "arch": arch or {"variant": variant, "backbone": "vgg16", "width": WIDTH, "num_classes": 3,
                         "in_channels": 3, "heads": None}})


def _bilinear_copy(mod):
    ref = nn.ConvTranspose2d(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride, bias=False)
    bilinear_(ref)
    return ref.weight


def _ups(model):
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.ConvTranspose2d) and n.rsplit(".", 1)[-1].startswith("upscore")}


def _trainable(model, recipe):
    ids = {id(p) for g in T._param_groups(model, recipe) for p in g["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_released_freezes_every_upsampler_after_staged_init(tmp_path):
    parent = _parent(tmp_path / "p16.pt")
    cfg = _cfg({"kind": "staged", "path": str(tmp_path / "p16.pt")}, learn=False)
    model, _, _ = T.build_model(cfg, "toy")
    ups = _ups(model)
    assert set(ups) == {"upscore2", "upscore_pool4", "upscore8"}
    for n, m in ups.items():
        assert not m.weight.requires_grad, n
        assert torch.equal(m.weight, _bilinear_copy(m)), n  # the parent's learned upscore2 is not carried
    assert not torch.equal(parent.upscore2.weight, model.upscore2.weight)
    assert torch.equal(parent.score_pool4.weight, model.score_pool4.weight)  # everything else copied
    trainable = _trainable(model, cfg["recipe"])
    assert not any(n.startswith("upscore") for n in trainable)
    assert {"score_fr.weight", "score_pool4.weight", "score_pool3.weight", "conv1_1.weight"} <= trainable


def test_cvpr_recipe_learns_the_2x_upsamplers(tmp_path):
    parent = _parent(tmp_path / "p16.pt")
    cfg = _cfg({"kind": "staged", "path": str(tmp_path / "p16.pt")}, learn=True)
    model, _, _ = T.build_model(cfg, "toy")
    assert model.upscore2.weight.requires_grad and model.upscore_pool4.weight.requires_grad
    assert torch.equal(parent.upscore2.weight, model.upscore2.weight)  # learned kernel carried into 8s
    assert not model.upscore8.weight.requires_grad                      # the final one stays fixed
    trainable = _trainable(model, cfg["recipe"])
    assert {"upscore2.weight", "upscore_pool4.weight"} <= trainable and "upscore8.weight" not in trainable


def test_released_freezes_late_fusion_members(tmp_path):
    _parent(tmp_path / "rgb.pt", "fcn32s", "rgb")
    _parent(tmp_path / "hha.pt", "fcn32s", "hha")
    cfg = _cfg({"kind": "late_fusion", "paths": [str(tmp_path / "rgb.pt"), str(tmp_path / "hha.pt")]},
               learn=False, modalities=("rgb", "hha"), arch={"fusion": "late", "members": []})
    model, _, _ = T.build_model(cfg, "nyud")
    ups = _ups(model)
    assert len(ups) == 2
    for n, m in ups.items():
        assert not m.weight.requires_grad and torch.equal(m.weight, _bilinear_copy(m)), n


def test_trunk_bias_rule_of_fcn_alexnet():
    """voc-fcn-alexnet/net.py: conv1–fc7 biases lr ×1 with decay, score_fr bias ×2 without."""
    net = build_fcn("fcn32s", "alexnet", num_classes=3, width=WIDTH)
    r = {"lr": 1e-4, "weight_decay": 5e-4, "bias_lr_mult": 2.0, "bias_decay": False,
         "trunk_bias_lr_mult": 1.0, "trunk_bias_decay": True}
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in T._param_groups(net, r) for p in g["params"]}
    named = dict(net.named_parameters())
    assert by_param[id(named["conv1.bias"])] == (1e-4, 5e-4)
    assert by_param[id(named["fc7.bias"])] == (1e-4, 5e-4)
    assert by_param[id(named["score_fr.bias"])] == (2e-4, 0.0)
    assert by_param[id(named["conv1.weight"])] == (1e-4, 5e-4)
    # without the keys: one rule for every bias (the VGG nets), groups as before
    r2 = {k: v for k, v in r.items() if not k.startswith("trunk")}
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in T._param_groups(net, r2) for p in g["params"]}
    assert by_param[id(named["conv1.bias"])] == by_param[id(named["score_fr.bias"])] == (2e-4, 0.0)
    assert len(T._param_groups(net, r2)) == 2
