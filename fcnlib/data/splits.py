"""PASCAL split logic as pure functions over id lists (testable on the real lists, no images needed).

The FCN paper trains on SBD train (8,498) and validates on seg11valid = VOC2011 seg val minus SBD train
(736, paper footnote 7); the common "trainaug" alternative is (VOC12 train ∪ SBD train ∪ SBD val) minus
VOC12 val (10,582), validated on VOC12 val (1,449). Confusing the two validation sets is a known pitfall,
so overlaps are checked, never assumed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from fcnlib.errors import DataError
from fcnlib.facts.paper import SPLIT_SIZES
from fcnlib.files.io import atomic_write_text
from fcnlib.files.paths import open_regular

#: Sizes of the real splits (the paper's in fcnlib.facts.paper; the two VOC lists are the official counts).
REAL_SIZES: dict[str, int] = {
    "train": SPLIT_SIZES["sbd_train"],
    "seg11valid": SPLIT_SIZES["seg11valid"],
    "trainaug": SPLIT_SIZES["voc12_trainaug"],
    "val12": 1449,
    "voc11train": 1112,
}

#: (train, val) pairs that are used together and must not share an image.
TRAIN_VAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("train", "seg11valid"), ("trainaug", "val12"), ("voc11train", "seg11valid"), ("train_noval", "val12"),
)


def read_id_list(path: os.PathLike | str) -> list[str]:
    """Ids from a split list: one per line; also accepts 'JPEGImages/<id>.jpg Seg.../<id>.png' lines."""
    try:
        with open_regular(path, "split list") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: split list not found; check that the archive was extracted completely "
                        f"(delete the extracted folder and rerun the extract rule)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read split list ({e}); delete it and rerun") from None
    ids: list[str] = []
    first: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        tok = line.split()
        if tok:
            iid = Path(tok[0]).stem  # '2007_000032' or 'JPEGImages/2007_000032.jpg' → id
            unique_id(path, iid, n, first)
            ids.append(iid)
    return ids


def unique_id(path: os.PathLike | str, iid: str, line: int, first: dict[str, int]) -> None:
    """Record `iid` read at `line` of the list `path`; a second occurrence is one DataError naming both lines
    (an id listed twice would be trained on or scored twice, silently)."""
    if iid in first:
        raise DataError(f"{path}: id {iid!r} is listed twice (lines {first[iid]} and {line}); each image belongs "
                        f"in a split once — remove the duplicate line, or rerun the rule that writes the list")
    first[iid] = line


def write_id_list(path: os.PathLike | str, ids: Iterable[str]) -> None:
    atomic_write_text(path, "".join(f"{i}\n" for i in ids))


def minus(a: Sequence[str], *others: Iterable[str]) -> list[str]:
    """`a` without any id of `others`, keeping a's order (and dropping duplicates)."""
    drop = set().union(*map(set, others)) if others else set()
    seen: set[str] = set()
    out = []
    for i in a:
        if i not in drop and i not in seen:
            seen.add(i)
            out.append(i)
    return out


def seg11valid(voc11_val: Sequence[str], sbd_train: Iterable[str]) -> list[str]:
    """VOC2011 segmentation val minus every SBD train image (the FCN paper's validation set)."""
    return sorted(minus(voc11_val, sbd_train))


def trainaug(voc12_train: Iterable[str], sbd_train: Iterable[str], sbd_val: Iterable[str],
             voc12_val: Iterable[str]) -> list[str]:
    """(VOC12 train ∪ SBD train ∪ SBD val) − VOC12 val, sorted."""
    return sorted(set(voc12_train).union(sbd_train, sbd_val) - set(voc12_val))


def check_disjoint(train_name: str, train: Iterable[str], val_name: str, val: Iterable[str]) -> None:
    """Raise DataError if a validation image is also a training image."""
    both = sorted(set(train) & set(val))
    if both:
        raise DataError(f"splits '{train_name}' and '{val_name}' share {len(both)} image(s) "
                        f"(e.g. {', '.join(both[:5])}); the split lists come from mismatched dataset "
                        f"versions — re-download the archives and rerun the prepare rule")


def check_same(derived: Sequence[str], reference: Sequence[str], name: str,
               ref_path: os.PathLike | str) -> None:
    """Raise DataError naming the differences if a derived split is not the reference list."""
    d, r = set(derived), set(reference)
    if d != r:
        extra, missing = sorted(d - r), sorted(r - d)
        raise DataError(
            f"{ref_path}: derived split '{name}' ({len(d)} ids) differs from this reference list "
            f"({len(r)} ids): {len(extra)} only derived (e.g. {', '.join(extra[:3]) or '-'}), "
            f"{len(missing)} only in the list (e.g. {', '.join(missing[:3]) or '-'}); the VOC2011/SBD "
            f"archives are not the ones the paper used — check their checksums, or drop the reference list")


def size_report(splits: dict[str, Sequence[str]], real: bool) -> str:
    """One line per split; for real data the paper's size is shown beside ours and a mismatch flagged."""
    lines = []
    for name, ids in splits.items():
        want = REAL_SIZES.get(name) if real else None
        flag = "" if want is None else (f" (expected {want})" if len(ids) != want else " (= expected)")
        lines.append(f"  {name:<12s} {len(ids):6d}{flag}")
    return "\n".join(lines)
