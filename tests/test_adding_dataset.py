"""README's "Adding a dataset", followed step by step as written, with a toy dataset: a prepare function in its own
module, one DatasetSpec in the registry (fcnlib.facts.datasets.REGISTRY), its source, `datasets:` entry and an
experiment in the config — nothing else. The config then validates (the schema's lists come from the registry), the
prepare step runs through the workflow's dispatcher with the inputs the registry names, `train_config` resolves the
experiment, and a tiny training and evaluation run through fcnlib with no other change."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnlib.data.prepare import prepare_dataset
from fcnlib.errors import ConfigError
from fcnlib.facts import datasets as registry
from fcnlib.files import layout
from fcnlib.files.io import write_label_png, write_png
from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NAME = "toyshapes"
CLASSES = ["background", "square", "stripe"]

# Step 1 of the recipe: `fcnlib/data/prepare/<name>.py` with `prepare_<name>(out_dir, raw_dir, ...)` writing the
# dataset.json layout (ARCHITECTURE.md). Written as a module of its own (in a temp folder, imported by name).
PREPARE_MODULE = textwrap.dedent('''
    from pathlib import Path

    import numpy as np

    from fcnlib.data.dataset import link_or_copy
    from fcnlib.files.io import IGNORE_INDEX, atomic_write_json, read_label, write_label_png


    def prepare_toyshapes(out_dir, raw_dir, *, source, workers):
        """Raw: images/<id>.png, masks/<id>.png with 9 = unlabelled, lists/<split>.txt. Out: the layout."""
        out_dir, raw_dir = Path(out_dir), Path(raw_dir)
        (out_dir / "labels").mkdir(parents=True, exist_ok=True)
        (out_dir / "splits").mkdir(parents=True, exist_ok=True)
        splits = {}
        for lst in sorted((raw_dir / "lists").glob("*.txt")):
            ids = lst.read_text().split()
            for i in ids:
                lab = read_label(raw_dir / "masks" / f"{i}.png", 10)  # raw ids 0..2 and 9
                lab[lab == 9] = IGNORE_INDEX
                write_label_png(out_dir / "labels" / f"{i}.png", lab)
                link_or_copy(raw_dir / "images" / f"{i}.png", out_dir / "rgb" / f"{i}.png")  # files live inside
            (out_dir / "splits" / lst.name).write_text("\\n".join(ids) + "\\n")
            splits[lst.stem] = {"ids": f"splits/{lst.name}",
                                "images": {"rgb": {"dir": "rgb", "ext": ".png"}},
                                "labels": {"sem": {"dir": "labels", "ext": ".png"}}}
        atomic_write_json(out_dir / "dataset.json", {
            "name": "toyshapes", "source": source, "ignore_index": IGNORE_INDEX, "heads": {"sem": 3},
            "classes": {"sem": ["background", "square", "stripe"]}, "splits": splits})
        return out_dir / "dataset.json"
''')


def _raw(raw: Path, n: int = 4) -> None:
    """A raw download of the toy dataset: a red square (1) or a blue stripe (2) on grey, void border (9)."""
    rng = np.random.default_rng(0)
    ids = [f"t{i:02d}" for i in range(n)]
    for k, i in enumerate(ids):
        img = rng.integers(90, 140, (48, 40, 3)).astype(np.uint8)
        lab = np.zeros((48, 40), np.uint8)
        c = 1 + k % 2
        sl = (slice(10, 30), slice(8, 28)) if c == 1 else (slice(5, 45), slice(16, 22))
        img[sl] = (220, 30, 30) if c == 1 else (30, 40, 220)
        lab[sl] = c
        lab[0, :] = 9
        write_png(raw / "images" / f"{i}.png", img)
        write_label_png(raw / "masks" / f"{i}.png", lab)
    (raw / "lists").mkdir(parents=True)
    (raw / "lists" / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (raw / "lists" / "val.txt").write_text("\n".join(ids[2:]) + "\n")


def test_readme_recipe_names_every_step_this_test_takes():
    section = README.split("## Adding a dataset", 1)[1].split("\n## ", 1)[0]
    for step in ("prepare_<name>", "dataset.json", "DatasetSpec", "REGISTRY", "sources", "datasets:",
                 "experiments"):
        assert step in section, step


@pytest.fixture
def added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The config after following the recipe, in a workdir holding the prepared toy dataset."""
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / f"toy_{NAME}.py").write_text(PREPARE_MODULE)  # step 1: its prepare module
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.delitem(sys.modules, f"toy_{NAME}", raising=False)

    work = tmp_path / "work"
    _raw(work / layout.extracted(NAME))  # what the extract rule makes of its archive source
    monkeypatch.chdir(work)

    config = fcncfg.load_yaml(ROOT / "config" / "test.yaml")  # step 3: the config
    config["sources"][NAME] = {"filename": f"{NAME}.tar", "demo": True}
    config["datasets"][NAME] = {"train_split": "train", "val_split": "val"}
    config["experiments"][f"{NAME}-fcn32s"] = {"dataset": NAME, "variant": "fcn32s", "iterations": 6}
    with pytest.raises(ConfigError, match=rf"at 'datasets\.{NAME}'"):  # not in the registry yet: refused, naming it
        fcncfg.validate_config(config, source="test")
    spec = registry.DatasetSpec(NAME, {"sem": tuple(CLASSES)}, f"toy_{NAME}:prepare_{NAME}",  # step 2: its entry
                                inputs={"raw_dir": registry.Input("extracted", NAME)})
    monkeypatch.setitem(registry.REGISTRY, NAME, spec)
    fcncfg.validate_config(config, source="test")

    # what the generated prepare_<name> rule runs: the entry, given the inputs the registry names
    inputs = {arg: layout.extracted(i.ref) for arg, i in spec.inputs.items()}
    prepare_dataset(spec.prepare, layout.dataset_dir(NAME), inputs, source="demo", workers=1)
    return config


def test_recipe_as_written_validates_resolves_trains_and_evaluates(added: dict) -> None:
    from fcnlib.demo import vgg16_state_dict
    from fcnlib.eval.evaluate import evaluate
    from fcnlib.models import convert_imagenet_file
    from fcnlib.train import train

    cfg = fcncfg.train_config(added, f"{NAME}-fcn32s")
    assert cfg["dataset_json"] == f"data/{NAME}/dataset.json"
    assert cfg["arch"]["num_classes"] == len(CLASSES) and cfg["arch"]["in_channels"] == 3
    assert (cfg["train_split"], cfg["val_split"], cfg["iterations"]) == ("train", "val", 6)
    assert cfg["init"] == {"kind": "imagenet", "path": "data/weights/vgg16.pt"}
    assert fcncfg.weights_path(added, f"{NAME}-fcn32s") == f"results/{NAME}/{NAME}-fcn32s/weights.pt"

    width = float(added["width"])
    Path("data/weights").mkdir(parents=True)
    torch.save(vgg16_state_dict(width, 3), "data/weights/vgg16.pth")  # an ImageNet stand-in, as the demo's
    convert_imagenet_file("data/weights/vgg16.pth", "data/weights/vgg16.pt", "vgg16", "torchvision", width)
    cfg["amp"] = "fp32"  # CPU fp32 whatever the host supports
    out = Path(fcncfg.weights_path(added, f"{NAME}-fcn32s"))
    out.parent.mkdir(parents=True)
    train(cfg, out, out.with_name("resume.pt"), out.with_name("log.jsonl"), device="cpu")
    assert out.is_file()

    res = evaluate(out, cfg["dataset_json"], "val", device="cpu", progress=False)
    assert res["dataset"] == NAME and res["n_images"] == 2 and res["heads"] == {"sem": len(CLASSES)}
    assert list(res["per_class_iu"]) == CLASSES  # the class names come from its dataset.json
    assert res["pixels"] == 2 * (48 - 1) * 40  # two val images, the void top row not counted
    for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert math.isfinite(res[k]) and 0.0 <= res[k] <= 1.0, k
