"""One exception family so the CLI and the workflow can print one clear line per failure."""

import errno
from pathlib import Path


class FcnError(Exception):
    """Base class: the message names the file (or config key) and what to do about it."""


class ConfigError(FcnError):
    """A config value is missing, unknown or of the wrong type."""


class DataError(FcnError):
    """An input file (image, label, split list, depth map, archive) is unusable."""


class DownloadError(FcnError):
    """No mirror produced a file with the expected size and checksum."""


class WeightsError(FcnError):
    """A weights file does not fit the requested architecture or is unsafe to load."""


class DiskError(FcnError):
    """An output could not be written (disk full, file size limit, permissions); the old file is kept."""


def disk_full(path: object, e: OSError) -> DiskError | None:
    """A DiskError naming `path` if `e` is a disk-full / quota / file-size-limit failure, else None."""
    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return None
    p = Path(str(path))
    cause = "the file size limit was reached" if e.errno == errno.EFBIG else "no space left on the disk"
    return DiskError(f"{p}: cannot write it: {cause} ({e.strerror}); free disk space on {p.parent} (or raise "
                     f"the limit) and rerun (the previous {p.name}, if any, is kept)")


def one_line(e: BaseException) -> FcnError | None:
    """The one-line FcnError for an exception that escaped to a command's top (the `fcn` dispatcher and the
    rule scripts use this): OS errors named by file and cause, undecodable text, exhausted memory, a
    recursion limit. None for anything else (a bug: its traceback is worth seeing)."""
    if isinstance(e, FcnError):
        return e
    if isinstance(e, OSError):
        where = e.filename if e.filename is not None else "a file"
        full = disk_full(where, e)
        if full is not None:
            return full
        why = e.strerror or str(e)
        advice = {
            errno.ENOENT: "check the path",
            errno.EISDIR: "give a file, not a folder",
            errno.ENOTDIR: "a part of the path is a file, not a folder — check the path",
            errno.EACCES: "fix its permissions (or those of its folder)",
            errno.EPERM: "fix its permissions (or those of its folder)",
            errno.EROFS: "write to a writable folder",
            errno.ENXIO: "it is a FIFO or device with nothing at the other end — give a regular file",
            errno.ENAMETOOLONG: "shorten the name",
            errno.ELOOP: "the path has a link loop — fix the links",
            errno.EMFILE: "too many open files: raise `ulimit -n`",
        }.get(e.errno or -1, "check the file and rerun")
        return FcnError(f"{where}: {why}; {advice}")
    if isinstance(e, UnicodeDecodeError):
        return DataError(f"an input is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8")
    if isinstance(e, MemoryError):
        return FcnError("out of memory; use smaller inputs (FCN_MAX_IMAGE_PIXELS, --max-pixels) or a machine "
                        "with more memory")
    if isinstance(e, RecursionError):
        return DataError("an input is nested too deeply to read; it is damaged or crafted")
    return None
