"""Durations as users type them: ``50ms``, ``2s``, ``1.5m``, ``250us``; a bare number is seconds."""

from __future__ import annotations

import re

from spanbench.errors import ConfigError

_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*([a-zµ]*)\s*$", re.I)


def parse_duration(text: str | float | int, *, default_unit: str = "s") -> float:
    """Seconds from ``text``. Raises ConfigError with a one-line message on bad input."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) * _UNITS_S[default_unit]
    m = _DURATION.match(str(text))
    if not m or (m.group(2) and m.group(2).lower() not in _UNITS_S):
        raise ConfigError(f"not a duration: {text!r} (use e.g. 50ms, 2s, 1.5m)")
    unit = (m.group(2) or default_unit).lower()
    return float(m.group(1)) * _UNITS_S[unit]


def format_duration(seconds: float) -> str:
    """Short human form: 850µs, 12.3ms, 4.56s, 2m03s."""
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 1e-3:
        return f"{sign}{s * 1e6:.0f}µs"
    if s < 1.0:
        return f"{sign}{s * 1e3:.1f}ms"
    if s < 60.0:
        return f"{sign}{s:.2f}s"
    return f"{sign}{int(s // 60)}m{s % 60:04.1f}s"
