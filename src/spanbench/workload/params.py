"""Parameter values, drawn before the load into plain lists (the hot loop only indexes them).

Every generator takes its own ``random.Random`` (seeded per run, worker and parameter), so a
run's values are reproducible; the bulk draws use ``Random.choices`` over a range, which runs
at C speed (65k keys in ~10 ms, where one ``randint`` per key took 65 ms).
"""

from __future__ import annotations

import math
import random
import string
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from spanbench.scenario import ChoiceParam, IntParam, Param, PoolParam, StringParam, TimestampParam, UuidParam

_ALPHABET = string.ascii_letters + string.digits


def draw(param: Param, n: int, rng: random.Random, *, group: int = 0, groups: int = 1,
         pool: Sequence[Any] = (), int_range: tuple[int, int] | None = None) -> list[Any]:
    """``n`` values of ``param`` for worker ``group`` of ``groups``.

    ``pool`` holds a pool parameter's sampled values (all of them: this worker takes its
    shard); ``int_range`` the (min, max) read from the target for an int with ``column``.
    """
    if isinstance(param, IntParam):
        lo = param.min if param.min is not None else (int_range or (0, 0))[0]
        hi = param.max if param.max is not None else (int_range or (0, 0))[1]
        if param.distribution == "zipf":
            return zipf(lo, hi, param.s, n, rng)
        if param.distribution == "sequential":
            return sequential(lo, hi, n, group, groups)
        return rng.choices(range(lo, hi + 1), k=n)
    if isinstance(param, PoolParam):
        shard = pool_shard(pool, group, groups)
        return rng.choices(shard, k=n) if shard else []
    if isinstance(param, ChoiceParam):
        return rng.choices(param.values, k=n)
    if isinstance(param, StringParam):
        k = param.length
        return ["".join(rng.choices(_ALPHABET, k=k)) for _ in range(n)]
    if isinstance(param, UuidParam):
        # Strings, not uuid.UUID: asyncpg binds a str to uuid and text columns alike.
        return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]
    if isinstance(param, TimestampParam):
        now = datetime.now(timezone.utc)
        if param.spread <= 0:
            return [now] * n
        us = int(param.spread * 1e6)
        return [now - timedelta(microseconds=rng.randrange(us + 1)) for _ in range(n)]
    raise TypeError(f"unknown parameter kind: {param!r}")


def pool_shard(values: Sequence[Any], group: int, groups: int) -> list[Any]:
    """Worker ``group``'s share of a pool: every ``groups``-th value from offset ``group``.

    Disjoint across workers; a pool smaller than the workers gives each worker one value,
    shared with the workers it wraps onto.
    """
    if not values:
        return []
    shard = list(values[group::groups])
    return shard or [values[group % len(values)]]


def sequential(lo: int, hi: int, n: int, group: int, groups: int) -> list[int]:
    """lo, lo+1, … wrapping at hi; worker g starts g/groups of the way in, so workers do not overlap at first."""
    span = hi - lo + 1
    start = (span * group) // groups
    return [lo + (start + i) % span for i in range(n)]


def zipf(lo: int, hi: int, s: float, n: int, rng: random.Random) -> list[int]:
    """Zipf-distributed integers: lo is rank 1 (the most drawn), P(rank k) ∝ 1 / k^s.

    Rejection-inversion (Hörmann and Derflinger, 1996): exact for any s > 0 and any range,
    with no table of the range's size, about 1.1 uniform draws per value.
    """
    count = hi - lo + 1
    if count == 1:
        return [lo] * n

    def h(x: float) -> float:  # integral of x^-s
        return math.log(x) if s == 1.0 else (x ** (1.0 - s) - 1.0) / (1.0 - s)

    def h_inv(y: float) -> float:
        return math.exp(y) if s == 1.0 else (1.0 + y * (1.0 - s)) ** (1.0 / (1.0 - s))

    h_x1 = h(1.5) - 1.0
    h_n = h(count + 0.5)
    k_s = 2.0 - h_inv(h(2.5) - 2.0 ** -s)
    rand = rng.random
    out: list[int] = []
    append = out.append
    while len(out) < n:
        u = h_n + rand() * (h_x1 - h_n)
        x = h_inv(u)
        k = int(x + 0.5)
        if k < 1:
            k = 1
        elif k > count:
            k = count
        if k - x <= k_s or u >= h(k + 0.5) - k ** -s:
            append(lo + k - 1)
    return out


def zipf_share(count: int, s: float, top: int) -> float:
    """The expected share of the ``top`` most frequent of ``count`` zipf ranks (for tests and docs)."""
    def harmonic(m: int) -> float:
        return sum(k ** -s for k in range(1, m + 1))

    return harmonic(top) / harmonic(count)
