"""The paper's numbers and constants, typed once (SPEC §2, §3, §5).

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015.
Metric values are in percent, exactly as the paper prints them; fcnlib.eval.metrics returns fractions and
fcnlib.report.tables converts. Table keys ("table1".."table5", "context", "ablations") and row names are the
keys the workflow config uses to place an experiment in a table — keep them stable.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

# --------------------------------------------------------------------------------------------------
# Columns: key → (heading, unit). "pct" values are percent in the paper and fractions in metrics.json.
# --------------------------------------------------------------------------------------------------
COLUMNS: Final = MappingProxyType({
    "pixel_acc": ("pixel acc.", "pct"),
    "mean_acc": ("mean acc.", "pct"),
    "mean_iu": ("mean IU", "pct"),
    "fw_iu": ("f.w. IU", "pct"),
    "geo_acc": ("geom. acc.", "pct"),
    "forward_ms": ("forward time (ms)", "ms"),
    "params": ("params", "count"),
    "receptive_field": ("rf size", "px"),
    "max_stride": ("max stride", "px"),
    "released_mean_iu": ("released caffemodel mean IU", "pct"),
})


def _t(title: str, caption: str, columns: tuple[str, ...], rows: dict[str, dict[str, Any]],
       delta_on: str | None = "mean_iu", paper_only: tuple[str, ...] = ()) -> MappingProxyType:
    return MappingProxyType({"title": title, "caption": caption, "columns": columns,
                             "paper_only": paper_only, "delta_on": delta_on,
                             "rows": MappingProxyType({k: MappingProxyType(v) for k, v in rows.items()})})


#: Published seg11valid mean IU of the authors' released caffemodels: the authors' README gives 63.6 / 65.0 /
#: 65.5 / 65.4 and FCN-AlexNet 48.0; the two-decimal VOC values are the re-scoring SPEC §5 cites. The NYUD,
#: SIFT Flow and PASCAL-Context releases come without a number.
RELEASED_README_MEAN_IU: Final = MappingProxyType({
    "voc-fcn32s": 63.63, "voc-fcn16s": 65.01, "voc-fcn8s": 65.51, "voc-fcn8s-atonce": 65.40,
    "voc-fcn-alexnet": 48.0,
})

# Each row: column → the paper's value (None where the paper gives none), plus optional "remark".
TABLES: Final = MappingProxyType({
    "table1": _t(
        "Table 1. Adapting classifiers to segmentation (FCN-32s)",
        "Mean IU on PASCAL VOC 2011 val; forward time of a 500×500 input averaged over 20 trials on an "
        "NVIDIA Tesla K40c (ours: median on the device named in the header).",
        ("mean_iu", "forward_ms", "params", "receptive_field", "max_stride"),
        {
            "FCN-AlexNet": {"mean_iu": 39.8, "forward_ms": 50, "params": 57_000_000,
                            "receptive_field": 355, "max_stride": 32},
            "FCN-VGG16": {"mean_iu": 56.0, "forward_ms": 210, "params": 134_000_000,
                          "receptive_field": 404, "max_stride": 32},
            "FCN-GoogLeNet": {"mean_iu": 42.5, "forward_ms": 59, "params": 6_000_000,
                              "receptive_field": 907, "max_stride": 32},
        }),
    "table2": _t(
        "Table 2. Skip-architecture comparison on PASCAL VOC 2011 val (seg11valid)",
        "FCN-32s-fixed trains only the last layer. Learning is end-to-end for the others; each finer "
        "net starts from the coarser one. The last column is the authors' released caffemodels on "
        "seg11valid (they were trained longer than the paper's nets): ours = our scoring of them "
        "(results/released.md), paper = the authors' README.",
        ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "released_mean_iu"),
        {
            "FCN-32s-fixed": {"pixel_acc": 83.0, "mean_acc": 59.7, "mean_iu": 45.4, "fw_iu": 72.0,
                              "released_mean_iu": None},
            "FCN-32s": {"pixel_acc": 89.1, "mean_acc": 73.3, "mean_iu": 59.4, "fw_iu": 81.4,
                        "released_mean_iu": RELEASED_README_MEAN_IU["voc-fcn32s"]},
            "FCN-16s": {"pixel_acc": 90.0, "mean_acc": 75.7, "mean_iu": 62.4, "fw_iu": 83.0,
                        "released_mean_iu": RELEASED_README_MEAN_IU["voc-fcn16s"]},
            "FCN-8s": {"pixel_acc": 90.3, "mean_acc": 75.9, "mean_iu": 62.7, "fw_iu": 83.2,
                       "released_mean_iu": RELEASED_README_MEAN_IU["voc-fcn8s"]},
            "FCN-8s-atonce": {"pixel_acc": None, "mean_acc": None, "mean_iu": None, "fw_iu": None,
                              "released_mean_iu": RELEASED_README_MEAN_IU["voc-fcn8s-atonce"],
                              "remark": "not in the CVPR paper; released at-once model re-scored"},
        },
        paper_only=("released_mean_iu",)),
    "table3": _t(
        "Table 3. FCN-8s on the PASCAL VOC test sets",
        "Mean IU on VOC2011 and VOC2012 test (scored by the evaluation server) and inference time.",
        ("mean_iu", "forward_ms"),
        {
            "FCN-8s (VOC2011 test)": {"mean_iu": 62.7, "forward_ms": 175},
            "FCN-8s (VOC2012 test)": {"mean_iu": 62.2, "forward_ms": 175},
        }),
    "table4": _t(
        "Table 4. NYUDv2 (test, 40 classes)",
        "RGBD is early fusion (4-channel input); HHA is the Gupta et al. depth embedding; RGB-HHA is "
        "late fusion of the RGB and HHA nets (score maps summed).",
        ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"),
        {
            "FCN-32s RGB": {"pixel_acc": 60.0, "mean_acc": 42.2, "mean_iu": 29.2, "fw_iu": 43.9},
            "FCN-32s RGBD": {"pixel_acc": 61.5, "mean_acc": 42.4, "mean_iu": 30.5, "fw_iu": 45.5},
            "FCN-32s HHA": {"pixel_acc": 57.1, "mean_acc": 35.2, "mean_iu": 24.2, "fw_iu": 40.4},
            "FCN-32s RGB-HHA": {"pixel_acc": 64.3, "mean_acc": 44.9, "mean_iu": 32.8, "fw_iu": 48.0},
            "FCN-16s RGB-HHA": {"pixel_acc": 65.4, "mean_acc": 46.1, "mean_iu": 34.0, "fw_iu": 49.5},
        }),
    "table5": _t(
        "Table 5. SIFT Flow (test, 33 semantic + 3 geometric classes)",
        "One two-headed FCN-16s predicts semantic and geometric labels; geom. acc. is the pixel "
        "accuracy of the geometric head.",
        ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "geo_acc"),
        {
            "FCN-16s": {"pixel_acc": 85.2, "mean_acc": 51.7, "mean_iu": 39.5, "fw_iu": 76.1, "geo_acc": 94.3},
        }),
    "context": _t(
        "PASCAL-Context (59 classes + background)",
        "Mean IU on the 59-class task; the paper reports mean IU only for these nets.",
        ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"),
        {
            "FCN-32s": {"pixel_acc": None, "mean_acc": None, "mean_iu": 31.8, "fw_iu": None},
            "FCN-16s": {"pixel_acc": None, "mean_acc": None, "mean_iu": 34.8, "fw_iu": None},
            "FCN-8s": {"pixel_acc": None, "mean_acc": None, "mean_iu": 35.1, "fw_iu": None},
        }),
    "ablations": _t(
        "Ablations (FCN-32s, VOC2011 val)",
        "Training data, augmentation and loss sampling. The paper gives a number only for the extra SBD "
        "training data (+3.4 mean IU, 56.0 → 59.4); for augmentation and sampling it reports the effect "
        "in words (Section 4.3, Figure 5).",
        ("mean_iu",),
        {
            "FCN-32s VOC2011 train only": {
                "mean_iu": 56.0, "remark": "SBD training data adds +3.4 mean IU (56.0 → 59.4)"},
            "FCN-32s": {"mean_iu": 59.4, "remark": "trained on SBD train (8,498 images)"},
            "FCN-32s + augmentation (mirror, jitter)": {
                "mean_iu": None,
                "remark": "no noticeable improvement from mirroring and jittering up to 32 px"},
            "FCN-32s loss sampling p=0.25": {
                "mean_iu": None,
                "remark": "Figure 5: no significant effect on convergence per iteration, but slower in wall "
                          "time (more images per batch); whole-image training is used instead"},
        }),
})

#: The SBD ablation, as the paper states it (mean IU points).
SBD_GAIN_MEAN_IU: Final = 3.4

# --------------------------------------------------------------------------------------------------
# Constants (SPEC §1–§3). Each is typed once where the code uses it: image means in
# fcnlib.models.preprocessing, the NYU camera and crop in fcnlib.data.hha (CAMERAS), crop offsets in
# fcnlib.models.fcn, recipes in config/config.yaml, class names and counts in fcnlib.facts.datasets.
# Here: split sizes, the CVPR recipe.
# --------------------------------------------------------------------------------------------------
SPLIT_SIZES: Final = MappingProxyType({
    "sbd_train": 8498, "seg11valid": 736, "voc12_trainaug": 10582,
    "nyud_train": 381, "nyud_val": 414, "nyud_trainval": 795, "nyud_test": 654,
    "siftflow_trainval": 2486, "siftflow_test": 200,
})

#: The CVPR text's recipe (normalized loss).
CVPR_RECIPE: Final = MappingProxyType({"lr": 1e-4, "momentum": 0.9, "weight_decay": 5e-4, "batch": 20,
                                       "loss": "mean"})


def table(key: str) -> MappingProxyType:
    """One table's definition; unknown keys raise KeyError listing the known ones."""
    try:
        return TABLES[key]
    except KeyError:
        raise KeyError(f"unknown table {key!r}; known: {', '.join(TABLES)}") from None


def paper_value(table_key: str, row: str, column: str) -> float | None:
    """The paper's number for one cell (percent for metrics), or None where it gives none."""
    return table(table_key)["rows"][row].get(column)
