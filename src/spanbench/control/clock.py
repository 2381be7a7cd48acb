"""Every process's clock against the control store's: one offset, measured once, at registration.

Phase and step boundaries are absolute instants, and a host whose clock is 2 s off would
otherwise measure a window 2 s away from everyone else's. So the instants that cross the
control store (START's ``start_unix_ns``, SET_TARGET's ``at_unix_ns``, any ``*_unix_ns``
key of an event's payload) are on the store's clock, and each process converts them to
its own when it reads them and from its own when it writes them.

Sign convention: ``offset = store clock − local clock``, so ``store = local + offset`` and
``local = store − offset``. A host whose clock runs 2 s ahead has an offset of −2 s.

Only instants are converted; durations stay on the monotonic and perf clocks, which no
offset touches.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

ROUNDS = 5  # round trips per measurement; the one with the shortest round trip is kept
_INSTANT_SUFFIX = "_unix_ns"


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One round trip: the local wall clock at the send and at the receipt, the store's between."""

    sent_ns: int
    store_ns: int
    received_ns: int

    @property
    def rtt_ns(self) -> int:
        return self.received_ns - self.sent_ns


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """store − local, and how sure we are of it (half the round trip it was read in)."""

    offset_ns: int = 0
    uncertainty_ns: int = 0
    rtt_ns: int = 0
    samples: int = 0  # 0: never measured (the identity: a process behaves as if its clock were the store's)

    @classmethod
    def of(cls, sample: ClockSample, samples: int = 1) -> ClockOffset:
        # The store read its clock somewhere inside the round trip; the midpoint is the best
        # guess, wrong by at most half the round trip.
        mid = sample.sent_ns + sample.rtt_ns // 2
        return cls(sample.store_ns - mid, sample.rtt_ns // 2, sample.rtt_ns, samples)

    @property
    def significant(self) -> bool:
        """Whether the offset is more than its own uncertainty: only then is correcting by it better."""
        return abs(self.offset_ns) > self.uncertainty_ns

    @property
    def applied_ns(self) -> int:
        """The correction the conversions make: the offset when it is significant, else 0.

        An offset inside its uncertainty is the round trip's asymmetry as much as the clocks'
        (tens of ms to a remote store): hosts that agree within it keep their own clocks, and
        behave exactly as they did before clocks were measured.
        """
        return self.offset_ns if self.significant else 0

    def to_store(self, local_ns: int) -> int:
        return local_ns + self.applied_ns

    def to_local(self, store_ns: int) -> int:
        return store_ns - self.applied_ns

    def as_dict(self) -> dict[str, Any]:
        """For results: ``offset_ms``, ``uncertainty_ms``, ``rtt_ms``, ``samples``, ``applied``."""
        return {"offset_ms": self.offset_ns / 1e6, "uncertainty_ms": self.uncertainty_ns / 1e6,
                "rtt_ms": self.rtt_ns / 1e6, "samples": self.samples, "applied": self.significant}

    def attributes(self) -> dict[str, float | int | bool]:
        """Span attributes: what ``spanbench gaps`` needs to put this process's spans on the store's clock."""
        return {"spanbench.clock.offset_ms": self.offset_ns / 1e6,
                "spanbench.clock.uncertainty_ms": self.uncertainty_ns / 1e6,
                "spanbench.clock.samples": self.samples, "spanbench.clock.applied": self.significant}

    # -- payloads: every ``*_unix_ns`` key is an instant --------------------------------------

    def payload_to_store(self, payload: dict[str, Any]) -> dict[str, Any]:
        return _shift(payload, self.applied_ns)

    def payload_to_local(self, payload: dict[str, Any]) -> dict[str, Any]:
        return _shift(payload, -self.applied_ns)

    def datetime_to_store(self, value: datetime) -> datetime:
        return value + timedelta(microseconds=self.applied_ns / 1e3) if self.applied_ns else value


def _shift(payload: dict[str, Any], by_ns: int) -> dict[str, Any]:
    if not by_ns:
        return payload
    return {k: (int(v) + by_ns if k.endswith(_INSTANT_SUFFIX) and isinstance(v, int) and not isinstance(v, bool)
                else v)
            for k, v in payload.items()}


def timed_blocking(read_store_ns: Callable[[], int]) -> ClockSample:
    """One blocking round trip timed around ``read_store_ns()`` (a Snowflake session's thread)."""
    sent, p0 = time.time_ns(), time.perf_counter_ns()
    store_ns = int(read_store_ns())
    # The round trip on the perf clock: a wall-clock step in between cannot distort it.
    return ClockSample(sent, store_ns, sent + time.perf_counter_ns() - p0)


async def timed(read_store_ns: Callable[[], Awaitable[int]]) -> ClockSample:
    """One round trip timed around ``await read_store_ns()``, as ``timed_blocking``."""
    sent, p0 = time.time_ns(), time.perf_counter_ns()
    store_ns = int(await read_store_ns())
    return ClockSample(sent, store_ns, sent + time.perf_counter_ns() - p0)


def rounds_for(store: Any) -> int:
    """A store's own count (``clock_rounds``: Snowflake's round trips cost tens of ms each), else ROUNDS."""
    return int(getattr(store, "clock_rounds", ROUNDS))


async def measure(one_round_trip: Callable[[], Awaitable[ClockSample]], rounds: int = ROUNDS) -> ClockOffset:
    """``rounds`` round trips; the offset of the one with the shortest round trip (the least
    queueing, so the tightest bound on when the store read its clock)."""
    samples = [await one_round_trip() for _ in range(max(1, rounds))]
    return ClockOffset.of(min(samples, key=lambda s: s.rtt_ns), len(samples))

