"""The report's figures: Figure 4 style grids, learning curves (Figure 5), per-class IU heatmaps.

Matplotlib's object API with the Agg canvas (no pyplot global state, no display needed) and PNG
metadata without the software version, so rerunning a rule gives byte-identical files. Every function
takes `demo`: a demo run's figure carries a DEMO watermark and a footer, as its tables say DEMO.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from fcnlib.data import SegDataset
from fcnlib.errors import DataError
from fcnlib.eval.inference import load_for_inference, predict
from fcnlib.files.io import atomic_write, read_image, read_json, voc_palette
from fcnlib.files.paths import open_regular
from fcnlib.models.meta import primary_head
from fcnlib.runtime.compute import resolve_runtime

PathLike = str | os.PathLike

_SAVE = {"format": "png", "metadata": {"Software": None}, "dpi": 100}


def _figure(w: float, h: float) -> Any:
    # matplotlib (~0.5 s to import) only where a figure is drawn: summaries import read_log from here
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # (as above)

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


DEMO_NOTE = "DEMO: synthetic data, tiny nets; not the paper's numbers"


def _mark_demo(fig: Any) -> None:
    """A diagonal DEMO watermark over the whole figure and a footer saying what it means."""
    # a faint white box under the word keeps it legible over busy image panels (Figure 4)
    fig.text(0.5, 0.5, "DEMO", fontsize=min(120, 30 * fig.get_figwidth() / 4), color="#c0392b", alpha=0.5,
             rotation=25, ha="center", va="center", weight="bold", zorder=1000,
             bbox={"facecolor": "white", "alpha": 0.3, "edgecolor": "none", "boxstyle": "round,pad=0.1"})
    fig.text(0.995, 0.005, DEMO_NOTE, fontsize=8, color="#c0392b", ha="right", va="bottom", zorder=1000)


def _save(fig: Any, out_png: PathLike, demo: bool = False) -> Path:
    if demo:
        _mark_demo(fig)
    out = Path(out_png)
    with atomic_write(out, "wb") as f:
        fig.savefig(f, **_SAVE)
    return out


def colourise(label: np.ndarray) -> np.ndarray:
    """Class ids → VOC palette colours (void 255 → the palette's cream)."""
    return voc_palette()[np.asarray(label, np.uint8)]


# ---------------------------------------------------------------------------------------------------
# Figure 4
# ---------------------------------------------------------------------------------------------------
def fig4_grid(rows: Sequence[Mapping[str, Any]], out_png: PathLike, title: str | None = None,
              demo: bool = False) -> Path:
    """image | each prediction (in the dict's order, e.g. FCN-32s, FCN-16s, FCN-8s) | ground truth."""
    if not rows:
        raise DataError(f"{out_png}: no rows to draw; pick at least one image")
    nets = list(rows[0]["preds"])
    cols = ["image", *nets, "ground truth"]
    h, w = np.asarray(rows[0]["image"]).shape[:2]
    cell = 2.4
    fig = _figure(cell * len(cols), cell * len(rows) * h / w + (0.6 if title else 0.3))
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for r, row in enumerate(rows):
        panels = [np.asarray(row["image"], np.uint8)] + [colourise(row["preds"][n]) for n in nets]
        panels.append(colourise(row["gt"]))
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=10)
        if row.get("name"):
            axes[r][0].set_ylabel(str(row["name"]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.03 if demo else 0, 1, 1))
    return _save(fig, out_png, demo)


def disagreement(preds: Sequence[np.ndarray], gt: np.ndarray, ignore_index: int = 255) -> float:
    """Mean fraction of valid pixels where each finer net's prediction differs from the first
    (coarsest) one: high where the skips change the output, i.e. at thin structures and boundaries."""
    valid = gt != ignore_index
    if len(preds) < 2 or not valid.any():
        return 0.0
    base = preds[0][valid]
    return float(np.mean([np.count_nonzero(p[valid] != base) / base.size for p in preds[1:]]))


def thin_mask(gt: np.ndarray, width: int = 7, background: int = 0, ignore_index: int = 255) -> np.ndarray:
    """Object pixels on structures narrower than `width` px (poles, wires, legs, small parts): what a
    morphological opening of each class's mask with a width×width square removes."""
    out = np.zeros(gt.shape, bool)
    square = np.ones((width, width), bool)
    for c in np.unique(gt):
        if c in (background, ignore_index):
            continue
        m = gt == c
        out |= m & ~ndimage.binary_opening(m, structure=square)
    return out


def thin_gain(preds: Sequence[np.ndarray], gt: np.ndarray, width: int = 7) -> int:
    """Thin-structure pixels the finest net (last) labels right minus those the coarsest (first) does:
    Figure 4's point, that the skips recover fine detail FCN-32s misses."""
    thin = thin_mask(gt, width)
    if len(preds) < 2 or not thin.any():
        return 0
    return int(np.count_nonzero(preds[-1][thin] == gt[thin]) - np.count_nonzero(preds[0][thin] == gt[thin]))


def fig4_from_weights(weights: Mapping[str, PathLike], dataset_json: PathLike, split: str, n: int,
                      out_png: PathLike, device: str = "auto", candidates: int = 50,
                      title: str | None = None, precision: str = "auto", demo: bool = False) -> Path:
    """Fig. 4 from trained nets (coarsest first): among the first `candidates` images of `split`, draw
    the `n` where the finest net recovers the most thin-structure pixels the coarsest misses
    (`thin_gain`), then those where the nets disagree most (boundaries, blobs FCN-32s loses)."""
    if not weights:
        raise DataError(f"{out_png}: no nets given for Figure 4; list the FCN-32s/16s/8s experiments")
    rt = resolve_runtime(device, precision)
    dev = rt.device
    preds: dict[str, list[np.ndarray]] = {}
    ds: Any = None
    for name, path in weights.items():
        model, meta = load_for_inference(path, rt)
        ds = SegDataset(dataset_json, split, modalities=meta.modalities, preprocessing=meta.preprocessing(path),
                        max_images=candidates)
        heads = list(ds.num_classes)
        main = primary_head(heads)
        preds[name] = [predict(model, ds[i][0].to(dev), heads)[main].numpy() for i in range(len(ds))]
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    names = list(preds)
    main = primary_head(ds.num_classes)
    gts = [ds.load_labels(i)[main] for i in range(len(ds))]
    thin = [thin_gain([preds[k][i] for k in names], gt) for i, gt in enumerate(gts)]
    score = [disagreement([preds[k][i] for k in names], gt, ds.ignore_index) for i, gt in enumerate(gts)]
    order = sorted(range(len(gts)), key=lambda i: (-max(thin[i], 0), -score[i], ds.ids[i]))[: max(1, n)]
    has_rgb = "rgb" in ds.meta["splits"][split]["images"]  # show RGB even for an HHA-only net
    rows = [{"image": read_image(ds.image_path(i, "rgb" if has_rgb else None)),
             "gt": gts[i], "preds": {k: preds[k][i] for k in names}, "name": ds.ids[i]} for i in order]
    return fig4_grid(rows, out_png, title=title, demo=demo)


# ---------------------------------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------------------------------
def read_records(path: PathLike) -> list[dict[str, Any]]:
    """A trainer JSONL log's records (those with an `iter`), in order. A truncated last line (a killed job)
    is skipped; a corrupt line elsewhere is an error."""
    path = Path(path)
    try:
        with open_regular(path, "training log") as f:
            lines = f.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: training log not found; rerun the train rule") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: training log is not UTF-8 ({e.reason} at byte {e.start}); rerun the train "
                        f"rule") from None
    out = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                continue
            raise DataError(f"{path}: line {k + 1} is not JSON; the log is corrupt — rerun the train "
                            f"rule") from None
        if isinstance(rec, dict) and "iter" in rec:
            out.append(rec)
    return out


def read_log(path: PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A trainer JSONL log → (loss records, validation records) (read_records)."""
    loss, val = [], []
    for rec in read_records(path):
        if isinstance(rec.get("val"), dict):
            val.append(rec)
        elif "loss" in rec:
            loss.append(rec)
    return loss, val


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(y) < k:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def learning_curves(logs: Mapping[str, PathLike], out_png: PathLike, x: str = "iter",
                    title: str | None = None, demo: bool = False) -> Path:
    """Training loss and validation mean IU of each run vs iteration or wall time (x="time": the
    Figure 5 comparison of whole-image training and loss sampling)."""
    if x not in ("iter", "time"):
        raise DataError(f"learning_curves: x={x!r}; use 'iter' or 'time'")
    fig = _figure(10, 4)
    ax_loss, ax_val = fig.subplots(1, 2)
    scale, xlabel = (1.0, "iteration") if x == "iter" else (1 / 60.0, "wall time (min)")
    all_pos = True
    for name, path in logs.items():
        loss, val = read_log(path)
        if loss:
            lx = np.array([r.get(x, math.nan) for r in loss], float) * scale
            ly = np.array([r["loss"] for r in loss], float)
            ok = np.isfinite(lx) & np.isfinite(ly)
            lx, ly = lx[ok], ly[ok]
            all_pos &= bool((ly > 0).all())
            line, = ax_loss.plot(lx, ly, alpha=0.25, linewidth=0.8)
            ax_loss.plot(lx, _smooth(ly, max(1, len(ly) // 20)), color=line.get_color(), label=name)
        if val:
            vx = np.array([r.get(x, math.nan) for r in val], float)
            if x == "time" and np.isnan(vx).any() and loss:
                # validation lines without a time stamp: place them at the time of the same iteration
                it = np.array([r["iter"] for r in loss], float)
                tm = np.array([r.get("time", math.nan) for r in loss], float)
                vx = np.where(np.isnan(vx), np.interp([r["iter"] for r in val], it, tm), vx)
            vy = np.array([(r["val"].get("mean_iu") if r["val"].get("mean_iu") is not None else math.nan)
                           for r in val], float) * 100
            ax_val.plot(vx * scale, vy, marker="o", markersize=3, label=name)
    if all_pos and ax_loss.lines:
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel=xlabel, ylabel="training loss", title="loss")
    ax_val.set(xlabel=xlabel, ylabel="mean IU (%)", title="validation mean IU")
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 if demo else 0, 1, 1))
    return _save(fig, out_png, demo)


# ---------------------------------------------------------------------------------------------------
# Per-class IU
# ---------------------------------------------------------------------------------------------------
def per_class_heatmap(metrics: Mapping[str, PathLike | Mapping[str, Any]], out_png: PathLike,
                      title: str | None = None, demo: bool = False) -> Path:
    """IU (%) of each class (rows) for each net (columns) as a heatmap, the number in every cell, from
    metrics.json files (or their dicts). Classes without an IU (absent from ground truth and prediction)
    are blank, not zero; each column's heading gives the net's mean IU. Readable from VOC's 21 classes to
    PASCAL-Context's 60 and for any number of nets: one row of text per class, one column per net."""
    loaded = {name: (read_json(m) if not isinstance(m, Mapping) else m) for name, m in metrics.items()}
    if not loaded:
        raise DataError(f"{out_png}: no metrics given")
    classes: list[str] = []
    for name, m in loaded.items():
        pc = m.get("per_class_iu")
        if not isinstance(pc, Mapping):
            raise DataError(f"{metrics[name]}: no per_class_iu; rerun the evaluate rule")
        classes += [c for c in pc if c not in classes]
    nets = list(loaded)
    grid = np.full((len(classes), len(nets)), np.nan)
    for j, name in enumerate(nets):
        pc = loaded[name]["per_class_iu"]
        for i, c in enumerate(classes):
            if pc.get(c) is not None and math.isfinite(float(pc[c])):
                grid[i, j] = 100 * float(pc[c])
    cell_w, cell_h = 0.9, 0.22
    fig = _figure(2.4 + cell_w * len(nets), 1.9 + cell_h * len(classes))
    ax = fig.subplots()
    ax.set_facecolor("#f0f0f0")  # classes without an IU: masked cells let it show
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=100, aspect="auto",
                   interpolation="nearest")
    for (i, j), v in np.ndenumerate(grid):
        if math.isfinite(v):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 55 else "black")
    heads = []
    for name in nets:
        miu = loaded[name].get("mean_iu")
        heads.append(f"{name}\n(mean IU {100 * miu:.1f})" if miu is not None else name)
    ax.set_xticks(range(len(nets)), heads, fontsize=7, rotation=35, ha="left", rotation_mode="anchor")
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(classes)), [c if len(c) <= 24 else c[:23] + "…" for c in classes], fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(title or "Per-class intersection over union (%)", fontsize=10, pad=12)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="IU (%)")
    fig.tight_layout(rect=(0, 0.03 if demo else 0, 1, 1))
    return _save(fig, out_png, demo)
