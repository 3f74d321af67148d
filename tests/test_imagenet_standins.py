"""The demo's ImageNet stand-ins are fcnlib's own backbones: their files convert into those backbones at any
width, and the VGG16 stand-in's pretraining forward is torchvision's VGG16 (pad 1, AdaptiveAvgPool2d(7))."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcnlib.demo import PRETRAIN_PATCH, alexnet_caffe_blobs, googlenet_state_dict, vgg16_net, vgg16_state_dict
from fcnlib.demo.imagenet import vgg_logits
from fcnlib.models import build_fcn, convert_imagenet, convert_imagenet_file, init_from_imagenet
from fcnlib.models.caffe import write_caffemodel
from fcnlib.models.fcn import BACKBONES


@pytest.mark.parametrize("width", [0.0625, 0.1])
def test_standin_files_convert_into_fcnlib_backbones(tmp_path, width):
    torch.save(vgg16_state_dict(width, 1), tmp_path / "vgg16.pth")
    torch.save(googlenet_state_dict(width, 2), tmp_path / "googlenet.pth")
    write_caffemodel(tmp_path / "alexnet.caffemodel", alexnet_caffe_blobs(width, 3), net_name="AlexNet")
    files = {"vgg16": ("vgg16.pth", "torchvision"), "googlenet": ("googlenet.pth", "torchvision"),
             "alexnet": ("alexnet.caffemodel", "caffe")}
    for backbone, (name, fmt) in files.items():
        sd, _ = convert_imagenet(tmp_path / name, backbone, fmt, width)
        want = BACKBONES[backbone](width=width).state_dict()
        assert set(sd) == set(want) | {"fc8.weight", "fc8.bias"}, backbone
        assert all(sd[k].shape == v.shape for k, v in want.items()), backbone
        assert sd["fc8.weight"].shape[0] == 1000
        dst = convert_imagenet_file(tmp_path / name, tmp_path / f"{backbone}.pt", backbone, fmt, width)
        model = build_fcn("fcn32s", backbone, width=width)
        init_from_imagenet(model, dst)
        first = next(iter(want))
        assert torch.equal(model.state_dict()[first], sd[first])


def test_pretraining_forward_is_torchvision_vgg16():
    net = vgg16_net(0.0625, 4, fan_in=True)
    assert all(m.padding == (1, 1) for n, m in net.named_children() if n.startswith("conv"))
    x = torch.randn(3, 3, PRETRAIN_PATCH, PRETRAIN_PATCH, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = vgg_logits(net, x)
        # torchvision: features (pool5 is 1×1 on a patch), AdaptiveAvgPool2d(7), then the classifier,
        # here as net's fc6 (7×7), fc7 and fc8 convolutions on the 7×7 map
        h = x
        for name, m in net.named_children():
            if name == "fc6":
                break
            h = m(h)
        assert h.shape[-2:] == (1, 1)
        h = F.relu(net.fc6(F.adaptive_avg_pool2d(h, 7)))
        want = net.fc8(F.relu(net.fc7(h))).flatten(1)
    assert got.shape == (3, 1000)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
