"""PASCAL VOC 2011/2012 tars and the SBD benchmark.tgz, with the seg11valid / train_noval lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.sparse import csc_matrix

from fcnlib.demo.encode import jpeg_bytes, mat_bytes, png_bytes, text_bytes, write_tar
from fcnlib.demo.paint import BACKGROUND_RGB, class_appearance, draw_size, paint, voc_ids, voc_scene, void_band
from fcnlib.facts.datasets import VOC_CLASSES
from fcnlib.files.io import atomic_write, voc_palette


def write_pascal(out: Path, seed: int, n_train: int, n_val: int, image_size: tuple[int, int]) -> None:
    rng = np.random.default_rng([seed, 1])
    taken: set[str] = set()
    n_ov = max(2, n_val // 4)            # VOC2011 seg val ids also in SBD train (removed by seg11valid)
    n_t11 = max(4, n_val)                # VOC2011 seg train
    t11 = voc_ids(rng, n_t11, (2007, 2008, 2009, 2010, 2011), taken)
    v11 = voc_ids(rng, n_val + n_ov, (2007, 2008, 2009, 2010, 2011), taken)
    v11_in_sbd = sorted(rng.choice(v11, n_ov, replace=False).tolist())
    t11_in_sbd = sorted(rng.choice(t11, n_t11 // 2, replace=False).tolist())
    sbd_new = voc_ids(rng, max(1, n_train - n_ov - len(t11_in_sbd)), (2008, 2009, 2010, 2011), taken)
    sbd_train = sorted(v11_in_sbd + t11_in_sbd + sbd_new)
    rest_t11 = sorted(set(t11) - set(t11_in_sbd))
    sbd_val = sorted(rest_t11[: max(2, n_val // 4)] + voc_ids(rng, max(2, n_val // 4), (2008, 2009, 2010), taken))
    t12 = sorted(t11 + voc_ids(rng, max(2, n_val // 4), (2012,), taken))
    v12 = sorted(v11 + voc_ids(rng, max(2, n_val // 4), (2012,), taken))
    # test sets WITH labels so the demo can score Table 3's test columns (the real test labels are
    # not public and the real trainval tars hold no test.txt); VOC2012 test ⊇ VOC2011 test
    test11 = voc_ids(rng, n_val, (2008, 2009, 2010, 2011), taken)
    test12 = sorted(test11 + voc_ids(rng, max(2, n_val // 4), (2012,), taken))
    seg11valid = sorted(set(v11) - set(sbd_train))
    train_noval = sorted((set(sbd_train) | set(sbd_val)) - set(v12))

    pal = voc_palette()
    jpgs: dict[str, bytes] = {}
    pngs: dict[str, bytes] = {}
    sbd_mats: dict[str, bytes] = {}
    all_ids = sorted(taken)
    n_obj_classes = len(VOC_CLASSES) - 1
    app = class_appearance(len(VOC_CLASSES))
    # background gets a muted grey-brown so objects stand out by colour, as in real photos
    app[0][0] = np.array(BACKGROUND_RGB, np.float32)
    for k, iid in enumerate(all_ids):
        r = np.random.default_rng([seed, 1, k])
        h, w = draw_size(r, image_size)
        # cycle through the classes so every class appears in every split
        objs = [1 + (k * 3 + j * 7) % n_obj_classes for j in range(int(r.integers(2, 5)))]
        classes = voc_scene(r, h, w, objs)
        rgb = paint(classes, app, r)
        jpgs[iid] = jpeg_bytes(rgb)
        label = classes.copy()
        label[void_band(classes)] = 255
        pngs[iid] = png_bytes(label, pal)
        sbd_mats[iid] = sbd_mat(classes)

    voc11_ids = [i for i in all_ids if not i.startswith("2012_")]
    for year, root, ids, seg in (
        (2011, "TrainVal/VOCdevkit/VOC2011", voc11_ids, {"train": t11, "val": v11, "test": test11}),
        (2012, "VOCdevkit/VOC2012", all_ids, {"train": t12, "val": v12, "test": test12}),
    ):
        members: dict[str, bytes] = {}
        for iid in ids:
            members[f"{root}/JPEGImages/{iid}.jpg"] = jpgs[iid]
        for iid in sorted(set(seg["train"]) | set(seg["val"]) | set(seg["test"])):
            members[f"{root}/SegmentationClass/{iid}.png"] = pngs[iid]
        for name, lst in (("train", seg["train"]), ("val", seg["val"]), ("test", seg["test"]),
                          ("trainval", sorted(set(seg["train"]) | set(seg["val"])))):
            members[f"{root}/ImageSets/Segmentation/{name}.txt"] = text_bytes(lst)
        members[f"{root}/ImageSets/Main/train.txt"] = text_bytes(seg["train"])
        members[f"{root}/ImageSets/Main/val.txt"] = text_bytes(seg["val"])
        fname = "VOCtrainval_25-May-2011.tar" if year == 2011 else "VOCtrainval_11-May-2012.tar"
        write_tar(out / fname, members)

    sbd: dict[str, bytes] = {}
    for iid in sorted(set(sbd_train) | set(sbd_val)):
        sbd[f"benchmark_RELEASE/dataset/img/{iid}.jpg"] = jpgs[iid]
        sbd[f"benchmark_RELEASE/dataset/cls/{iid}.mat"] = sbd_mats[iid]
    sbd["benchmark_RELEASE/dataset/train.txt"] = text_bytes(sbd_train)
    sbd["benchmark_RELEASE/dataset/val.txt"] = text_bytes(sbd_val)
    write_tar(out / "benchmark.tgz", sbd, gz=True)
    with atomic_write(out / "seg11valid.txt", "wb") as f:
        f.write(text_bytes(seg11valid))
    with atomic_write(out / "train_noval.txt", "wb") as f:
        f.write(text_bytes(train_noval))


def sbd_mat(classes: np.ndarray) -> bytes:
    """SBD cls/*.mat: struct GTcls with Segmentation (uint8, no void), Boundaries (20×1 cell of sparse
    logical maps), CategoriesPresent (column of class ids) — read as loadmat(f)['GTcls'][0]['Segmentation'][0]."""
    edge = np.zeros_like(classes, bool)
    edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
    edge[1:] |= classes[1:] != classes[:-1]
    bounds = np.empty((20, 1), dtype=object)
    for c in range(1, 21):
        m = classes == c
        bounds[c - 1, 0] = csc_matrix(edge & (m | np.roll(m, 1, 0) | np.roll(m, 1, 1)), dtype=bool)
    present = np.unique(classes[classes > 0]).astype(np.uint8).reshape(-1, 1)
    gt = {"Segmentation": classes.astype(np.uint8), "Boundaries": bounds, "CategoriesPresent": present}
    return mat_bytes({"GTcls": gt})
