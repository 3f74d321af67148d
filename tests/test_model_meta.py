"""ModelMeta: the one description of a weights file's meta, written by the trainer and converters, read by all."""

from __future__ import annotations

import pytest
import torch

from fcnlib.errors import DataError, WeightsError
from fcnlib.models import ModelMeta, build_fcn, load_model, save_model
from fcnlib.models.preprocessing import CAFFE_VGG, HHA


def _net(**kw):
    return build_fcn("fcn32s", "vgg16", num_classes=3, width=0.0625, **kw)


def test_create_checks_modalities_and_preprocessing():
    with pytest.raises(WeightsError, match="unknown"):
        ModelMeta.create({"variant": "fcn32s"}, ["rgb", "lidar"], {"rgb": CAFFE_VGG, "lidar": CAFFE_VGG}, None)
    with pytest.raises(WeightsError, match=r"no preprocessing for modalities \['hha'\]"):
        ModelMeta.create({"variant": "fcn32s"}, ["rgb", "hha"], {"rgb": CAFFE_VGG}, None)
    m = ModelMeta.create({"variant": "fcn32s"}, ("rgb", "hha"), {"rgb": CAFFE_VGG, "hha": HHA.to_dict()},
                         ["a", "b", "c"], experiment="e", dataset="d")
    assert m["preprocessing"] == {"rgb": CAFFE_VGG.to_dict(), "hha": HHA.to_dict()}
    assert m.modalities == ["rgb", "hha"] and m.input_channels == 6
    assert list(m) == ["arch", "modalities", "preprocessing", "classes", "experiment", "dataset"]  # writer's order


def test_round_trip_stores_a_plain_dict_and_loads_a_model_meta(tmp_path):
    net = _net()
    meta = ModelMeta.create(net.arch, ["rgb"], {"rgb": CAFFE_VGG}, ["a", "b", "c"], dataset="toy", seed=3)
    save_model(net, meta, tmp_path / "w.pt")
    raw = torch.load(tmp_path / "w.pt", weights_only=True)  # no class of ours needed to read the file
    assert type(raw["meta"]) is dict and raw["meta"] == dict(meta)
    _, loaded = load_model(tmp_path / "w.pt")
    assert isinstance(loaded, ModelMeta) and loaded == meta and list(loaded) == list(meta)
    assert loaded.dataset == "toy" and loaded.experiment is None and loaded.classes == ["a", "b", "c"]
    assert loaded.preprocessing(tmp_path / "w.pt") == {"rgb": CAFFE_VGG}
    assert loaded.heads == ["sem"] and loaded.arch == net.arch


def test_old_files_default_to_rgb_and_missing_preprocessing_names_the_file(tmp_path):
    m = ModelMeta({"arch": {"variant": "fcn32s"}})
    assert m.modalities == ["rgb"] and m.input_channels == 3 and m.preprocessing_dicts() == {}
    with pytest.raises(DataError, match=r"w\.pt: weights carry no preprocessing"):
        m.preprocessing(tmp_path / "w.pt")


def test_heads_of_two_headed_and_late_fusion_nets():
    two = _net(heads={"sem": 3, "geo": 2})
    assert ModelMeta({"arch": two.arch}).heads == ["sem", "geo"]
    arch = {"fusion": "late", "members": [two.arch, _net().arch], "weights": [0.5, 0.5]}
    assert ModelMeta({"arch": arch}).heads == ["sem", "geo"]
