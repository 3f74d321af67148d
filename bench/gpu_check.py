"""The GPU check: everything a CPU cannot test about the CUDA paths, in one run, into one JSON.

    python bench/gpu_check.py --out bench/gpu_check.json      (bench/gpu_check.sh sets up the env first)

Cases (each guarded: a failure is recorded with its traceback and the next case runs):
* train_<net>_<bf16|fp16>: fcnlib.train.train on CUDA, a few iterations of the released recipe (batch 1,
  unnormalised summed loss, SGD momentum 0.99) on 500×375 synthetic images, for every variant/backbone,
  with amp forced to bf16 and to fp16 (the trainer's GradScaler: a summed loss over ~2·10⁵ pixels
  overflows fp16 gradients until the scale backs off): logged losses and final weights must be finite.
* resume_bitwise: a straight run vs one SIGKILLed after its checkpoint and resumed, in subprocesses with
  torch.use_deterministic_algorithms(True): final weights must be bitwise equal.
* forward: bench/variants.py on CUDA (plain fp32 vs the fast path at 500², argmax agreement, % of peak).
* segment: `fcn segment` on CUDA on an odd-sized JPEG: a same-size label PNG.
* memory: peak CUDA memory of an FCN-8s (VGG16) training step at batch 1 and at the paper recipe's 20.
* every function in bench/gpu_cases.py's CASES list (optional module; `fn(device) -> dict`).

Without CUDA it writes {"ran": false, "reason": ...} and exits 0: nothing here can be checked on a CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

NETS = (("fcn32s", "vgg16"), ("fcn16s", "vgg16"), ("fcn8s", "vgg16"), ("fcn8s-atonce", "vgg16"),
        ("fcn32s", "alexnet"), ("fcn32s", "googlenet"))
RELEASED_LR = {"fcn32s": 1e-10, "fcn16s": 1e-12, "fcn8s": 1e-14, "fcn8s-atonce": 1e-10}
# the paper's nets at VOC size; --cpu-smoke shrinks both to exercise this script's plumbing on a CPU
SIZE = {"width": 1.0, "image": (375, 500), "square": 500}


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def synthetic_dataset(root: Path, n: int = 4) -> Path:
    """VOC-sized images in the dataset.json layout: noise background (class 0), one rectangle of a class."""
    from fcnlib.files.io import atomic_write_json, write_label_png, write_png

    rng = np.random.default_rng(0)
    h, w = SIZE["image"]
    ids = []
    for i in range(n):
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        lab = np.zeros((h, w), np.uint8)
        c = 1 + i % 20
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        img[y0:y0 + h // 3, x0:x0 + w // 3] = (12 * c, 255 - 12 * c, 128)
        lab[y0:y0 + h // 3, x0:x0 + w // 3] = c
        lab[:4] = 255
        ids.append(f"g{i:03d}")
        write_png(root / "img" / f"{ids[-1]}.png", img)
        write_label_png(root / "sem" / f"{ids[-1]}.png", lab)
    (root / "ids.txt").write_text("\n".join(ids) + "\n")
    split = {"ids": "ids.txt", "images": {"rgb": {"dir": "img", "ext": ".png"}},
             "labels": {"sem": {"dir": "sem", "ext": ".png"}}}
    atomic_write_json(root / "dataset.json", {
        "name": "pascal", "source": "demo", "ignore_index": 255, "heads": {"sem": 21},
        "classes": {"sem": [f"c{i}" for i in range(21)]}, "splits": {"train": split, "val": split}})
    return root / "dataset.json"


def released_cfg(ds: Path, variant: str, backbone: str, amp: str, iterations: int, **over: Any) -> dict:
    cfg = {
        "experiment": f"gpu-{backbone}-{variant}", "dataset_json": str(ds), "train_split": "train",
        "val_split": "val", "val_max_images": 2, "modalities": ["rgb"],
        "arch": {"variant": variant, "backbone": backbone, "width": SIZE["width"], "num_classes": 21, "in_channels": 3,
                 "heads": None},
        "init": {"kind": "none"}, "fixed": False,
        "recipe": {"name": "released", "batch_size": 1, "lr": RELEASED_LR[variant], "momentum": 0.99,
                   "weight_decay": 5e-4, "bias_lr_mult": 2.0, "bias_decay": False, "loss": "sum",
                   "optimizer": "sgd"},
        "iterations": iterations, "val_every": 0, "log_every": 1, "checkpoint_every": 0,
        "augment": {"mirror": False, "jitter": 0}, "loss_sampling": 1.0, "class_balance": False, "seed": 0,
        "num_workers": 0, "amp": amp, "channels_last": "auto", "config_hash": "gpu-check",
    }
    cfg.update(over)
    return cfg


def _finite_weights(path: Path) -> tuple[bool, int]:
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    return not bad, len(sd)


def case_train(device: torch.device, work: Path, variant: str, backbone: str, amp: str,
               iterations: int = 4) -> dict[str, Any]:
    from fcnlib import train as T

    ds = work / "ds" / "dataset.json"
    d = work / f"train-{backbone}-{variant}-{amp}"
    d.mkdir(parents=True, exist_ok=True)
    cfg = released_cfg(ds, variant, backbone, amp, iterations)
    t0 = time.perf_counter()
    s = T.train(cfg, d / "w.pt", d / "resume.pt", d / "log.jsonl", device=str(device))
    secs = time.perf_counter() - t0
    losses = [json.loads(x)["loss"] for x in (d / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    ok_w, n = _finite_weights(d / "w.pt")
    out = {"ok": bool(losses) and all(math.isfinite(v) for v in losses) and ok_w, "losses": losses,
           "weights_finite": ok_w, "tensors": n, "seconds": round(secs, 2),
           "val": {k: v for k, v in (s.get("val") or {}).items() if isinstance(v, int | float)}}
    return out


RESUME_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    from fcnlib import train as T
    cfg, out, resume, log, kill_at, device = json.loads(sys.argv[1])
    if kill_at:
        def hook(it):
            if it == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        T._iteration_hook = hook
    T.train(cfg, out, resume, log, device=device)
""")


def case_resume(device: torch.device, work: Path) -> dict[str, Any]:
    ds = work / "ds" / "dataset.json"
    d = work / "resume"
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.py").write_text(RESUME_SCRIPT)
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONPATH": str(ROOT)}
    out: dict[str, Any] = {}
    for amp in ("bf16", "fp16"):
        cfg = released_cfg(ds, "fcn8s", "vgg16", amp, 6, checkpoint_every=2,
                           recipe={**released_cfg(ds, "fcn8s", "vgg16", amp, 6)["recipe"], "lr": 1e-10})

        def go(name: str, kill: int = 0, cfg: dict = cfg) -> subprocess.CompletedProcess:
            args = [cfg, str(d / f"{name}.pt"), str(d / f"{name}.resume.pt"), str(d / f"{name}.jsonl"), kill,
                    str(device)]
            return subprocess.run([sys.executable, str(d / "run.py"), json.dumps(args)], env=env,
                                  capture_output=True, text=True, timeout=240)

        a = go(f"straight-{amp}")
        k = go(f"resumed-{amp}", kill=3)
        b = go(f"resumed-{amp}")
        r: dict[str, Any] = {"straight_rc": a.returncode, "killed_rc": k.returncode, "resumed_rc": b.returncode}
        if a.returncode == 0 and b.returncode == 0:
            sa = torch.load(d / f"straight-{amp}.pt", map_location="cpu", weights_only=True)["state_dict"]
            sb = torch.load(d / f"resumed-{amp}.pt", map_location="cpu", weights_only=True)["state_dict"]
            diff = [key for key in sa if not torch.equal(sa[key], sb[key])]
            r.update(bitwise_equal=not diff, differing=diff[:10], resumed_msg="resuming" in b.stderr)
        else:
            r["stderr_tail"] = (a.stderr + k.stderr + b.stderr)[-1500:]
        r["ok"] = bool(r.get("bitwise_equal")) and k.returncode == -9
        out[amp] = r
    out["ok"] = all(v["ok"] for v in out.values() if isinstance(v, dict))
    return out


def case_forward(device: torch.device, reps: int = 5) -> dict[str, Any]:
    import variants

    batch = 16 if device.type == "cuda" else 1
    first = variants.conv_peak(device, reps=10, batch=batch)
    fwd = variants.bench_forward(device, SIZE["square"], reps, SIZE["width"])
    peak = variants.merge_peaks(first, variants.conv_peak(device, reps=10, batch=batch))
    variants.attach_peak(fwd, peak)
    # random weights (no trained net on a bare machine): the issue's ≥99% is for a trained net, so the
    # check fails only on a gross disagreement; the numbers are in the JSON
    return {"peak": peak, **fwd, "ok": all(r["argmax_agreement"] >= 0.95 and math.isfinite(r["max_rel_logit_diff"])
                                           for r in fwd["rows"].values())}


def case_segment(device: torch.device, work: Path) -> dict[str, Any]:
    from PIL import Image

    from fcnlib.models import ModelMeta, build_fcn, save_model
    from fcnlib.models.preprocessing import CAFFE_VGG

    d = work / "segment"
    d.mkdir(parents=True, exist_ok=True)
    model = build_fcn("fcn8s", "vgg16", 21, SIZE["width"])
    with torch.no_grad():
        model.score_fr.bias[7] = 3.0
    save_model(model, ModelMeta.create(model.arch, ["rgb"], {"rgb": CAFFE_VGG}, [f"c{i}" for i in range(21)]),
               d / "w.pt")
    img = np.random.default_rng(1).integers(0, 256, (333, 501, 3)).astype(np.uint8)
    Image.fromarray(img).save(d / "odd.jpg", quality=90)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "fcnlib", "segment", str(d / "odd.jpg"), "--weights",
                        str(d / "w.pt"), "--out", str(d / "out"), "--device", str(device), "--no-progress"],
                       capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT)})
    secs = time.perf_counter() - t0
    pngs = sorted((d / "out").glob("*.png")) if (d / "out").is_dir() else []
    size = list(Image.open(pngs[0]).size) if pngs else None
    lab = np.asarray(Image.open(pngs[0])) if pngs else None
    frac7 = float((lab == 7).mean()) if lab is not None else 0.0  # the class the score bias favours
    return {"ok": p.returncode == 0 and size == [501, 333] and frac7 >= 0.99, "rc": p.returncode,
            "png_size": size, "fraction_class_7": frac7, "seconds": round(secs, 2), "stdout": p.stdout[-300:],
            "stderr_tail": p.stderr[-800:]}


def case_memory(device: torch.device) -> dict[str, Any]:
    from fcnlib.models import build_fcn
    from fcnlib.runtime import compute, fast
    from fcnlib.train import segmentation_loss

    out: dict[str, Any] = {}
    model = build_fcn("fcn8s", "vgg16", 21, SIZE["width"]).to(device).to(memory_format=torch.channels_last).train()
    cuda = device.type == "cuda"
    n = SIZE["square"]
    net = fast.FastFCN(model)  # the device's autocast (bf16 on CUDA where supported)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-10, momentum=0.99)
    for batch in (1, 20):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.randn(batch, 3, n, n, device=device).contiguous(memory_format=torch.channels_last)
            lab = torch.randint(0, 21, (batch, n, n), device=device)
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = segmentation_loss(net(x), lab, "mean")
            loss.backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize(device)
            out[f"batch{batch}"] = {"peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
                                    "step_s": round(time.perf_counter() - t0, 3),
                                    "loss_finite": bool(torch.isfinite(loss))}
            del x, lab, loss
        except torch.cuda.OutOfMemoryError as e:
            out[f"batch{batch}"] = {"oom": str(e).splitlines()[0]}
            torch.cuda.empty_cache()
    out["autocast"] = str(compute.autocast_dtype(device))
    out["total_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30 if cuda else None
    out["ok"] = all("peak_gib" in out[f"batch{b}"] and out[f"batch{b}"]["loss_finite"] for b in (1, 20))
    return out


def extra_cases(path: Path = ROOT / "bench" / "gpu_cases.py") -> list[Callable[[torch.device], dict]]:
    """bench/gpu_cases.py's CASES (optional: other GPU-path checks plug in there)."""
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location("gpu_cases", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(getattr(mod, "CASES", []))


def run_case(result: dict[str, Any], name: str, fn: Callable[[], dict], deadline: float) -> None:
    if time.monotonic() > deadline:
        result["cases"][name] = {"ok": False, "skipped": "time budget spent"}
        return
    t0 = time.perf_counter()
    try:
        r = fn()
    except Exception as e:  # one failing case must not hide the others
        r = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    if not isinstance(r, dict):
        r = {"ok": False, "error": f"case returned {type(r).__name__}, not a dict"}
    r.setdefault("ok", "error" not in r)
    r.setdefault("seconds_total", round(time.perf_counter() - t0, 2))
    result["cases"][name] = r
    print(f"[gpu_check] {name}: {'ok' if r.get('ok') else 'FAILED'} ({r['seconds_total']} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "gpu_check.json"))
    ap.add_argument("--budget-s", type=float, default=300.0, help="stop starting new cases after this")
    ap.add_argument("--only", default="", help="comma-separated case-name prefixes (default: all)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run every case on the CPU with width-1/16 nets on 64×48 images: tests this script, "
                         "not the GPU (the JSON says so)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    result: dict[str, Any] = {"ran": False, "torch": torch.__version__, "python": platform.python_version(),
                              "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if a.cpu_smoke:
        SIZE.update(width=0.0625, image=(48, 64), square=64)
        result["cpu_smoke"] = "CPU plumbing test at width 1/16, 64×48: no GPU number in here"
    elif not torch.cuda.is_available():
        result["reason"] = (f"no CUDA device visible to torch {torch.__version__} (torch.version.cuda="
                            f"{torch.version.cuda}): nothing was run; run bench/gpu_check.sh on a GPU machine")
        write_json(out, result)
        print(f"[gpu_check] NOT RUN: {result['reason']}\n[gpu_check] wrote {out}")
        return 0
    dev = torch.device("cpu" if a.cpu_smoke else "cuda")
    result.update(ran=True, cases={})
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        result.update(device=p.name, capability=f"{p.major}.{p.minor}", total_gib=p.total_memory / 2**30,
                      cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                      bf16_supported=torch.cuda.is_bf16_supported())
    deadline = time.monotonic() + a.budget_s
    only = [s for s in a.only.split(",") if s]
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        synthetic_dataset(work / "ds")
        cases: list[tuple[str, Callable[[], dict]]] = []
        for variant, backbone in NETS:
            for amp in ("bf16", "fp16"):
                cases.append((f"train_{backbone}_{variant}_{amp}",
                              lambda v=variant, b=backbone, m=amp: case_train(dev, work, v, b, m)))
        cases += [("resume_bitwise", lambda: case_resume(dev, work)), ("forward", lambda: case_forward(dev)),
                  ("segment", lambda: case_segment(dev, work)), ("memory", lambda: case_memory(dev))]
        try:
            extra = extra_cases()
        except Exception as e:
            extra = []
            result["cases"]["gpu_cases_import"] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                                   "traceback": traceback.format_exc()[-3000:]}
        for fn in extra:
            cases.append((f"extra_{getattr(fn, '__name__', 'case')}", lambda fn=fn: fn(dev)))
        for name, fn in cases:
            if not only or any(name.startswith(o) for o in only):
                run_case(result, name, fn, deadline)
                write_json(out, result)  # partial results survive a timeout
    result["ok"] = all(c.get("ok") for c in result["cases"].values())
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(out, result)
    print(f"[gpu_check] {'all ok' if result['ok'] else 'FAILURES'}; wrote {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
