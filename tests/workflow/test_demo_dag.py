"""The reduced demo DAG runs end to end; every output exists and parses; a rerun does nothing."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.slow


def test_every_output_exists_and_parses(demo_run):
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    from fcnlib.models import load_model

    for name, exp in cfg["experiments"].items():
        d = demo_run / "results" / exp["dataset"] / name
        model, meta = load_model(d / "weights.pt")
        if isinstance(exp.get("init"), list):  # two trained nets fused late
            assert meta["arch"]["fusion"] == "late" and len(meta["arch"]["members"]) == 2, name
        else:
            assert meta["arch"]["variant"] == exp["variant"], name
        assert meta["experiment"] == name and meta["dataset"] == exp["dataset"], name
        lines = [json.loads(s) for s in (d / "log.jsonl").read_text().splitlines()]
        assert any("loss" in x for x in lines) and any("val" in x for x in lines), name
        assert not (d / ".train" / "resume.pt").exists(), "resume state must be removed after training"
    for row in fcncfg.table_rows(cfg):
        if "experiment" not in row:
            continue
        m = json.loads((demo_run / "results" / row["dataset"] / row["experiment"] / row["split"]
                        / "metrics.json").read_text())
        for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
            assert 0.0 <= m[k] <= 1.0, (row, k)
        assert m["n_images"] > 0
    tables = (demo_run / "results" / "tables.md").read_text()
    assert "DEMO" in tables
    data = json.loads((demo_run / "results" / "tables.json").read_text())
    assert set(data) == {"header", "paper", "tables"} and set(cfg["tables"]) <= set(data["tables"])
    for png in (demo_run / "results" / "figures").glob("*.png"):
        with Image.open(png) as im:
            assert im.size[0] > 100 and im.size[1] > 100
            assert np.asarray(im.convert("L")).std() > 0, f"{png} is blank"
    assert sorted(p.name for p in (demo_run / "results" / "figures").glob("*.png")) == sorted(
        ["fig4_pascal.png", "curves_staged.png", "curves_staged_time.png", "per_class_pascal.png", "per_class_nyud.png",
         "per_class_siftflow.png", "per_class_context.png"])
    hha = list((demo_run / "data" / "nyud" / "hha").glob("*.png"))
    hha_manifest = json.loads((demo_run / "data" / "nyud" / "hha" / "manifest.json").read_text())
    assert hha and set(hha_manifest) == {p.name for p in hha}
    # every rule writes its log and benchmark where common.smk says (one per experiment / split)
    for name, exp in cfg["experiments"].items():
        split = fcncfg.experiment(cfg, name)["val_split"]
        assert (demo_run / "logs" / "train" / exp["dataset"] / f"{name}.log").is_file(), name
        assert (demo_run / "benchmarks" / "train" / exp["dataset"] / f"{name}.tsv").is_file(), name
        assert (demo_run / "logs" / "evaluate" / exp["dataset"] / name / f"{split}.log").is_file(), name
        assert (demo_run / "benchmarks" / "evaluate" / exp["dataset"] / name / f"{split}.tsv").is_file(), name
    raw = sorted(p.name for p in (demo_run / "data" / "raw").iterdir() if p.is_file())
    assert raw and sorted(p.name[:-len(".log")] for p in (demo_run / "logs" / "download").glob("*.log")) == raw
    assert (demo_run / "logs" / "report" / "tables.log").is_file()


def test_released_standins_are_converted_scored_and_fill_table2(demo_run):
    """download → convert → the same evaluation → released.md, and Table 2's released column measured."""
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    from fcnlib.facts.released import MODELS
    from fcnlib.models import load_model

    assert cfg["released"], "the test config scores at least one released stand-in"
    data = json.loads((demo_run / "results" / "released.json").read_text())
    assert [r["name"] for r in data["rows"]] == list(cfg["released"])
    for r in data["rows"]:
        d = demo_run / "results" / "released" / r["name"]
        _, meta = load_model(d / "weights.pt")
        assert meta["released"] == r["name"] and meta["source"] == MODELS[r["name"]].caffemodel
        m = json.loads((d / r["split"] / "metrics.json").read_text())
        assert 0.0 <= m["mean_iu"] <= 1.0 and m["n_images"] > 0
        assert r["ours"]["mean_iu"] == round(100 * m["mean_iu"], 4)
    assert "DEMO" in (demo_run / "results" / "released.md").read_text()
    t2 = json.loads((demo_run / "results" / "tables.json").read_text())["tables"]["table2"]["rows"]
    for r in data["rows"]:
        row = MODELS[r["name"]].table2_row
        if row:
            cell = next(x for x in t2 if x["row"] == row)
            assert cell["ours"]["released_mean_iu"] == r["ours"]["mean_iu"], row
    assert list((demo_run / "logs" / "released").rglob("*.log"))


def test_rerun_does_nothing(demo_run, smk):
    res = smk(demo_run, "results/tables.md", "all", "-n", "--cores", "2")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_full_paper_dag_without_data(tmp_path, smk):
    res = smk(tmp_path, "results/tables.md", "-n", "--cores", "8", config="config/config.yaml")
    out = res.stdout
    for rule in ("download", "extract", "prepare_pascal", "prepare_nyud", "prepare_siftflow", "prepare_context",
                 "encode_hha", "convert_weights", "train", "evaluate", "time_forward", "tables",
                 "convert_released", "evaluate_released"):  # tables.md needs the released Table 2 scores
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    assert "results/pascal/voc-fcn8s/weights.pt" in out and "results/pascal/voc-fcn16s/weights.pt" in out
    assert "data/raw/fcn8s-heavy-pascal.caffemodel" in out
    assert "results/released/voc-fcn8s/seg11valid/metrics.json" in out


def test_bad_config_stops_before_any_job(tmp_path, smk):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config" / "test.yaml").read_text().replace("variant: fcn16s", "variant: fcn15s"))
    res = smk(tmp_path, "results/tables.md", "--cores", "1", config=str(bad), check=False)
    assert res.returncode != 0
    assert "experiments.voc-fcn16s.variant" in res.stderr + res.stdout
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_one_released_model_has_its_own_target(tmp_path, smk):
    """README's `snakemake released_<name>` (paper config, dry run): that model's download, conversion and
    scoring on its dataset's val split, and nothing else (no training, no other released model)."""
    readme = (ROOT / "README.md").read_text()
    assert "snakemake released_voc_fcn8s" in readme
    res = smk(tmp_path, "released_nyud_fcn32s_color_hha", "-n", "--cores", "8", config="config/config.yaml")
    out = res.stdout
    assert "rule convert_released:" in out and "rule evaluate_released:" in out
    assert "results/released/nyud-fcn32s-color-hha/test/metrics.json" in out
    assert "rule train:" not in out and "fcn8s-heavy-pascal.caffemodel" not in out
