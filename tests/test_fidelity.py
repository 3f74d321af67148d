"""docs/fidelity.md is generated from the resolved config and the authors' values in fcnlib.report.fidelity: it must
be exactly that text, list every experiment, and explain every row that is not equal."""

import copy
from pathlib import Path

from fcnlib.report import fidelity

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"


def test_doc_is_the_generated_text(paper):
    expected = fidelity.render(paper, "config/config.yaml")
    assert DOC.read_text() == expected, (
        "docs/fidelity.md is stale: run "
        "`.venv/bin/python -m fcnlib.report.fidelity config/config.yaml > docs/fidelity.md`")


def test_every_experiment_has_rows_in_both_recipes(paper):
    rows = fidelity.rows(paper)
    text = DOC.read_text()
    for recipe in ("released", "paper"):
        have = {r.experiment for r in rows if r.recipe == recipe}
        assert have == set(paper["experiments"]), recipe
    for name in paper["experiments"]:
        assert f"| {name} | lr |" in text
        assert name in fidelity.AUTHORS_DIR, f"{name}: say which authors' folder it follows (or None)"


def test_no_difference_without_a_reason(paper):
    rows = fidelity.rows(paper)
    unexplained = [(r.recipe, r.experiment, r.setting) for r in rows if r.status != "equal" and not r.reason]
    assert not unexplained
    assert "NO REASON GIVEN" not in DOC.read_text()
    for line in DOC.read_text().splitlines():
        if line.startswith("| ") and "**differs**" in line:
            assert line.split("**differs**:", 1)[1].strip(" |"), line


def test_released_recipe_matches_the_authors_settings_that_matter(paper):
    rows = {(r.experiment, r.setting): r for r in fidelity.rows(paper) if r.recipe == "released"}
    for key in [("voc-alexnet-fcn32s", "lr"), ("voc-alexnet-fcn32s", "iter_size"),
                ("voc-alexnet-fcn32s", "momentum"), ("voc-alexnet-fcn32s", "init"),
                ("voc-fcn8s-atonce", "iterations"), ("context-fcn8s", "iterations"),
                ("context-fcn16s", "validation every"), ("nyud-hha-fcn32s", "validation every"),
                ("sift-fcn16s", "validation every"), ("nyud-rgbhha-fcn32s", "lr"),
                ("voc-fcn8s", "layers that learn"), ("voc-fcn8s", "lr"), ("voc-fcn16s", "init")]:
        assert rows[key].status == "equal", (key, rows[key].authors_text, rows[key].ours_text)


def test_a_new_difference_fails_until_explained(paper):
    cfg = copy.deepcopy(paper)
    cfg["recipes"]["released"]["momentum"] = 0.95
    bad = [r for r in fidelity.rows(cfg) if r.status == "differs" and not r.reason]
    assert {r.setting for r in bad} == {"momentum"}
    assert "NO REASON GIVEN" in fidelity.render(cfg)
    cfg = copy.deepcopy(paper)
    cfg["recipes"]["released"]["learn_upsampling"] = True  # the CVPR behaviour under the released recipe
    bad = [r for r in fidelity.rows(cfg) if r.status == "differs" and not r.reason]
    assert {r.setting for r in bad} == {"layers that learn"}


def test_torchvision_sources_are_labelled_approximations(paper):
    cfg = copy.deepcopy(paper)
    cfg["backbones"]["googlenet"] = {"source": "googlenet_tv", "format": "torchvision"}
    cfg["backbones"]["vgg16"] = {"source": "vgg16_tv", "format": "torchvision"}
    rows = [r for r in fidelity.rows(cfg) if r.setting == "init" and r.status == "differs"]
    g = [r for r in rows if r.experiment == "voc-googlenet-fcn32s"]
    assert g and all("approximation" in r.reason for r in g)
    v = [r for r in rows if r.experiment == "voc-fcn32s"]
    assert v and all("vgg16-397923af.pth" in r.reason for r in v)
    assert all(r.reason for r in fidelity.rows(cfg) if r.status != "equal")
