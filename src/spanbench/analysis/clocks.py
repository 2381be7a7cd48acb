"""Each process's spans on the control store's clock, from the offset the process recorded.

A worker measures its clock against the control store's at registration and records the
offset (store − local) and its uncertainty as span attributes (``control/clock.py``
writes them; the names are repeated here because analysis imports nothing outside it).
A host whose clock is 2 s off would otherwise draw its spans 2 s away from the
orchestrator's, and the gap report would read that as skew, or as time nobody claims.
"""

from __future__ import annotations

from collections.abc import Iterable

from spanbench.analysis.model import WORKER_ID_ATTR, Span

OFFSET_ATTR = "spanbench.clock.offset_ms"
UNCERTAINTY_ATTR = "spanbench.clock.uncertainty_ms"
# Below this, a correction is smaller than anything the gap report shows, and shifting one
# process's spans by a few microseconds of noise would only move its skew about.
MIN_SHIFT_NS = 1_000_000


def recorded_offsets(spans: Iterable[Span]) -> dict[str, tuple[int, int]]:
    """process key -> (offset, uncertainty) in ns, from the first span of it that says them."""
    out: dict[str, tuple[int, int]] = {}
    for span in spans:
        if span.process_key in out or OFFSET_ATTR not in span.attributes:
            continue
        try:
            offset = float(span.attributes[OFFSET_ATTR])
            uncertainty = float(span.attributes.get(UNCERTAINTY_ATTR) or 0.0)
        except (TypeError, ValueError):
            continue
        out[span.process_key] = (int(offset * 1e6), int(abs(uncertainty) * 1e6))
    return out


def to_store_clock(spans: list[Span]) -> list[str]:
    """Shift every span of a process whose recorded offset exceeds its uncertainty (and
    ``MIN_SHIFT_NS``) by that offset, in place; one line per process shifted, for the warnings."""
    shifts = {key: off for key, (off, unc) in recorded_offsets(spans).items()
              if abs(off) > unc and abs(off) >= MIN_SHIFT_NS}
    if not shifts:
        return []
    names: dict[str, str] = {}
    for span in spans:
        off = shifts.get(span.process_key)
        if off is None:
            continue
        span.start_ns += off
        span.end_ns += off
        who = span.worker_id or span.resource.get(WORKER_ID_ATTR)
        if who is not None or span.process_key not in names:
            names[span.process_key] = str(who or span.service)  # a worker's id wherever a span says it
    return [f"{names[key]}: spans shifted by {off / 1e6:+.1f} ms onto the control store's clock "
            "(the clock offset it measured)" for key, off in shifts.items() if key in names]
