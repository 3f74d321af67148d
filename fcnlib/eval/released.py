"""The authors' released FCN caffemodels (fcnlib.facts.released) converted into our weights files, so the same
fcnlib.eval.evaluate scores them on the same split as our trained nets: the cheapest real check of this
reproduction (fcn.berkeleyvision.org, one `caffemodel-url` per net directory)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fcnlib.errors import WeightsError
from fcnlib.facts.released import CONTEXT_MEAN_BGR, FUSION_SUFFIXES, arch, classes, net
from fcnlib.files.io import sha256_file
from fcnlib.models import ModelMeta, convert_fcn_caffemodel, save_model
from fcnlib.models.caffe import read_caffemodel
from fcnlib.models.preprocessing import CAFFE_VGG, HHA, NYUD_RGB_CAFFE, SIFTFLOW_CAFFE, Preprocessing
from fcnlib.models.surgery import detect_width

PathLike = str | os.PathLike


def preprocessing(name: str) -> dict[str, dict[str, Any]]:
    """Per modality, what the authors' data layer fed the net (BGR, 0–255, the dataset's mean)."""
    m = net(name)
    rgb = {"pascal": CAFFE_VGG, "nyud": NYUD_RGB_CAFFE, "siftflow": SIFTFLOW_CAFFE,
           "context": Preprocessing("BGR", 255.0, CONTEXT_MEAN_BGR)}[m.dataset]
    return {mod: (HHA if mod == "hha" else rgb).to_dict() for mod in m.modalities}


def layer_map(name: str, model: Any) -> dict[str, list[str]]:
    """Caffe layer name → our module prefixes it fills (two for the colour-HHA net's shared `upscore`)."""
    m = net(name)
    params = sorted({k.rsplit(".", 1)[0] for k in model.state_dict()})
    if not m.fusion:
        return {p: [p] for p in params}
    out: dict[str, list[str]] = {}
    final = None
    for p in params:
        member, layer = p.split(".", 1)
        sfx = FUSION_SUFFIXES[0 if member == "net_a" else 1]
        if layer.startswith("upscore") and layer not in ("upscore2", "upscore_pool4"):
            final = layer
            out.setdefault(layer, []).append(p)  # one shared final upsampler after the fused scores
        else:
            out[f"{layer}{sfx}"] = [p]
    if final is None:
        raise WeightsError(f"released {name}: late-fusion net without a final upsampler")
    return out


def convert(src: PathLike, dst: PathLike, name: str, width: float | None = None, data_source: str = "real") -> Path:
    """Released caffemodel → our weights file (save_model format, with arch/preprocessing/modalities).
    `width` None: read from the trunk's blob shapes (1.0 for the authors' files, less for demo stand-ins);
    `data_source` "demo" marks a demo stand-in (ModelMeta.is_demo: `fcn segment` warns)."""
    m = net(name)
    if width is None:
        width = detect_width(read_caffemodel(src), m.backbone, src, FUSION_SUFFIXES[0] if m.fusion else "")
    a = arch(name, width)
    model = convert_fcn_caffemodel(src, a, layer_map=lambda net: layer_map(name, net))
    meta = ModelMeta.create(a, m.modalities, preprocessing(name), classes(name), dataset=m.dataset,
                            data_source=data_source, experiment=f"released/{name}", released=name,
                            source=Path(src).name,
                            source_sha256=sha256_file(src))
    save_model(model, meta, dst)
    return Path(dst)
