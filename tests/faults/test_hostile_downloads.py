"""Hostile download servers on loopback: endless bodies, trickles, redirects off http, spliced
resumes and lying Content-Ranges. Each is refused with one `error:` line naming the file, nothing is left
at the destination, and (where the part could not be verified) no part file either. Fast: no Snakemake."""

from __future__ import annotations

import hashlib
import random
import sys
import time
from pathlib import Path

import pytest
from hostile import fcn, one_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_http import serve  # noqa: E402

from fcnlib.errors import DownloadError  # noqa: E402
from fcnlib.files.download import Bounds, download, part_meta_path, part_path, record_path  # noqa: E402

BODY = random.Random(1).randbytes(400_000)
OTHER = random.Random(2).randbytes(400_000)
SHA = hashlib.sha256(BODY).hexdigest()


def _nothing_at(dest: Path, part_too: bool = True) -> None:
    assert not dest.exists()
    if part_too:
        assert not part_path(dest).exists() and not part_meta_path(dest).exists()


def test_endless_body_without_length_stops_at_declared_size(tmp_path: Path) -> None:
    dest = tmp_path / "nyud.tar.gz"
    with serve() as srv:
        url = srv.add("/endless", BODY, no_length=True, endless=True)
        t = time.monotonic()
        with pytest.raises(DownloadError) as ei:
            download([url], dest, size=len(BODY), progress=False, retries=1)
        assert time.monotonic() - t < 20
    msg = str(ei.value)
    assert "nyud.tar.gz" in msg and f"more than {len(BODY)} B" in msg and "by hand" in msg, msg
    _nothing_at(dest)


def test_endless_body_without_any_size_stops_at_the_cap(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    with serve() as srv:
        url = srv.add("/endless", BODY, no_length=True, endless=True)
        with pytest.raises(DownloadError) as ei:
            download([url], dest, progress=False, retries=1, bounds=Bounds(max_bytes=3_000_000))
    assert "FCN_DOWNLOAD_MAX_BYTES" in str(ei.value)
    _nothing_at(dest)


def test_body_longer_than_content_length_total_is_cut(tmp_path: Path) -> None:
    """A 206 whose Content-Range claims a smaller total than the bytes that follow."""
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(BODY[:100_000])
    with serve() as srv:
        url = srv.add("/f", BODY, content_range=f"bytes 100000-199999/{len(BODY)}", no_length=True)
        with pytest.raises(DownloadError):
            download([url], dest, sha256=SHA, progress=False, retries=1)
    _nothing_at(dest)


def test_trickle_trips_the_minimum_rate(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    with serve() as srv:
        url = srv.add("/slow", BODY, chunk=1, delay=0.05)  # ~20 B/s, each read well within the timeout
        t = time.monotonic()
        with pytest.raises(DownloadError) as ei:
            download([url], dest, sha256=SHA, progress=False, retries=1,
                     bounds=Bounds(min_rate=1000, rate_window=1.0))
        assert time.monotonic() - t < 10
    assert "too slow" in str(ei.value) and "FCN_DOWNLOAD_MIN_RATE" in str(ei.value)
    assert not dest.exists()


def test_overall_deadline(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    with serve() as srv:
        url = srv.add("/slow", BODY, chunk=1024, delay=0.05)  # ~20 KB/s: fast enough, but never ends in time
        t = time.monotonic()
        with pytest.raises(DownloadError) as ei:
            download([url], dest, sha256=SHA, progress=False, bounds=Bounds(deadline=1.5, min_rate=1))
        assert time.monotonic() - t < 8
    msg = str(ei.value)
    assert msg.startswith(f"{dest}: ") and "deadline" in msg and "FCN_DOWNLOAD_DEADLINE" in msg, msg
    assert not dest.exists()


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/f.bin", "file:///etc/passwd", "gopher://127.0.0.1/x"])
def test_redirect_off_http_refused(tmp_path: Path, target: str) -> None:
    dest = tmp_path / "f.bin"
    with serve() as srv:
        url = srv.add("/r", b"", redirect=target)
        with pytest.raises(DownloadError) as ei:
            download([url], dest, progress=False, retries=1)
    assert "redirected to" in str(ei.value) and "refused" in str(ei.value)
    _nothing_at(dest)


def test_redirect_to_http_followed(tmp_path: Path) -> None:
    with serve() as srv:
        good = srv.add("/good", BODY)
        url = srv.add("/r", b"", redirect=good)
        assert download([url], tmp_path / "f.bin", sha256=SHA, progress=False).read_bytes() == BODY


def _kept_part(srv, dest: Path, path: str, cut: int = 150_000) -> str:
    """A first download cut after `cut` bytes, leaving a part file (and what the server said) to resume."""
    url = srv.add(path, BODY, cut_first=cut)
    with pytest.raises(DownloadError):
        download([url], dest, progress=False, retries=1)
    assert part_path(dest).stat().st_size == cut
    return url


def test_spliced_resume_without_checksum_restarts(tmp_path: Path) -> None:
    """SiftFlowDataset.zip has no published checksum: a server honouring Range with other bytes must not
    produce a spliced file; the resume is cross-checked on the overlap and restarted from zero."""
    dest = tmp_path / "SiftFlowDataset.zip"
    with serve() as srv:
        _kept_part(srv, dest, "/s")
        srv.routes["/s"].splice = OTHER
        srv.routes["/s"].cut_first = None
        out = download([srv.url("/s")], dest, progress=False, retries=1)
        assert [h.range for h in srv.hits][-2:][1] is None  # the final fetch was from zero
    assert out.read_bytes() == BODY  # never BODY[:150000] + OTHER[150000:]
    assert record_path(dest).read_text().split()[0] == SHA  # pinned for the next download


def test_lying_content_range_restarts(tmp_path: Path) -> None:
    dest = tmp_path / "nyud.tar.gz"
    with serve() as srv:
        _kept_part(srv, dest, "/l")
        srv.routes["/l"].content_range = f"bytes 0-{len(BODY) - 1}/{len(BODY)}"  # claims another start
        out = download([srv.url("/l")], dest, progress=False, retries=1)
    assert out.read_bytes() == BODY


def test_changed_total_restarts(tmp_path: Path) -> None:
    """The server now reports a different total than when the part was started: the file changed."""
    dest = tmp_path / "nyud.tar.gz"
    with serve() as srv:
        _kept_part(srv, dest, "/t")
        srv.routes["/t"].body = BODY + b"more"
        srv.routes["/t"].cut_first = None
        out = download([srv.url("/t")], dest, progress=False, retries=1)
    assert out.read_bytes() == BODY + b"more"


def test_torchvision_name_prefix_is_verified(tmp_path: Path) -> None:
    """googlenet-1378be20.pth carries its sha256 prefix: a spliced resume fails it and is refetched; a
    file that never matches is refused with the prefix named."""
    prefix = SHA[:8]
    dest = tmp_path / "googlenet.pth"
    with serve() as srv:
        url = srv.add(f"/googlenet-{prefix}.pth", BODY, cut_first=150_000)
        with pytest.raises(DownloadError):
            download([url], dest, progress=False, retries=1)
        srv.routes[f"/googlenet-{prefix}.pth"].splice = OTHER
        srv.routes[f"/googlenet-{prefix}.pth"].cut_first = None
        assert download([url], dest, progress=False, retries=1).read_bytes() == BODY
        bad = srv.add("/googlenet-00000000.pth", BODY)
        with pytest.raises(DownloadError) as ei:
            download([bad], tmp_path / "g2.pth", progress=False, retries=1)
    assert "does not start with 00000000" in str(ei.value)
    _nothing_at(tmp_path / "g2.pth")


def test_recorded_sha256_pins_later_downloads(tmp_path: Path) -> None:
    dest = tmp_path / "SiftFlowDataset.zip"
    with serve() as srv:
        url = srv.add("/z", BODY)
        download([url], dest, progress=False)
        assert record_path(dest).exists()
        dest.unlink()
        srv.routes["/z"].body = OTHER  # the mirror now serves something else
        with pytest.raises(DownloadError) as ei:
            download([url], dest, progress=False, retries=1)
    msg = str(ei.value)
    assert SHA in msg and str(record_path(dest)) in msg and "delete" in msg, msg
    _nothing_at(dest)


def test_cli_one_error_line(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "nyud.tar.gz"
    with serve() as srv:
        url = srv.add("/endless", BODY, no_length=True, endless=True)
        r = fcn("download", url, "-o", str(dest), "--size", str(len(BODY)), "--no-progress")
    err = one_error(r)
    assert "nyud.tar.gz" in err and "more than" in err and "by hand" in err, err
    assert not dest.exists() and not part_path(dest).exists()
    ftp = "ftp://127.0.0.1/x"
    with serve() as srv:
        url = srv.add("/r", b"", redirect=ftp)
        err = one_error(fcn("download", url, "-o", str(dest), "--no-progress"))
    assert "redirected to" in err and ftp in err
