"""Config validation names the offending key; experiments resolve into the trainer's flat dict."""

import copy
from pathlib import Path

import pytest
import yaml

from fcnlib.cli import check_config
from fcnlib.errors import ConfigError
from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = fcncfg.load_yaml(ROOT / "config" / name)
    fcncfg.validate_config(cfg, source=name)


def _mutate(cfg, path, value):
    cfg = copy.deepcopy(cfg)
    node = cfg
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("experiments", "voc-fcn16s", "variant"), "fcn17s", "experiments.voc-fcn16s.variant"),
    (("experiments", "voc-fcn16s", "backbone"), "resnet", "experiments.voc-fcn16s.backbone"),
    (("experiments", "voc-fcn16s", "init"), "voc-fcn64s", "experiments.voc-fcn16s.init"),
    (("training", "threads"), "eight", "training.threads"),
    (("training", "recipe"), KeyError, "'recipe' is a required property"),
    (("training", "bogus"), 1, "unknown key(s) ['bogus']"),
    (("recipes", "released", "loss"), "median", "recipes.released.loss"),
    (("tables", "table2", "FCN-8s"), "voc-fcn9s", "tables.table2.FCN-8s"),
    (("sources", "voc2012", "md5"), "not-a-hash", "sources.voc2012.md5"),
    (("experiments", "voc-alexnet-fcn32s", "variant"), "fcn8s", "alexnet supports only fcn32s"),
])
def test_wrong_values_name_the_key(paper, path, value, expected):
    with pytest.raises(ConfigError) as e:
        fcncfg.validate_config(_mutate(paper, path, value))
    assert expected in str(e.value)


def test_init_cycle_is_refused(paper):
    cfg = _mutate(paper, ("experiments", "voc-fcn32s", "init"), "voc-fcn8s")
    with pytest.raises(ConfigError, match="cycle"):
        fcncfg.validate_config(cfg)


def test_yaml_python_tags_are_refused(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text('name: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(ConfigError, match="evil.yaml"):
        fcncfg.load_yaml(bad)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("text, where, says", [
    ("a: 1\nb: [1, 2\nc: 3\n", "line 3, column 2", "not valid YAML"),  # an unclosed list
    ("a: 1\n  b: 2\n", "line 2, column 4", "not valid YAML"),  # bad indentation
    ('a: "x\n', "line 2, column 1", "not valid YAML"),  # an unclosed quote
    ("a: !!python/name:os.system ''\n", "line 1, column 4", "python tags"),
])
def test_yaml_errors_say_where_and_what(tmp_path, text, where, says):
    """A syntax error is called a syntax error, at its line and column (not blamed on python tags)."""
    bad = tmp_path / "c.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as e:
        fcncfg.load_yaml(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: {where}:") and says in msg, msg
    assert ("python tags" in msg) == (says == "python tags"), msg


def test_staged_and_fusion_resolution(paper):
    c16 = fcncfg.train_config(paper, "voc-fcn16s")
    assert c16["init"] == {"kind": "staged", "path": "results/pascal/voc-fcn32s/weights.pt"}
    assert c16["recipe"]["lr"] == 1e-12 and c16["recipe"]["loss"] == "sum"
    assert c16["arch"]["num_classes"] == 21 and c16["arch"]["width"] == 1.0
    fused = fcncfg.train_config(paper, "nyud-rgbhha-fcn32s")
    assert fused["init"]["kind"] == "late_fusion" and len(fused["init"]["paths"]) == 2
    assert [m["in_channels"] for m in fused["arch"]["members"]] == [3, 3]
    fused16 = fcncfg.train_config(paper, "nyud-rgbhha-fcn16s")
    assert fused16["arch"]["fusion"] == "late" and fused16["init"]["kind"] == "staged"
    rgbd = fcncfg.train_config(paper, "nyud-rgbd-fcn32s")
    assert rgbd["arch"]["in_channels"] == 4
    sift = fcncfg.train_config(paper, "sift-fcn16s")
    assert sift["arch"]["heads"] == {"sem": 33, "geo": 3}
    # a training param changes the hash of that experiment only
    changed = _mutate(paper, ("experiments", "voc-fcn16s", "iterations"), 5)
    assert fcncfg.train_config(changed, "voc-fcn16s")["config_hash"] != c16["config_hash"]
    assert fcncfg.train_config(changed, "voc-fcn32s") == fcncfg.train_config(paper, "voc-fcn32s")


def test_table_rows_cover_every_paper_table(paper):
    tables = {r["table"] for r in fcncfg.table_rows(paper)}
    assert tables == {"table1", "table2", "table3", "table4", "table5", "context", "ablations"}


def test_validation_cache_skips_only_the_schema(paper, tmp_path, monkeypatch):
    calls = []
    real = fcncfg._validate_schema
    monkeypatch.setattr(fcncfg, "_validate_schema", lambda c, s: calls.append(1) or real(c, s))
    fcncfg.validate_config(paper, cache_dir=tmp_path)
    fcncfg.validate_config(paper, cache_dir=tmp_path)
    assert len(calls) == 1
    # a changed config is schema-checked again, and broken references are caught even on a cache hit
    with pytest.raises(ConfigError, match="training.threads"):
        fcncfg.validate_config(_mutate(paper, ("training", "threads"), "eight"), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="experiments.voc-fcn16s.init"):
        fcncfg.validate_config(_mutate(paper, ("experiments", "voc-fcn16s", "init"), "nope"), cache_dir=tmp_path)


def test_gpus_split_the_recipes_update(paper):
    """N GPUs × iter_size × per-GPU batch = the recipe's batch_size × iter_size, whatever N."""
    cfg = copy.deepcopy(paper)
    cfg["recipes"]["paper"]["iter_size"] = 2
    cfg["experiments"]["voc-fcn32s"].update(recipe="paper", gpu=2)
    fcncfg.validate_config(cfg)
    r = fcncfg.train_config(cfg, "voc-fcn32s")["recipe"]
    assert (r["batch_size"], r.get("iter_size", 1)) == (20, 1)  # accumulation split first
    cfg["experiments"]["voc-fcn32s"]["gpu"] = 4
    r = fcncfg.train_config(cfg, "voc-fcn32s")["recipe"]
    assert (r["batch_size"], r["iter_size"]) == (5, 2)  # 4 × 2 × 5 = 20 × 2
    assert fcncfg.gpus(cfg, "voc-fcn32s") == 4 and fcncfg.gpus(cfg, "voc-fcn16s") == paper["resources"]["gpu"]
    one = fcncfg.train_config(paper, "voc-fcn32s")["recipe"]
    assert one["batch_size"] == paper["recipes"]["released"]["batch_size"] and "iter_size" not in one
    cfg["experiments"]["voc-fcn32s"]["gpu"] = 3  # 3 does not divide 2 or 20
    with pytest.raises(ConfigError, match="experiments.voc-fcn32s.gpu"):
        fcncfg.validate_config(cfg)
    cfg["experiments"]["voc-fcn32s"].update(recipe="released", gpu=2)  # batch 1 cannot be split
    with pytest.raises(ConfigError, match="cannot share"):
        fcncfg.validate_config(cfg)
    bad = copy.deepcopy(paper)
    bad["recipes"]["paper"]["iter_size"] = 0
    with pytest.raises(ConfigError, match="recipes.paper.iter_size"):
        fcncfg.validate_config(bad)


# ---------------------------------------------------------------------------------------------------
# Values that survive a YAML 1.2 rewrite (DVC's `exp run -S` rewrites the params file with ruamel.yaml,
# which writes a string plain whenever YAML 1.2 allows it; the pipeline reads with PyYAML, YAML 1.1).
# ---------------------------------------------------------------------------------------------------
def _strings(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k, f"{path}.<key>")
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}.{i}")
    elif isinstance(obj, str):
        yield path, obj


def _rewritten(value):
    """`value` written by ruamel.yaml (as DVC does) and read back by the pipeline's loader."""
    import io

    ruamel = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml (a DVC dependency) is not installed")
    buf = io.StringIO()
    ruamel.YAML().dump({"k": value}, buf)
    return yaml.safe_load(buf.getvalue())["k"], buf.getvalue()


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "test.yaml", "../fcnlib/pipeline/config.schema.yaml"])
def test_every_string_survives_a_yaml12_rewrite(name):
    """e.g. `amp: "off"` became `amp: off` = False under DVC, and validation refused every experiment."""
    doc = yaml.safe_load((ROOT / "config" / name).read_text())
    bad = []
    for where, s in _strings(doc):
        back, text = _rewritten(s)
        if back != s:
            bad.append(f"{where}: {s!r} is rewritten as {text.strip()!r} and read back as {back!r}")
    assert not bad, "\n".join(bad)


def test_rewrite_check_catches_yaml11_words():
    """The check above can fail: YAML 1.1 booleans written plain by a YAML 1.2 writer change meaning."""
    assert _rewritten("off")[0] is False and _rewritten("yes")[0] is True
    assert _rewritten("fp32")[0] == "fp32"


def test_amp_validation_names_the_allowed_values():
    from fcnlib.runtime.compute import AMP_CHOICES

    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    schema_enum = yaml.safe_load(fcncfg.SCHEMA_PATH.read_text())["properties"]["training"]["properties"]["amp"]["enum"]
    assert tuple(schema_enum) == AMP_CHOICES  # one list of precisions: schema, trainer and CLI agree
    demo["training"]["amp"] = False  # what an unquoted `off` reads as
    with pytest.raises(ConfigError, match=r"training\.amp.*'auto', 'fp32', 'bf16', 'fp16'"):
        fcncfg.validate_config(demo, "config/demo.yaml")


def test_every_problem_is_listed(paper, tmp_path, capsys):
    """Three schema problems (or, in a schema-valid file, three broken references and a NaN): check-config
    prints each on its own line and exits 2; the workflow's validation names the first and the count."""
    import yaml

    schema_bad = paper
    for path, value in [(("training", "threads"), "eight"), (("training", "bogus"), 1),
                        (("recipes", "released", "loss"), "median")]:
        schema_bad = _mutate(schema_bad, path, value)
    refs_bad = paper
    for path, value in [(("experiments", "voc-fcn16s", "init"), "voc-fcn64s"),
                        (("tables", "table2", "FCN-8s"), "voc-fcn9s"),
                        (("experiments", "voc-alexnet-fcn32s", "variant"), "fcn8s")]:
        refs_bad = _mutate(refs_bad, path, value)
    cases = {"schema.yaml": (schema_bad, ["training.threads", "unknown key(s) ['bogus']", "recipes.released.loss"]),
             "refs.yaml": (refs_bad, ["experiments.voc-fcn16s.init", "tables.table2.FCN-8s",
                                      "alexnet supports only fcn32s"])}
    for name, (cfg, expected) in cases.items():
        (tmp_path / name).write_text(yaml.safe_dump(cfg))
        with pytest.raises(ConfigError, match=r"\(and 2 more problem\(s\); `fcn check-config FILE` lists"):
            fcncfg.validate_config(cfg, source=name)
        problems = fcncfg.config_problems(cfg, name)
        assert len(problems) == 3 and all(any(e in m for m in problems) for e in expected)
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(paper))
    assert check_config.cli([str(tmp_path / f) for f in ("schema.yaml", "ok.yaml", "refs.yaml")]) == 2
    out, err = capsys.readouterr()
    assert "ok.yaml: ok" in out
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 6 and "schema.yaml: 3 problem(s)" in err and "refs.yaml: 3 problem(s)" in err
    for _, expected in cases.values():
        for e in expected:
            assert sum(e in ln for ln in lines) == 1, e


def test_headline_nets_end_the_longest_init_chain(paper):
    """One `dvc exp show` column per dataset: the net its paper table leads with, derived from the init chains."""
    want = {"pascal": "voc-fcn8s", "nyud": "nyud-rgbhha-fcn16s", "siftflow": "sift-fcn16s", "context": "context-fcn8s"}
    assert fcncfg.headline_experiments(paper) == want
    demo = fcncfg.load_config([ROOT / "config" / "demo.yaml"])[0]
    assert fcncfg.headline_experiments(demo) == want
    c = copy.deepcopy(paper)
    # a deeper chain wins wherever it is in the file; a net that is never evaluated is never a headline
    c["experiments"]["voc-fcn8s-longer"] = {"dataset": "pascal", "variant": "fcn8s", "init": "voc-fcn8s"}
    c["experiments"]["voc-fcn8s-deepest"] = {"dataset": "pascal", "variant": "fcn8s", "init": "voc-fcn8s-longer",
                                             "eval_splits": []}
    c["experiments"] = dict(reversed(list(c["experiments"].items())))
    assert fcncfg.headline_experiments(c)["pascal"] == "voc-fcn8s-longer"
    # equal chains: the later in the config
    c = copy.deepcopy(paper)
    c["experiments"] = {k: v for k, v in c["experiments"].items() if k in ("voc-fcn32s", "voc-fcn32s-fixed")}
    assert fcncfg.headline_experiments(c) == {"pascal": list(c["experiments"])[-1]}


def test_lead_net_is_the_first_datasets_headline(paper):
    """The run's DVCLive record follows one net: the headline of the first dataset the config names."""
    assert fcncfg.lead_experiment(paper) == "voc-fcn8s"
    c = copy.deepcopy(paper)
    c["experiments"] = {k: v for k, v in reversed(list(c["experiments"].items()))}  # context's nets come first
    assert fcncfg.lead_experiment(c) == "context-fcn8s"
    c["experiments"] = {k: dict(v, eval_splits=[]) for k, v in c["experiments"].items()}
    assert fcncfg.lead_experiment(c) is None  # nothing evaluated: no record
