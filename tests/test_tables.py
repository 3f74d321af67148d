"""tables.md/json (paper numbers beside ours, DEMO labelling, not-run rows) and the report figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnlib.errors import ConfigError, DataError
from fcnlib.facts import paper
from fcnlib.files.io import atomic_write_json
from fcnlib.report import figures
from fcnlib.report.tables import build_tables, write_tables

HEADER = {"config": "config/demo.yaml", "source": "demo", "device": "Test CPU (2 threads)",
          "iterations": {"pascal/fcn32s": 40, "pascal/fcn16s": 40}, "width": 0.0625}


def metrics(miu: float, **extra) -> dict:
    return {"pixel_acc": 0.8, "mean_acc": 0.6, "mean_iu": miu, "fw_iu": 0.7, "n_images": 4, "split": "val",
            "dataset": "pascal", "dataset_source": "demo", "per_class_iu": {"background": 0.9, "cat": None},
            **extra}


def demo_records(tmp_path: Path) -> list[dict]:
    m32 = tmp_path / "fcn32s.json"
    atomic_write_json(m32, metrics(0.5))
    return [
        {"experiment": "pascal/fcn32s", "table": "table2", "row": "FCN-32s", "metrics": m32},
        {"experiment": "pascal/fcn32s", "table": "table1", "row": "FCN-VGG16", "metrics": m32,
         "stats": {"params": 134_270_000, "receptive_field": 404, "max_stride": 32},
         "timing": {"median_ms": 812.25, "device": "cpu"}},
        {"experiment": "pascal/fcn16s", "table": "table2", "row": "FCN-16s", "metrics": metrics(0.55)},
        {"experiment": "pascal/fcn32s_aug", "table": "ablations",
         "row": "FCN-32s + augmentation (mirror, jitter)", "metrics": metrics(0.52)},
        {"experiment": "siftflow/fcn16s", "table": "table5", "row": "FCN-16s",
         "metrics": metrics(0.3, geo_acc=0.9)},
        {"experiment": "nyud/fcn32s_rgb", "table": "table4", "row": "FCN-32s RGB", "metrics": None,
         "note": "NYUD disabled in this config"},
        {"experiment": "pascal/fcn8s", "table": "table2", "row": "FCN-8s", "metrics": tmp_path / "absent.json"},
    ]


def test_demo_tables_render_every_table_with_demo_label_delta_and_missing_rows(tmp_path):
    md, js = tmp_path / "tables.md", tmp_path / "tables.json"
    write_tables(demo_records(tmp_path), HEADER, md, js)
    text = md.read_text()
    data = json.loads(js.read_text())
    assert text.splitlines()[0].startswith("# DEMO run") and "NOT a reproduction" in text.splitlines()[0]
    for tdef in paper.TABLES.values():  # every table present, each heading flagged DEMO
        assert f"## {tdef['title']} [DEMO]" in text
        for row in tdef["rows"]:
            assert f"| {row} |" in text
    assert text.count("Δ mean IU") == len(paper.TABLES)
    # ours / paper cells with the Δ on mean IU: 50.0 vs 59.4 → −9.4
    assert "| FCN-32s | 80.0 / 89.1 | 60.0 / 73.3 | 50.0 / 59.4 | 70.0 / 81.4 | — / 63.63 | −9.4 |" in text
    assert "| FCN-VGG16 | 50.0 / 56.0 | 812 / 210 | 134M / 134M | 404 / 404 | 32 / 32 | −6.0 |" in text
    assert "— / 94.3" not in text and "90.0 / 94.3" in text  # SIFT Flow geometric accuracy
    # not-run rows with their reasons
    assert "**not run**: NYUD disabled in this config" in text
    assert f"**not run**: no metrics file at {tmp_path / 'absent.json'}" in text
    assert "| FCN-AlexNet | — / 39.8 |" in text and "**not run**: no experiment in the config" in text
    # header block
    for s in ("config/demo.yaml", "Test CPU (2 threads)", "pascal/fcn16s: 40", "DEMO (synthetic)", "0.0625"):
        assert s in text
    # the JSON carries the same numbers
    t2 = {r["row"]: r for r in data["tables"]["table2"]["rows"]}
    assert data["header"]["demo"] is True
    assert t2["FCN-32s"]["ours"]["mean_iu"] == 50.0 and t2["FCN-32s"]["paper"]["mean_iu"] == 59.4
    assert t2["FCN-32s"]["delta_mean_iu"] == pytest.approx(-9.4)
    assert t2["FCN-8s"]["status"] == "not run"
    abl = {r["row"]: r for r in data["tables"]["ablations"]["rows"]}
    assert abl["FCN-32s + augmentation (mirror, jitter)"]["effect_vs_baseline"]["ours"] == pytest.approx(2.0)
    assert abl["FCN-32s VOC2011 train only"]["effect_vs_baseline"]["paper"] == pytest.approx(-3.4)
    # the baseline row is not placed in the ablations by the config: it is read from Table 2's run
    assert abl["FCN-32s"]["status"] == "ok" and abl["FCN-32s"]["ours"]["mean_iu"] == 50.0
    assert "the Table 2 FCN-32s run" in text
    assert abl["FCN-32s + augmentation (mirror, jitter)"]["paper"]["mean_iu"] is None


def test_reruns_are_byte_identical_and_real_runs_have_no_demo_label(tmp_path):
    recs = demo_records(tmp_path)
    write_tables(recs, HEADER, tmp_path / "a.md", tmp_path / "a.json")
    write_tables(recs, HEADER, tmp_path / "b.md", tmp_path / "b.json")
    assert (tmp_path / "a.md").read_bytes() == (tmp_path / "b.md").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    real = [{"experiment": "x", "table": "table2", "row": "FCN-8s",
             "metrics": {**metrics(0.6), "dataset_source": "real"}}]
    data = build_tables(real, {**HEADER, "source": "real"})
    assert data["header"]["demo"] is False
    # demo metrics can never be published under a "real" header
    with pytest.raises(ConfigError, match="DEMO"):
        build_tables(demo_records(tmp_path)[:1], {**HEADER, "source": "real"})


@pytest.mark.parametrize("bad,match", [
    ({"table": "table9", "row": "FCN-8s"}, "table 'table9'"),
    ({"table": "table2", "row": "FCN-4s"}, "row 'FCN-4s'"),
])
def test_unknown_table_or_row_is_a_config_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_tables([{"experiment": "e", "metrics": None, **bad}], HEADER)


def test_duplicate_rows_and_bad_source_are_config_errors():
    rec = {"experiment": "e", "table": "table2", "row": "FCN-8s", "metrics": None}
    with pytest.raises(ConfigError, match="both fill"):
        build_tables([rec, {**rec, "experiment": "f"}], HEADER)
    with pytest.raises(ConfigError, match="source"):
        build_tables([], {**HEADER, "source": "paper"})


def test_paper_numbers_match_spec():
    t = paper.TABLES
    assert [t["table1"]["rows"][r]["mean_iu"] for r in ("FCN-AlexNet", "FCN-VGG16", "FCN-GoogLeNet")] == \
        [39.8, 56.0, 42.5]
    assert [t["table2"]["rows"][r]["released_mean_iu"] for r in ("FCN-32s", "FCN-16s", "FCN-8s", "FCN-8s-atonce")] \
        == [63.63, 65.01, 65.51, 65.40]
    assert t["table5"]["rows"]["FCN-16s"]["geo_acc"] == 94.3
    assert t["table4"]["rows"]["FCN-16s RGB-HHA"]["mean_iu"] == 34.0
    assert t["ablations"]["rows"]["FCN-32s"]["mean_iu"] - t["ablations"]["rows"][
        "FCN-32s VOC2011 train only"]["mean_iu"] == pytest.approx(paper.SBD_GAIN_MEAN_IU)
    assert set(t) == {"table1", "table2", "table3", "table4", "table5", "context", "ablations"}


# ---------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------
def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_fig4_grid_is_deterministic_png(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"image": rng.integers(0, 256, (30, 40, 3), np.uint8), "gt": rng.integers(0, 21, (30, 40)),
             "preds": {n: rng.integers(0, 21, (30, 40)) for n in ("FCN-32s", "FCN-16s", "FCN-8s")},
             "name": f"img{i}"} for i in range(2)]
    a = figures.fig4_grid(rows, tmp_path / "a.png", title="test")
    b = figures.fig4_grid(rows, tmp_path / "b.png", title="test")
    assert a.read_bytes() == b.read_bytes()
    img = _png(a)
    assert img.shape[1] > img.shape[0] and img.std() > 10  # wide (5 columns), not blank
    with pytest.raises(DataError):
        figures.fig4_grid([], tmp_path / "c.png")


def test_disagreement_ranks_images_where_nets_differ():
    gt = np.zeros((4, 4), np.uint8)
    gt[0] = 255  # void row: differences there do not count
    a = np.zeros((4, 4), np.int64)
    b = a.copy()
    b[0] = 3  # differs only under void
    c = a.copy()
    c[1:3, :2] = 1  # differs on 4 of 12 valid pixels
    assert figures.disagreement([a, b], gt) == 0.0
    assert figures.disagreement([a, c], gt) == pytest.approx(4 / 12)
    assert figures.disagreement([a, b, c], gt) == pytest.approx(2 / 12)
    assert figures.disagreement([a], gt) == 0.0


def test_thin_mask_and_gain_pick_fine_structures_the_finest_net_recovers():
    gt = np.zeros((20, 20), np.uint8)
    gt[2:12, 2:12] = 3  # a 10×10 block: survives the 5×5 opening
    gt[:, 16:18] = 7    # a 2-px pole: thin
    gt[15, :10] = 255   # void is never thin
    thin = figures.thin_mask(gt)
    assert thin[:, 16:18].all() and thin.sum() == 40
    assert not thin[4:10, 4:10].any() and not thin[15, :10].any()
    coarse = np.where(gt == 3, 3, 0)      # FCN-32s: the block, no pole
    fine = np.where(gt == 255, 0, gt)     # FCN-8s: block and pole
    assert figures.thin_gain([coarse, fine], gt) == 40
    assert figures.thin_gain([fine, coarse], gt) == -40
    assert figures.thin_gain([coarse], gt) == 0
    assert figures.thin_gain([coarse, fine], np.where(gt == 7, 0, gt).astype(np.uint8)) == 0


def test_learning_curves_and_per_class_bars(tmp_path):
    logs = {}
    for name, slow in (("whole image", 1.0), ("sampling p=0.25", 2.5)):
        p = tmp_path / f"{slow}.jsonl"
        lines = [json.dumps({"iter": i, "loss": 100.0 / (i + 1), "time": slow * i, "lr": 1e-10})
                 for i in range(0, 50, 5)]
        lines += [json.dumps({"iter": i, "val": {"mean_iu": 0.1 + i / 200}}) for i in (20, 40)]
        lines.append('{"iter": 50, "lo')  # a killed job's truncated last line is tolerated
        p.write_text("\n".join(lines))
        logs[name] = p
    for x in ("iter", "time"):
        out = figures.learning_curves(logs, tmp_path / f"lc_{x}.png", x=x)
        assert _png(out).std() > 10
    loss, val = figures.read_log(logs["whole image"])
    assert len(loss) == 10 and len(val) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"iter": 1, "loss": 2}\nnot json\n{"iter": 2, "loss": 1}\n')
    with pytest.raises(DataError, match="line 2"):
        figures.read_log(bad)

    m = tmp_path / "m.json"
    atomic_write_json(m, metrics(0.5))
    out = figures.per_class_bars({"FCN-32s": m, "FCN-8s": metrics(0.6)}, tmp_path / "pc.png")
    assert _png(out).std() > 10
    with pytest.raises(DataError, match="per_class_iu"):
        figures.per_class_bars({"x": {"mean_iu": 0.1}}, tmp_path / "pc2.png")
