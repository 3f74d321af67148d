"""The .caffemodel wire-format reader/writer (fcnlib.models.caffe)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from fcnlib.errors import WeightsError
from fcnlib.models.caffe import _enc_varint, _key, _ld, read_caffemodel, write_caffemodel


def _layers(seed: int = 0) -> dict[str, list[np.ndarray]]:
    r = np.random.default_rng(seed)
    return {
        "conv1_1": [r.standard_normal((4, 3, 3, 3)).astype(np.float32), r.standard_normal(4).astype(np.float32)],
        "fc6": [r.standard_normal((8, 36)).astype(np.float32), r.standard_normal(8).astype(np.float32)],
        "inception_3a/1x1": [r.standard_normal((2, 4, 1, 1)).astype(np.float32),
                             r.standard_normal(2).astype(np.float32)],
    }


@pytest.mark.parametrize("v1,packed,legacy", [(False, True, False), (True, False, True), (True, True, False),
                                              (False, False, True)])
def test_round_trip(tmp_path, v1, packed, legacy):
    layers = _layers()
    write_caffemodel(tmp_path / "n.caffemodel", layers, v1=v1, packed=packed, legacy_shape=legacy)
    got = read_caffemodel(tmp_path / "n.caffemodel")
    assert list(got) == list(layers)
    for name, blobs in layers.items():
        assert len(got[name]) == len(blobs)
        for a, b in zip(got[name], blobs, strict=True):
            want = b.reshape((1,) * (4 - b.ndim) + b.shape) if legacy else b
            assert a.dtype == np.float32 and a.shape == want.shape
            np.testing.assert_array_equal(a, want)


def test_known_bytes_are_decoded(tmp_path):
    """Hand-assembled message (independent of the writer): one new-style layer, shape {2,2}, packed data,
    plus an unknown varint field and a layer without blobs that must be skipped."""
    data = np.array([1.5, -2.0, 0.25, 8.0], "<f4").tobytes()
    blob = _ld(7, _ld(1, bytes([2, 2]))) + _ld(5, data)
    layer = _ld(1, b"fc8") + _ld(2, b"InnerProduct") + _key(3, 0) + _enc_varint(300) + _ld(7, blob)
    empty = _ld(1, b"relu") + _ld(2, b"ReLU")
    msg = _ld(1, b"net") + _ld(100, empty) + _ld(100, layer)
    (tmp_path / "m.caffemodel").write_bytes(msg)
    got = read_caffemodel(tmp_path / "m.caffemodel")
    assert list(got) == ["fc8"]
    np.testing.assert_array_equal(got["fc8"][0], [[1.5, -2.0], [0.25, 8.0]])


def test_double_data_and_unpacked_runs(tmp_path):
    # BlobProto with legacy dims 1×1×1×3 and packed double_data (field 8)
    blob = b"".join(_key(i, 0) + _enc_varint(d) for i, d in zip((1, 2, 3, 4), (1, 1, 1, 3), strict=True))
    blob += _ld(8, struct.pack("<3d", 1.0, 2.5, -4.0))
    # a second blob: unpacked floats followed by a shape field (the run must stop at the next tag)
    blob2 = b"".join(_key(5, 5) + struct.pack("<f", v) for v in (3.0, 4.0)) + _ld(7, _ld(1, bytes([2])))
    layer = _ld(4, b"old") + _ld(6, blob) + _ld(6, blob2)
    (tmp_path / "d.caffemodel").write_bytes(_ld(2, layer))
    got = read_caffemodel(tmp_path / "d.caffemodel")["old"]
    np.testing.assert_array_equal(got[0], np.array([1.0, 2.5, -4.0], np.float32).reshape(1, 1, 1, 3))
    np.testing.assert_array_equal(got[1], [3.0, 4.0])


def test_bad_files_give_weights_error(tmp_path):
    write_caffemodel(tmp_path / "ok.caffemodel", _layers())
    data = (tmp_path / "ok.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) - 37])
    with pytest.raises(WeightsError, match=r"cut\.caffemodel.*truncated"):
        read_caffemodel(tmp_path / "cut.caffemodel")
    (tmp_path / "deploy.prototxt").write_text('name: "VGG"\nlayers {\n  name: "conv1_1"\n}\n')
    with pytest.raises(WeightsError, match="prototxt"):
        read_caffemodel(tmp_path / "deploy.prototxt")
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        read_caffemodel(tmp_path / "empty.caffemodel")
    with pytest.raises(WeightsError, match="not found"):
        read_caffemodel(tmp_path / "missing.caffemodel")
    # shape says 3 values, data holds 4
    blob = _ld(7, _ld(1, bytes([3]))) + _ld(5, np.zeros(4, "<f4").tobytes())
    (tmp_path / "bad.caffemodel").write_bytes(_ld(100, _ld(1, b"x") + _ld(7, blob)))
    with pytest.raises(WeightsError, match="shape"):
        read_caffemodel(tmp_path / "bad.caffemodel")
