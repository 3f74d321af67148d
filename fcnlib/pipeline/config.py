"""Pipeline configuration: validation with messages that name the key, and resolution of one
experiment into the flat dict the trainer takes. The Snakefile calls this at parse time, so a wrong
value stops the run before any job starts.

Over ~400 lines on purpose: the one config contract (load/compose, schema + cross-reference checks,
experiment resolution); the checks call the resolution (_split_batch, the recipes), so a split would
need an import cycle or a third module.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fcnlib.errors import ConfigError, DataError
from fcnlib.facts import datasets as registry
from fcnlib.facts.datasets import MODALITY_CHANNELS as ALL_MODALITY_CHANNELS
from fcnlib.facts.datasets import NET_MODALITIES
from fcnlib.facts.released import config_problems as released_problems
from fcnlib.files import layout
from fcnlib.files.paths import open_regular

#: fcnlib's folder: code hashes name files relative to it
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The config schema ships inside the package (package data), so an installed fcnlib validates configs too.
SCHEMA_PATH = Path(str(importlib.resources.files(__package__).joinpath("config.schema.yaml")))

MODALITY_CHANNELS = {m: ALL_MODALITY_CHANNELS[m] for m in NET_MODALITIES}  # what a config may list


#: Bounds on any YAML file read here (configs are ~20 KB, ~2,000 values): checked before the document
#: is built, so a small file of nested aliases ("billion laughs") or a huge one costs nothing.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # values counted as the document expands (an alias counts its whole target)
MAX_YAML_DEPTH = 64


def _yaml_expanded_size(node: yaml.Node, source: str | Path) -> int:
    """Values the composed `node` stands for once every alias is expanded, computed once per distinct node
    (so in time linear in the file) and refused past MAX_YAML_NODES or MAX_YAML_DEPTH, or if recursive."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 0, False)]
    open_: set[int] = set()
    while stack:
        n, depth, done = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: YAML nested over {MAX_YAML_DEPTH} levels; a config is a few levels "
                              f"deep — simplify the file")
        kids = ([c for kv in n.value for c in kv] if isinstance(n, yaml.MappingNode)
                else list(n.value) if isinstance(n, yaml.SequenceNode) else [])
        if done:
            open_.discard(id(n))
            size[id(n)] = 1 + sum(size[id(c)] for c in kids)
            if size[id(n)] > MAX_YAML_NODES:
                raise ConfigError(f"{source}: YAML expands to over {MAX_YAML_NODES} values (aliases repeating "
                                  f"aliases); a config holds a few thousand — write the values out or drop "
                                  f"the nested aliases")
            continue
        if id(n) in size:
            continue
        if id(n) in open_:
            raise ConfigError(f"{source}: YAML alias refers to a value that contains it (a recursive "
                              f"structure); a config cannot hold one — remove that alias")
        open_.add(id(n))
        stack.append((n, depth, True))
        stack.extend((c, depth + 1, False) for c in kids if id(c) not in size)
    return size[id(node)]


def _yaml_where(e: yaml.YAMLError) -> str:
    """' line L, column C:' of a YAML error (1-based, as editors count), or '' where PyYAML gives none."""
    mark = getattr(e, "problem_mark", None)
    return f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""


def load_yaml(path: str | Path) -> Any:
    """The one YAML reader: safe constructors only (a python tag is refused, naming the file), UTF-8, at
    most MAX_YAML_BYTES, and a document that expands (aliases included) to at most MAX_YAML_NODES values
    — each refused with one ConfigError naming the file before the document is built."""
    try:
        with open_regular(path, "config file") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except DataError as e:
        raise ConfigError(str(e)) from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e}); check the path and its "
                          f"permissions") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: over {MAX_YAML_BYTES} bytes; a config is a few KB — is this the right "
                          f"file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); save it "
                          f"as UTF-8") from None
    # the C loader is as strict as safe_load (same constructors) and ~8× faster
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _yaml_expanded_size(node, path)
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(f"{path}:{_yaml_where(e)} not plain YAML ({e.problem or str(e).splitlines()[0]}); "
                          f"python tags and other custom tags are refused — write plain values") from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{_yaml_where(e)} not valid YAML ({problem}); fix the file there (indentation, "
                          f"a missing ':' or closing quote are the usual causes)") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read; simplify the file") from None
    finally:
        loader.dispose()


def deep_merge(base: dict, override: dict) -> dict:
    """`override` over `base`, recursing into mappings (a list or scalar replaces); neither is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _typed(value: Any) -> Any:
    """Strings inside a mapping/list read as YAML 1.2 core scalars: "4" → 4, "1e-10" → 1e-10, "true" → True,
    "null" → None; anything else (also "off", which YAML 1.1 would turn into False) stays a string."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return value


def compose_config(given: dict, configfiles: list[str] | None = None, overrides: dict | None = None,
                   default: str | Path = "config/config.yaml") -> tuple[dict, list[str]]:
    """The config a run uses, from what Snakemake merged out of `--configfile` files and `--config` pairs.

    A complete config (one with `experiments`, e.g. config/demo.yaml) stands alone; anything else is a
    partial override, deep-merged over `default`, so `training: {threads: 4}` changes only that key.
    Returns the config and the sources that made it, in merge order (files, then "--config").
    """
    files = [str(f) for f in configfiles or []]
    sources = files + (["--config"] if overrides else [])
    # Snakemake reads a nested --config value (`training={threads: 4}`) with YAML's BaseLoader, all
    # strings: type its leaves as a config file would be typed, then apply them again.
    given = deep_merge(given, {k: _typed(v) if isinstance(v, dict | list) else v
                               for k, v in (overrides or {}).items()})
    if "experiments" in given:
        return given, sources
    base = load_yaml(default)
    if not isinstance(base, dict):
        raise ConfigError(f"{default}: expected a mapping of config keys at the top level")
    return deep_merge(base, given), [str(default), *sources]


def _key_path(error: Any) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def validate_config(config: dict, source: str = "config", cache_dir: str | Path | None = None) -> dict:
    """Check `config` against the JSON schema and the cross-references the schema cannot express.

    Raises ConfigError whose message names the offending key (the first problem, with how many more:
    `config_problems` / `fcn check-config` list them all). Returns the config unchanged. With
    `cache_dir`, a config already validated against the same schema and code is not schema-checked
    again (jsonschema's import and run are most of a dry run's own time); references always are.
    """
    _raise_first(_nonfinite(config, source))
    marker = None
    if cache_dir is not None:
        key = config_hash([config, load_schema(), Path(__file__).read_text()])
        marker = Path(cache_dir) / f"fcn-config-valid-{key}"
        if marker.exists():
            _raise_first(reference_problems(config, source))
            return config
    _validate_schema(config, source)
    _raise_first(reference_problems(config, source))
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a read-only workdir only loses the cache
    return config


def config_problems(config: dict, source: str = "config") -> list[str]:
    """Every problem of a config, one message each (naming the key): non-finite numbers and schema errors;
    when there are none of those, every broken cross-reference (they need a config of the schema's shape)."""
    problems = _nonfinite(config, source) + _schema_problems(config, source)
    return problems or reference_problems(config, source)


def _raise_first(problems: list[str]) -> None:
    if problems:
        more = (f" (and {len(problems) - 1} more problem(s); `fcn check-config FILE` lists every one)"
                if len(problems) > 1 else "")
        raise ConfigError(problems[0] + more)


def _nonfinite(obj: Any, source: str, path: str = "") -> list[str]:
    """No number in a config may be NaN or ±inf (YAML `.nan`, `.inf`): JSON-schema bounds let NaN through
    (every comparison with it is false), and one NaN weight_decay silently poisons every weight."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"{source}: at '{path or '<top level>'}': {obj!r} is not a finite number; give a "
                f"finite value (YAML .nan / .inf are not allowed)"]
    if isinstance(obj, dict):
        return [m for k, v in obj.items() for m in _nonfinite(v, source, f"{path}.{k}" if path else str(k))]
    if isinstance(obj, list | tuple):
        return [m for i, v in enumerate(obj) for m in _nonfinite(v, source, f"{path}.{i}" if path else str(i))]
    return []


def load_schema() -> dict:
    """The config schema: fcnlib/pipeline/config.schema.yaml plus the lists generated from the dataset
    registry (fcnlib.facts.datasets): each built-in dataset's entry (any other name must declare a folder
    dataset) and the modalities a net may take."""
    schema = load_yaml(SCHEMA_PATH)
    schema["$defs"]["modality"] = {"enum": list(NET_MODALITIES)}
    schema["properties"]["datasets"]["properties"] = {name: {"$ref": "#/$defs/dataset"} for name in registry.REGISTRY}
    return schema


def _validate_schema(config: dict, source: str) -> None:
    _raise_first(_schema_problems(config, source))


def _schema_problems(config: dict, source: str) -> list[str]:
    import jsonschema  # only on a cache miss: most Snakefile parses skip the schema check (validate_config)

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.path)))
    out = []
    for e in errors:
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = sorted(e.schema.get("properties", {}))
            extra = sorted(set(e.instance) - set(allowed))
            hint = f"unknown key(s) {extra}; allowed: {allowed}" if allowed else f"unknown key(s) {extra}"
            out.append(f"{source}: at '{_key_path(e)}': {hint}")
        elif e.validator == "oneOf":
            out.append(f"{source}: at '{_key_path(e)}': value {e.instance!r} is not valid here")
        else:
            out.append(f"{source}: at '{_key_path(e)}': {e.message}")
    return out


def reference_problems(config: dict, source: str) -> list[str]:
    """The cross-references the schema cannot express, every broken one (config of the schema's shape)."""
    out: list[str] = []
    specs: dict[str, Any] = {}
    for ds in config.get("datasets", {}):  # each dataset's spec: the built-in ones, or a folder entry checked
        try:
            specs.update(registry.check_config({**config, "datasets": {ds: config["datasets"][ds]}}, source))
        except ConfigError as e:
            out.append(str(e))
    exps = config["experiments"]
    for name, exp in exps.items():
        where = f"{source}: at 'experiments.{name}"
        if exp["dataset"] not in config["datasets"]:
            out.append(f"{where}.dataset': dataset {exp['dataset']!r} has no entry under 'datasets'")
        elif exp["dataset"] in specs:
            held = specs[exp["dataset"]].modalities
            missing = [m for m in exp.get("modalities", ["rgb"]) if m not in held]
            if missing:
                out.append(f"{where}.modalities': dataset {exp['dataset']!r} has no {missing} "
                           f"(it holds {list(held)})")
        backbone = exp.get("backbone", "vgg16")
        if backbone not in config["backbones"]:
            out.append(f"{where}.backbone': backbone {backbone!r} has no entry under 'backbones'")
        recipe = exp.get("recipe", config["training"]["recipe"])
        if recipe not in config["recipes"]:
            out.append(f"{where}.recipe': recipe {recipe!r} is not defined under 'recipes' "
                       f"(have {sorted(config['recipes'])})")
        else:
            try:
                _split_batch(config, name, config["recipes"][recipe])  # N GPUs must be able to share one update
            except ConfigError as e:
                out.append(str(e))
        init = exp.get("init", "imagenet")
        parents = init if isinstance(init, list) else ([] if init == "imagenet" else [init])
        for p in parents:
            if p not in exps:
                out.append(f"{where}.init': {p!r} is not an experiment (use 'imagenet' or an experiment name)")
            elif exps[p]["dataset"] != exp["dataset"]:
                out.append(f"{where}.init': {p!r} was trained on another dataset")
        if backbone != "vgg16" and exp["variant"] != "fcn32s":
            out.append(f"{where}.variant': {backbone} supports only fcn32s (as in the paper's Table 1)")
    for name in exps:  # staged chains must end at imagenet
        seen, todo = set(), [name]
        while todo:
            n = todo.pop()
            if n in seen:
                out.append(f"{source}: at 'experiments.{name}.init': initialisation chain has a cycle")
                break
            seen.add(n)
            init = exps[n].get("init", "imagenet") if n in exps else "imagenet"  # unknown ones reported above
            todo += init if isinstance(init, list) else ([] if init == "imagenet" else [init])
    for rname, recipe in config["recipes"].items():
        for ds in (recipe.get("by_dataset") or {}):
            if ds not in config["datasets"] and ds not in registry.REGISTRY:
                out.append(f"{source}: at 'recipes.{rname}.by_dataset.{ds}': not a dataset; use a name "
                           f"under 'datasets' or remove the entry")
        for exp_name in (recipe.get("by_experiment") or {}):
            if exp_name not in exps:
                out.append(f"{source}: at 'recipes.{rname}.by_experiment.{exp_name}': not an experiment; "
                           f"use a name under 'experiments' or remove the entry")
    for b, spec in config["backbones"].items():
        if spec["source"] not in config["sources"]:
            out.append(f"{source}: at 'backbones.{b}.source': {spec['source']!r} is not under 'sources'")
    for table, rows in config["tables"].items():
        for row, ref in rows.items():
            if isinstance(ref, str) and ref.split("@")[0] not in exps:
                out.append(f"{source}: at 'tables.{table}.{row}': {ref.split('@')[0]!r} is not an experiment")
    for kind, groups in config.get("figures", {}).items():
        for group, names in groups.items():
            out += [f"{source}: at 'figures.{kind}.{group}': {n!r} is not an experiment"
                    for n in names if n not in exps]

    out += released_problems(config, source)
    for name, spec in config["sources"].items():
        if not spec.get("demo") and not spec.get("urls"):
            out.append(f"{source}: at 'sources.{name}': give 'urls' (or 'demo: true' in a demo config)")
    return out


def experiment(config: dict, name: str) -> dict:
    """One experiment with every default filled in."""
    exp = copy.deepcopy(config["experiments"][name])
    train_split, val_split = registry.splits_of(exp["dataset"], config)
    tr = config["training"]
    exp.setdefault("backbone", "vgg16")
    exp.setdefault("modalities", ["rgb"])
    exp.setdefault("init", "imagenet")
    exp.setdefault("fixed", False)
    exp.setdefault("recipe", tr["recipe"])
    exp.setdefault("train_split", train_split)
    exp.setdefault("val_split", val_split)
    exp.setdefault("eval_splits", [exp["val_split"]])
    exp.setdefault("augment", dict(tr["augment"]))
    exp.setdefault("loss_sampling", tr["loss_sampling"])
    exp.setdefault("class_balance", tr["class_balance"])
    exp.setdefault("iterations", resolve_recipe(config, name)["iterations"])
    return exp


_OVERRIDE_LEVELS = ("by_backbone", "by_dataset", "by_experiment")


def resolve_recipe(config: dict, name: str) -> dict:
    """The recipe one experiment trains with: the recipe's keys, then its `by_backbone`, `by_dataset` and
    `by_experiment` entries for this experiment in that order (later wins), `lr` reduced to the number of
    the experiment's variant. The experiment's own `lr` and `iterations` keys win over all of them.

    This is how one `released` recipe follows each of the authors' solvers (FCN-AlexNet's normalised loss
    and iter_size 20, NYUD's validation interval, PASCAL-Context's 400k iterations, ...)."""
    raw = config["experiments"][name]
    recipe_name = raw.get("recipe", config["training"]["recipe"])
    base = copy.deepcopy(config["recipes"][recipe_name])
    variant = raw["variant"]
    lr = base.pop("lr")[variant]
    keys = (raw.get("backbone", "vgg16"), raw["dataset"], name)
    for level, key in zip(_OVERRIDE_LEVELS, keys, strict=True):
        over = copy.deepcopy((base.get(level) or {}).get(key) or {})
        if "lr" in over:
            o = over.pop("lr")
            lr = o if not isinstance(o, dict) else o.get(variant, lr)
        base.update(over)
    for level in _OVERRIDE_LEVELS:
        base.pop(level, None)
    base["lr"] = float(raw.get("lr", lr))
    base["iterations"] = int(raw.get("iterations", base["iterations"]))
    base.setdefault("iter_size", 1)
    base.setdefault("learn_upsampling", True)
    base["name"] = recipe_name
    return base


def parents(config: dict, name: str) -> list[str]:
    init = experiment(config, name)["init"]
    return init if isinstance(init, list) else ([] if init == "imagenet" else [init])


def headline_experiments(config: dict) -> dict[str, str]:
    """{dataset: experiment}: the net each dataset's results lead with, derived from the init chains: the
    experiment at the end of the longest chain (FCN-8s ← 16s ← 32s on PASCAL, RGB-HHA FCN-16s on NYUD, as the
    paper's Tables 3–6 report them), the later one in the config on a tie; only experiments that are evaluated.
    `dvc exp show` shows these, one column per dataset, so it fits a screen whatever the number of runs."""
    depth: dict[str, int] = {}

    def chain(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((chain(p) for p in parents(config, name) if p in config["experiments"]), default=0)
        return depth[name]

    best: dict[str, str] = {}
    for name in config["experiments"]:
        exp = experiment(config, name)
        if exp["eval_splits"] and chain(name) >= chain(best.get(exp["dataset"], name)):
            best[exp["dataset"]] = name
    return best


def lead_experiment(config: dict) -> str | None:
    """The run's lead net: the headline net of its first dataset (FCN-8s on PASCAL in the paper and the demo),
    whose training DVC shows beside the headline numbers (one DVCLive summary, so `dvc exp show` stays narrow)."""
    return next(iter(headline_experiments(config).values()), None)


def weights_path(config: dict, name: str) -> str:
    """Where experiment `name`'s trained weights go (fcnlib.files.layout)."""
    return layout.weights(config["experiments"][name]["dataset"], name)


def _arch(config: dict, exp: dict) -> dict:
    heads = registry.spec(exp["dataset"], config).heads
    return {
        "variant": exp["variant"],
        "backbone": exp["backbone"],
        "width": float(config["width"]) if "width" in config else 1.0,
        "num_classes": heads["sem"],
        "in_channels": sum(MODALITY_CHANNELS[m] for m in exp["modalities"]),
        "heads": dict(heads) if len(heads) > 1 else None,
    }


def _is_fused(config: dict, name: str) -> bool:
    exp = experiment(config, name)
    if isinstance(exp["init"], list):
        return True
    return any(_is_fused(config, p) for p in parents(config, name))


def train_config(config: dict, name: str) -> dict:
    """The flat, fully resolved dict `fcnlib.train.train` takes (paths relative to the workdir)."""
    exp = experiment(config, name)
    recipe_name = exp["recipe"]
    recipe = resolve_recipe(config, name)
    lr = recipe["lr"]
    tr = config["training"]
    arch = _arch(config, exp)
    if _is_fused(config, name):
        # Late fusion sums an RGB net and an HHA net; each member sees its own modality.
        member_mods = [["rgb"], ["hha"]] if exp["modalities"] == ["rgb", "hha"] else [[m] for m in exp["modalities"]]
        arch = {"fusion": "late", "members": [
            dict(arch, in_channels=sum(MODALITY_CHANNELS[m] for m in mods)) for mods in member_mods]}
    init = exp["init"]
    if init == "imagenet":
        init_spec = {"kind": "imagenet", "path": layout.backbone_weights(exp["backbone"])}
    elif isinstance(init, list):
        init_spec = {"kind": "late_fusion", "paths": [weights_path(config, p) for p in init]}
    else:
        init_spec = {"kind": "staged", "path": weights_path(config, init)}
    batch_size, iter_size = _split_batch(config, name, recipe)
    cfg = {
        "experiment": name,
        "dataset_json": layout.dataset_json(exp["dataset"]),
        "train_split": exp["train_split"],
        "val_split": exp["val_split"],
        "val_max_images": tr.get("val_max_images"),
        "modalities": list(exp["modalities"]),
        "arch": arch,
        "init": init_spec,
        "fixed": bool(exp["fixed"]),
        "recipe": {
            "name": recipe_name,
            "batch_size": batch_size,
            "lr": float(lr),
            "momentum": recipe["momentum"],
            "weight_decay": recipe["weight_decay"],
            "bias_lr_mult": recipe["bias_lr_mult"],
            "bias_decay": recipe["bias_decay"],
            "loss": recipe["loss"],
            "optimizer": recipe["optimizer"],
            **({"iter_size": iter_size} if iter_size != 1 else {}),  # absent = 1: config hashes unchanged
            "learn_upsampling": bool(recipe["learn_upsampling"]),
            **{k: float(recipe[k]) for k in ("score_lr_mult", "dropout", "trunk_bias_lr_mult") if k in recipe},
            **({"trunk_bias_decay": bool(recipe["trunk_bias_decay"])} if "trunk_bias_decay" in recipe else {}),
        },
        "iterations": int(exp["iterations"]),
        "val_every": int(recipe["val_every"]),
        "log_every": int(tr["log_every"]),
        "checkpoint_every": int(tr["checkpoint_every"]),
        "augment": {"mirror": bool(exp["augment"].get("mirror", False)),
                    "jitter": int(exp["augment"].get("jitter", 0))},
        "loss_sampling": float(exp["loss_sampling"]),
        "class_balance": bool(exp["class_balance"]),
        "seed": int(config.get("seed", 0)),
        "num_workers": int(tr["num_workers"]),
        "amp": tr["amp"],
        "channels_last": tr["channels_last"],
    }
    if tr.get("deterministic"):  # only when on: existing experiments keep their config hash
        cfg["deterministic"] = True
    cfg["config_hash"] = config_hash(cfg)
    return cfg


def runtime_settings(config: dict) -> dict[str, Any]:
    """What a scoring, timing or figure job computes with: fcnlib.runtime.compute.resolve_runtime's arguments
    (`device`, `training.amp`, `training.channels_last`), the same settings the trainer resolves."""
    tr = config["training"]
    return {"device": config["device"], "amp": tr["amp"], "channels_last": tr["channels_last"]}


def tensorboard(config: dict | None) -> bool:
    """Whether trainings also write TensorBoard events (`training.tensorboard`, default false). A logger, not a
    setting of the net: it is read where a training starts, never part of a rule's params or a config hash,
    so switching it retrains nothing. No config (a script run on its own): false."""
    return bool(((config or {}).get("training") or {}).get("tensorboard", False))


def gpus(config: dict, name: str) -> int:
    """GPUs (= data-parallel processes) of one net's training: experiments.<name>.gpu, else resources.gpu."""
    return int(config["experiments"][name].get("gpu", config["resources"]["gpu"]))


def _split_batch(config: dict, name: str, recipe: dict) -> tuple[int, int]:
    """Per-process batch_size and iter_size so that GPUs × iter_size × batch_size = the recipe's update
    (batch_size × iter_size images, as in Caffe on one GPU), whatever the number of GPUs."""
    bs, acc, n = int(recipe["batch_size"]), int(recipe.get("iter_size", 1)), max(1, gpus(config, name))
    if n == 1:
        return bs, acc
    if acc % n == 0:
        return bs, acc // n
    if bs % n == 0:
        return bs // n, acc
    raise ConfigError(f"config: at 'experiments.{name}.gpu' (or resources.gpu): {n} GPUs cannot share an update of "
                      f"batch_size {bs} × iter_size {acc} images; use a GPU count dividing one of them "
                      f"(or gpu: 1)")


def config_hash(obj: Any) -> str:
    """Stable short hash of any JSON-able value (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def table_rows(config: dict) -> list[dict]:
    """Every table row as {table, row, experiment, split} or {table, row, note}."""
    rows = []
    for table, entries in config["tables"].items():
        for row, ref in entries.items():
            if isinstance(ref, dict):
                rows.append({"table": table, "row": row, "note": ref["note"]})
                continue
            exp_name, _, split = ref.partition("@")
            split = split or experiment(config, exp_name)["val_split"]
            rows.append({"table": table, "row": row, "experiment": exp_name,
                         "dataset": config["experiments"][exp_name]["dataset"], "split": split})
    return rows


#: The config a command line uses when given none (paths are relative to the pipeline's folder).
DEFAULT_CONFIG = Path("config/config.yaml")


def load_config(files: Sequence[str | os.PathLike], default: str | os.PathLike = DEFAULT_CONFIG) -> tuple[dict, str]:
    """Config files composed as the workflow composes --configfile (compose_config), validated;
    returns (config, its sources as one string)."""
    given: dict[str, Any] = {}
    for f in files:
        part = load_yaml(f)
        if not isinstance(part, dict):
            raise ConfigError(f"{f}: expected a mapping of config keys at the top level")
        given = deep_merge(given, part)
    cfg, sources = compose_config(given, [str(f) for f in files], default=default)
    source = " + ".join(sources)
    validate_config(cfg, source=source)
    return cfg, source
