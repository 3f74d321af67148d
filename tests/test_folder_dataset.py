"""A dataset of your own declared in the config alone: images/ + masks/ + a class list
(fcnlib.facts.datasets.folder_spec) → prepare_folder → the dataset.json layout SegDataset reads. Masks as class
indices or colours (palette), each checked with one error naming the file; train/val made with a seed when no lists
are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnlib.data import SegDataset
from fcnlib.data.prepare import prepare_dataset
from fcnlib.data.prepare.folder import make_splits, prepare_folder
from fcnlib.errors import ConfigError, DataError
from fcnlib.facts import datasets as registry
from fcnlib.files.io import write_label_png, write_png
from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["background", "leaf", "spot"]
PALETTE = [[0, 0, 0], [0, 160, 0], [200, 40, 40]]


def make_folder(root: Path, n: int = 6, ext: str = ".png", colour: bool = False, size=(20, 24)) -> Path:
    """n images with an index (or colour) mask each: class 1 square, class 2 stripe, void border."""
    h, w = size
    rng = np.random.default_rng(1)
    for k in range(n):
        img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        lab = np.zeros((h, w), np.uint8)
        lab[4:12, 4:12] = 1
        lab[:, 16 + k % 3] = 2
        lab[0, :] = 255
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / f"im{k:02d}{ext}")
        if colour:
            rgb = np.array(PALETTE, np.uint8)[np.minimum(lab, 2)]
            rgb[lab == 255] = PALETTE[0]
            write_png(root / "masks" / f"im{k:02d}.png", rgb)
        else:
            Image.fromarray(lab, mode="L").save(root / "masks" / f"im{k:02d}.png")
    return root


def test_index_masks_prepare_to_the_layout_segdataset_reads(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine", ext=".jpg")
    meta = prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES, workers=1)
    assert meta["heads"] == {"sem": 3} and meta["classes"] == {"sem": CLASSES}
    assert meta["sizes"] == {"train": 5, "val": 1}  # 20 % of 6, rounded, at least one
    ds = SegDataset(tmp_path / "out" / "dataset.json", "train")
    assert ds.num_classes == {"sem": 3} and len(ds) == 5
    img, lab = ds[0]
    assert img.shape == (3, 20, 24) and set(np.unique(lab.numpy())) == {0, 1, 2, 255}
    # the label PNG is the mask's ids, 255 kept as void
    i = ds.ids[0]
    assert (np.asarray(Image.open(tmp_path / "out" / "labels" / f"{i}.png"))
            == np.asarray(Image.open(src / "masks" / f"{i}.png"))).all()


def test_palette_pngs_without_a_config_palette_are_read_as_indices(tmp_path: Path) -> None:
    """VOC-style masks: palette PNGs whose pixel values are the class ids (their colours only for viewing)."""
    src = make_folder(tmp_path / "mine")
    for p in (src / "masks").iterdir():
        write_label_png(p, np.asarray(Image.open(p)))
    assert Image.open(src / "masks" / "im00.png").mode == "P"
    prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES, workers=1)
    lab = np.asarray(Image.open(tmp_path / "out" / "labels" / "im00.png"))
    assert lab[5, 5] == 1 and lab[10, 16] == 2 and lab[0, 0] == 255


def test_colour_masks_are_mapped_through_the_palette(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine", colour=True)
    prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES, palette=PALETTE,
                   workers=1)
    lab = np.asarray(Image.open(tmp_path / "out" / "labels" / "im00.png"))
    assert lab[5, 5] == 1 and lab[10, 16] == 2 and lab[15, 2] == 0


@pytest.mark.parametrize("case, match", [
    ("value", r"im03\.png: label values \[7\] are outside 0\.\.2 \(and not the ignore value 255\); fix the mask"),
    ("value16", r"im03\.png: label values \[258\] are outside 0\.\.2 .*; fix the mask"),
    ("rgb", r"im03\.png: mask is a RGB image, not class indices; .*palette"),
    ("size", r"im03\.png: label size 24×19 differs from its image 24×20; fix the mask"),
    ("missing", r"im03\.png: mask not found"),
])
def test_a_bad_mask_is_one_error_naming_it(tmp_path: Path, case: str, match: str) -> None:
    src = make_folder(tmp_path / "mine")
    mask = src / "masks" / "im03.png"
    lab = np.asarray(Image.open(mask)).copy()
    if case == "value":
        lab[2, 2] = 7
        Image.fromarray(lab, mode="L").save(mask)
    elif case == "value16":  # 258 would read as class 2 if narrowed to 8 bits before the check
        wide = lab.astype(np.uint16)
        wide[2, 2] = 258
        Image.fromarray(wide).save(mask)
    elif case == "rgb":
        write_png(mask, np.stack([lab] * 3, -1))
    elif case == "size":
        Image.fromarray(lab[:19], mode="L").save(mask)
    else:
        mask.unlink()
    with pytest.raises(DataError, match=match):
        prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES, workers=1)
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_a_colour_outside_the_palette_names_file_and_colour(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine", colour=True)
    rgb = np.asarray(Image.open(src / "masks" / "im01.png").convert("RGB")).copy()
    rgb[3, 3] = (1, 2, 3)
    write_png(src / "masks" / "im01.png", rgb)
    with pytest.raises(DataError, match=r"im01\.png: colours \[\(1, 2, 3\)\] are not in the dataset's palette"):
        prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES,
                       palette=PALETTE, workers=1)
    write_png(src / "masks" / "im01.png", np.zeros((20, 23, 3), np.uint8))
    with pytest.raises(DataError, match=r"im01\.png: mask size 23×20 differs from its image 24×20"):
        prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES,
                       palette=PALETTE, workers=1)


def test_made_splits_depend_on_seed_and_ids_only() -> None:
    ids = [f"x{i}" for i in range(50)]
    a = make_splits(ids, 0.2, seed=0)
    assert a == make_splits(list(reversed(ids)), 0.2, seed=0)  # not on listing order
    assert len(a["val"]) == 10 and sorted(a["train"] + a["val"]) == sorted(ids) and not set(a["train"]) & set(a["val"])
    assert make_splits(ids, 0.2, seed=1)["val"] != a["val"]
    assert make_splits(ids[:2], 0.9, seed=0)["train"]  # never an empty train split
    with pytest.raises(DataError, match="at least 2"):
        make_splits(ids[:1], 0.2, seed=0)


def test_given_lists_are_used_and_checked(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine")
    (src / "train.txt").write_text("im00\nim01\nim02\n")
    (src / "val.txt").write_text("im05\n")
    meta = prepare_dataset("fcnlib.data.prepare.folder:prepare_folder", tmp_path / "out",
                           {"images_dir": src / "images", "masks_dir": src / "masks",
                            "list_train": src / "train.txt", "list_val": src / "val.txt"},
                           options={"name": "mine", "classes": CLASSES}, takes_lists=True, workers=1)
    assert meta["sizes"] == {"train": 3, "val": 1}
    (src / "val.txt").write_text("im05\nnope\n")
    with pytest.raises(DataError, match=r"val\.txt: ids \['nope'\] of split 'val' have no image"):
        prepare_folder(tmp_path / "out2", src / "images", src / "masks", name="mine", classes=CLASSES, workers=1,
                       lists={"train": src / "train.txt", "val": src / "val.txt"})


def test_mixed_image_formats_are_refused_naming_the_folder(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "mine")
    Image.open(src / "images" / "im00.png").convert("RGB").save(src / "images" / "extra.jpg")
    with pytest.raises(DataError, match=r"images: images with several extensions"):
        prepare_folder(tmp_path / "out", src / "images", src / "masks", name="mine", classes=CLASSES, workers=1)


# --- declared in the config ------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> dict:
    """config/test.yaml plus a folder dataset `mine` and an experiment on it."""
    make_folder(tmp_path / "mine")
    (tmp_path / "mine" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    cfg["datasets"]["mine"] = {"folder": str(tmp_path / "mine"), "classes": "classes.txt"}
    cfg["experiments"]["mine-fcn32s"] = {"dataset": "mine", "variant": "fcn32s"}
    return cfg


def test_a_folder_dataset_validates_and_resolves(config: dict) -> None:
    fcncfg.validate_config(config, source="cfg")
    spec = registry.spec("mine", config)
    assert spec.heads == {"sem": 3} and spec.prepare == "fcnlib.data.prepare.folder:prepare_folder"
    assert set(spec.inputs) == {"images_dir", "masks_dir", "classes_file"}
    cfg = fcncfg.train_config(config, "mine-fcn32s")
    assert cfg["arch"]["num_classes"] == 3 and (cfg["train_split"], cfg["val_split"]) == ("train", "val")
    assert cfg["dataset_json"] == "data/mine/dataset.json"


@pytest.mark.parametrize("change, match", [
    ({"folder": "/no/such/dir"}, r"at 'datasets\.mine\.folder': folder /no/such/dir not found"),
    ({"classes": "nope.txt"}, r"at 'datasets\.mine\.classes': cannot read class list file"),
    ({"classes": ["only"]}, r"at 'datasets\.mine\.classes'"),
    ({"classes": ["a", "b", "a"]}, r"at 'datasets\.mine\.classes': class names \['a'\] appear twice"),
    ({"palette": [[0, 0, 0], [1, 1, 1]]}, r"at 'datasets\.mine\.palette': 2 colours for 3 classes"),
    ({"palette": [[0, 0, 0], [1, 1, 1], [1, 1, 1]]}, r"at 'datasets\.mine\.palette': two classes share a colour"),
    ({"splits": {"train": "t.txt"}}, r"at 'datasets\.mine\.splits': no list for split 'val'"),
    ({"val_split": "test"}, r"at 'datasets\.mine\.train_split': made splits are named 'train' and 'val'"),
    ({"colours": 3}, r"at 'datasets\.mine': unknown key\(s\) \['colours'\]"),
    ({"val_fraction": 1.5}, r"at 'datasets\.mine\.val_fraction'"),
    ({"classes": [["a"], "b"]}, r"at 'datasets\.mine\.classes'"),
])
def test_folder_entry_mistakes_name_the_key(config: dict, change: dict, match: str) -> None:
    config["datasets"]["mine"].update(change)
    with pytest.raises(ConfigError, match=match):
        fcncfg.validate_config(config, source="cfg")


def test_a_dataset_name_must_be_a_plain_path_part(config: dict) -> None:
    config["datasets"]["../up"] = config["datasets"].pop("mine")
    with pytest.raises(ConfigError, match=r"at 'datasets'.*'\.\./up' does not match"):
        fcncfg.validate_config(config, source="cfg")


def test_a_builtin_name_cannot_be_a_folder(config: dict) -> None:
    config["datasets"]["pascal"] = config["datasets"].pop("mine")
    with pytest.raises(ConfigError, match=r"at 'datasets\.pascal': unknown key\(s\) \['classes', 'folder'\]"):
        fcncfg.validate_config(config, source="cfg")
    with pytest.raises(ConfigError, match=r"at 'datasets\.pascal\.folder': 'pascal' is a built-in dataset"):
        registry.spec("pascal", config)  # the registry refuses it too, whoever asks


def test_a_misspelt_builtin_dataset_is_asked_for_its_folder(config: dict) -> None:
    config["datasets"]["pascl"] = {"train_split": "train", "val_split": "seg11valid"}
    with pytest.raises(ConfigError, match=r"at 'datasets\.pascl'.*'folder' is a required property"):
        fcncfg.validate_config(config, source="cfg")
