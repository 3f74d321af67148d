"""Issue 23 class 3: a rerun after an input changed gives exactly the files a clean run gives — nothing of
the old run survives (no stale file, no stale content), and a failed or killed run keeps the old set whole.

One mechanism (fcnlib.files.io.staged_dir: build the whole set beside the target, swap it in) serves every step
that writes a set of files; each rule kind is checked here on small synthetic inputs in the real on-disk
formats: wrong input → run, corrected input → rerun into the same folder, compared with a clean run.
(The DAG-level case, through Snakemake, is test_stale_outputs_dag.py.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile import fcn, one_error
from PIL import Image
from spoil import copy_extra, remat, shift_labels, spoil_nyud

from fcnlib.data.prepare.context import prepare_context
from fcnlib.data.prepare.folder import prepare_folder
from fcnlib.data.prepare.nyud import prepare_nyud
from fcnlib.data.prepare.siftflow import SUBDIR, prepare_siftflow
from fcnlib.data.prepare.voc import prepare_pascal
from fcnlib.demo import make_demo
from fcnlib.errors import DataError, DiskError
from fcnlib.files.archive import safe_extract
from fcnlib.files.io import atomic_write_json, read_json, staged_dir

pytestmark = pytest.mark.usefixtures("quiet_pool")


@pytest.fixture
def quiet_pool(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def tree(root: Path) -> dict[str, bytes]:
    """Every file (hidden ones too) under root → its bytes; links by target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / n
            out[p.relative_to(root).as_posix()] = b"link:" + os.readlink(p).encode() if p.is_symlink() \
                else p.read_bytes()
    return out


def assert_same(got: Path, clean: Path) -> None:
    a, b = tree(got), tree(clean)
    assert sorted(set(a) - set(b)) == [], "stale files left by the earlier run"
    assert sorted(set(b) - set(a)) == [], "files missing"
    assert [k for k in a if a[k] != b[k]] == [], "stale content"
    assert [p.name for p in got.parent.iterdir() if p.name.startswith(f".{got.name}.")] == [], "staging left"


# -- the mechanism ---------------------------------------------------------------------------------------


def test_staged_dir_replaces_the_whole_set(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_dir(target) as d:
        (d / "a.txt").write_text("old")
        (d / "sub").mkdir()
        (d / "sub" / "gone.txt").write_text("old")
    with staged_dir(target) as d:
        assert list(d.iterdir()) == []  # a fresh folder: nothing to mistake for done
        (d / "a.txt").write_text("new")
    assert tree(target) == {"a.txt": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_dir_failure_keeps_the_old_set_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_dir(target) as d:
        (d / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(target) as d:
        (d / "a.txt").write_text("half")
        (d / "b.txt").write_text("half")
        raise RuntimeError("killed half way")
    assert tree(target) == {"a.txt": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_dir_removes_a_killed_writers_staging_only(tmp_path: Path) -> None:
    target = tmp_path / "out"
    dead = tmp_path / ".out.999999999-x.staging"  # above any pid_max: its writer is gone (SIGKILL)
    live = tmp_path / f".out.{os.getppid()}-y.staging"  # a writer still running: not ours to remove
    aside = tmp_path / ".out.999999999-z.old"
    for p in (dead, live, aside):
        p.mkdir()
        (p / "f").write_text("x")
    with staged_dir(target) as d:
        (d / "f").write_text("new")
    assert not dead.exists() and not aside.exists() and live.is_dir()
    assert tree(target) == {"f": b"new"}


def test_staged_dir_keeps_a_link_and_refuses_a_file(tmp_path: Path) -> None:
    real = tmp_path / "big_disk" / "nyud"
    real.mkdir(parents=True)
    (real / "old.png").write_bytes(b"old")
    (tmp_path / "data").mkdir()
    link = tmp_path / "data" / "nyud"
    link.symlink_to(real)
    with staged_dir(link) as d:
        (d / "new.png").write_bytes(b"new")
    assert link.is_symlink() and tree(real) == {"new.png": b"new"}
    f = tmp_path / "file"
    f.write_text("mine")
    with pytest.raises(DiskError, match=r"file: exists and is not a folder"), staged_dir(f):
        pass
    assert f.read_text() == "mine"


def test_staged_dir_unswappable_target_is_one_line_and_keeps_the_old_set(tmp_path: Path, monkeypatch) -> None:
    import errno

    from fcnlib.files import io as fio

    target = tmp_path / "out"
    with staged_dir(target) as d:
        (d / "a.txt").write_text("old")

    def mount_point(a, b):  # what renaming onto a mount point answers
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(b))

    monkeypatch.setattr(fio, "_exchange", mount_point)
    with pytest.raises(DiskError, match=r"out: cannot replace it .* mount point .*previous out is kept"), \
            staged_dir(target) as d:
        (d / "a.txt").write_text("new")
    assert tree(target) == {"a.txt": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_staged_dir_mode_follows_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with staged_dir(tmp_path / "out") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


# -- prepare: wrong archive → run; corrected archive → rerun == clean run ----------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    demo = tmp_path_factory.mktemp("demo")
    make_demo(demo, n_train=3, n_val=2, image_size=(24, 32), siftflow_size=24,
              parts=("pascal", "nyud", "siftflow", "context"))
    ext = tmp_path_factory.mktemp("extracted")
    for name, dest in (("nyud.tar.gz", "nyud"), ("SiftFlowDataset.zip", "siftflow"), ("trainval.tar.gz", "context"),
                       ("VOCtrainval_03-May-2010.tar", "voc2010"), ("VOCtrainval_25-May-2011.tar", "voc2011"),
                       ("VOCtrainval_11-May-2012.tar", "voc2012"), ("benchmark.tgz", "sbd")):
        safe_extract(demo / name, ext / dest)
    rng = np.random.default_rng(3)  # a folder dataset of one's own: images/ + masks/ (class ids)
    for k in range(5):
        _save(ext / "folder" / "images" / f"im{k}.png", rng.integers(0, 255, (12, 16, 3)).astype(np.uint8))
        _save(ext / "folder" / "masks" / f"im{k}.png", rng.integers(0, 3, (12, 16)).astype(np.uint8))
    return {"demo": demo, "ext": ext}


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def spoil_siftflow(ext: Path) -> None:
    root = next(p for p in [ext / "siftflow", *sorted((ext / "siftflow").iterdir())] if (p / "Images").is_dir())
    for mat in (root / "SemanticLabels" / SUBDIR).glob("*.mat"):
        remat(mat, "S", lambda s: shift_labels(s, 33))
    first = sorted((root / "Images" / SUBDIR).glob("*.jpg"))[0].stem
    for folder, sfx in (("Images", ".jpg"), ("SemanticLabels", ".mat"), ("GeoLabels", ".mat")):
        copy_extra(root / folder / SUBDIR / f"{first}{sfx}", root / folder / SUBDIR / f"zz_extra{sfx}")


def spoil_context(ext: Path) -> None:
    mats = sorted((ext / "context").rglob("*.mat"))
    for mat in mats:
        remat(mat, "LabelMap", lambda m: np.where(m > 0, m % 3 + 1, m).astype(m.dtype))


def spoil_sbd(ext: Path) -> None:
    from fcnlib.data.prepare.sbd import read_sbd_cls
    from fcnlib.demo.pascal import sbd_mat as _sbd_mat

    for mat in sorted((ext / "sbd").rglob("cls/*.mat")):
        mat.write_bytes(_sbd_mat(shift_labels(read_sbd_cls(mat), 20)))


def spoil_folder(ext: Path) -> None:
    """Every mask's classes 1 and 2 swapped, one image repainted, one extra image + mask."""
    root = ext / "folder"
    for m in (root / "masks").glob("*.png"):
        a = np.asarray(Image.open(m))
        _save(m, np.where(a == 1, 2, np.where(a == 2, 1, a)).astype(np.uint8))
    first = sorted((root / "images").glob("*.png"))[0]
    _save(first, 255 - np.asarray(Image.open(first)))
    copy_extra(first, root / "images" / "zz_extra.png")
    copy_extra(root / "masks" / first.name, root / "masks" / "zz_extra.png")


PREPARES = {
    "folder": (spoil_folder, lambda out, ext, demo: prepare_folder(
        out, ext / "folder" / "images", ext / "folder" / "masks", name="mine",
        classes=["background", "leaf", "spot"], workers=2)),
    "nyud": (spoil_nyud, lambda out, ext, demo: prepare_nyud(out, ext / "nyud", workers=2)),
    "siftflow": (spoil_siftflow, lambda out, ext, demo: prepare_siftflow(
        out, ext / "siftflow", workers=2, lists={s: demo / f"siftflow-{s}.txt" for s in ("trainval", "test")})),
    "context": (spoil_context, lambda out, ext, demo: prepare_context(
        out, ext / "voc2010", ext / "context", demo / "classes-59.txt", source="demo", workers=1)),
    "pascal": (spoil_sbd, lambda out, ext, demo: prepare_pascal(
        out, voc2011_dir=ext / "voc2011", sbd_dir=ext / "sbd", voc2012_dir=ext / "voc2012", source="demo",
        workers=2, progress=False)),
}


@pytest.mark.parametrize("name", sorted(PREPARES))
def test_prepare_rerun_after_a_corrected_archive_equals_a_clean_run(raw, tmp_path: Path, name: str) -> None:
    spoil, prepare = PREPARES[name]
    good = raw["ext"]
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    spoil(bad)
    out, clean = tmp_path / "run" / name, tmp_path / "clean" / name  # same depth: same relative links
    prepare(out, bad, raw["demo"])
    spoiled = tree(out)
    prepare(out, good, raw["demo"])
    prepare(clean, good, raw["demo"])
    assert tree(out) != spoiled  # the spoiled inputs did reach the first run
    assert_same(out, clean)


def test_prepare_failing_rerun_keeps_the_previous_set_whole(raw, tmp_path: Path) -> None:
    out = tmp_path / "nyud"
    prepare_nyud(out, raw["ext"] / "nyud", workers=1)
    before = tree(out)
    bad = tmp_path / "bad"
    shutil.copytree(raw["ext"] / "nyud", bad)
    last = sorted((bad / "nyud" / "segmentation").glob("*.mat"))[-1]
    remat(last, "segmentation", lambda s: s + 41)  # outside 0..40: refused half way through
    with pytest.raises(DataError, match="outside 0..40"):
        prepare_nyud(out, bad, workers=2)
    assert tree(out) == before  # dataset.json and every label of the previous set still there, unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "nyud"]


# -- hha: corrected intrinsics / depth → rerun == clean run ------------------------------------------------


def test_hha_rule_rerun_after_new_intrinsics_equals_a_clean_run(raw, tmp_path: Path) -> None:
    from fcnlib.data.hha import encode_nyud

    ds = tmp_path / "run" / "nyud"
    prepare_nyud(ds, raw["ext"] / "nyud", workers=1)
    meta = read_json(ds / "dataset.json")
    right = dict(meta["camera"])
    meta["camera"]["fx"] *= 1.5
    atomic_write_json(ds / "dataset.json", meta)
    encode_nyud(ds / "dataset.json", ds / "hha" / "manifest.json", workers=1, progress=False)
    (ds / "hha" / "img_stale.png").write_bytes(b"from an older run")  # any file not of this run
    wrong = tree(ds / "hha")
    meta["camera"] = right
    atomic_write_json(ds / "dataset.json", meta)
    man = encode_nyud(ds / "dataset.json", ds / "hha" / "manifest.json", workers=2, progress=False)
    clean = tmp_path / "clean" / "nyud"
    shutil.copytree(ds, clean, ignore=shutil.ignore_patterns("hha"))
    encode_nyud(clean / "dataset.json", clean / "hha" / "manifest.json", workers=1, progress=False)
    assert tree(ds / "hha") != wrong
    assert_same(ds / "hha", clean / "hha")
    assert sorted(man) == sorted(p for p in tree(ds / "hha") if p != "manifest.json")


def test_fcn_hha_into_the_same_folder_with_corrected_intrinsics(raw, tmp_path: Path) -> None:
    depth = sorted((raw["ext"] / "nyud" / "nyud" / "data" / "depth").glob("*.png"))[:2]
    args = [*map(str, depth), "--workers", "1", "--no-progress"]
    assert fcn("hha", *args, "-o", str(tmp_path / "o"), "--intrinsics", "300,300,20,15").returncode == 0
    wrong = tree(tmp_path / "o")
    r = fcn("hha", *args, "-o", str(tmp_path / "o"), "--intrinsics", "40,40,16,12")
    assert r.returncode == 0, r.stderr
    assert fcn("hha", *args, "-o", str(tmp_path / "c"), "--intrinsics", "40,40,16,12").returncode == 0
    assert tree(tmp_path / "o") != wrong and tree(tmp_path / "o") == tree(tmp_path / "c")


# -- demo data: other parts → rerun == clean run; a foreign -o folder is refused, untouched ------------------


def test_demo_data_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    kw = dict(n_train=2, n_val=1, image_size=(24, 32), siftflow_size=24)
    make_demo(tmp_path / "run" / "d", parts=("nyud", "siftflow"), **kw)
    man = make_demo(tmp_path / "run" / "d", parts=("siftflow",), **kw)
    make_demo(tmp_path / "clean" / "d", parts=("siftflow",), **kw)
    assert "nyud.tar.gz" not in man
    assert_same(tmp_path / "run" / "d", tmp_path / "clean" / "d")


@pytest.mark.parametrize("cmd", [["demo-data"], ["prepare-pascal", "--voc2011", "v", "--sbd", "s"]])
def test_folder_replacing_commands_refuse_a_foreign_folder(tmp_path: Path, cmd: list[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    msg = one_error(fcn(*cmd, "-o", str(mine)))
    assert str(mine) in msg and "new or empty folder" in msg
    assert tree(mine) == {"thesis.tex": b"years of work"}
