"""The query mix and the keys, fixed before the load starts so the hot loop only indexes lists."""

from __future__ import annotations

import random
from collections.abc import Sequence

from spanbench.targets.base import QuerySpec, TableProfile

MIX_LENGTH = 1000
KEYS_LENGTH = 1 << 16


def build_mix(queries: Sequence[QuerySpec], update_share: float) -> list[int]:
    """A cycle of query-kind indexes with the updates spread evenly through it.

    Index 0 is the point lookup; index 1, when present, the update. Spreading them
    (instead of drawing at random per query) gives the exact share over every cycle.
    """
    if len(queries) == 1 or update_share <= 0:
        return [0]
    updates = round(MIX_LENGTH * update_share)
    mix = [0] * MIX_LENGTH
    for i in range(updates):
        mix[(i * MIX_LENGTH) // updates] = 1
    return mix


def build_keys(profile: TableProfile, pool: Sequence[int], *, seed: int) -> list[int]:
    """Keys for point queries: from the value pool when there is one, else uniform over the key range."""
    rng = random.Random(seed)
    # choices() over a range draws in C-speed batches: 65k keys in ~10 ms, where a
    # randint() per key took 65 ms (found as a gap in executor.setup by `spanbench gaps`).
    population = pool if pool else range(profile.min_key, max(profile.min_key, profile.max_key) + 1)
    return rng.choices(population, k=KEYS_LENGTH)
