"""Hostile archives: each is refused with one `error: <archive>: ...; <fix>` line and nothing
is written outside the target (nor at it). The library function is checked for every case; the `fcn
extract` CLI for a few, as a user meets them. Fast: no Snakemake."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from hostile import fcn, files_under, long_chain_tar, one_error, tar_info, write_tar, zip_read_chain

from fcnlib.errors import DataError
from fcnlib.files.archive import Limits, safe_extract


def _zip_link(zf: zipfile.ZipFile, name: str, target: bytes) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def _bomb_zip(p: Path) -> Path:
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(200 << 20))  # 200 MB of zeros in ~200 KB
    return p


def _bomb_tgz(p: Path) -> Path:
    import gzip

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tar_info("zeros.bin", size=100 << 20)
        tf.addfile(ti, io.BytesIO(bytes(100 << 20)))
    p.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return p


def _sparse_tar(p: Path, apparent: int = 20 << 30) -> Path:
    """A GNU.sparse 1.0 (PAX) member of 20 GB apparent size holding 512 real bytes."""
    ti = tarfile.TarInfo("big.sparse")
    ti.type = tarfile.REGTYPE
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "big.sparse",
                      "GNU.sparse.realsize": str(apparent)}
    sparse_map = f"1\n{apparent - 512}\n512\n".encode()
    sparse_map += bytes(-len(sparse_map) % 512)
    data = sparse_map + b"x" * 512
    ti.size = len(data)
    with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(data))
    return p


def _many_members(p: Path) -> Path:
    with tarfile.open(p, "w") as tf:
        for i in range(60):
            tf.addfile(tar_info(f"m/{i}.txt", size=1), io.BytesIO(b"x"))
    return p


def _file_and_dir(p: Path) -> Path:
    return write_tar(p, [(tar_info("root/a"), b"file"), (tar_info("root/a/b"), b"under a file")])


def _dir_then_file(p: Path) -> Path:
    return write_tar(p, [(tar_info("root/a/b"), b"x"), (tar_info("root/a"), b"file over a folder")])


def _nul_pax(p: Path) -> Path:
    ti = tar_info("root/ok.txt")
    ti.pax_headers = {"path": "root/evil\x00.txt"}
    return write_tar(p, [(tar_info("root/first.txt"), b"1"), (ti, b"x")])


def _duplicate_tar(p: Path) -> Path:
    return write_tar(p, [(tar_info("root/a.txt"), b"first"), (tar_info("root/a.txt"), b"second wins silently")])


def _duplicate_zip(p: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("root/a.txt", "first")
            zf.writestr("root/a.txt", "second")
    return p


def _non_utf8_link(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("root/ok.txt", "ok")
        _zip_link(zf, "root/ln", b"\xff\xfe")
    return p


def _write_through_link_tar(p: Path) -> Path:
    """An in-tree link to a folder, then a file below the link (a write through a link)."""
    return write_tar(p, [(tar_info("root/d", tarfile.DIRTYPE), None), (tar_info("root/l", tarfile.SYMTYPE, "d"), None),
                          (tar_info("root/l/x.txt"), b"through the link")])


def _link_chain_out_tar(p: Path) -> Path:
    """Each link stays inside on its own; followed in order they leave the tree."""
    return write_tar(p, [(tar_info("a/b", tarfile.DIRTYPE), None), (tar_info("a/b/up", tarfile.SYMTYPE, ".."), None),
                          (tar_info("a/up", tarfile.SYMTYPE, "b/up/.."), None),
                          (tar_info("a/out", tarfile.SYMTYPE, "up/../etc"), None)])


def _link_loop_tar(p: Path) -> Path:
    return write_tar(p, [(tar_info("x", tarfile.SYMTYPE, "y"), None), (tar_info("y", tarfile.SYMTYPE, "x"), None)])


def _dangling_tar(p: Path) -> Path:
    return write_tar(p, [(tar_info("root/ok.txt"), b"ok"), (tar_info("root/ln", tarfile.SYMTYPE, "nowhere"), None)])


def _hardlink_not_member(p: Path) -> Path:
    return write_tar(p, [(tar_info("root/d", tarfile.DIRTYPE), None),
                         (tar_info("root/hl", tarfile.LNKTYPE, "root/d"), None)])


def _hardlink_through_symlink(p: Path) -> Path:
    return write_tar(p, [(tar_info("root/up", tarfile.SYMTYPE, ".."), None),
                          (tar_info("root/hl", tarfile.LNKTYPE, "root/up/secret"), None)])


HOSTILE = {  # name → (builder, words the message must contain, Limits overrides)
    "tar long-name symlink chain (data-filter bypass)": (long_chain_tar, ["lies below the symlink member"], {}),
    "zip l0→. read chain": (zip_read_chain, ["l0/l1", "symlink"], {}),
    "tar write through an in-tree link": (_write_through_link_tar, ["root/l/x.txt", "symlink"], {}),
    "tar link chain leaving the tree": (_link_chain_out_tar, ["outside"], {}),
    "tar symlink loop": (_link_loop_tar, ["loops"], {}),
    "tar dangling symlink": (_dangling_tar, ["not in the archive"], {}),
    "tar hardlink to a folder": (_hardlink_not_member, ["hardlink"], {}),
    "tar hardlink through a symlink": (_hardlink_through_symlink, ["hardlink"], {}),
    "zip bomb (200 MB of zeros)": (_bomb_zip, ["FCN_EXTRACT_MAX_RATIO", "100×"], {}),
    "tar.gz bomb (100 MB of zeros)": (_bomb_tgz, ["FCN_EXTRACT_MAX_RATIO"], {}),
    "tar sparse member of 20 GB apparent size": (_sparse_tar, ["FCN_EXTRACT_MAX_RATIO", "sparse"], {}),
    "total size over the cap": (_many_members, ["FCN_EXTRACT_MAX_BYTES"], {"max_bytes": 30}),
    "member count over the cap": (_many_members, ["FCN_EXTRACT_MAX_MEMBERS"], {"max_members": 50}),
    "file and folder of the same name": (_file_and_dir, ["root/a/b", "file of that name"], {}),
    "folder then a file of the same name": (_dir_then_file, ["root/a", "twice"], {}),
    "NUL in a PAX path": (_nul_pax, ["NUL"], {}),
    "duplicate tar members": (_duplicate_tar, ["root/a.txt", "twice"], {}),
    "duplicate zip members": (_duplicate_zip, ["root/a.txt", "twice"], {}),
    "non-UTF-8 zip symlink target": (_non_utf8_link, ["root/ln", "UTF-8"], {}),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_refused(tmp_path: Path, case: str) -> None:
    build, words, lim = HOSTILE[case]
    src = tmp_path / "src"
    src.mkdir()
    suffix = ".zip" if "zip" in case else ".tgz" if "tar.gz" in case else ".tar"
    arc = build(src / f"evil{suffix}")
    work = tmp_path / "a" / "b" / "c" / "work"
    work.mkdir(parents=True)
    with pytest.raises(DataError) as ei:
        safe_extract(arc, work / "dest", Limits(**lim) if lim else None)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith((f"{arc}: ", f"{work}: ")), msg
    assert all(w in msg for w in words), msg
    assert "delete" in msg or "raise" in msg or "free" in msg, msg
    assert files_under(tmp_path) == {"src", f"src/{arc.name}", "a", "a/b", "a/b/c", "a/b/c/work"}


def test_long_chain_bypasses_the_data_filter_lexically(tmp_path: Path) -> None:
    """The test archive really is the attack: every member passes a purely lexical check (so the refusal
    above comes from resolving links against the archive's own tree, not from a '..' in a name)."""
    arc = long_chain_tar(tmp_path / "e.tar")
    with tarfile.open(arc) as tf:
        names = [m.name for m in tf]
    assert "escape/PWNED.txt" in names
    assert all(".." not in n.split("/") and not n.startswith("/") for n in names)


def test_good_links_still_extract(tmp_path: Path) -> None:
    """In-tree links the datasets may carry (file → file in another folder, folder link read-only) work."""
    arc = write_tar(tmp_path / "g.tar", [
        (tar_info("r/d", tarfile.DIRTYPE), None), (tar_info("r/d/f.txt"), b"data"),
        (tar_info("r/flink", tarfile.SYMTYPE, "d/f.txt"), None), (tar_info("r/e/dlink", tarfile.SYMTYPE, "../d"), None),
        (tar_info("r/hard", tarfile.LNKTYPE, "r/d/f.txt"), None)])
    out = safe_extract(arc, tmp_path / "x")
    assert (out / "r/flink").read_bytes() == b"data" and (out / "r/e/dlink/f.txt").read_bytes() == b"data"
    assert (out / "r/hard").read_bytes() == b"data"


def test_free_space_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    arc = write_tar(tmp_path / "a.tar", [(tar_info("r/f.bin"), b"x" * 4096)])
    du = namedtuple("du", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: du(1 << 30, 1 << 30, 1 << 20))
    with pytest.raises(DataError, match="not enough free disk space") as ei:
        safe_extract(arc, tmp_path / "out" / "x")
    assert str(arc) in str(ei.value) and "free disk space and rerun" in str(ei.value)
    assert files_under(tmp_path / "out") == set()


def test_disk_full_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing a member: one line naming the member's file and the cause, no partial tree."""
    import errno
    import os

    arc = write_tar(tmp_path / "a.tar", [(tar_info("r/f.bin"), b"x" * 4096)])
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, fd: int) -> None:
            self.inner = real_fdopen(fd, "wb")

        def write(self, b):  # noqa: ANN001
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(fd))
    with pytest.raises(DataError, match="no space left on the disk") as ei:
        safe_extract(arc, tmp_path / "out" / "x")
    assert "r/f.bin" in str(ei.value) and str(arc) in str(ei.value)
    assert files_under(tmp_path / "out") == set()


def test_archive_given_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.tar").mkdir()
    with pytest.raises(DataError, match="is a folder, not an archive"):
        safe_extract(tmp_path / "x.tar", tmp_path / "out")


@pytest.mark.parametrize("case", ["tar long-name symlink chain (data-filter bypass)", "zip l0→. read chain",
                                  "zip bomb (200 MB of zeros)"])
def test_cli_one_error_line(tmp_path: Path, case: str) -> None:
    build, words, _ = HOSTILE[case]
    arc = build(tmp_path / ("evil.zip" if "zip" in case else "evil.tar"))
    r = fcn("extract", str(arc), "-o", str(tmp_path / "out" / "dest"))
    err = one_error(r)
    assert err.startswith(f"error: {arc}: ") and all(w in err for w in words), err
    assert "; " in err and ("delete" in err or "raise" in err), err
    assert files_under(tmp_path / "out") == set()
    assert not (tmp_path / "PWNED.txt").exists()
