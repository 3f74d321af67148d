"""fcnlib.runtime.compute: one Runtime (device, compute dtype, memory format) per job, from the settings and
the host."""

from __future__ import annotations

import argparse

import pytest
import torch

from fcnlib.cli.options import add_precision
from fcnlib.errors import ConfigError
from fcnlib.runtime import compute


@pytest.fixture(params=[False, True], ids=["fp32-host", "bf16-host"])
def native_bf16(request, monkeypatch) -> bool:
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_auto_follows_the_host(native_bf16):
    rt = compute.resolve_runtime("cpu")
    assert rt.device == torch.device("cpu")
    assert rt.dtype == (torch.bfloat16 if native_bf16 else None)
    assert rt.channels_last is native_bf16
    assert rt.dtype_name == ("bfloat16" if native_bf16 else "float32")


@pytest.mark.parametrize(("amp", "dtype"), [("off", None), ("fp32", None), ("bf16", torch.bfloat16),
                                            ("fp16", torch.float16)])
def test_forced_precision_wins_over_the_host(native_bf16, amp, dtype):
    assert compute.resolve_runtime("cpu", amp).dtype == dtype


def test_channels_last_setting_wins(native_bf16):
    assert compute.resolve_runtime("cpu", "off", True).channels_last is True
    assert compute.resolve_runtime("cpu", "bf16", False).channels_last is False


def test_runtime_is_frozen_and_its_autocast_applies_the_dtype():
    rt = compute.resolve_runtime("cpu", "bf16", False)
    with pytest.raises(AttributeError):
        rt.dtype = None  # type: ignore[misc]
    conv = torch.nn.Conv2d(3, 4, 3)
    with rt.autocast():
        assert conv(torch.zeros(1, 3, 8, 8)).dtype == torch.bfloat16
    with compute.resolve_runtime("cpu", "off").autocast():
        assert conv(torch.zeros(1, 3, 8, 8)).dtype == torch.float32


def test_bad_settings_are_one_config_error():
    with pytest.raises(ConfigError, match="amp/precision"):
        compute.resolve_runtime("cpu", "half")
    with pytest.raises(ConfigError, match="channels_last"):
        compute.resolve_runtime("cpu", "off", "yes")
    with pytest.raises(ConfigError, match="not a device"):
        compute.resolve_device("gpu:0:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-box refusal")
def test_cuda_on_a_cpu_box_is_refused_at_startup():
    with pytest.raises(ConfigError, match=r"config\.yaml: at 'device': device=cuda requested but CUDA is not"):
        compute.check_device("cuda", "config.yaml: at 'device'")
    compute.check_device("auto")
    compute.check_device("cpu")
    assert compute.resolve_device("auto", index=3) == torch.device("cpu")


def test_cli_precision_switch():
    p = argparse.ArgumentParser(prog="x")
    add_precision(p)
    assert p.parse_args([]).precision == "auto"
    assert p.parse_args(["--precision", "fp32"]).precision == "fp32"
    with pytest.raises(SystemExit):
        p.parse_args(["--precision", "int8"])
