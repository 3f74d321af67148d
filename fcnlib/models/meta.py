"""ModelMeta: what a weights file says about its net besides the tensors — one definition for writers and readers.

A file written by `save_model` is {"state_dict": ..., "meta": {...}}. The meta is stored as a plain dict
(torch.load(weights_only=True) reconstructs no classes); `ModelMeta` is that dict with the facts every reader
needs as properties, so their defaults and checks live here once: the trainer, the released-model
converter and the GPU check write through `ModelMeta.create`, and `load_model` returns a ModelMeta.

Keys: arch (build_fcn kwargs or a late-fusion description), modalities (input order; files older than the
key are RGB), preprocessing ({modality: Preprocessing.to_dict()}), classes (names, or {head: names}), and
optional provenance (dataset, data_source ("real"|"demo": the dataset.json's source), val_split (the split
validated on: `fcn evaluate`'s default), experiment, config_hash, iterations, recipe, init, seed, val, released, …).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from fcnlib.errors import ConfigError, DataError, WeightsError
from fcnlib.facts.datasets import MODALITY_CHANNELS
from fcnlib.models.preprocessing import Preprocessing

#: Modalities of a file that does not say (written before the key existed): the paper's RGB nets.
DEFAULT_MODALITIES: tuple[str, ...] = ("rgb",)


def primary_head(heads: Iterable[str]) -> str:
    """The head the four metrics, tables and figures report: "sem" (SIFT Flow's semantic head), else the
    only (first) one. `heads`: head names, or a {head: classes} mapping."""
    names = list(heads)
    return "sem" if "sem" in names else names[0]


class ModelMeta(dict):
    """The meta dict of a weights file, with typed accessors. Insertion order is the writer's (it is
    pickled as it stands, so a weights file's bytes depend on it)."""

    @classmethod
    def create(cls, arch: Mapping[str, Any], modalities: list[str] | tuple[str, ...],
               preprocessing: Mapping[str, Any], classes: list[str] | Mapping[str, list[str]] | None,
               **provenance: Any) -> ModelMeta:
        """A checked meta for a file about to be written: every modality known and given preprocessing."""
        mods = list(modalities)
        unknown = [m for m in mods if m not in MODALITY_CHANNELS]
        if not mods or unknown:
            raise WeightsError(f"model meta: modalities {mods} (unknown {unknown}); use {sorted(MODALITY_CHANNELS)}")
        # values kept as given (not copied): pickle shares repeated objects, so copies would change file bytes
        pre = {m: p.to_dict() if isinstance(p, Preprocessing) else p for m, p in preprocessing.items()}
        missing = [m for m in mods if m not in pre]
        if missing:
            raise WeightsError(f"model meta: no preprocessing for modalities {missing}; every input needs one")
        return cls({"arch": arch, "modalities": mods, "preprocessing": pre, "classes": classes,
                    **provenance})

    # -- what readers use --------------------------------------------------------------------------------
    @property
    def arch(self) -> dict[str, Any]:
        return self["arch"]

    @property
    def modalities(self) -> list[str]:
        return list(self.get("modalities") or DEFAULT_MODALITIES)

    @property
    def input_channels(self) -> int:
        """Channels of the net's input: the modalities' channels, concatenated in order."""
        unknown = [m for m in self.modalities if m not in MODALITY_CHANNELS]
        if unknown:
            raise WeightsError(f"model meta: unknown modalities {unknown}; known: {sorted(MODALITY_CHANNELS)}")
        return sum(MODALITY_CHANNELS[m] for m in self.modalities)

    @property
    def heads(self) -> list[str]:
        """Output heads in order (arch["heads"]; a late fusion's are its first member's), else ["sem"]."""
        arch = self.get("arch") if isinstance(self.get("arch"), dict) else {}
        if arch.get("fusion") == "late" and arch.get("members"):
            arch = arch["members"][0]
        heads = arch.get("heads") if isinstance(arch, dict) else None
        return list(heads) if isinstance(heads, dict) and heads else ["sem"]

    @property
    def classes(self) -> list[str] | dict[str, list[str]] | None:
        return self.get("classes")

    def head_classes(self, head: str) -> list[str] | None:
        """Class names of one output head: a {head: names} entry, or the plain list for the primary head."""
        classes = self.classes
        if isinstance(classes, dict):
            names = classes.get(head)
        else:
            names = classes if head == primary_head(self.heads) else None
        return [str(c) for c in names] if isinstance(names, list | tuple) else None

    @property
    def is_demo(self) -> bool:
        """Trained on (or converted from) the synthetic demo data: its labels say nothing about real images."""
        return self.get("data_source") == "demo"

    @property
    def val_split(self) -> str | None:
        """The split the trainer validated on (the experiment's val_split), if recorded."""
        split = self.get("val_split")
        return split if isinstance(split, str) and split else None

    @property
    def dataset(self) -> str | None:
        return self.get("dataset")

    @property
    def experiment(self) -> str | None:
        return self.get("experiment")

    def preprocessing_dicts(self) -> dict[str, dict[str, Any]]:
        """{modality: stored preprocessing dict} as written (the trainer's staged init copies them on)."""
        pre = self.get("preprocessing")
        return {m: dict(p) for m, p in pre.items()} if isinstance(pre, dict) else {}

    def preprocessing(self, weights: str | os.PathLike) -> dict[str, Preprocessing]:
        """{modality: Preprocessing} for every input modality (a DataError naming `weights` if one is missing,
        a WeightsError naming it and the modality if one holds a bad number)."""
        pre = self.get("preprocessing")
        mods = self.modalities
        if not isinstance(pre, dict) or any(m not in pre for m in mods):
            raise DataError(f"{weights}: weights carry no preprocessing for modalities {mods}; re-save them with "
                            f"fcnlib.models.save_model (meta['preprocessing'] per modality)")
        return {m: self._preprocessing_of(weights, m, pre[m]) for m in mods}

    def _preprocessing_of(self, weights: str | os.PathLike, modality: str, d: Any) -> Preprocessing:
        fix = "the file is damaged or was not written by fcnlib — delete it and recreate it"
        try:
            p = Preprocessing.from_dict(d)
        except ConfigError as e:
            raise WeightsError(f"{weights}: meta['preprocessing']['{modality}']: {e}; {fix}") from None
        want = MODALITY_CHANNELS.get(modality)
        if want is not None and p.channels != want:
            raise WeightsError(f"{weights}: meta['preprocessing']['{modality}'] has {p.channels} mean values, but "
                               f"{modality} has {want} channel(s); {fix}")
        return p

    def check(self, weights: str | os.PathLike) -> None:
        """Every fact a reader will use, checked once where the file is read: modalities known, each
        stored preprocessing valid (finite numbers, one per channel, std > 0), and the net's input channels
        (arch) equal to the modalities' channels — so a contradiction is one error naming the file, not a
        shape error or a silently wrong input later."""
        mods = self.get("modalities")
        if mods is not None and (not isinstance(mods, list) or not mods
                                 or any(not isinstance(m, str) or m not in MODALITY_CHANNELS for m in mods)):
            raise WeightsError(f"{weights}: meta['modalities']={mods!r}; each must be one of "
                               f"{sorted(MODALITY_CHANNELS)} — delete the file and recreate it")
        pre = self.get("preprocessing")
        if pre is not None:
            if not isinstance(pre, dict):
                raise WeightsError(f"{weights}: meta['preprocessing'] must map modalities to settings, got "
                                   f"{type(pre).__name__}; delete the file and recreate it")
            for m, d in pre.items():
                self._preprocessing_of(weights, str(m), d)
        if mods is not None:
            have = arch_input_channels(self.get("arch"))
            if have is not None and have != self.input_channels:
                raise WeightsError(f"{weights}: meta['arch'] takes {have} input channels but meta['modalities'] "
                                   f"{mods} give {self.input_channels}; the file contradicts itself — delete it "
                                   f"and recreate it")


def arch_input_channels(arch: Any) -> int | None:
    """Input channels an arch description takes (a late fusion: its members' together); None if unknown."""
    if not isinstance(arch, dict):
        return None
    if arch.get("fusion") == "late":
        members = arch.get("members")
        if not isinstance(members, list):
            return None
        chans = [arch_input_channels(m) for m in members]
        return None if None in chans else sum(chans)  # type: ignore[arg-type]
    c = arch.get("in_channels", 3)
    return c if isinstance(c, int) and not isinstance(c, bool) else None
