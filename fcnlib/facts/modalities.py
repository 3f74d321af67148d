"""Input modalities, defined once: the channels each contributes (inputs are concatenated in the listed
order). fcnlib.pipeline.config, fcnlib.data, fcnlib.train and fcnlib.eval.inference read them from here,
and a test checks the config schema's modality enum against NET_MODALITIES."""

from __future__ import annotations

#: Every modality a prepared dataset may hold (rawdepth: NYUD's unfilled depth, 0 = missing).
MODALITY_CHANNELS: dict[str, int] = {"rgb": 3, "hha": 3, "depth": 1, "rawdepth": 1}

#: The modalities an experiment may feed a net (config `modalities:`).
NET_MODALITIES: tuple[str, ...] = ("rgb", "hha", "depth")
