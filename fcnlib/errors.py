"""One exception family so the CLI and the workflow can print one clear line per failure."""


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
