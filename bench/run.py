"""One benchmark run: our fast paths against straightforward baselines, side by side in one process.

    python bench/run.py                      # the paper's net at 500×500 (minutes on a 2-core CPU)
    python bench/run.py --quick              # width 0.25 net, 2 reps, short HHA/metrics: a smoke run
    python bench/run.py --only forward,train --reps 5 --json bench/results.json
    python bench/run.py --only trainer       # opt-in: bench/train.py (fcnlib.train's loop, per setting)
    python bench/run.py --only peak,variants,variants_train   # every net of the paper (bench/variants.py)
    python bench/run.py --only trained       # opt-in: the demo's trained nets, bf16 fast path vs fp32 (trained.py)

Every ratio is baseline time / our time measured in this process (interleaved where the allocator
allows, medians of --reps), so the load of a shared machine cancels out. Sections: forward 500×500,
training step 500×500, every variant/backbone's forward (FCN-32s/16s/8s, FCN-AlexNet, FCN-GoogLeNet)
and FCN-8s/32s training step against the measured fp32/bf16 conv peak (bench/variants.py), evaluation
(confusion matrix) throughput, HHA per frame, data loading pairs/s,
`snakemake -n` of the full paper DAG. Writes a table to stdout and JSON to --json (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import padskip  # noqa: E402
import torch  # noqa: E402

from fcnlib.runtime import allocator, compute, fast  # noqa: E402

SHARED = ROOT / ".." / "shared" / "data"


def _median_times(fns: dict[str, Callable[[], Any]], reps: int, sync: Callable[[], None]) -> dict[str, float]:
    """Interleaved timing: each rep runs every fn once, so slow spells of a shared machine hit all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _random_fcn8s(width: float, seed: int = 0) -> torch.nn.Module:
    """FCN-8s with every layer random (He-normal convs, small biases, random score layers) so that argmax
    agreement tests more than the zero-initialised score layers would."""
    from fcnlib.models import build_fcn

    torch.manual_seed(seed)
    m = build_fcn("fcn8s", width=width, num_classes=21)
    with torch.no_grad():
        for name, mod in m.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                if name.startswith("score"):
                    mod.weight.mul_(0.5)
                torch.nn.init.normal_(mod.bias, 0.0, 0.05)
    return m


# ------------------------------------------------------------------------------------------------------
# forward and training step


def compile_model(model: torch.nn.Module, example: torch.Tensor, freezing: bool = True,
                  dtype: torch.dtype | None = None) -> tuple[Callable, float]:
    """torch.compile (inductor, optionally with weight freezing) → (callable, compile seconds).

    Optional: compiling VGG16-FCN takes tens of seconds on a CPU, worth it only for long evaluations.
    """
    import torch._inductor.config as icfg

    icfg.freezing = freezing
    fn = torch.compile(model)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(example.device.type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        fn(example)
    return fn, time.perf_counter() - t0


def bench_net(width: float, size: int, reps: int, device: torch.device, do_compile: bool,
              sections: set[str]) -> dict[str, Any]:
    from baseline_fcn import from_fcn

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = _random_fcn8s(width).to(device)
    base = from_fcn(model).to(device)  # forward comparisons: never trained, so weights stay equal to ours
    base_tr = from_fcn(model).to(device)  # the baseline training step updates its own copy
    x = torch.randn(1, 3, size, size, device=device)
    lab = torch.randint(0, 21, (1, size, size), device=device)
    lab[:, : size // 10] = 255
    res: dict[str, Any] = {"width": width, "size": size, "reps": reps, "device": str(device),
                           "autocast": str(compute.autocast_dtype(device)),
                           "cpu_native_bf16": compute.cpu_has_native_bf16(),
                           "winograd": fast.winograd_available(device),
                           "channels_last": compute.use_channels_last(device)}

    def base_fwd() -> torch.Tensor:
        with torch.no_grad():
            return base.eval()(x)

    base_opt = torch.optim.SGD(base_tr.parameters(), lr=1e-6, momentum=0.9)

    def base_step() -> None:
        base_tr.train()
        base_opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(base_tr(x), lab, ignore_index=255)
        loss.backward()
        base_opt.step()

    # phase A: the baseline as a plain process runs it (default glibc allocator)
    base_fwd(), ("train" in sections) and base_step()
    a = _median_times({"fwd": base_fwd, **({"step": base_step} if "train" in sections else {})}, reps, sync)
    res["malloc_tuned"] = allocator.tune_malloc()  # from here on: our allocator settings (the baseline shares them)

    # ours: inference as fcnlib.runtime.fast sets it up
    infer = fast.inference_setup(_random_fcn8s(width).to(device), compute.resolve_runtime(device), fixed_size=True)
    fast_net = fast.FastFCN(infer)
    exact_net = padskip.PadSkipFCN(infer, amp=None, winograd=False, padskip=True)
    xin = x.contiguous(memory_format=torch.channels_last) if res["channels_last"] else x

    def ours_fwd() -> torch.Tensor:
        with torch.inference_mode():
            return fast_net(xin)

    def exact_fwd() -> torch.Tensor:
        with torch.inference_mode():
            return exact_net(x)

    fwd_fns: dict[str, Callable[[], Any]] = {"baseline": base_fwd, "ours": ours_fwd, "ours_fp32_exact": exact_fwd}
    if do_compile:
        dt = compute.autocast_dtype(device)
        compiled, t_compile = compile_model(infer, xin, freezing=True, dtype=dt)
        res["compile_s"] = round(t_compile, 1)

        def comp_fwd() -> torch.Tensor:
            with torch.inference_mode(), compute.resolve_runtime(device).autocast():
                return compiled(xin)

        fwd_fns["ours_compiled"] = comp_fwd
    for f in fwd_fns.values():
        f()  # warm-up
    t = _median_times(fwd_fns, reps, sync)
    ref = base_fwd().float()
    scale = float(ref.abs().max())
    agree = {}
    for k, f in fwd_fns.items():
        if k == "baseline":
            continue
        out = f().float()
        agree[k] = {"argmax_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean()),
                    "max_rel_logit_diff": float((out - ref).abs().max()) / scale}
    res["forward"] = {
        "baseline_default_malloc_s": a["fwd"], **{f"{k}_s": v for k, v in t.items()},
        "ratio": t["baseline"] / t["ours"], "ratio_vs_default_malloc": a["fwd"] / t["ours"],
        "ratio_fp32_exact": t["baseline"] / t["ours_fp32_exact"], "agreement_vs_baseline": agree}
    if do_compile:
        res["forward"]["ratio_compiled"] = t["baseline"] / t["ours_compiled"]

    if "train" in sections:
        train_model = _random_fcn8s(width).to(device)
        if res["channels_last"]:
            train_model = train_model.to(memory_format=torch.channels_last)
        ours_train = fast.FastFCN(train_model)
        opt = torch.optim.SGD(train_model.parameters(), lr=1e-6, momentum=0.9)

        def ours_step() -> None:
            ours_train.train()
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(ours_train(xin), lab, ignore_index=255)
            loss.backward()
            opt.step()

        ours_step()
        t2 = _median_times({"baseline": base_step, "ours": ours_step}, reps, sync)
        res["train_step"] = {"baseline_default_malloc_s": a["step"], "baseline_s": t2["baseline"],
                             "ours_s": t2["ours"], "ratio": t2["baseline"] / t2["ours"],
                             "ratio_vs_default_malloc": a["step"] / t2["ours"],
                             "ours_uses": {"padskip": False,  # FastFCN never skips (padskip.PadSkipFCN does)
                                           "autocast": res["autocast"],
                                           "channels_last": res["channels_last"]}}
    return res


# ------------------------------------------------------------------------------------------------------
# data loading


def _voc_mini_dataset(tmp: Path) -> Path | None:
    """dataset.json over the real VOC sample images (shared/data/voc2012_mini) that have labels."""
    img_dir = SHARED / "voc2012_mini" / "VOCdevkit" / "VOC2012" / "JPEGImages"
    lab_dir = SHARED / "voc2012_mini" / "SegmentationClassAug_crosscheck"
    if not lab_dir.is_dir():
        return None
    ids = sorted(p.stem for p in lab_dir.glob("*.png") if (img_dir / f"{p.stem}.jpg").exists())
    if not ids:
        return None
    (tmp / "ids.txt").write_text("\n".join(ids) + "\n")
    meta = {"name": "pascal", "source": "real", "ignore_index": 255, "heads": {"sem": 21},
            "classes": {"sem": [str(i) for i in range(21)]},
            "splits": {"val": {"ids": "ids.txt", "images": {"rgb": {"dir": str(img_dir.resolve()), "ext": ".jpg"}},
                               "labels": {"sem": {"dir": str(lab_dir.resolve()), "ext": ".png"}}}}}
    path = tmp / "dataset.json"
    path.write_text(json.dumps(meta))
    return path


def bench_data(reps: int, passes: int = 5) -> dict[str, Any]:
    """Pairs/s of SegDataset (decode + Caffe preprocessing + label check) vs a plain PIL/numpy loader."""
    from PIL import Image

    from fcnlib.data import SegDataset
    from fcnlib.models.preprocessing import CAFFE_VGG

    with tempfile.TemporaryDirectory() as td:
        dj = _voc_mini_dataset(Path(td))
        if dj is None:
            return {"skipped": "no shared/data/voc2012_mini"}
        ds = SegDataset(dj, "val", ("rgb",), {"rgb": CAFFE_VGG})
        mean = np.array(CAFFE_VGG.mean, np.float32)

        def plain(i: int) -> tuple[torch.Tensor, torch.Tensor]:
            img = np.asarray(Image.open(ds.image_path(i)).convert("RGB"), dtype=np.float32)[:, :, ::-1] - mean
            lab = np.asarray(Image.open(ds.label_path(i)), dtype=np.int64)
            return torch.from_numpy(img.transpose(2, 0, 1).copy()), torch.from_numpy(lab)

        n = len(ds)
        a, b = ds[0], plain(0)
        same = bool(torch.allclose(a[0], b[0], atol=1e-3) and torch.equal(a[1], b[1]))
        t = _median_times({"baseline": lambda: [plain(i) for i in range(n) for _ in range(passes)],
                           "ours": lambda: [ds[i] for i in range(n) for _ in range(passes)]}, reps, lambda: None)
        k = n * passes
        return {"images": n, "baseline_pairs_per_s": k / t["baseline"], "ours_pairs_per_s": k / t["ours"],
                "ratio": t["baseline"] / t["ours"], "outputs_equal": same}


# ------------------------------------------------------------------------------------------------------
# snakemake -n


def bench_dryrun() -> dict[str, Any]:
    """Wall time of `snakemake -n` on the full paper DAG vs an empty Snakefile (snakemake's own start-up)."""
    exe = [sys.executable, "-m", "snakemake"]

    def timed(args: list[str], cwd: Path) -> tuple[float, int, str]:
        t0 = time.perf_counter()
        p = subprocess.run(exe + args, cwd=cwd, capture_output=True, text=True, check=False)
        return time.perf_counter() - t0, p.returncode, (p.stdout + p.stderr)[-400:]

    with tempfile.TemporaryDirectory() as td:
        Path(td, "Snakefile").write_text("rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
        rows = []
        for _ in range(2):  # interleaved, best of 2
            rows.append((timed(["all", "-n"], Path(td)),
                         timed(["results/tables.md", "-n"], ROOT)))
    idle = min(r[0][0] for r in rows)
    ours = min(r[1][0] for r in rows)
    rc, tail = rows[-1][1][1], rows[-1][1][2]
    out = {"trivial_snakefile_s": idle, "paper_dag_s": ours, "workflow_adds_s": ours - idle,
           "returncode": rc, "target_s": 3.0, "meets_target": ours <= 3.0 and rc == 0}
    if rc != 0:
        out["error_tail"] = tail
    return out


# ------------------------------------------------------------------------------------------------------


def _row(name: str, base: str, ours: str, ratio: str, note: str = "") -> str:
    return f"{name:<34}{base:>14}{ours:>14}{ratio:>8}  {note}"


def table(r: dict[str, Any]) -> str:
    lines = [_row("benchmark", "baseline", "ours", "ratio", "notes"), "-" * 100]
    net = r.get("net", {})
    if "forward" in net:
        f = net["forward"]
        ag = f["agreement_vs_baseline"]
        lines.append(_row(f"forward {net['size']}² (w {net['width']})", f"{f['baseline_s']:.2f} s",
                          f"{f['ours_s']:.2f} s", f"{f['ratio']:.2f}×",
                          f"argmax agree {100 * ag['ours']['argmax_agreement']:.3f}%; vs default malloc "
                          f"{f['ratio_vs_default_malloc']:.2f}×"))
        lines.append(_row("  fp32 exact (padding skip)", "", f"{f['ours_fp32_exact_s']:.2f} s",
                          f"{f['ratio_fp32_exact']:.2f}×",
                          f"max rel logit diff {ag['ours_fp32_exact']['max_rel_logit_diff']:.1e}"))
        if "ratio_compiled" in f:
            lines.append(_row("  torch.compile (freezing)", "", f"{f['ours_compiled_s']:.2f} s",
                              f"{f['ratio_compiled']:.2f}×", f"compile {net['compile_s']} s"))
    if "train_step" in net:
        s = net["train_step"]
        lines.append(_row(f"training step {net['size']}²", f"{s['baseline_s']:.2f} s", f"{s['ours_s']:.2f} s",
                          f"{s['ratio']:.2f}×", f"vs default malloc {s['ratio_vs_default_malloc']:.2f}×"))
    if "eval" in r and "bincount_uint8_pred_images_per_s" in r["eval"]:
        e = r["eval"]
        lines.append(_row("confusion matrix 500² (images/s)", f"{e['per_class_mask_images_per_s']:.0f}",
                          f"{e['bincount_uint8_pred_images_per_s']:.0f}",
                          f"{e['bincount_uint8_pred_images_per_s'] / e['per_class_mask_images_per_s']:.1f}×",
                          f"target ≥1000/s; methods agree {e['methods_agree']}"))
    if "hha" in r and "ours_s_median" in r["hha"]:
        h = r["hha"]
        lines.append(_row("HHA 640×480 (s/frame)", f"{h['baseline_s_extrapolated']:.1f}", f"{h['ours_s_median']:.3f}",
                          f"{h['speedup']:.0f}×", "target ≤0.1 s; baseline per-pixel loops, extrapolated"))
    if "data" in r and "ratio" in r["data"]:
        d = r["data"]
        lines.append(_row("data loading (pairs/s)", f"{d['baseline_pairs_per_s']:.1f}", f"{d['ours_pairs_per_s']:.1f}",
                          f"{d['ratio']:.2f}×", f"real VOC samples; same tensors {d['outputs_equal']}"))
    if "dryrun" in r and "paper_dag_s" in r["dryrun"]:
        d = r["dryrun"]
        lines.append(_row("snakemake -n paper DAG (s)", f"{d['trivial_snakefile_s']:.2f}", f"{d['paper_dag_s']:.2f}",
                          "", f"baseline = empty Snakefile; target ≤3 s; rc {d['returncode']}"))
    if "trainer" in r and r["trainer"].get("speedup"):
        t = r["trainer"]
        lines.append(_row("fcnlib.train loop (bench/train.py)", "", "", f"{t['speedup']:.2f}×",
                          f"fastest setting {t['fastest']} vs fp32 (separate subprocesses)"))
    import variants

    lines += variants.table_rows(r, _row)
    import trained

    lines += trained.table_rows(r, _row)
    for k, v in r.get("errors", {}).items():
        lines.append(f"{k}: ERROR {v.splitlines()[-1] if v else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0, help="net width multiplier (1.0 = the paper's VGG16)")
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (+ its compile time)")
    ap.add_argument("--quick", action="store_true", help="width 0.25, 2 reps, short HHA/metrics")
    ap.add_argument("--only", default="forward,train,peak,variants,variants_train,eval,hha,data,dryrun")
    ap.add_argument("--max-images", type=int, default=None, help="trained: val images per net (default all)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.width, a.reps = 0.25, 2
    sections = set(a.only.split(","))
    device = torch.device(a.device)
    r: dict[str, Any] = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                     "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                                     "load_avg_1m_start": round(os.getloadavg()[0], 2)}, "errors": {}}

    def section(name: str, fn: Callable[[], Any]) -> None:
        try:
            r[name] = fn()
        except Exception:  # one broken section must not hide the others' numbers
            r["errors"][name] = traceback.format_exc()
            print(r["errors"][name], file=sys.stderr)

    # sections that must see glibc's default allocator first: bench_net and hha tune it for the process
    if "dryrun" in sections:
        section("dryrun", bench_dryrun)
    if "data" in sections:
        section("data", lambda: bench_data(a.reps))
    if "eval" in sections:
        import metrics
        section("eval", lambda: metrics.run(None, images=40 if a.quick else 100, repeats=a.reps))
    if sections & {"forward", "train"}:
        section("net", lambda: bench_net(a.width, a.size, a.reps, device, a.compile, sections))
    if sections & {"peak", "variants", "variants_train"}:
        import variants

        allocator.tune_malloc()  # baseline and ours alike (bench_net has done it already when it ran)
        section("peak", lambda: variants.conv_peak(device))
        if "variants" in sections:
            section("variants", lambda: variants.bench_forward(device, a.size, a.reps, a.width))
        if "variants_train" in sections:
            section("variants_train", lambda: variants.bench_train(device, a.size, a.reps, a.width))
        # measured again after the rows, the best of both kept: a shared machine only ever lowers a peak
        section("peak", lambda: variants.merge_peaks(r.get("peak"), variants.conv_peak(device)))
        for sec in ("variants", "variants_train"):
            variants.attach_peak(r.get(sec), r.get("peak"))
    if "trainer" in sections and (ROOT / "bench" / "train.py").exists():  # opt-in: minutes per setting
        import train as trainer_bench  # fcnlib.train's own loop, one subprocess per setting
        section("trainer", lambda: trainer_bench.run(None, iters=2 if a.quick else 3, width=a.width))
    if "trained" in sections:  # opt-in: needs a finished demo run's results/
        import trained
        section("trained", lambda: trained.run(None, a.max_images))
    if "hha" in sections:  # after the net: it tunes malloc for itself (process-wide)
        import hha
        section("hha", lambda: hha.run(None, repeats=3 if a.quick else 7))
    r["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print()
    print(table(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2, default=str))
        print(f"\nJSON: {a.json}")
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
