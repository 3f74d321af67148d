"""Recipe resolution: `released` follows each of the authors' solvers, `paper` the CVPR text; every value
comes from the config (recipe keys, then by_backbone / by_dataset / by_experiment, then the experiment)."""

import copy
from pathlib import Path

import pytest

from fcnlib.errors import ConfigError
from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[1]


def _with(cfg: dict, recipe: str) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["training"]["recipe"] = recipe
    return cfg


def _r(cfg: dict, name: str) -> dict:
    return fcncfg.train_config(cfg, name)


def test_released_alexnet_follows_voc_fcn_alexnet(paper):
    c = _r(paper, "voc-alexnet-fcn32s")
    r = c["recipe"]
    assert (r["loss"], r["lr"], r["momentum"], r.get("iter_size", 1), r["batch_size"]) == ("mean", 1e-4, 0.9, 20, 1)
    assert r["learn_upsampling"] is False
    assert (r["trunk_bias_lr_mult"], r["trunk_bias_decay"], r["bias_lr_mult"], r["bias_decay"]) == \
        (1.0, True, 2.0, False)
    assert "trunk_bias_lr_mult" not in _r(paper, "voc-fcn32s")["recipe"]
    src = paper["backbones"]["alexnet"]
    assert paper["sources"][src["source"]]["filename"] == "bvlc_reference_caffenet.caffemodel"
    assert src["format"] == "caffe"


def test_released_vgg_stages(paper):
    for name, lr in [("voc-fcn32s", 1e-10), ("voc-fcn16s", 1e-12), ("voc-fcn8s", 1e-14),
                     ("voc-fcn8s-atonce", 1e-10)]:
        c = _r(paper, name)
        r = c["recipe"]
        assert (r["loss"], r["lr"], r["momentum"], r.get("iter_size", 1), r["batch_size"]) == ("sum", lr, 0.99, 1, 1)
        assert r["learn_upsampling"] is False, name  # every upscore* frozen at bilinear
        assert c["val_every"] == 4000
    assert _r(paper, "voc-fcn32s")["iterations"] == 100000
    assert _r(paper, "voc-fcn8s-atonce")["iterations"] == 300000


def test_released_per_dataset_and_experiment(paper):
    assert _r(paper, "nyud-rgbhha-fcn32s")["recipe"]["lr"] == 1e-12
    assert _r(paper, "nyud-rgb-fcn32s")["recipe"]["lr"] == 1e-10
    for name in ("nyud-rgb-fcn32s", "nyud-hha-fcn32s", "nyud-rgbhha-fcn16s", "sift-fcn32s", "sift-fcn16s"):
        assert _r(paper, name)["val_every"] == 2000, name
        assert _r(paper, name)["iterations"] == 100000, name
    for name in ("context-fcn32s", "context-fcn16s", "context-fcn8s"):
        c = _r(paper, name)
        assert (c["iterations"], c["val_every"]) == (400000, 8000), name
    # the Snakemake side (runtime requests, tables) reads the same resolved iterations
    assert fcncfg.experiment(paper, "context-fcn8s")["iterations"] == 400000


def test_paper_recipe_lr_per_backbone(paper):
    cfg = _with(paper, "paper")
    got = {n: _r(cfg, n)["recipe"]["lr"] for n in ("voc-alexnet-fcn32s", "voc-fcn32s", "voc-googlenet-fcn32s")}
    assert got == {"voc-alexnet-fcn32s": 1e-3, "voc-fcn32s": 1e-4, "voc-googlenet-fcn32s": 5e-5}
    r = _r(cfg, "voc-fcn16s")["recipe"]
    assert (r["loss"], r["batch_size"], r["momentum"], r.get("iter_size", 1), r["learn_upsampling"]) == \
        ("mean", 20, 0.9, 1, True)
    assert _r(cfg, "nyud-rgbhha-fcn32s")["recipe"]["lr"] == 1e-4  # by_experiment of `released` only


def test_googlenet_from_caffe_zoo(paper):
    src = paper["backbones"]["googlenet"]
    assert (paper["sources"][src["source"]]["filename"], src["format"]) == ("bvlc_googlenet.caffemodel", "caffe")
    assert paper["sources"]["vgg16_tv"]["sha256"].startswith("397923af")


def test_override_precedence(paper):
    cfg = copy.deepcopy(paper)
    rel = cfg["recipes"]["released"]
    rel["by_dataset"]["pascal"] = {"momentum": 0.5, "lr": {"fcn16s": 3e-12}, "val_every": 10}
    rel["by_experiment"]["voc-fcn16s"] = {"momentum": 0.6}
    assert _r(cfg, "voc-fcn16s")["recipe"]["momentum"] == 0.6      # experiment entry after dataset entry
    assert _r(cfg, "voc-fcn16s")["recipe"]["lr"] == 3e-12          # partial per-variant lr
    assert _r(cfg, "voc-fcn8s")["recipe"]["lr"] == 1e-14           # other variants keep theirs
    assert _r(cfg, "voc-alexnet-fcn32s")["recipe"]["momentum"] == 0.5  # dataset entry after backbone entry
    assert _r(cfg, "voc-alexnet-fcn32s")["val_every"] == 10
    cfg["experiments"]["voc-fcn16s"]["lr"] = 7e-13                  # the experiment's own key wins
    cfg["experiments"]["voc-fcn16s"]["iterations"] = 5
    assert _r(cfg, "voc-fcn16s")["recipe"]["lr"] == 7e-13
    assert _r(cfg, "voc-fcn16s")["iterations"] == 5
    fcncfg.validate_config(cfg)


@pytest.mark.parametrize(("path", "value", "key"), [
    (("recipes", "released", "iter_size"), 0, "recipes.released.iter_size"),
    (("recipes", "released", "learn_upsampling"), "no", "recipes.released.learn_upsampling"),
    (("recipes", "released", "by_backbone", "resnet"), {"lr": 1.0}, "recipes.released.by_backbone"),
    (("recipes", "released", "by_dataset", "nyud"), {"colour": 1}, "recipes.released.by_dataset.nyud"),
    (("recipes", "released", "by_experiment", "voc-fcn99s"), {"lr": 1.0}, "by_experiment.voc-fcn99s"),
])
def test_bad_recipe_keys_are_named(paper, path, value, key):
    cfg = copy.deepcopy(paper)
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        fcncfg.validate_config(cfg)


def test_demo_recipes_unchanged():
    demo = fcncfg.load_yaml(ROOT / "config" / "demo.yaml")
    fcncfg.validate_config(demo)
    for name in demo["experiments"]:
        r = fcncfg.train_config(demo, name)["recipe"]
        assert (r.get("iter_size", 1), r["learn_upsampling"]) == (1, True), name
