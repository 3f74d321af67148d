"""`fcn export`: a trained weights.pt as TorchScript or ONNX, for use without fcnlib.

The exported graph is the net itself: input a float32 N×C×H×W batch already preprocessed as the weights
say (channel order, scale, mean, std — written beside it in `<out>.json` and, for TorchScript, inside the
file as `fcn_meta.json`), output the logits of each head at the input's H×W (any H, W: the FCN crops
are traced as functions of the input size, and frozen bilinear upsamplers export as depthwise transposed
convolutions — fcnlib.models.fcn.Upsampler). The graph's outputs are named after the heads ("sem", or
"sem" and "geo"), as the sidecar's "outputs" lists them. Labels are the argmax over the class axis.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fcnlib.errors import ConfigError, WeightsError
from fcnlib.models import load_model

if TYPE_CHECKING:
    from fcnlib.models.meta import ModelMeta
from fcnlib.files.io import atomic_write, atomic_write_json, max_image_pixels, sha256_file

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
ONNX_OPSET = 17


class _Tuple(nn.Module):
    """A multi-head net's {head: logits} as a tuple in a fixed head order (traced graphs return tuples)."""

    def __init__(self, net: nn.Module, heads: list[str]):
        super().__init__()
        self.net, self.heads = net, heads

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return tuple(out[h] for h in self.heads) if isinstance(out, dict) else (out,)


def export_meta(meta: ModelMeta, fmt: str, heads: list[str], channels: int, weights: Path) -> dict[str, Any]:
    """What a user of the exported file needs: input layout and preprocessing, output heads, classes."""
    return {"format": fmt, "source_weights": str(weights), "source_sha256": sha256_file(weights),
            "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": channels,
                      "modalities": meta.modalities, "preprocessing": meta.get("preprocessing")},
            "outputs": heads, "classes": {h: meta.head_classes(h) for h in heads}, "arch": meta.get("arch"),
            "labels": "argmax over axis 1 of each output", "demo": meta.is_demo}


def _onnx_bytes(net: nn.Module, example: torch.Tensor, heads: list[str]) -> bytes:
    names = list(heads)  # the sidecar's "outputs": one naming for graph and JSON
    axes = {"image": {0: "n", 2: "h", 3: "w"}, **{n: {0: "n", 2: "h", 3: "w"} for n in names}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic: the crops are meant to be dynamic
        try:  # the TorchScript-based exporter: needs no onnxscript, and handles the crops' dynamic sizes
            torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["image"], output_names=names,
                              dynamic_axes=axes, opset_version=ONNX_OPSET)
            return buf.getvalue()
        except (TypeError, NotImplementedError, RuntimeError) as legacy_error:  # a torch without it
            try:
                dim = {0: torch.export.Dim("n"), 2: torch.export.Dim("h", min=16), 3: torch.export.Dim("w", min=16)}
                program = torch.onnx.export(net, (example,), dynamo=True, input_names=["image"],
                                            output_names=names, dynamic_shapes={"x": dim})
            except ImportError as e:
                raise ConfigError(f"fcn export --format onnx: {e}; install the exporter with "
                                  f"pip install 'fcnlib[export]' (onnx, onnxscript, onnxruntime)") from None
            except Exception as e:
                raise ConfigError(f"fcn export --format onnx: export failed ({legacy_error}; then {e}); "
                                  f"use --format torchscript") from None
    with tempfile.TemporaryDirectory() as tmp:
        program.save(Path(tmp) / "m.onnx", external_data=False)
        return (Path(tmp) / "m.onnx").read_bytes()


def default_out(weights: Path, fmt: str) -> Path:
    return weights.with_name(weights.stem + SUFFIX[fmt])


def export(weights: str | os.PathLike, out: str | os.PathLike, fmt: str = "torchscript",
           size: tuple[int, int] = (224, 224)) -> dict[str, Any]:
    """Write `weights` as `fmt` to `out` (atomically) plus `<out>.json`; returns that JSON's content.

    `size` is the H×W of the example input used for tracing; the exported net accepts any size.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: not one of {list(FORMATS)}")
    h, w = size
    if not (h >= 1 and w >= 1 and h * w <= max_image_pixels()):
        raise ConfigError(f"--size {h} {w}: the example input needs a height and width ≥ 1 (and at most "
                          f"FCN_MAX_IMAGE_PIXELS pixels); the default 224 224 suits every net")
    weights, out = Path(weights), Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; pass the exported file's path (the CLI's -o FOLDER puts "
                          f"{default_out(weights, fmt).name} inside it)")
    if out.resolve() == weights.resolve():
        raise ConfigError(f"{out}: would overwrite the weights it is exported from; pass another -o/--out")
    model, meta = load_model(weights, "cpu")
    model = model.eval().float()
    for p in model.parameters():  # as for inference: frozen bilinear upsamplers run per class
        p.requires_grad_(False)
    channels = meta.input_channels
    heads = meta.heads
    net = _Tuple(model, heads).eval()
    example = torch.zeros(1, channels, *size)
    info = export_meta(meta, fmt, heads, channels, weights)
    if fmt == "torchscript":
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, example, check_trace=False)
        with atomic_write(out, "wb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance, still loadable
            torch.jit.save(traced, f, _extra_files={"fcn_meta.json": json.dumps(info)})
    else:
        with torch.no_grad():
            data = _onnx_bytes(net, example, heads)
        with atomic_write(out, "wb") as f:
            f.write(data)
    atomic_write_json(Path(f"{out}.json"), info)
    return info


def load_exported(path: str | os.PathLike) -> Any:
    """A callable x(N×C×H×W float32 tensor) → tuple of logits tensors, for either format (tests, users)."""
    path = Path(path)
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort  # optional dependency (fcnlib[export])
        except ImportError:
            raise ConfigError(f"{path}: running an ONNX file needs onnxruntime; pip install 'fcnlib[export]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(torch.from_numpy(o) for o in session.run(None, {"image": x.detach().cpu().numpy()}))

        return run
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError/ValueError for a file of another kind
        raise WeightsError(f"{path}: not a TorchScript file ({type(e).__name__}); export one with fcn export") from None

    def run_ts(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return tuple(module(x))

    return run_ts
