"""Files and folders made where someone else may have been first: shared temp folders (GPU lock files),
and lock files beside a destination (downloads).

Another local user can pre-create a name in a shared place (`/tmp/...`) as a symlink to one of our files, a
hard link, a FIFO, or a folder they own, and wait for our job to chmod, truncate or write through it. So:

* a shared folder is opened with O_NOFOLLOW|O_DIRECTORY and used by its descriptor (no later lookup by
  name can be redirected); it must be owned by us (or root) and, if group/world-writable, sticky — else one
  ConfigError naming it and what to do; a folder we create is 0700;
* a file in it is created with O_CREAT|O_EXCL|O_NOFOLLOW (only then chmodded: never a file we did not
  create), or opened with O_NOFOLLOW|O_NONBLOCK and accepted only as a regular file with one link;
* a lock beside a file (`locked`) is taken with flock on such a file, checked to still be the file at that
  name once held (a previous holder removes it when done), and removed by its holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fcnlib.errors import ConfigError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def user_temp_dir(name: str) -> Path:
    """`<tmp>/<name>-<uid>`: this user's own folder in the shared temp folder (created by `open_dir`)."""
    return Path(tempfile.gettempdir()) / f"{name}-{os.geteuid()}"


def _unusable(path: Path, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {problem}; {fix}")


def open_dir(path: Path, fix: str, mode: int = 0o700) -> int:
    """An O_DIRECTORY descriptor of `path` (created with `mode` if absent), checked as safe for our files:
    not a link, a folder, owned by us or root, not writable by others unless sticky. `fix` ends errors."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unusable(path.parent, f"cannot create the folder ({e.strerror})", fix) from None
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass  # checked below, whatever it is
    except OSError as e:
        raise _unusable(path, f"cannot create the folder ({e.strerror})", fix) from None
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as e:
        with contextlib.suppress(OSError):  # Linux says ENOTDIR, not ELOOP, for O_DIRECTORY on a symlink
            if stat.S_ISLNK(os.lstat(path).st_mode):
                e.errno = errno.ELOOP
        problem = {errno.ELOOP: "is a symbolic link (refused: it may point at someone else's files)",
                   errno.ENOTDIR: "is not a folder (a plain file or other object is in its place)",
                   errno.EACCES: "is not accessible (permission denied)"}.get(e.errno, e.strerror or str(e))
        raise _unusable(path, problem, fix) from None
    st = os.fstat(fd)
    uid = os.geteuid()
    problem = None
    if st.st_uid not in (uid, 0):
        problem = f"is owned by another user (uid {st.st_uid}; you are uid {uid}), who could swap files in it"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        problem = (f"is writable by other users without the sticky bit (mode {stat.S_IMODE(st.st_mode):o}), so "
                   f"they could replace files in it")
    if problem:
        os.close(fd)
        raise _unusable(path, problem, fix)
    return fd


def open_file(dir_fd: int, name: str, path: Path, fix: str, create_mode: int = 0o644) -> int:
    """A read-write (else read-only) descriptor of `name` in the folder `dir_fd` (shown as `path`): created
    by us with O_EXCL (then given `create_mode`), or an existing regular file with one link. A symlink,
    FIFO, device, folder or hard-linked file is refused with one ConfigError."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, create_mode, dir_fd=dir_fd)
        created = True
    except FileExistsError:
        created = False
        try:
            try:
                fd = os.open(name, os.O_RDWR | _FILE_FLAGS, dir_fd=dir_fd)
            except PermissionError:
                fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)  # flock needs no write access
        except OSError as e:
            problem = ("is a symbolic link (refused: it may point at someone else's file)" if e.errno == errno.ELOOP
                       else f"cannot be opened ({e.strerror})")
            raise _unusable(path, problem, fix) from None
    except OSError as e:
        raise _unusable(path, f"cannot be created ({e.strerror})", fix) from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file (a FIFO, device or folder was put in its place)"
    elif st.st_nlink != 1:
        problem = f"has {st.st_nlink} hard links (refused: it may be someone else's file)"
    if problem:
        os.close(fd)
        raise _unusable(path, problem, fix)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    if created:
        os.fchmod(fd, create_mode)  # our own new file: readable by the other users of a shared folder
    return fd


def _lock_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock for `path` (on `.<name>.lock` beside it) for the block; waits (saying so on
    stderr) while another process holds it. The lock file is removed by its holder."""
    path = Path(path)
    lock = _lock_name(path)
    fix = f"remove {lock} and rerun" + (f" ({what})" if what else "")
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise _unusable(path.parent, f"cannot open the folder ({e.strerror})", "create it or fix its permissions") \
            from None
    try:
        told = False
        while True:
            fd = open_file(dir_fd, lock.name, lock, fix, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not told:
                        print(f"fcn: waiting for another process working on {path} (lock {lock})", file=sys.stderr)
                        told = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    now = os.stat(lock.name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                break
            os.close(fd)  # the previous holder removed that file when done: lock the current one
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock.name, dir_fd=dir_fd)
            os.close(fd)
    finally:
        os.close(dir_fd)
