"""The path policy and input kinds: inputs are read only inside the folders the user named or a dataset's
root (links leaving them refused, naming the link), and every input is opened through `open_regular`, which
names a FIFO, a device or a folder as such on the descriptor it opened (a FIFO would block the reader)."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

from fcnlib.errors import DataError

PathLike = str | os.PathLike


def inside(root: PathLike, path: PathLike, what: str, fix: str) -> Path:
    """`path` (relative to `root`, or absolute) made absolute, refused with one DataError naming it unless it
    is inside `root` both as written (not absolute, no `..` climbing out) and once links are followed (a
    link inside `root` to a file elsewhere is refused, naming the link and where it leads)."""
    root_p = Path(root)
    p = Path(path)
    q = p if p.is_absolute() else root_p / p
    base = root_p.resolve()
    lexical = Path(os.path.normpath(q if q.is_absolute() else Path.cwd() / q))
    if not lexical.is_relative_to(Path(os.path.normpath(root_p.absolute()))) and not lexical.is_relative_to(base):
        raise DataError(f"{q}: {what} {str(path)!r} leads outside {root_p} (absolute, or climbing out with '..'); "
                        f"{fix}")
    real = q.resolve()
    if not real.is_relative_to(base):
        link = next((a for a in [q, *q.parents] if a.is_symlink()), q)
        raise DataError(f"{link}: {what} is a link to {os.readlink(link) if link.is_symlink() else real}, "
                        f"outside {root_p}; {fix}")
    return q



def file_kind(path: PathLike) -> str:
    """What a path that is not a regular file is, in words (a FIFO or a device is not "missing")."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file or directory" if not os.path.islink(path) else "a link to a missing file"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    return _mode_kind(mode)


def open_regular(path: PathLike, what: str = "input") -> BinaryIO:
    """`path` opened for reading (binary), refused with one DataError naming it unless what was opened is a
    regular file. The check is on the open descriptor, so a FIFO or device swapped in after any earlier check
    is still refused: the open itself is non-blocking (a FIFO with no writer would block it) and blocking
    reads are restored once the file is known to be regular. FileNotFoundError and other OSErrors are left to
    the caller, whose message says which step makes the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket (or a FIFO's peer gone): nothing to read as a file
            raise DataError(f"{path}: {what} is {file_kind(path)}, not a regular file; give the file itself") \
                from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: {what} is {_mode_kind(mode)}, not a regular file; give the file itself")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return open(fd, "rb")  # the caller owns (and closes) it
    except BaseException:
        os.close(fd)
        raise


def _mode_kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return word
    return "not a regular file"
