"""Durations: ``"5 ms"``, ``"550 s"`` or plain numbers (milliseconds) -> integer ticks.

The clock counts integer ticks of ``dt``. A duration that is not a whole number
of ticks is an error, never a silent rounding.
"""

from __future__ import annotations

import math
import re

UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "min": 6e4}
_PATTERN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ]+)?\s*$")


def to_ms(value) -> float:
    """Parse a duration into milliseconds. Raises ``ValueError`` with a hint."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '5 ms', got {value!r}")
    if isinstance(value, int | float):
        ms = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(f"cannot read {value!r} as a duration (write e.g. '5 ms' or '2 s')")
        unit = (match.group(2) or "ms").replace("µ", "u")
        if unit not in UNIT_MS:
            raise ValueError(
                f"unknown time unit {unit!r} in {value!r} (use one of {', '.join(UNIT_MS)})"
            )
        ms = float(match.group(1)) * UNIT_MS[unit]
    else:
        raise ValueError(f"expected a duration such as '5 ms', got {type(value).__name__}")
    if not math.isfinite(ms):
        raise ValueError(f"duration {value!r} is not finite")
    if ms < 0:
        raise ValueError(f"duration {value!r} is negative")
    return ms


def to_ticks(value, dt_ms: float) -> int:
    """Convert a duration to an integer number of ticks of ``dt_ms``.

    Raises ``ValueError`` when the duration is not a whole number of ticks.
    """
    if not (math.isfinite(dt_ms) and dt_ms > 0):
        raise ValueError(f"the tick dt = {dt_ms!r} ms must be positive and finite")
    ms = to_ms(value)
    ticks = ms / dt_ms
    nearest = round(ticks)
    # Allow only floating-point noise (relative 1e-12, far above the ~1e-16 of the
    # parse and the division), never a fraction of a tick of a long duration.
    if abs(ticks - nearest) > max(1e-9, 1e-12 * abs(ticks)):
        raise ValueError(
            f"{value!r} is {ticks:.12g} ticks of dt = {dt_ms:g} ms, not a whole number "
            f"(use a multiple of {dt_ms:g} ms)"
        )
    return int(nearest)


def format_ms(ms: float) -> str:
    """Pretty-print milliseconds, e.g. 550000 -> '550 s'."""
    if ms >= 1e3 and ms % 1e3 == 0:
        return f"{ms / 1e3:g} s"
    return f"{ms:g} ms"
