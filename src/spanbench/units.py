"""Durations as users type them: ``50ms``, ``2s``, ``1.5m``, ``1m30s``, ``1h2m3.5s``, ``250us``.

A bare number is seconds. Compound durations list their parts from the largest unit to
the smallest, each unit once (``1m30s``, never ``30s1m``).
"""

from __future__ import annotations

import re

from spanbench.errors import ConfigError

_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE = re.compile(rf"^\s*(-?{_NUMBER})\s*$")
_PART = re.compile(rf"\s*({_NUMBER})\s*(min|ms|us|µs|ns|h|m|s)", re.I)
_COMPOUND = re.compile(rf"^\s*(-?)((?:\s*{_NUMBER}\s*(?:min|ms|us|µs|ns|h|m|s))+)\s*$", re.I)
ACCEPTED_FORMS = "a number with a unit h, m, s, ms, us or ns (500ms, 2s, 1.5m, 1m30s, 1h2m3.5s), or a bare number of seconds"


def parse_duration(text: str | float | int, *, default_unit: str = "s") -> float:
    """Seconds from ``text``. Raises ConfigError with a one-line message on bad input."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) * _UNITS_S[default_unit]
    s = str(text)
    bare = _BARE.match(s)
    if bare:
        return float(bare.group(1)) * _UNITS_S[default_unit]
    m = _COMPOUND.match(s)
    if m:
        total, last_scale = 0.0, float("inf")
        for number, unit in _PART.findall(m.group(2)):
            scale = _UNITS_S[unit.lower()]
            if scale >= last_scale:  # 30s1m, 1s2s: a typo, not a duration
                break
            total, last_scale = total + float(number) * scale, scale
        else:
            return -total if m.group(1) else total
    raise ConfigError(f"not a duration: {s!r} (use {ACCEPTED_FORMS})")


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
