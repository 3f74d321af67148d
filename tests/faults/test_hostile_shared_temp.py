"""A shared temp folder is hostile (issue 23, class 1): another local user may have made the GPU lock folder
or a lock file first — as a symlink to a victim's file or folder, a hard link, a FIFO, a plain file, a folder
they own or one anyone can write to. Each case is refused with one clear error (or worked around without
touching anything that is not ours), and the victim's files keep their bytes and mode. Fast: no Snakemake.

The suite runs as root in CI, so "another user" is simulated with os.chown to an unused uid where root is
needed, and skipped otherwise."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hostile import ROOT

from fcnlib.errors import ConfigError
from fcnlib.files.sharedfs import locked, open_dir, open_file
from fcnlib.runtime import devices as D

OTHER_UID = 54321  # no such user: the owner of "someone else's" folder (root only)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root (CI runs as root)")


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two fake GPUs, lock folder under tmp_path/shared (the test plants things there)."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)
    monkeypatch.setenv("FCN_FAKE_GPUS", "2")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("FCN_GPU_LOCK_DIR", str(shared / "fcn-gpu-locks"))
    return shared / "fcn-gpu-locks"


def _victim(tmp_path: Path, mode: int = 0o600) -> tuple[Path, bytes]:
    v = tmp_path / "victim" / "thesis.tex"
    v.parent.mkdir(exist_ok=True)
    data = b"\\documentclass{article} years of work\n"
    v.write_bytes(data)
    os.chmod(v, mode)
    return v, data


def _unchanged(v: Path, data: bytes, mode: int = 0o600) -> None:
    assert v.read_bytes() == data
    assert stat.S_IMODE(v.stat().st_mode) == mode


def test_planted_symlink_lock_file_leaves_victim_untouched(gpus: Path, tmp_path: Path) -> None:
    v, data = _victim(tmp_path)
    gpus.mkdir(mode=0o700)
    (gpus / "gpu-fake0.lock").symlink_to(v)
    with pytest.raises(ConfigError) as ei:
        D.claim(1, wait_s=0)
    msg = str(ei.value)
    assert msg.startswith(f"{gpus / 'gpu-fake0.lock'}: ") and "symbolic link" in msg and "FCN_GPU_LOCK_DIR" in msg
    _unchanged(v, data)


def test_planted_dangling_symlink_creates_nothing(gpus: Path, tmp_path: Path) -> None:
    gpus.mkdir(mode=0o700)
    target = tmp_path / "victim" / ".bashrc"
    target.parent.mkdir()
    (gpus / "gpu-fake0.lock").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        D.claim(1, wait_s=0)
    assert not target.exists()


def test_planted_hard_link_refused(gpus: Path, tmp_path: Path) -> None:
    v, data = _victim(tmp_path)
    gpus.mkdir(mode=0o700)
    os.link(v, gpus / "gpu-fake0.lock")
    with pytest.raises(ConfigError, match="hard links"):
        D.claim(1, wait_s=0)
    _unchanged(v, data)


def test_planted_fifo_refused_without_hanging(gpus: Path) -> None:
    gpus.mkdir(mode=0o700)
    os.mkfifo(gpus / "gpu-fake0.lock")
    with pytest.raises(ConfigError, match="not a regular file"):
        D.claim(1, wait_s=0)


def test_lock_folder_symlink_refused_target_mode_untouched(gpus: Path, tmp_path: Path) -> None:
    victim_dir = tmp_path / "home"
    victim_dir.mkdir(mode=0o700)
    os.chmod(victim_dir, 0o700)
    gpus.symlink_to(victim_dir)
    with pytest.raises(ConfigError) as ei:
        D.claim(1, wait_s=0)
    assert str(ei.value).startswith(f"{gpus}: ") and "symbolic link" in str(ei.value)
    assert stat.S_IMODE(victim_dir.stat().st_mode) == 0o700
    assert list(victim_dir.iterdir()) == []


def test_lock_folder_plain_file_is_one_clear_error(gpus: Path) -> None:
    gpus.write_text("not a folder")
    with pytest.raises(ConfigError) as ei:
        D.claim(1, wait_s=0)
    assert str(ei.value).startswith(f"{gpus}: ") and "not a folder" in str(ei.value)
    assert gpus.read_text() == "not a folder"


def test_lock_folder_plain_file_through_the_rule_entry_point(gpus: Path) -> None:
    """What a GPU job prints: one `error:` line naming the folder, no traceback (was FileExistsError)."""
    gpus.write_text("x")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    code = ("import types\nfrom fcnlib.pipeline.scripting import run\nfrom fcnlib.runtime import devices\n"
            "run(lambda job: devices.claim(1, 0), types.SimpleNamespace(log=[], threads=1, rule='train'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"{gpus}: is not a folder" in r.stderr, r.stderr


def test_lock_folder_world_writable_without_sticky_refused(gpus: Path) -> None:
    gpus.mkdir()
    os.chmod(gpus, 0o777)
    with pytest.raises(ConfigError, match="without the sticky bit"):
        D.claim(1, wait_s=0)
    assert stat.S_IMODE(gpus.stat().st_mode) == 0o777  # not "fixed" behind the user's back


def test_lock_folder_group_writable_without_sticky_refused(gpus: Path) -> None:
    gpus.mkdir()
    os.chmod(gpus, 0o770)
    with pytest.raises(ConfigError, match="without the sticky bit"):
        D.claim(1, wait_s=0)


def test_sticky_world_writable_folder_accepted(gpus: Path) -> None:
    """The way to share locks between users (a root-owned 1777 folder) works."""
    gpus.mkdir()
    os.chmod(gpus, 0o1777)
    with D.claimed(2, wait_s=0) as c:
        assert c.indices == [0, 1]
    assert stat.S_IMODE(gpus.stat().st_mode) == 0o1777


@as_root
def test_lock_folder_owned_by_someone_else_refused(gpus: Path) -> None:
    gpus.mkdir(mode=0o755)
    os.chown(gpus, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError) as ei:
        D.claim(1, wait_s=0)
    assert f"uid {OTHER_UID}" in str(ei.value) and "another user" in str(ei.value)
    assert list(gpus.iterdir()) == []


@as_root
def test_sticky_folder_owned_by_someone_else_refused(gpus: Path) -> None:
    """Sticky does not protect files from the folder's owner: still someone else's folder."""
    gpus.mkdir()
    os.chmod(gpus, 0o1777)
    os.chown(gpus, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match="another user"):
        D.claim(1, wait_s=0)


@as_root
def test_existing_lock_file_of_another_user_is_not_chmodded(gpus: Path) -> None:
    """A lock file someone else created keeps its owner and mode: flock it, never chmod it."""
    gpus.mkdir(mode=0o1777)
    os.chmod(gpus, 0o1777)
    lock = gpus / "gpu-fake0.lock"
    lock.write_text("")
    os.chmod(lock, 0o640)
    os.chown(lock, OTHER_UID, OTHER_UID)
    with D.claimed(1, wait_s=0) as c:
        assert c.indices == [0]
    st = lock.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == OTHER_UID


def test_default_folder_is_per_user_and_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("FCN_GPU_LOCK_DIR", raising=False)
    monkeypatch.setenv("FCN_FAKE_GPUS", "1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() re-reads TMPDIR
    d = D.lock_dir()
    assert d == tmp_path / f"fcn-gpu-locks-{os.geteuid()}"
    old = os.umask(0)
    try:
        with D.claimed(1, wait_s=0):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700  # whatever the umask
    assert stat.S_IMODE((d / "gpu-fake0.lock").stat().st_mode) == 0o644


def test_gpu_id_with_slash_stays_in_the_folder(gpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FCN_FAKE_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "../../escape")
    with D.claimed(1, wait_s=0):
        pass
    assert [p.name for p in gpus.iterdir()] == ["gpu-.._.._escape.lock"]


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_bad_fake_gpu_count_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FCN_FAKE_GPUS", value)
    with pytest.raises(ConfigError, match="FCN_FAKE_GPUS"):
        D.gpu_ids()


# --- the helper itself, as downloads use it (a lock beside a destination) -----------------------------
def test_open_dir_refuses_symlink_to_a_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        open_dir(tmp_path / "link", "fix it")


def test_open_file_refuses_folder_in_place_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.lock").mkdir()
    fd = open_dir(tmp_path, "fix")
    try:
        with pytest.raises(ConfigError):
            open_file(fd, "x.lock", tmp_path / "x.lock", "fix")
    finally:
        os.close(fd)


def test_locked_refuses_planted_symlink_lock(tmp_path: Path) -> None:
    v, data = _victim(tmp_path)
    dest = tmp_path / "raw" / "VOC.tar"
    dest.parent.mkdir()
    (dest.parent / ".VOC.tar.lock").symlink_to(v)
    with pytest.raises(ConfigError, match="symbolic link"), locked(dest):
        pass
    _unchanged(v, data)


def test_locked_serialises_and_cleans_up(tmp_path: Path) -> None:
    """Two holders of one destination's lock never overlap, and no lock file stays behind."""
    dest = tmp_path / "f.bin"
    inside: list[int] = []
    overlap: list[bool] = []

    def work(k: int) -> None:
        for _ in range(5):
            with locked(dest):
                inside.append(k)
                overlap.append(len(inside) > 1)
                time.sleep(0.01)
                inside.remove(k)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert overlap and not any(overlap)
    assert list(tmp_path.iterdir()) == []
