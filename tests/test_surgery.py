"""Weight conversion (torchvision / Caffe → fully convolutional), ImageNet init, staged init, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnlib.cli import main as fcn
from fcnlib.errors import WeightsError
from fcnlib.models import (
    CAFFE_VGG,
    TORCHVISION,
    TORCHVISION_GOOGLENET,
    build_fcn,
    convert_fcn_caffemodel,
    convert_imagenet,
    convert_imagenet_file,
    init_from_imagenet,
    staged_init,
)
from fcnlib.models.alexnet import AlexNet
from fcnlib.models.caffe import write_caffemodel
from fcnlib.models.googlenet import GoogLeNet
from fcnlib.models.vgg import VGG16, run_trunk, scaled

pytestmark = pytest.mark.usefixtures("one_thread")  # the CPU is shared; one thread is fastest under load
W = 1 / 16
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _he(shape, g):
    fan_in = int(np.prod(shape[1:]))
    return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5


def tv_vgg16_state_dict(width: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random classifier in torchvision's vgg16 key names/layout (at a reduced width if asked)."""
    g = torch.Generator().manual_seed(seed)
    sd, c, i = {}, 3, 0
    for v in VGG_CFG:
        if v == "M":
            i += 1
            continue
        co = scaled(v, width)
        sd[f"features.{i}.weight"] = _he((co, c, 3, 3), g)
        sd[f"features.{i}.bias"] = torch.randn(co, generator=g) * 0.1
        c, i = co, i + 2  # conv + relu
    f = scaled(4096, width)
    for j, (o, n) in zip((0, 3, 6), ((f, c * 49), (f, f), (1000, f)), strict=True):
        sd[f"classifier.{j}.weight"] = _he((o, n), g)
        sd[f"classifier.{j}.bias"] = torch.randn(o, generator=g) * 0.1
    return sd


def tv_vgg16_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision VGG16 classifier forward (eval), written from its layer list."""
    i = 0
    for v in VGG_CFG:
        if v == "M":
            x = F.max_pool2d(x, 2)
            i += 1
        else:
            x = F.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
            i += 2
    x = F.adaptive_avg_pool2d(x, 7).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"]))
    x = F.relu(F.linear(x, sd["classifier.3.weight"], sd["classifier.3.bias"]))
    return F.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


def _convnet_logits(backbone: torch.nn.Module, sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a converted state dict as a fully convolutional classifier: trunk, then fc8 as a 1×1 conv."""
    fc8_w, fc8_b = sd.pop("fc8.weight"), sd.pop("fc8.bias")
    backbone.load_state_dict(sd)
    feat, _ = backbone.eval()(x)
    return F.conv2d(feat, fc8_w, fc8_b)


@pytest.mark.parametrize("width", [0.25])
def test_convolutionalised_vgg16_gives_classifier_logits(tmp_path, width):
    sd = tv_vgg16_state_dict(width)
    torch.save(sd, tmp_path / "vgg16.pth")
    conv_sd, prep = convert_imagenet(tmp_path / "vgg16.pth", "vgg16", "torchvision", width=width)
    assert prep == TORCHVISION
    assert conv_sd["fc6.weight"].shape == (scaled(4096, width), scaled(512, width), 7, 7)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tv_vgg16_forward(sd, x)
        out = _convnet_logits(VGG16(width, conv1_pad=1), conv_sd, x)
    assert out.shape == (2, 1000, 1, 1)
    assert ref.abs().max() > 1  # the check is not vacuous
    torch.testing.assert_close(out[:, :, 0, 0], ref, rtol=0, atol=1e-4)


def caffe_alexnet_blobs(width: float, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Random CaffeNet blobs (grouped conv2/4/5), fc weights as Caffe stores them (out × in)."""
    g = torch.Generator().manual_seed(seed)
    w = lambda c: scaled(c, width, 2)  # noqa: E731
    f = scaled(4096, width)
    shapes = {"conv1": (w(96), 3, 11, 11), "conv2": (w(256), w(96) // 2, 5, 5), "conv3": (w(384), w(256), 3, 3),
              "conv4": (w(384), w(384) // 2, 3, 3), "conv5": (w(256), w(384) // 2, 3, 3),
              "fc6": (f, w(256) * 36), "fc7": (f, f), "fc8": (1000, f)}
    fan = {"conv2": 2, "conv4": 2, "conv5": 2}
    return {n: [(_he(s, g) * fan.get(n, 1) ** 0.5).numpy(), (torch.randn(s[0], generator=g) * 0.1).numpy()]
            for n, s in shapes.items()}


def caffenet_forward(blobs: dict[str, list[np.ndarray]], x: torch.Tensor) -> torch.Tensor:
    """CaffeNet classifier forward (deploy net: conv1 pad 0, pool → LRN, grouped convs, ceil pools)."""
    t = {n: [torch.from_numpy(b) for b in bl] for n, bl in blobs.items()}

    def pool(z):
        return F.max_pool2d(z, 3, 2, ceil_mode=True)

    def lrn(z):
        return F.local_response_norm(z, 5, alpha=1e-4, beta=0.75, k=1.0)

    x = lrn(pool(F.relu(F.conv2d(x, *t["conv1"], stride=4))))
    x = lrn(pool(F.relu(F.conv2d(x, *t["conv2"], padding=2, groups=2))))
    x = F.relu(F.conv2d(x, *t["conv3"], padding=1))
    x = F.relu(F.conv2d(x, *t["conv4"], padding=1, groups=2))
    x = pool(F.relu(F.conv2d(x, *t["conv5"], padding=1, groups=2))).flatten(1)
    x = F.relu(F.linear(x, *t["fc6"]))
    x = F.relu(F.linear(x, *t["fc7"]))
    return F.linear(x, *t["fc8"])


def test_convolutionalised_alexnet_from_v1_caffemodel_gives_classifier_logits(tmp_path):
    width = 0.25
    blobs = caffe_alexnet_blobs(width)
    # 2014-era files: V1 `layers`, legacy num/channels/height/width dims (fc as 1×1×out×in), unpacked floats
    legacy = {n: [b if b.ndim == 4 else b.reshape((1,) * (4 - b.ndim) + b.shape) for b in bl]
              for n, bl in blobs.items()}
    write_caffemodel(tmp_path / "caffenet.caffemodel", legacy, v1=True, packed=False, legacy_shape=True)
    conv_sd, prep = convert_imagenet(tmp_path / "caffenet.caffemodel", "alexnet", "caffe", width=width)
    assert prep == CAFFE_VGG
    assert conv_sd["fc6.weight"].shape[2:] == (6, 6)
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = caffenet_forward(blobs, x)
        out = _convnet_logits(AlexNet(width, conv1_pad=0), conv_sd, x)
    assert out.shape == (2, 1000, 1, 1) and ref.abs().max() > 1
    torch.testing.assert_close(out[:, :, 0, 0], ref, rtol=0, atol=1e-4)


def test_caffe_and_torchvision_vgg_conversions_agree(tmp_path):
    width = 0.25
    sd = tv_vgg16_state_dict(width, seed=3)
    torch.save(sd, tmp_path / "tv.pth")
    tv_conv, _ = convert_imagenet(tmp_path / "tv.pth", "vgg16", "torchvision", width=width)
    names = [k[:-7] for k in tv_conv if k.endswith(".weight")]
    blobs = {}
    for n in names:  # the same tensors, laid out as a Caffe file would hold them
        w = tv_conv[f"{n}.weight"].numpy()
        blobs[n] = [w.reshape(w.shape[0], -1) if n.startswith("fc") else w, tv_conv[f"{n}.bias"].numpy()]
    write_caffemodel(tmp_path / "vgg.caffemodel", blobs)
    caffe_conv, prep = convert_imagenet(tmp_path / "vgg.caffemodel", "vgg16", "caffe", width=width)
    assert prep == CAFFE_VGG and sorted(caffe_conv) == sorted(tv_conv)
    for k in tv_conv:
        assert torch.equal(caffe_conv[k], tv_conv[k]), k


def test_wrong_source_gives_weights_error(tmp_path):
    sd = tv_vgg16_state_dict(0.25)
    torch.save(sd, tmp_path / "vgg16.pth")
    with pytest.raises(WeightsError, match=r"vgg16\.pth.*shapes.*--backbone"):
        convert_imagenet(tmp_path / "vgg16.pth", "vgg16", "torchvision", width=1.0)  # a width that is not the file's
    with pytest.raises(WeightsError, match="missing"):
        convert_imagenet(tmp_path / "vgg16.pth", "googlenet", "torchvision")
    with pytest.raises(WeightsError, match="caffenet"):
        convert_imagenet(tmp_path / "vgg16.pth", "alexnet", "torchvision")
    write_caffemodel(tmp_path / "a.caffemodel", caffe_alexnet_blobs(0.25))
    with pytest.raises(WeightsError, match=r"missing layers.*conv1_1"):
        convert_imagenet(tmp_path / "a.caffemodel", "vgg16", "caffe")


def test_googlenet_torchvision_bn_folding_is_exact(tmp_path):
    """torchvision's GoogLeNet has BN after every conv and a 3×3 '5x5' branch: folding BN and zero-padding
    the kernel to 5×5 must give the same function."""
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        ref = GoogLeNet()
    sd: dict[str, torch.Tensor] = {}
    tv_names = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2", "conv2_3x3": "conv3"}
    from fcnlib.models.surgery import _INC_BRANCH_TV

    for blk in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        for b, t in _INC_BRANCH_TV.items():
            tv_names[f"inception_{blk}.{b}"] = f"inception{blk}.{t}"
    shapes = ref.state_dict()
    for ours, t in tv_names.items():
        s = list(shapes[f"{ours}.weight"].shape)
        if ours.endswith(".5x5"):
            s[2:] = [3, 3]
        sd[f"{t}.conv.weight"] = torch.randn(s, generator=g)
        sd[f"{t}.bn.weight"] = torch.rand(s[0], generator=g) + 0.5
        sd[f"{t}.bn.bias"] = torch.randn(s[0], generator=g)
        sd[f"{t}.bn.running_mean"] = torch.randn(s[0], generator=g)
        sd[f"{t}.bn.running_var"] = torch.rand(s[0], generator=g) + 0.5
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 1024, generator=g), torch.randn(1000, generator=g)
    torch.save(sd, tmp_path / "googlenet.pth")
    conv, prep = convert_imagenet(tmp_path / "googlenet.pth", "googlenet", "torchvision")
    assert prep == TORCHVISION_GOOGLENET and conv["fc8.weight"].shape == (1000, 1024, 1, 1)
    assert conv["inception_4a.5x5.weight"].shape[2:] == (5, 5)
    t = "inception4a.branch3.1"
    x = torch.randn(1, sd[f"{t}.conv.weight"].shape[1], 9, 9, generator=g)
    bn = (F.conv2d(x, sd[f"{t}.conv.weight"], padding=1) - sd[f"{t}.bn.running_mean"][:, None, None]) \
        / torch.sqrt(sd[f"{t}.bn.running_var"][:, None, None] + 1e-3) * sd[f"{t}.bn.weight"][:, None, None] \
        + sd[f"{t}.bn.bias"][:, None, None]
    ours = F.conv2d(x, conv["inception_4a.5x5.weight"], conv["inception_4a.5x5.bias"], padding=2)
    torch.testing.assert_close(ours, bn, rtol=1e-4, atol=1e-4)


def test_googlenet_caffe_names(tmp_path):
    """bvlc_googlenet layer names ('conv1/7x7_s2', 'inception_3a/5x5', 'loss3/classifier') map onto ours;
    auxiliary classifiers are ignored."""
    width = 1 / 8
    with torch.device("meta"):
        shapes = GoogLeNet(width).state_dict()
    r = np.random.default_rng(0)
    blobs: dict[str, list[np.ndarray]] = {}
    for k, v in shapes.items():
        layer, kind = k.rsplit(".", 1)
        cname = {"conv1_7x7_s2": "conv1/7x7_s2", "conv2_3x3_reduce": "conv2/3x3_reduce",
                 "conv2_3x3": "conv2/3x3"}.get(layer, layer.replace(".", "/"))
        blobs.setdefault(cname, [None, None])[kind == "bias"] = r.standard_normal(tuple(v.shape)).astype(
            np.float32)
    blobs["loss3/classifier"] = [r.standard_normal((1000, 128)).astype(np.float32),
                                 np.zeros(1000, np.float32)]
    blobs["loss1/fc"] = [np.zeros((4, 4), np.float32), np.zeros(4, np.float32)]
    write_caffemodel(tmp_path / "g.caffemodel", blobs)
    conv, _ = convert_imagenet(tmp_path / "g.caffemodel", "googlenet", "caffe", width=width)
    assert set(conv) == set(shapes) | {"fc8.weight", "fc8.bias"}
    np.testing.assert_array_equal(conv["inception_5b.pool_proj.weight"].numpy(),
                                  blobs["inception_5b/pool_proj"][0])


def test_authors_fcn_caffemodel_loads_by_name(tmp_path):
    src = build_fcn("fcn8s-atonce", width=W, num_classes=4)
    with torch.no_grad():
        for p in src.parameters():
            p.copy_(torch.randn_like(p))
    blobs = {}
    for k, v in src.state_dict().items():
        layer, kind = k.rsplit(".", 1)
        blobs.setdefault(layer, []).append(v.numpy())
    blobs["scale_pool4"] = [np.full(1, 0.01, np.float32)]  # Caffe's fixed Scale layer of the at-once net
    write_caffemodel(tmp_path / "fcn8s-atonce.caffemodel", blobs, v1=False)
    m = convert_fcn_caffemodel(tmp_path / "fcn8s-atonce.caffemodel", src.arch)
    for k, v in src.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    with pytest.raises(WeightsError, match="missing.*score_pool3"):
        convert_fcn_caffemodel(tmp_path / "fcn8s-atonce.caffemodel", {**src.arch, "variant": "fcn16s"})


# ------------------------------------------------------------------------------------ init
def test_convert_file_and_init_from_imagenet(tmp_path):
    width = W
    torch.save(tv_vgg16_state_dict(width), tmp_path / "vgg16.pth")
    convert_imagenet_file(tmp_path / "vgg16.pth", tmp_path / "vgg16.pt", "vgg16", "torchvision", width=width)
    obj = torch.load(tmp_path / "vgg16.pt", weights_only=True)
    assert obj["meta"]["backbone"] == "vgg16" and obj["meta"]["preprocessing"] == TORCHVISION.to_dict()
    m = build_fcn("fcn32s", width=width)
    prep = init_from_imagenet(m, tmp_path / "vgg16.pt")
    assert prep == TORCHVISION
    assert torch.equal(m.fc6.weight, obj["state_dict"]["fc6.weight"])
    assert torch.equal(m.conv5_3.bias, obj["state_dict"]["conv5_3.bias"])
    assert not m.score_fr.weight.any()  # score layers untouched (zero)

    rgbd = build_fcn("fcn32s", width=width, in_channels=4)  # early fusion: depth filter = mean of RGB
    init_from_imagenet(rgbd, tmp_path / "vgg16.pt")
    w = obj["state_dict"]["conv1_1.weight"]
    assert torch.equal(rgbd.conv1_1.weight[:, :3], w)
    torch.testing.assert_close(rgbd.conv1_1.weight[:, 3], w.mean(1))

    with pytest.raises(WeightsError, match="width"):
        init_from_imagenet(build_fcn("fcn32s", width=2 * width), tmp_path / "vgg16.pt")
    with pytest.raises(WeightsError, match="backbone"):
        init_from_imagenet(build_fcn("fcn32s", "alexnet", width=width), tmp_path / "vgg16.pt")


def _parts(model, x):
    """Trunk output, skip taps and the coarse score map of a single-head FCN."""
    feat, taps = run_trunk(model.trunk(), x, model.taps)
    return feat, taps, model.score_fr(feat)


@pytest.mark.parametrize("parent_v,child_v", [("fcn32s", "fcn16s"), ("fcn16s", "fcn8s")])
def test_staged_init_keeps_parent_prediction(parent_v, child_v):
    torch.manual_seed(0)
    parent = build_fcn(parent_v, width=W).eval()
    with torch.no_grad():  # a "trained" parent: random score layers (incl. its own skip)
        for n, p in parent.named_parameters():
            if n.startswith("score"):
                p.copy_(torch.randn_like(p) * 0.1)
    child = build_fcn(child_v, width=W).eval()
    copied = staged_init(child, parent)
    common = set(parent.state_dict()) & set(child.state_dict())
    assert set(copied) == common and "score_fr.weight" in copied
    for k in common:
        assert torch.equal(child.state_dict()[k], parent.state_dict()[k])
    new_score = {k for k in child.state_dict() if k.startswith("score") and k not in common}
    assert new_score and all(not child.state_dict()[k].any() for k in new_score)

    x = torch.randn(1, 3, 75, 83)
    with torch.no_grad():
        out_p, out_c = parent(x), child(x)
        # the new skip contributes exactly nothing: child = its upsamplers applied to the parent's
        # fused score map (identical tensors up to the last fusion the parent had)
        from fcnlib.models.fcn import _crop

        feat, taps, s = _parts(child, x)
        for i, t in enumerate(child.taps):
            up = getattr(child, ("upscore2", "upscore_pool4")[i])(s)
            skip = getattr(child, f"score_{t}")(taps[t])
            s = up + _crop(skip, child.offsets[i], up)
        final = getattr(child, {1: "upscore16", 2: "upscore8"}[len(child.taps)])
        expect = _crop(final(s), child.offsets[-1], x)
        assert torch.equal(out_c, expect)
        # …and the prediction is the parent's: bilinear ×2 then ×16 (or ×8) vs one ×32 (×16) tent is not
        # bit-identical (composed tents are smoother), but labels agree almost everywhere.
        agree = (out_p.argmax(1) == out_c.argmax(1)).float().mean().item()
        rel = ((out_p - out_c).abs().max() / out_p.abs().max()).item()
    assert agree > 0.95, agree
    assert rel < 0.35, rel


def test_staged_init_mismatch_is_weights_error():
    with pytest.raises(WeightsError, match="score_fr"):
        staged_init(build_fcn("fcn16s", width=W, num_classes=5), build_fcn("fcn32s", width=W))
    with pytest.raises(WeightsError, match="conv1_1"):
        staged_init(build_fcn("fcn16s", width=W), build_fcn("fcn32s", width=2 * W))


def test_cli_convert_weights(tmp_path, capsys):
    torch.save(tv_vgg16_state_dict(W), tmp_path / "v.pth")
    rc = fcn(["convert-weights", str(tmp_path / "v.pth"), "-o", str(tmp_path / "v.pt"), "--backbone", "vgg16",
              "--format", "torchvision", "--width", str(W)])
    assert rc == 0 and (tmp_path / "v.pt").exists()
    rc = fcn(["convert-weights", str(tmp_path / "v.pth"), "-o", str(tmp_path / "x.pt"), "--format", "caffe"])
    assert rc == 2 and "error:" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_damaged_imagenet_files_are_refused_naming_them(tmp_path, monkeypatch):
    """A NaN in a downloaded classifier or a converted file would train an FCN of NaNs; an oversized or
    DEFLATE-packed .pth would exhaust memory in torch.load: each is one WeightsError naming the file."""
    import zipfile

    sd = tv_vgg16_state_dict(W)
    sd["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match=r"nan\.pth: tensor 'conv1_1\.weight' holds 1 non-finite.*download it again"):
        convert_imagenet(tmp_path / "nan.pth", "vgg16", "torchvision", width=W)
    sd["features.0.weight"][0, 0, 0, 0] = 0.0
    torch.save(sd, tmp_path / "ok.pth")
    convert_imagenet_file(tmp_path / "ok.pth", tmp_path / "ok.pt", "vgg16", "torchvision", width=W)
    obj = torch.load(tmp_path / "ok.pt", weights_only=True)
    obj["state_dict"]["fc7.bias"][3] = float("inf")
    torch.save(obj, tmp_path / "inf.pt")
    with pytest.raises(WeightsError, match=r"inf\.pt: tensor 'fc7\.bias' holds 1 non-finite.*fcn convert-weights"):
        init_from_imagenet(build_fcn("fcn32s", width=W), tmp_path / "inf.pt")
    # a storage DEFLATE-packed 64 MB → ~64 KB: refused from the zip directory, before torch.load
    with zipfile.ZipFile(tmp_path / "ok.pth") as zin, zipfile.ZipFile(tmp_path / "packed.pth", "w") as zout:
        big = next(i.filename for i in zin.infolist() if "/data/" in i.filename and not i.filename.endswith(".pkl"))
        for i in zin.infolist():
            if i.filename == big:
                zout.writestr(zipfile.ZipInfo(i.filename), bytes(64 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                zout.writestr(i, zin.read(i))
    with pytest.raises(WeightsError, match=r"packed\.pth: entry .* is compressed"):
        convert_imagenet(tmp_path / "packed.pth", "vgg16", "torchvision", width=W)
    monkeypatch.setenv("FCN_MAX_WEIGHTS_BYTES", "1000")
    with pytest.raises(WeightsError, match=r"ok\.pth: expands to \d+ B, over the limit of 1000 B"):
        convert_imagenet(tmp_path / "ok.pth", "vgg16", "torchvision", width=W)
    write_caffemodel(tmp_path / "a.caffemodel", caffe_alexnet_blobs(0.25))
    with pytest.raises(WeightsError, match=r"a\.caffemodel: \d+ B, over the limit of 1000 B .*FCN_MAX_WEIGHTS_BYTES"):
        convert_imagenet(tmp_path / "a.caffemodel", "alexnet", "caffe", width=0.25)


@pytest.mark.parametrize("width", [W, 0.25, 1 / 8])
def test_format_and_width_are_detected_from_the_file(tmp_path, width, capsys):
    """No --format/--width: a torchvision .pth and a caffemodel (VGG16 and grouped CaffeNet) at any width
    convert as with the right flags given."""
    from fcnlib.models.caffe import read_caffemodel, sniff_format

    torch.save(tv_vgg16_state_dict(width, seed=2), tmp_path / "v.pth")
    write_caffemodel(tmp_path / "a.caffemodel", caffe_alexnet_blobs(width, seed=2))
    assert sniff_format(tmp_path / "v.pth") == "torchvision" and sniff_format(tmp_path / "a.caffemodel") == "caffe"
    for src, backbone, fmt in (("v.pth", "vgg16", "torchvision"), ("a.caffemodel", "alexnet", "caffe")):
        assert fcn(["convert-weights", str(tmp_path / src), "-o", str(tmp_path / "auto.pt"),
                    "--backbone", backbone]) == 0
        convert_imagenet_file(tmp_path / src, tmp_path / "given.pt", backbone, fmt, width)
        auto, given = (torch.load(tmp_path / f, weights_only=True) for f in ("auto.pt", "given.pt"))
        assert auto["meta"] == given["meta"] and auto["meta"]["width"] == width and auto["meta"]["format"] == fmt
        assert all(torch.equal(auto["state_dict"][k], v) for k, v in given["state_dict"].items())
    # a .pth called a caffemodel: said what it is, not "download it again"
    capsys.readouterr()
    assert fcn(["convert-weights", str(tmp_path / "v.pth"), "-o", str(tmp_path / "x.pt"), "--format", "caffe"]) == 2
    err = capsys.readouterr().err
    assert "PyTorch" in err and "--format torchvision" in err and "download" not in err
    with pytest.raises(WeightsError, match=r"v\.pth: a PyTorch file.*--format torchvision"):
        read_caffemodel(tmp_path / "v.pth")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01junk" * 10)
    with pytest.raises(WeightsError, match=r"junk\.bin: neither a PyTorch \.pth.*nor a caffemodel"):
        convert_imagenet(tmp_path / "junk.bin", "vgg16")
    assert not (tmp_path / "x.pt").exists()


def test_width_detection_refuses_layers_of_mixed_widths(tmp_path):
    from fcnlib.models.surgery import detect_width

    blobs = {k[:-7]: [v] for k, v in convert_imagenet_sd(tmp_path).items() if k.endswith(".weight")}
    assert detect_width(blobs, "vgg16", "f") == 0.25
    blobs["conv3_2"] = [np.zeros((7, 32, 3, 3), np.float32)]  # 7 output channels: no width gives that
    with pytest.raises(WeightsError, match=r"f: output channels \['conv3_2 7'\] fit no vgg16 width"):
        detect_width(blobs, "vgg16", "f")
    with pytest.raises(WeightsError, match="no googlenet trunk layers"):
        detect_width(blobs, "googlenet", "f")


def convert_imagenet_sd(tmp_path) -> dict[str, torch.Tensor]:
    torch.save(tv_vgg16_state_dict(0.25), tmp_path / "q.pth")
    return convert_imagenet(tmp_path / "q.pth", "vgg16")[0]
