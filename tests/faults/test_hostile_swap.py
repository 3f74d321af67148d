"""A FIFO or device swapped in for an input after it was checked: every reader opens through
fcnlib.files.paths.open_regular, which checks what it opened (on the descriptor), so the read neither blocks
on the FIFO nor reads the device; one error names the file."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fcnlib.data.dataset import read_ids
from fcnlib.data.prepare.context import parse_label_list
from fcnlib.data.splits import read_id_list
from fcnlib.errors import ConfigError, DataError, FcnError, WeightsError
from fcnlib.files import paths
from fcnlib.files.archive import safe_extract
from fcnlib.files.io import image_size, read_image, read_json, read_label, sha256_file
from fcnlib.files.matio import read_mat
from fcnlib.models.caffe import read_caffemodel, sniff_format
from fcnlib.models.io import check_weights_file, safe_torch_load
from fcnlib.pipeline.config import load_yaml
from fcnlib.report.figures import read_log

READERS: dict[str, tuple[Callable[[Path], object], type[Exception]]] = {
    "config": (load_yaml, ConfigError),
    "json": (read_json, DataError),
    "image": (read_image, DataError),
    "image size": (image_size, DataError),
    "label": (lambda p: read_label(p, 21), DataError),
    "split list": (read_ids, DataError),
    "PASCAL split list": (read_id_list, DataError),
    ".mat": (read_mat, DataError),
    "weights": (safe_torch_load, WeightsError),
    "weights zip check": (check_weights_file, WeightsError),
    "caffemodel": (read_caffemodel, WeightsError),
    "archive": (lambda p: safe_extract(p, p.parent / "out"), DataError),
    "checksum": (sha256_file, DataError),
    "training log": (read_log, DataError),
    "PASCAL-Context label list": (parse_label_list, DataError),
}


@pytest.fixture
def swap_to_fifo(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make every stat-based check see a regular file, then put a FIFO at the path: the race, won."""
    def arm(path: Path) -> None:
        path.write_bytes(b"x")
        real_stat = os.stat(path)
        orig = os.stat

        def stat_before_swap(p, *a, **k):  # noqa: ANN001, ANN002, ANN003
            return real_stat if os.fspath(p) == os.fspath(path) else orig(p, *a, **k)

        monkeypatch.setattr(os, "stat", stat_before_swap)
        monkeypatch.setattr(paths.os, "stat", stat_before_swap)
        path.unlink()
        os.mkfifo(path)
    return arm


@pytest.mark.parametrize("reader", list(READERS))
def test_fifo_swapped_in_after_the_check_is_refused_not_read(tmp_path: Path, reader: str,
                                                             swap_to_fifo: Callable[[Path], None]) -> None:
    read, error = READERS[reader]
    path = tmp_path / "input.bin"
    swap_to_fifo(path)
    done: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            read(path)
            done["e"] = None
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            done["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():  # blocked on the FIFO: unblock it (a writer) so the thread ends, then fail
        with open(path, "wb"):
            pass
        t.join(5)
        pytest.fail(f"{reader}: the read blocked on a FIFO swapped in after the check")
    e = done["e"]
    assert isinstance(e, error) and isinstance(e, FcnError), repr(e)
    assert str(e).startswith(f"{path}: ") and "FIFO" in str(e), str(e)


def test_sniffing_a_swapped_fifo_answers_at_once(tmp_path: Path, swap_to_fifo: Callable[[Path], None]) -> None:
    path = tmp_path / "w.caffemodel"
    swap_to_fifo(path)
    assert sniff_format(path) is None


def test_a_device_is_refused_on_the_descriptor() -> None:
    with pytest.raises(DataError, match="/dev/zero: input is a character device"):
        paths.open_regular("/dev/zero")
    with pytest.raises(DataError, match="/dev/null: image is a character device"):
        read_image("/dev/null")


def test_regular_files_still_read(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_bytes(b"a\r\nb\n\n c \n")
    assert read_ids(tmp_path / "ids.txt") == ["a", "b", "c"]
    with paths.open_regular(tmp_path / "ids.txt") as f:
        assert f.read(1) == b"a" and os.get_blocking(f.fileno())  # blocking reads restored


def test_a_folder_datasets_class_list_that_is_a_fifo(tmp_path: Path) -> None:
    """The class list a config names for a folder dataset: a FIFO there is named at validation, not read."""
    from fcnlib.facts import datasets as registry

    os.mkfifo(tmp_path / "classes.txt")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cfg = {"datasets": {"mine": {"folder": str(tmp_path), "classes": "classes.txt"}}}
    with pytest.raises(ConfigError, match=r"at 'datasets\.mine\.classes'.*classes\.txt: class list file is a FIFO"):
        registry.check_config(cfg, "cfg")
