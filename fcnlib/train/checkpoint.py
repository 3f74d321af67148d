"""The JSONL log, SIGTERM/SIGINT recording and resume checkpoints (read here; written by the loop)."""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fcnlib.files.io import atomic_write_text, sha256_file


class _Log:
    """Append-only JSONL log whose full text is also kept (it goes into each checkpoint)."""

    def __init__(self, path: Path, text: str = "") -> None:
        self.path = path
        atomic_write_text(path, text)  # fresh start: empty; resume: exactly the checkpoint's lines
        self.lines = [text] if text else []
        self.f = open(path, "a")  # noqa: SIM115 - closed in close()

    def write(self, obj: Mapping[str, Any]) -> None:
        line = json.dumps(obj) + "\n"
        self.f.write(line)
        self.f.flush()
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        self.f.close()


class _Stop:
    """Records SIGTERM/SIGINT; the loop checks it between iterations and checkpoints before exiting."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        self.signum = signum

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _RankLog(_Log):
    """Ranks other than 0 keep the log text (checkpoints) but write no file."""

    def __init__(self, text: str = "") -> None:  # noqa: D107 - no file on purpose
        self.path = None
        self.lines = [text] if text else []
        self.f = None

    def write(self, obj: Mapping[str, Any]) -> None:
        self.lines.append(json.dumps(obj) + "\n")

    def close(self) -> None:
        pass


def inputs_hash(files: Sequence[Path]) -> str:
    """sha256 over the content of every file a run reads (names and bytes): a resume checkpoint counts
    only for the very inputs it was trained on, whatever their paths' mtimes say."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """A resume checkpoint, or None if absent; unreadable ones are reported (and ignored) by the caller."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot resume from this file"
        print(f"fcn train: {path}: unreadable resume checkpoint ({e.__class__.__name__}: {e}); "
              f"starting from iteration 0", file=sys.stderr)
        return None
