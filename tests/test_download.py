"""fcnlib.files.download against a misbehaving loopback server: resume, mirrors, checksums, cache, kill -9."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_http import dead_url, serve

from fcnlib.cli.download import cli
from fcnlib.errors import DownloadError
from fcnlib.files.download import download, part_path

REPO = Path(__file__).resolve().parents[1]
BODY = random.Random(0).randbytes(1_000_000)
MD5 = hashlib.md5(BODY).hexdigest()
SHA = hashlib.sha256(BODY).hexdigest()


def test_plain_download_verifies_and_renames(tmp_path: Path) -> None:
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        out = download([url], tmp_path / "f.bin", size=len(BODY), md5=MD5, sha256=SHA, progress=False)
    assert out.read_bytes() == BODY
    assert not part_path(out).exists()
    # Second call: the verified file is reused without touching the network.
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        download([url], out, md5=MD5, progress=False)
        assert srv.hits == []


def test_resume_after_partial_download(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    with serve() as srv:
        url = srv.add("/f.bin", BODY, cut_first=300_000)
        with pytest.raises(DownloadError, match="connection closed"):
            download([url], dest, md5=MD5, progress=False, retries=1)
        assert not dest.exists()
        assert part_path(dest).stat().st_size == 300_000
        download([url], dest, md5=MD5, progress=False, retries=1)
        second = srv.hits[1]
    assert dest.read_bytes() == BODY
    assert second.range == "bytes=300000-" and second.status == 206
    assert second.sent == len(BODY) - 300_000 < len(BODY)


def test_resume_within_one_call(tmp_path: Path) -> None:
    with serve() as srv:
        url = srv.add("/f.bin", BODY, cut_first=123_456)
        download([url], tmp_path / "f.bin", sha256=SHA, progress=False)
        assert srv.sent("/f.bin") == [123_456, len(BODY) - 123_456]
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"junk" * 1000)  # a stale prefix that must not survive
    with serve() as srv:
        url = srv.add("/f.bin", BODY, range=False)
        download([url], dest, md5=MD5, progress=False)
        assert srv.hits[0].range == "bytes=4000-" and srv.hits[0].status == 200
    assert dest.read_bytes() == BODY


def test_bad_resumed_prefix_is_refetched_from_zero(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(bytes(200_000))  # right length region, wrong bytes
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        download([url], dest, md5=MD5, progress=False)
        assert [h.range for h in srv.hits] == ["bytes=200000-", None]
    assert dest.read_bytes() == BODY


def test_mirror_fallback(tmp_path: Path) -> None:
    with serve() as srv:
        urls = [dead_url(), srv.add("/404", BODY, status=404), srv.add("/bad", BODY, corrupt=True),
                srv.add("/good", BODY)]
        out = download(urls, tmp_path / "f.bin", md5=MD5, progress=False)
        assert [h.path for h in srv.hits] == ["/404", "/bad", "/good"]
    assert out.read_bytes() == BODY


def test_checksum_mismatch_leaves_nothing_and_says_so(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "VOCtrainval.tar"
    cache = tmp_path / "cache"
    with serve() as srv:
        bad = srv.add("/bad", BODY, corrupt=True)
        dead = dead_url("/mirror2")
        with pytest.raises(DownloadError) as ei:
            download([bad, dead], dest, md5=MD5, cache_dirs=[cache], progress=False)
    msg = str(ei.value)
    assert not dest.exists() and not part_path(dest).exists()
    assert list(dest.parent.iterdir()) == []
    assert "VOCtrainval.tar" in msg and bad in msg and dead in msg
    assert f"md5 {hashlib.md5(BODY[:500_000] + bytes([BODY[500_000] ^ 255]) + BODY[500_001:]).hexdigest()}" \
        in msg and "deleted" in msg
    assert "cannot connect" in msg
    assert str(dest) in msg and str(cache / dest.name) in msg and MD5 in msg
    assert "\n" not in msg


def test_cache_dir_used_and_verified(tmp_path: Path) -> None:
    wrong, right = tmp_path / "c1", tmp_path / "c2"
    wrong.mkdir()
    right.mkdir()
    (wrong / "f.bin").write_bytes(BODY[:-1] + b"x")
    (right / "f.bin").write_bytes(BODY)
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        out = download([url], tmp_path / "out" / "f.bin", md5=MD5, cache_dirs=[wrong, right], progress=False)
        assert srv.hits == []  # no network at all
    assert out.read_bytes() == BODY
    assert (wrong / "f.bin").read_bytes() == BODY[:-1] + b"x"  # a user's file is never deleted
    assert (right / "f.bin").exists()


def test_bad_cache_falls_back_to_url(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f.bin").write_bytes(b"nope")
    with serve() as srv:
        url = srv.add("/f.bin", BODY)
        out = download([url], tmp_path / "f.bin", size=len(BODY), cache_dirs=[tmp_path / "c"], progress=False)
        assert len(srv.hits) == 1
    assert out.read_bytes() == BODY


def test_file_url_and_resume(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(BODY)
    dest = tmp_path / "out" / "f.bin"
    dest.parent.mkdir()
    part_path(dest).write_bytes(BODY[:400_000])
    out = download([src.as_uri()], dest, md5=MD5, progress=False)
    assert out.read_bytes() == BODY
    with pytest.raises(DownloadError, match="cannot open"):
        download([(tmp_path / "missing.bin").as_uri()], tmp_path / "m.bin", progress=False)


def test_existing_bad_dest_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"truncated")
    with serve() as srv:
        download([srv.add("/f.bin", BODY)], dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == BODY


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(BODY)
    assert cli([src.as_uri(), "-o", str(tmp_path / "o.bin"), "--md5", MD5, "--size", str(len(BODY)),
                "--no-progress"]) == 0
    assert (tmp_path / "o.bin").read_bytes() == BODY
    assert str(tmp_path / "o.bin") in capsys.readouterr().out


def test_sigkill_mid_download_then_rerun(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with serve() as srv:
        url = srv.add("/slow", BODY, chunk=16_384, delay=0.02)  # ~1.2 s for the whole body
        proc = subprocess.Popen([sys.executable, "-m", "fcnlib", "download", url, "-o", str(dest),
                                 "--md5", MD5, "--no-progress"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        part = part_path(dest)
        deadline = time.monotonic() + 20
        while (not part.exists() or part.stat().st_size < 100_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not dest.exists()
        kept = part.stat().st_size
        assert 100_000 <= kept < len(BODY)
        srv.routes["/slow"].delay = 0.0
        download([url], dest, md5=MD5, progress=False)
        rerun = srv.hits[-1]
    assert dest.read_bytes() == BODY
    assert rerun.range == f"bytes={kept}-" and rerun.sent == len(BODY) - kept


def test_complete_part_file_answered_416(tmp_path: Path) -> None:
    """Killed after the last byte but before the rename: the server answers 416 and no byte is resent."""
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(BODY)
    with serve() as srv:
        download([srv.add("/f.bin", BODY)], dest, md5=MD5, progress=False)
        assert [(h.status, h.sent) for h in srv.hits] == [(416, 0)]
    assert dest.read_bytes() == BODY and not part_path(dest).exists()


def test_sha1_checksums_are_verified(tmp_path: Path) -> None:
    """Caffe's model zoo publishes sha1 (bvlc_alexnet.caffemodel); a mismatch leaves no file."""
    src = tmp_path / "src.bin"
    src.write_bytes(BODY)
    good = hashlib.sha1(BODY, usedforsecurity=False).hexdigest()
    assert download([src.as_uri()], tmp_path / "ok.bin", sha1=good, progress=False).read_bytes() == BODY
    with pytest.raises(DownloadError, match="sha1"):
        download([src.as_uri()], tmp_path / "bad.bin", sha1="0" * 40, progress=False)
    assert not (tmp_path / "bad.bin").exists()
