"""One progress bar for every long step: live on a terminal, one plain line per interval in a log file.

On a terminal tqdm redraws in place. Written to a file (a rule's log, a SLURM log) the same bar would be
a stream of carriage-return frames on one endless line, and a postfix update would add a frame per step;
here a non-terminal stream gets a new, complete line at most every `FILE_INTERVAL_S` seconds (override
with the environment variable FCN_PROGRESS_INTERVAL), so `less logs/train/…` reads like a log.

The package is what a long job tells people as it runs: these bars, `say` for a line beside them, and
`trackers` for the metric loggers the field's tools read (DVCLive, TensorBoard).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

FILE_INTERVAL_S = 30.0
TERMINAL_INTERVAL_S = 0.5


def file_interval() -> float:
    """Seconds between progress lines in a non-terminal stream (FCN_PROGRESS_INTERVAL, default 30)."""
    try:
        value = float(os.environ.get("FCN_PROGRESS_INTERVAL", FILE_INTERVAL_S))
    except ValueError:
        return FILE_INTERVAL_S
    return value if value >= 0 else FILE_INTERVAL_S


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False


class _Lines:
    """A file-like for tqdm that turns its carriage-return frames into complete lines (no clearing)."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def write(self, s: str) -> int:
        for frame in s.replace("\n", "\r").split("\r"):
            if frame.strip():  # tqdm clears a line with spaces; a file needs no clearing
                self._stream.write(frame.rstrip() + "\n")
        return len(s)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", disable: bool = False, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on `file` (default: the current sys.stderr, which is the rule's log under Snakemake).

    FCN_PROGRESS=0 in the environment (`--no-progress` of `fcn train`) disables every bar.
    Not a terminal: a line every `file_interval()` seconds and at the end, never a frame per update
    (a `set_postfix` is shown with the next line; call it with refresh=False). Extra kwargs go to tqdm.
    """
    stream = sys.stderr if file is None else file
    disable = disable or os.environ.get("FCN_PROGRESS", "1").lower() in ("0", "off", "false", "no")
    if _is_terminal(stream):
        kwargs.setdefault("mininterval", TERMINAL_INTERVAL_S)
        kwargs.setdefault("dynamic_ncols", True)
        out: Any = stream
    else:
        interval = file_interval()
        kwargs.update(mininterval=interval, maxinterval=max(interval, 1.0), miniters=0, dynamic_ncols=False,
                      ncols=100)
        kwargs["leave"] = True  # a log keeps its last line: where the step ended
        out = _Lines(stream)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=out, **kwargs)


def say(line: str) -> None:
    """One line in the rule's log, beside (not inside) a progress bar."""
    tqdm.write(line, file=sys.stderr)
