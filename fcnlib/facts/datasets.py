"""The dataset registry: every fact about a dataset, in one place.

One `DatasetSpec` per dataset holds its heads and class names, the modalities its prepared folder holds,
the split lists that may be downloaded on their own, and its prepare step (the function and the
arguments the workflow feeds it). The config schema's dataset and modality lists are generated from here
(fcnlib.pipeline.config.load_schema), the prepare rules are generated from here (workflow/rules/prepare.smk), and
the trainer's class counts come from here.

Datasets declared in a config alone (`datasets: {<name>: {folder: ...}}`: images/, masks/, a class list)
get their spec from that entry (`spec(name, config)`), prepared by fcnlib.data.prepare.folder.

No torch (nor numpy) import: the Snakefile imports this at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fcnlib.errors import ConfigError, DataError
from fcnlib.files.paths import open_regular

#: Channels each modality contributes (inputs are concatenated in the listed order). rawdepth: NYUD's
#: unfilled depth (0 = missing), held by the prepared dataset but not fed to a net.
MODALITY_CHANNELS: dict[str, int] = {"rgb": 3, "hha": 3, "depth": 1, "rawdepth": 1}

#: The modalities an experiment may feed a net (config `modalities:`; the schema's enum).
NET_MODALITIES: tuple[str, ...] = ("rgb", "hha", "depth")

#: Modalities made from a prepared dataset by a later rule (not by its prepare step): modality → its rule's output
#: under the dataset's folder (fcnlib.files.layout.derived_modality).
DERIVED_MODALITIES: dict[str, str] = {"hha": "hha/manifest.json"}


@dataclass(frozen=True)
class Input:
    """One argument of a prepare function: an extracted archive (`extracted`), a downloaded file (`raw`)
    — both named by their config source — or a path given in the config (`path`)."""

    kind: str  # "extracted" | "raw" | "path"
    ref: str


@dataclass(frozen=True)
class DatasetSpec:
    """What the pipeline knows about one dataset before it is prepared."""

    name: str
    #: class names per head; the first head is the one the tables score ("sem")
    classes: Mapping[str, tuple[str, ...]]
    #: "module:function" turning the inputs into data/<name>/dataset.json
    prepare: str
    #: the prepare function's keyword arguments that are files: name → Input
    inputs: Mapping[str, Input] = field(default_factory=dict)
    #: the prepare function's other keyword arguments (JSON values)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: splits given as id lists: for a built-in dataset a list may be downloaded on its own as the config
    #: source `<name>_<split>` (split_list_sources); the prepare function then takes `lists={split: file}`
    split_lists: tuple[str, ...] = ()
    #: modalities the prepared dataset holds (DERIVED_MODALITIES made from it by a later rule)
    modalities: tuple[str, ...] = ("rgb",)

    @property
    def heads(self) -> dict[str, int]:
        """Classes per head, e.g. {"sem": 33, "geo": 3}."""
        return {h: len(names) for h, names in self.classes.items()}

    def described(self) -> dict[str, Any]:
        """The `heads` and `classes` entries of the dataset.json its prepare step writes."""
        return {"heads": self.heads, "classes": {h: list(names) for h, names in self.classes.items()}}

    @property
    def num_classes(self) -> int:
        """Classes of the primary head."""
        return len(next(iter(self.classes.values())))


VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
NYU40_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
SIFTFLOW_SEM_CLASSES: tuple[str, ...] = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk", "desert",
    "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole", "river", "road", "rock",
    "sand", "sea", "sidewalk", "sign", "sky", "staircase", "streetlight", "sun", "tree", "window",
)
SIFTFLOW_GEO_CLASSES: tuple[str, ...] = ("sky", "horizontal", "vertical")
CONTEXT59_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
    "bag", "bed", "bench", "book", "building", "cabinet", "ceiling", "clothes", "computer", "cup", "door",
    "fence", "floor", "flower", "food", "grass", "ground", "keyboard", "light", "mountain", "mouse", "curtain",
    "platform", "sign", "plate", "road", "rock", "shelves", "sidewalk", "sky", "snow", "bedcloth", "track",
    "tree", "truck", "wall", "water", "window", "wood",
)

#: The built-in datasets (the paper's), by name.
REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec(
        "pascal", {"sem": VOC_CLASSES}, "fcnlib.data.prepare.voc:prepare_pascal",
        inputs={"voc2011_dir": Input("extracted", "voc2011"), "voc2012_dir": Input("extracted", "voc2012"),
                "sbd_dir": Input("extracted", "sbd"), "seg11valid_list": Input("raw", "seg11valid"),
                "train_noval_list": Input("raw", "sbd_train_noval")}),
    DatasetSpec(
        "nyud", {"sem": NYU40_CLASSES}, "fcnlib.data.prepare.nyud:prepare_nyud",
        inputs={"raw_dir": Input("extracted", "nyud")}, split_lists=("train", "val", "test"),
        modalities=("rgb", "depth", "rawdepth", "hha")),
    DatasetSpec(
        "siftflow", {"sem": SIFTFLOW_SEM_CLASSES, "geo": SIFTFLOW_GEO_CLASSES},
        "fcnlib.data.prepare.siftflow:prepare_siftflow",
        inputs={"raw_dir": Input("extracted", "siftflow")}, split_lists=("trainval", "test")),
    DatasetSpec(
        "context", {"sem": CONTEXT59_CLASSES}, "fcnlib.data.prepare.context:prepare_context",
        inputs={"voc2010_dir": Input("extracted", "voc2010"), "context_dir": Input("extracted", "context"),
                "classes59_file": Input("raw", "context_classes59")}),
)}

#: A folder dataset's defaults (config `datasets.<name>`; README "Your own data").
FOLDER_DEFAULTS: dict[str, Any] = {"images": "images", "masks": "masks", "train_split": "train",
                                   "val_split": "val", "val_fraction": 0.2, "seed": 0}
#: Bounds of a class/palette list file (read at parse time: a wrong path must not hang or fill memory).
MAX_LIST_BYTES = 1 << 20
MAX_CLASSES = 255  # ids 0..254; 255 is void


def split_list_source(dataset: str, split: str) -> str:
    """The config source that downloads `dataset`'s list of `split`."""
    return f"{dataset}_{split}"


def split_list_sources(dataset: str, sources: Mapping[str, Any]) -> dict[str, str]:
    """{split: source name} of those of built-in `dataset`'s split lists that `sources` (the config's)
    downloads (a folder dataset's lists are files in its folder: DatasetSpec.inputs)."""
    builtin = REGISTRY.get(dataset)
    names = {s: split_list_source(dataset, s) for s in (builtin.split_lists if builtin else ())}
    return {s: n for s, n in names.items() if n in sources}


def is_folder(entry: Mapping[str, Any]) -> bool:
    """Whether a config `datasets:` entry declares a folder dataset."""
    return "folder" in entry


def spec(name: str, config: Mapping[str, Any] | None = None) -> DatasetSpec:
    """The spec of dataset `name`: a built-in one, or the folder dataset `config["datasets"][name]` declares."""
    entry = (config or {}).get("datasets", {}).get(name)
    if entry is not None and is_folder(entry):
        return folder_spec(name, entry, where=f"datasets.{name}")
    if name in REGISTRY:
        return REGISTRY[name]
    raise ConfigError(f"config: at 'datasets.{name}': {name!r} is not a built-in dataset "
                      f"({', '.join(REGISTRY)}); declare it as a folder dataset (folder:, classes:)")


def folder_options(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A folder dataset's config entry with its defaults filled in."""
    return {**FOLDER_DEFAULTS, **entry}


def _in_folder(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def _read_list_file(path: str, where: str, what: str) -> list[str]:
    """Non-empty lines of a small text file (class names, palette rows), one ConfigError if unreadable."""
    try:
        with open_regular(path, f"{what} file") as f:
            data = f.read(MAX_LIST_BYTES + 1)
    except DataError as e:
        raise ConfigError(f"config: at '{where}': {e}") from None
    except OSError as e:
        raise ConfigError(f"config: at '{where}': cannot read {what} file {path} ({e.strerror}); give an "
                          f"existing file (relative to the dataset's folder) or the list itself") from None
    if len(data) > MAX_LIST_BYTES:
        raise ConfigError(f"config: at '{where}': {path} is over {MAX_LIST_BYTES} bytes; is it really a {what}?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config: at '{where}': {path} is not UTF-8 text; write one {what} entry per line") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def folder_classes(entry: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """The class names of a folder dataset: the `classes` list, or the file it names (one name per line)."""
    given = entry["classes"]
    names = (_read_list_file(_in_folder(entry["folder"], given), f"{where}.classes", "class list")
             if isinstance(given, str) else [str(c) for c in given])
    if not 2 <= len(names) <= MAX_CLASSES:
        raise ConfigError(f"config: at '{where}.classes': {len(names)} class name(s); give 2 to {MAX_CLASSES} "
                          f"(index = position, background included)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config: at '{where}.classes': class names {dup} appear twice; names must be unique")
    return tuple(names)


def folder_palette(entry: Mapping[str, Any], where: str) -> list[list[int]] | None:
    """The RGB colour of each class (masks saved in colour), or None (masks hold class indices)."""
    given = entry.get("palette")
    if given is None:
        return None
    if isinstance(given, str):
        path = _in_folder(entry["folder"], given)
        rows = []
        for k, line in enumerate(_read_list_file(path, f"{where}.palette", "palette")):
            parts = line.replace(",", " ").split()
            if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
                raise ConfigError(f"config: at '{where}.palette': {path} entry {k + 1} {line!r} is not 'R G B' "
                                  f"(three integers 0..255)")
            rows.append([int(p) for p in parts])
    else:
        rows = [list(map(int, c)) for c in given]
    if len({tuple(c) for c in rows}) != len(rows):
        raise ConfigError(f"config: at '{where}.palette': two classes share a colour; give each its own")
    return rows


def folder_spec(name: str, entry: Mapping[str, Any], where: str) -> DatasetSpec:
    """The spec of a folder dataset declared in the config (checked: class list, palette, split lists)."""
    e = folder_options(entry)
    if name in REGISTRY:
        raise ConfigError(f"config: at '{where}.folder': {name!r} is a built-in dataset; give your folder "
                          f"dataset another name")
    for key in ("folder", "images", "masks"):
        path = e["folder"] if key == "folder" else _in_folder(e["folder"], e[key])
        if not os.path.isdir(path):
            raise ConfigError(f"config: at '{where}.{key}': folder {path} not found (relative paths start at the "
                              f"workdir, subfolders at 'folder'); create it or fix the path")
    classes = folder_classes(e, where)
    palette = folder_palette(e, where)
    if palette is not None and len(palette) != len(classes):
        raise ConfigError(f"config: at '{where}.palette': {len(palette)} colours for {len(classes)} classes; "
                          f"give one colour per class, in the order of 'classes'")
    splits = e.get("splits")
    if splits is not None:
        for split in (e["train_split"], e["val_split"]):
            if split not in splits:
                raise ConfigError(f"config: at '{where}.splits': no list for split {split!r} (have {sorted(splits)});"
                                  f" list it, or leave 'splits' out to make train/val with 'seed'")
    elif {e["train_split"], e["val_split"]} != {"train", "val"}:
        raise ConfigError(f"config: at '{where}.train_split': made splits are named 'train' and 'val'; give "
                          f"'splits' to name your own")
    inputs = {"images_dir": Input("path", _in_folder(e["folder"], e["images"])),
              "masks_dir": Input("path", _in_folder(e["folder"], e["masks"]))}
    for key in ("classes", "palette"):  # a list file is an input: editing it reruns the prepare step
        if isinstance(e.get(key), str):
            inputs[f"{key}_file"] = Input("path", _in_folder(e["folder"], e[key]))
    for split, lst in (splits or {}).items():
        inputs[f"list_{split}"] = Input("path", _in_folder(e["folder"], lst))
    options = {"name": name, "classes": list(classes), "palette": palette,
               "val_fraction": float(e["val_fraction"]), "seed": int(e["seed"])}
    return DatasetSpec(name, {"sem": classes}, "fcnlib.data.prepare.folder:prepare_folder", inputs=inputs,
                       options=options, split_lists=tuple(splits or ()))


def splits_of(name: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """(train split, val split) of dataset `name` in `config` (a folder dataset's default: train, val)."""
    entry = config["datasets"][name]
    e = folder_options(entry) if is_folder(entry) else entry
    return e["train_split"], e["val_split"]


def check_config(config: Mapping[str, Any], source: str) -> dict[str, DatasetSpec]:
    """Every dataset of `config` resolved to its spec (folder entries checked); {name: spec}."""
    out = {}
    for name in config.get("datasets", {}):
        try:
            out[name] = spec(name, config)
        except ConfigError as e:
            raise ConfigError(str(e).replace("config:", f"{source}:", 1)) from None
    return out
