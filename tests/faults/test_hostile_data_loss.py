"""Data lost (issue 23, class 2): `-o` means what users know. `fcn extract ARCHIVE -o EXISTING_DIR` adds
the archive's files like `tar -C` when nothing would be overwritten, else refuses naming the first clash
with NOTHING changed (`-o .` included); `-o` an existing folder for `fcn download` / `fcn export` puts the
file inside. Two downloads of one file to one place at once end with one verified file and the right
sha256 pinned beside it (a lock per destination), and links planted at the lock or part file are never
followed. Fast: no Snakemake (the concurrent downloads are separate processes on a loopback server)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from hostile import ROOT, fcn, files_under, one_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_http import serve  # noqa: E402

from fcnlib.errors import ConfigError, DataError, DownloadError  # noqa: E402
from fcnlib.files.archive import safe_extract  # noqa: E402
from fcnlib.files.download import download, part_path, record_path  # noqa: E402

BODY = random.Random(5).randbytes(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


def _tar(path: Path, members: dict[str, bytes | None]) -> Path:
    """name → bytes (a file) or None (a folder)."""
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: kind, bytes or link target, mode, mtime — to prove nothing changed."""
    out: dict[str, tuple] = {}
    for rel in sorted(files_under(root)):
        p = root / rel
        st = p.lstat()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's folder with work in it (including a folder the archive also has)."""
    h = tmp_path / "home"
    (h / "JPEGImages").mkdir(parents=True)
    (h / "notes.txt").write_text("my notes")
    (h / "JPEGImages" / "mine.jpg").write_bytes(b"mine")
    return h


# --- extract into an existing folder ------------------------------------------------------------------
def test_extract_merges_into_existing_folder(tmp_path: Path, home: Path) -> None:
    arc = _tar(tmp_path / "a.tar", {"JPEGImages": None, "JPEGImages/2007_000032.jpg": b"jpg",
                                    "SegmentationClass/2007_000032.png": b"png"})
    r = fcn("extract", str(arc), "-o", str(home))
    assert r.returncode == 0, r.stderr
    assert (home / "notes.txt").read_text() == "my notes"
    assert (home / "JPEGImages" / "mine.jpg").read_bytes() == b"mine"
    assert (home / "JPEGImages" / "2007_000032.jpg").read_bytes() == b"jpg"
    assert (home / "SegmentationClass" / "2007_000032.png").read_bytes() == b"png"
    assert not [n for n in files_under(tmp_path) if "extract-" in n]


CLASHES = {
    "file over file": ({"notes.txt": b"theirs"}, "notes.txt"),
    "file over file in a shared folder": ({"JPEGImages/a.jpg": b"a", "JPEGImages/mine.jpg": b"x"},
                                          "JPEGImages/mine.jpg"),
    "file over folder": ({"JPEGImages": b"a file"}, "JPEGImages"),
    "folder over file": ({"notes.txt/inner.txt": b"x"}, "notes.txt"),
    "first clash in sorted order": ({"zzz/new.txt": b"z", "notes.txt": b"n", "JPEGImages/mine.jpg": b"m"},
                                    "JPEGImages/mine.jpg"),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_extract_clash_refused_nothing_changed(tmp_path: Path, home: Path, case: str) -> None:
    members, first = CLASHES[case]
    arc = _tar(tmp_path / "a.tar", {"new.txt": b"new", **members})
    before = snapshot(home)
    with pytest.raises(DataError) as ei:
        safe_extract(arc, home, merge=True)
    msg = str(ei.value)
    assert msg.startswith(f"{home}: {first!r} from {arc} already exists") and "nothing was changed" in msg, msg
    assert snapshot(home) == before


def test_extract_never_merges_through_a_link_in_the_target(tmp_path: Path, home: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "SegmentationClass").symlink_to(elsewhere)
    arc = _tar(tmp_path / "a.tar", {"SegmentationClass/x.png": b"png"})
    before = snapshot(home)
    with pytest.raises(DataError, match="'SegmentationClass' from"):
        safe_extract(arc, home, merge=True)
    assert snapshot(home) == before and list(elsewhere.iterdir()) == []


def test_extract_zip_clash_refused(tmp_path: Path, home: Path) -> None:
    arc = _zip(tmp_path / "a.zip", {"a.txt": b"a", "notes.txt": b"theirs"})
    before = snapshot(home)
    err = one_error(fcn("extract", str(arc), "-o", str(home)))
    assert "'notes.txt'" in err and "nothing was changed" in err, err
    assert snapshot(home) == before


def test_extract_corrupt_archive_into_existing_folder_changes_nothing(tmp_path: Path, home: Path) -> None:
    arc = _tar(tmp_path / "a.tar", {"b.txt": b"b" * 5000, "c.txt": b"c" * 5000})
    arc.write_bytes(arc.read_bytes()[:3000])  # cut inside the first member
    before = snapshot(home)
    with pytest.raises(DataError, match="truncated or corrupt"):
        safe_extract(arc, home, merge=True)
    assert snapshot(home) == before


def test_extract_into_dot(tmp_path: Path, home: Path) -> None:
    """`-o .` works (was a raw OSError): merged into the current folder; a clash is one line."""
    arc = _tar(tmp_path / "a.tar", {"VOC/x.txt": b"x"})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    run = [sys.executable, "-m", "fcnlib", "extract", str(arc), "-o", "."]
    r = subprocess.run(run, cwd=home, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (home / "VOC" / "x.txt").read_bytes() == b"x" and (home / "notes.txt").exists()
    before = snapshot(home)
    r = subprocess.run(run, cwd=home, capture_output=True, text=True, env=env, timeout=120)
    assert "'VOC/x.txt'" in one_error(r)
    assert snapshot(home) == before


def test_extract_into_a_plain_file_refused(tmp_path: Path, home: Path) -> None:
    arc = _tar(tmp_path / "a.tar", {"x.txt": b"x"})
    err = one_error(fcn("extract", str(arc), "-o", str(home / "notes.txt")))
    assert "not a folder" in err
    assert (home / "notes.txt").read_text() == "my notes"


def test_extract_into_new_folder_and_link_to_folder(tmp_path: Path, home: Path) -> None:
    arc = _tar(tmp_path / "a.tar", {"x.txt": b"x"})
    assert (safe_extract(arc, tmp_path / "new" / "dir", merge=True) / "x.txt").read_bytes() == b"x"
    (tmp_path / "link").symlink_to(home)
    safe_extract(arc, tmp_path / "link", merge=True)
    assert (tmp_path / "link").is_symlink() and (home / "x.txt").read_bytes() == b"x"


def test_extract_cleans_a_killed_merge(tmp_path: Path, home: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = home / f".fcn.extract-{dead.stdout.strip()}"
    (stale / "half").mkdir(parents=True)
    safe_extract(_tar(tmp_path / "a.tar", {"x.txt": b"x"}), home, merge=True)
    assert not stale.exists() and (home / "x.txt").exists()


def test_rule_extraction_still_replaces_its_own_folder(tmp_path: Path) -> None:
    """The extract rule owns data/extracted/<source>: a new archive replaces the old tree whole."""
    out = tmp_path / "extracted"
    safe_extract(_tar(tmp_path / "a.tar", {"old.txt": b"o"}), out)
    safe_extract(_tar(tmp_path / "b.tar", {"new.txt": b"n"}), out)
    assert files_under(out) == {"new.txt"}


# --- -o an existing folder: download and export put the file inside -----------------------------------
def test_download_into_existing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    with serve() as srv:
        url = srv.add("/files/VOCtrainval_11-May-2012.tar", BODY)
        r = fcn("download", url, "-o", str(folder), "--sha256", SHA, "--no-progress")
    assert r.returncode == 0, r.stderr
    got = folder / "VOCtrainval_11-May-2012.tar"
    assert r.stdout.strip() == str(got) and got.read_bytes() == BODY


def test_download_url_without_a_name_into_folder_is_one_error(tmp_path: Path) -> None:
    with serve() as srv:
        url = srv.add("/", BODY)
        err = one_error(fcn("download", url, "-o", str(tmp_path), "--no-progress"))
    assert "is a folder" in err and "NAME" in err
    assert files_under(tmp_path) == set()


def test_download_library_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="is a folder"):
        download(["http://127.0.0.1:9/x"], tmp_path, progress=False)


def test_export_into_existing_folder(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_export import save_demo_net

    w = tmp_path / "weights.pt"
    save_demo_net(w, "fcn32s")
    out = tmp_path / "exported"
    out.mkdir()
    r = fcn("export", str(w), "-o", str(out), "--size", "64", "64")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (out / "weights.torchscript.pt").is_file() and (out / "weights.torchscript.pt.json").is_file()


def test_export_library_refuses_a_folder(tmp_path: Path) -> None:
    from fcnlib.models.export import export

    with pytest.raises(ConfigError, match="is a folder"):
        export(tmp_path / "weights.pt", tmp_path)


# --- concurrent downloads of one destination ----------------------------------------------------------
_WORKER = """
import sys
from pathlib import Path
from fcnlib.files.download import download
download([sys.argv[1]], Path(sys.argv[2]), progress=False)
print("ok")
"""


@pytest.mark.parametrize("procs", [2, 4])
def test_concurrent_downloads_of_one_file_end_with_one_verified_file(tmp_path: Path, procs: int) -> None:
    """No published checksum (the sha256 gets pinned by the first finisher): each process either downloads
    or waits and finds the verified file; the pin is the true sha256, nothing is left behind."""
    dest = tmp_path / "raw" / "SiftFlowDataset.zip"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with serve() as srv:
        url = srv.add("/SiftFlowDataset.zip", BODY, chunk=16 * 1024, delay=0.01)  # ~0.2 s each: they overlap
        ps = [subprocess.Popen([sys.executable, "-c", _WORKER, url, str(dest)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(procs)]
        outs = [p.communicate(timeout=120) for p in ps]
    assert all(p.returncode == 0 for p in ps), [o[1][-2000:] for o in outs]
    assert dest.read_bytes() == BODY
    assert record_path(dest).read_text().split()[0] == SHA
    assert files_under(dest.parent) == {dest.name, record_path(dest).name}
    assert sum(h.sent == len(BODY) for h in srv.hits) >= 1


def test_download_lock_is_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    dest = tmp_path / "raw" / "f.bin"
    dest.parent.mkdir()
    (dest.parent / ".f.bin.lock").symlink_to(victim)
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        err = one_error(fcn("download", url, "-o", str(dest), "--no-progress"))
    assert "symbolic link" in err and ".f.bin.lock" in err
    assert victim.read_text() == "keep" and not dest.exists()


def test_download_part_is_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep" * 10)
    dest = tmp_path / "raw" / "f.bin"
    dest.parent.mkdir()
    part_path(dest).symlink_to(victim)
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        r = fcn("download", url, "-o", str(dest), "--sha256", SHA, "--no-progress")
    assert "Traceback" not in r.stderr, r.stderr
    assert victim.read_bytes() == b"keep" * 10
    assert r.returncode != 0 or dest.read_bytes() == BODY


def test_download_after_a_lock_holder_was_killed(tmp_path: Path) -> None:
    """SIGKILL leaves the lock file but not the lock: the next download takes it, and removes the file."""
    dest = tmp_path / "raw" / "f.bin"
    dest.parent.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom fcnlib.files.sharedfs import locked\n"
         "with locked(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)\n", str(dest)],
        env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait(30)
    finally:
        holder.kill()
    assert (dest.parent / ".f.bin.lock").exists()  # left by the killed holder
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        assert download([url], dest, sha256=SHA, progress=False).read_bytes() == BODY
    assert files_under(dest.parent) == {"f.bin"}
