"""README "Your own data", end to end: a folder of images + masks + a class list, declared in a config file
given after config/test.yaml, is prepared, trained and evaluated by the workflow with no code or rule added;
a bad mask stops its prepare rule with one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

CLASSES = ["background", "square", "stripe"]


def _folder(root: Path, n: int = 6, size: int = 40) -> None:
    """Toy scenes: a red square (1) or a blue stripe (2) on grey noise, void top row (255)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        img = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
        lab = np.zeros((size, size), np.uint8)
        c = 1 + k % 2
        sl = (slice(8, 28), slice(8, 28)) if c == 1 else (slice(4, 36), slice(14, 22))
        img[sl] = (220, 30, 30) if c == 1 else (30, 40, 220)
        lab[sl] = c
        lab[0, :] = 255
        Image.fromarray(img).save(root / "images" / f"s{k}.jpg", quality=95)
        Image.fromarray(lab, mode="L").save(root / "masks" / f"s{k}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")


def _config(tmp_path: Path) -> Path:
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({
        "datasets": {"shapes": {"folder": str(tmp_path / "shapes"), "classes": "classes.txt", "seed": 3}},
        "experiments": {"shapes-fcn32s": {"dataset": "shapes", "variant": "fcn32s"}},
    }))
    return own


def test_a_folder_dataset_trains_and_evaluates_from_config_alone(tmp_path: Path, smk) -> None:
    _folder(tmp_path / "shapes")
    work = tmp_path / "work"
    target = "results/shapes/shapes-fcn32s/val/metrics.json"
    res = smk(work, target, "--cores", "2", config=["config/test.yaml", str(_config(tmp_path))])
    assert "prepare_shapes" in res.stderr
    meta = json.loads((work / "data" / "shapes" / "dataset.json").read_text())
    assert meta["classes"] == {"sem": CLASSES} and meta["sizes"] == {"train": 5, "val": 1}
    m = json.loads((work / target).read_text())
    assert m["dataset"] == "shapes" and m["n_images"] == 1 and list(m["per_class_iu"]) == CLASSES
    assert m["pixels"] == 39 * 40  # the void top row is not scored
    assert 0.0 <= m["mean_iu"] <= 1.0

    # a mask with a value outside the classes: the prepare rule fails with one line naming it
    bad = tmp_path / "shapes" / "masks" / "s4.png"
    lab = np.asarray(Image.open(bad)).copy()
    lab[5, 5] = 9
    Image.fromarray(lab, mode="L").save(bad)
    res = smk(work, "data/shapes/dataset.json", "--cores", "1", "--forcerun", "prepare_shapes",
              config=["config/test.yaml", str(_config(tmp_path))], check=False)
    assert res.returncode != 0
    assert f"error: {bad}: label values [9] are outside 0..2 (and not the ignore value 255); fix the mask" in res.stderr
    assert "Traceback" not in (work / "logs" / "prepare" / "shapes.log").read_text()
