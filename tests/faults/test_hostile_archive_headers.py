"""Tiny archives, unbounded cost (issue 23, class 5, archives): a tar metadata block — PAX header (per
file, global, Solaris), GNU long name or long link — that declares a huge size is refused by its declared
size before tarfile reads it into memory; names the file system cannot hold are refused naming the member
and the real cause (not "fix permissions on <a temp folder that no longer exists>"). Fast: no Snakemake."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from hostile import fcn, files_under, one_error

from fcnlib.errors import ConfigError, DataError
from fcnlib.files.archive import Limits, safe_extract

MiB = 1 << 20


def _meta_block(type_: bytes, size: int, fmt: int) -> bytes:
    ti = tarfile.TarInfo("././@PaxHeader" if fmt == tarfile.PAX_FORMAT else "././@LongLink")
    ti.type, ti.size = type_, size
    return ti.tobuf(format=tarfile.USTAR_FORMAT if fmt == tarfile.PAX_FORMAT else tarfile.GNU_FORMAT)


def _member(name: str, data: bytes) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


def _hostile_tar(path: Path, type_: bytes, size: int, fmt: int = tarfile.PAX_FORMAT, prefix: bytes = b"") -> Path:
    """`prefix` blocks, then a metadata block declaring `size` bytes followed by that many zero bytes (so
    a reader that trusts it really reads them), then an ordinary member and the end of archive."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb", compresslevel=1) if opener is gzip.open else open(path, "wb") as f:
        f.write(prefix)
        f.write(_meta_block(type_, size, fmt))
        left = size + (-size % 512)
        zeros = bytes(MiB)
        while left:
            n = min(left, MiB)
            f.write(zeros[:n])
            left -= n
        f.write(_member("img.jpg", b"jpeg"))
        f.write(b"\0" * 1024)
    return path


CASES = {
    # name: (type, declared size, archive name, format)
    "PAX header of 200 MiB in a .tar.gz": (tarfile.XHDTYPE, 200 * MiB, "a.tar.gz", tarfile.PAX_FORMAT),
    "global PAX header of 8 MiB": (tarfile.XGLTYPE, 8 * MiB, "a.tar", tarfile.PAX_FORMAT),
    "Solaris extended header of 8 MiB": (tarfile.SOLARIS_XHDTYPE, 8 * MiB, "a.tar", tarfile.PAX_FORMAT),
    "GNU long name of 16 MiB in a .tar.gz": (tarfile.GNUTYPE_LONGNAME, 16 * MiB, "a.tar.gz", tarfile.GNU_FORMAT),
    "GNU long link name of 8 MiB": (tarfile.GNUTYPE_LONGLINK, 8 * MiB, "a.tar", tarfile.GNU_FORMAT),
    "PAX header just over the cap": (tarfile.XHDTYPE, MiB + 1, "a.tar", tarfile.PAX_FORMAT),
}


@pytest.mark.parametrize("name", list(CASES))
def test_huge_metadata_block_refused_before_it_is_read(tmp_path: Path, name: str) -> None:
    type_, size, fname, fmt = CASES[name]
    arc = _hostile_tar(tmp_path / fname, type_, size, fmt)
    if fname.endswith(".gz"):
        assert arc.stat().st_size < size // 50  # the point: a small file that expands to a big block
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as ei:
            safe_extract(arc, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, f"{peak / MiB:.0f} MiB allocated before the refusal"
    msg = str(ei.value)
    assert msg.startswith(f"{arc}: ") and f"{size} B" in msg and "FCN_EXTRACT_MAX_HEADER_BYTES" in msg, msg
    assert not (tmp_path / "out").exists() and files_under(tmp_path) == {fname}


def test_huge_block_behind_a_genuine_pax_header(tmp_path: Path) -> None:
    """The cap applies to every metadata block, not only the first (tarfile reads them recursively)."""
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("é-first.txt")  # non-ASCII name: tarfile writes a genuine PAX header
        ti.size = 2
        tf.addfile(ti, io.BytesIO(b"ok"))
        end = tf.offset  # before the end-of-archive blocks
    head = good.getvalue()[:end]
    arc = _hostile_tar(tmp_path / "a.tar", tarfile.XHDTYPE, 8 * MiB, prefix=head)
    with pytest.raises(DataError, match="PAX header of 8388608 B"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_genuine_pax_archive_still_extracts(tmp_path: Path) -> None:
    arc = tmp_path / "g.tar.gz"
    with tarfile.open(arc, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for name in ("JPEGImages/ünïcode.jpg", "a/" + "d" * 150 + "/x.png"):
            ti = tarfile.TarInfo(name)
            ti.size, ti.pax_headers = 3, {"comment": "c" * 2000}
            tf.addfile(ti, io.BytesIO(b"abc"))
    out = safe_extract(arc, tmp_path / "out")
    assert (out / "JPEGImages" / "ünïcode.jpg").read_bytes() == b"abc"


def test_cap_is_adjustable_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arc = tmp_path / "g.tar"
    with tarfile.open(arc, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("f.txt")
        ti.size, ti.pax_headers = 1, {"comment": "c" * 5000}
        tf.addfile(ti, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="FCN_EXTRACT_MAX_HEADER_BYTES"):
        safe_extract(arc, tmp_path / "a", Limits(max_header=1000))
    monkeypatch.setenv("FCN_EXTRACT_MAX_HEADER_BYTES", "1000")
    with pytest.raises(DataError, match="over the limit of 1000 B"):
        safe_extract(arc, tmp_path / "b")
    monkeypatch.setenv("FCN_EXTRACT_MAX_HEADER_BYTES", "8000")
    assert (safe_extract(arc, tmp_path / "c") / "f.txt").read_bytes() == b"x"


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5", "1MB", "0.5", "1e400"])
@pytest.mark.parametrize("var", ["FCN_EXTRACT_MAX_HEADER_BYTES", "FCN_EXTRACT_MAX_BYTES", "FCN_EXTRACT_MAX_RATIO"])
def test_bad_cap_setting_is_one_line_naming_the_variable(tmp_path: Path, var: str, value: str) -> None:
    arc = _hostile_tar(tmp_path / "a.tar", tarfile.XHDTYPE, 1024)
    err = one_error(fcn("extract", str(arc), "-o", str(tmp_path / "out"), env={var: value}))
    assert err.startswith(f"error: {var}={value!r}: ") and "unset it" in err, err
    assert str(arc) not in err  # the setting is at fault, not the archive


def test_cli_refuses_huge_header_in_one_line(tmp_path: Path) -> None:
    arc = _hostile_tar(tmp_path / "a.tar.gz", tarfile.GNUTYPE_LONGNAME, 4 * MiB, fmt=tarfile.GNU_FORMAT)
    err = one_error(fcn("extract", str(arc), "-o", str(tmp_path / "out")))
    assert "GNU long name of 4194304 B" in err and "FCN_EXTRACT_MAX_HEADER_BYTES" in err, err


# --- names the file system cannot hold ----------------------------------------------------------------
def _tar_with(path: Path, *names: str) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for n in names:
            ti = tarfile.TarInfo(n)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
    return path


@pytest.mark.parametrize("name", ["x" * 300 + ".jpg", "d/" + "é" * 130 + ".png", "a/" + "b" * 256 + "/c.txt"])
def test_name_part_too_long_names_member_and_cause(tmp_path: Path, name: str) -> None:
    arc = _tar_with(tmp_path / "a.tar", "ok.txt", name)
    with pytest.raises(DataError) as ei:
        safe_extract(arc, tmp_path / "out")
    msg = str(ei.value)
    assert msg.startswith(f"{arc}: member {name!r}") and "bytes the file system" in msg, msg
    assert "fix permissions" not in msg and ".extract-" not in msg
    assert not (tmp_path / "out").exists()


def test_path_too_long_names_member(tmp_path: Path) -> None:
    name = "/".join(["d" * 200] * 21) + "/f.txt"  # > 4096 bytes in parts that each fit
    arc = _tar_with(tmp_path / "a.tar", name)
    with pytest.raises(DataError) as ei:
        safe_extract(arc, tmp_path / "out")
    assert "PATH_MAX" in str(ei.value) and ".extract-" not in str(ei.value)


def test_cli_long_name_one_line(tmp_path: Path) -> None:
    arc = _tar_with(tmp_path / "a.tar", "JPEGImages/" + "n" * 400 + ".jpg")
    err = one_error(fcn("extract", str(arc), "-o", str(tmp_path / "out")))
    assert "n" * 400 in err and "fix permissions" not in err, err


def test_bad_image_pixel_cap_blames_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fcnlib.files.io import read_image

    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(img)
    for v in ("0", "inf", "many"):
        monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", v)
        with pytest.raises(ConfigError) as ei:
            read_image(img)
        assert str(ei.value).startswith(f"FCN_MAX_IMAGE_PIXELS={v!r}") and str(img) not in str(ei.value)


# --- sparse maps: read by tarfile in loops that the member's header does not bound ---------------------
def _gnu_sparse_header(name: str, size: int, realsize: int, extended: bool) -> bytes:
    """An old-GNU sparse ('S') header: one map entry in the header, more in extension blocks if
    `extended`."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    h = bytearray(ti.tobuf(format=tarfile.GNU_FORMAT))
    h[156:157] = tarfile.GNUTYPE_SPARSE
    h[386:398] = b"%011o\0" % 0
    h[398:410] = b"%011o\0" % size
    h[482] = 1 if extended else 0
    h[483:495] = b"%011o\0" % realsize
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _extension_block(more: bool) -> bytes:
    entry = b"%011o\0%011o\0" % (1, 1)  # offset 1, 1 byte: nonzero, so tarfile keeps every entry
    return (entry * 21).ljust(504, b"\0") + bytes([1 if more else 0]) + bytes(7)


def _endless_gnu_sparse(path: Path, blocks: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_gnu_sparse_header("big.sparse", 512, 1 << 30, extended=True))
        ext = _extension_block(True) * 2048
        for _ in range(blocks // 2048):
            f.write(ext)
        f.write(_extension_block(False) + b"x" * 512 + bytes(1024))
    return path


SMALL = Limits(max_header=64 << 10)  # a small cap keeps the bounded work (a Python loop per entry) quick


def _refused_in_bounded_memory(arc: Path, out: Path) -> str:
    """safe_extract's DataError message for `arc`, checking that under 4 MiB was allocated before it."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as ei:
            safe_extract(arc, out, SMALL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, f"{peak / MiB:.0f} MiB allocated before the refusal"
    return str(ei.value)


def test_endless_gnu_sparse_extension_blocks_refused(tmp_path: Path) -> None:
    arc = _endless_gnu_sparse(tmp_path / "s.tar.gz", blocks=64 * 1024)  # 32 MiB of map: 1.4 M entries
    msg = _refused_in_bounded_memory(arc, tmp_path / "out")
    assert "metadata runs past" in msg and "FCN_EXTRACT_MAX_HEADER_BYTES" in msg


def test_gnu_sparse_archive_ending_in_its_extension_blocks(tmp_path: Path) -> None:
    """Was a raw IndexError inside tarfile (it indexes byte 504 of a short read)."""
    arc = tmp_path / "s.tar"
    arc.write_bytes(_gnu_sparse_header("s", 512, 4096, extended=True) + _extension_block(True)[:100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _pax_sparse(path: Path, sparse_map: bytes) -> Path:
    ti = tarfile.TarInfo("big.sparse")
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "big.sparse",
                      "GNU.sparse.realsize": "1024"}
    ti.size = len(sparse_map)
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=1) as tf:
        tf.addfile(ti, io.BytesIO(sparse_map))
    return path


def test_pax_sparse_map_without_end_refused(tmp_path: Path) -> None:
    arc = _pax_sparse(tmp_path / "s.tar.gz", b"999999999\n" + b"0\n" * (4 * MiB))  # 4 M numbers
    assert "FCN_EXTRACT_MAX_HEADER_BYTES" in _refused_in_bounded_memory(arc, tmp_path / "out")


@pytest.mark.parametrize("sparse_map", [b"3\n0\n", b"x\n", b"2\n0\n1\n0\n"], ids=["short", "not a number", "cut"])
def test_pax_sparse_map_malformed_is_corrupt(tmp_path: Path, sparse_map: bytes) -> None:
    arc = _pax_sparse(tmp_path / "s.tar.gz", sparse_map)
    with pytest.raises(DataError) as ei:
        safe_extract(arc, tmp_path / "out")
    assert str(ei.value).startswith(f"{arc}: ")


def _many_member_zip(path: Path, n: int) -> Path:
    """n empty members written straight to a stored zip (zipfile.writestr would take seconds for 10⁵)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"m/{i:07d}", b"")
    return path


def _lie_about_the_count(path: Path, entries: int) -> None:
    """Rewrite the end record's entry counts (zipfile parses the whole directory whatever they say)."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    data[at + 8:at + 12] = entries.to_bytes(2, "little") * 2
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("lie", [False, True], ids=["count as written", "end record claims one member"])
def test_zip_directory_counted_before_zipfile_builds_it(tmp_path: Path, lie: bool) -> None:
    """A zip's member cap holds before zipfile reads its central directory into one ZipInfo per entry: the
    headers are walked in constant memory, whatever count the end record declares."""
    arc = _many_member_zip(tmp_path / "many.zip", 20_000)
    if lie:
        _lie_about_the_count(arc, 1)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as ei:
            safe_extract(arc, tmp_path / "out", Limits(max_members=1_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # zipfile's own directory of 20,000 entries takes ~10 MiB; the walk stops at the 1,001st header
    assert peak < 1 * MiB, f"{peak / MiB:.1f} MiB allocated before the refusal"
    msg = str(ei.value)
    assert msg.startswith(f"{arc}: more than 1000 members") and "FCN_EXTRACT_MAX_MEMBERS" in msg, msg
    assert not (tmp_path / "out").exists()


def test_zip64_directory_counted_too(tmp_path: Path) -> None:
    """Over 65,535 members zipfile writes ZIP64 end records: the walk finds the directory through them."""
    arc = _many_member_zip(tmp_path / "z64.zip", 65_600)
    assert b"PK\x06\x06" in arc.read_bytes()[-200:]
    with pytest.raises(DataError, match="more than 65599 members"):
        safe_extract(arc, tmp_path / "out", Limits(max_members=65_599))


def test_zip_with_data_before_it_still_extracts(tmp_path: Path) -> None:
    """A self-extracting-style zip (bytes prepended, offsets not adjusted) is read as zipfile reads it."""
    import zipfile

    arc = tmp_path / "sfx.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("root/a.txt", b"hello")
        zf.writestr("root/b.txt", b"world")
    arc.write_bytes(b"#!/bin/sh\nexit 0\n" * 10 + arc.read_bytes())
    out = safe_extract(arc, tmp_path / "out", Limits(max_members=2))
    assert (out / "root" / "a.txt").read_bytes() == b"hello"
    with pytest.raises(DataError, match="more than 1 members"):
        safe_extract(arc, tmp_path / "out2", Limits(max_members=1))
