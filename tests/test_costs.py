"""fcnlib.report.costs: GPU-hours follow the images a table trains (staged parents included), disk the downloads and
nets it needs; README's cost table is the module's on config/config.yaml."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from fcnlib.pipeline import config as fcncfg
from fcnlib.report import costs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper() -> dict:
    return fcncfg.load_yaml(ROOT / "config" / "config.yaml")


def test_hours_follow_the_images_trained(paper):
    base = costs.gpu_hours(paper, "voc-fcn32s")
    assert base == pytest.approx(100_000 * 3 * 0.210 / 3600)  # 100k batch-1 iterations of 3 × 210 ms
    cfg = copy.deepcopy(paper)
    cfg["experiments"]["voc-fcn32s"]["iterations"] = 50_000
    assert costs.gpu_hours(cfg, "voc-fcn32s") == pytest.approx(base / 2)
    # FCN-AlexNet: 20 images per update (iter_size) at the paper's 50 ms forward
    assert costs.gpu_hours(paper, "voc-alexnet-fcn32s") == pytest.approx(100_000 * 20 * 3 * 0.050 / 3600)


def test_a_table_counts_the_parents_it_trains_and_its_downloads(paper):
    rows = {r["table"]: r for r in costs.table_costs(paper)}
    # Table 5 is FCN-16s only, but its 32s parent must be trained first
    assert rows["table5"]["experiments"] == 2
    assert rows["table5"]["gpu_hours"] == pytest.approx(costs.gpu_hours(paper, "sift-fcn16s")
                                                        + costs.gpu_hours(paper, "sift-fcn32s"))
    assert "table3" not in rows  # only notes (test servers): nothing to train
    voc2012 = paper["sources"]["voc2012"]["size"] / 1e9
    cfg = copy.deepcopy(paper)
    cfg["sources"]["voc2012"]["size"] = paper["sources"]["voc2012"]["size"] * 2
    assert costs.disk_gb(cfg, ["voc-fcn32s"]) == pytest.approx(costs.disk_gb(paper, ["voc-fcn32s"]) + 2 * voc2012)
    assert costs.disk_gb(paper, ["sift-fcn32s"]) < costs.disk_gb(paper, ["voc-fcn32s"])
    total = rows["all tables"]
    assert total["gpu_hours"] < sum(r["gpu_hours"] for t, r in rows.items() if t != "all tables") + 1e-9


def test_readme_table_is_the_modules(paper):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- costs -->\n", 1)[1].split("\n<!-- /costs -->", 1)[0]
    assert block == costs.render_markdown(costs.table_costs(paper))
