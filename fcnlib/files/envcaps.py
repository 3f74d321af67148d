"""The one parser for numeric `FCN_*` environment settings (caps, deadlines, rates, counts).

A setting read from the environment is either unset/empty (the default applies) or a finite positive
number; anything else (`inf`, `nan`, `0`, `-1`, `12MB`, a fraction that rounds to 0 for a count) is ONE
ConfigError naming the variable, its value and what to set — never a traceback, and never blamed on the
file whose check the cap was for.
"""

from __future__ import annotations

import math
import os

from fcnlib.errors import ConfigError


def _parse(name: str, default: float, integer: bool, unit: str) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    what = f"a positive {'whole ' if integer else ''}number{f' of {unit}' if unit else ''}"
    fix = f"set it to {what} (default {default:g}) or unset it"
    try:
        x = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not a number; {fix}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{name}={raw!r}: must be a finite number (an infinite cap is no cap); {fix}")
    if integer:
        x = math.floor(x)
    if x <= 0:
        raise ConfigError(f"{name}={raw!r}: must be positive; {fix}")
    return x


def env_int(name: str, default: int, unit: str = "") -> int:
    """`name` from the environment as a positive whole number (`1e9` allowed), else `default`."""
    return int(_parse(name, default, True, unit))


def env_float(name: str, default: float, unit: str = "") -> float:
    """`name` from the environment as a positive finite number, else `default`."""
    return float(_parse(name, default, False, unit))
