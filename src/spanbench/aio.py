"""Run a coroutine on uvloop when it is there: asyncpg is about 1.6x faster on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def sleep_until_ns(at_ns: int) -> None:
    """Sleep to a wall-clock instant: the loop's timer for most of it, then a spin of at most
    1.5 ms, since a timer wakes up to a millisecond late and workers must open together."""
    left = (at_ns - time.time_ns()) / 1e9
    if left > 0.002:
        await asyncio.sleep(left - 0.0015)
    while time.time_ns() < at_ns:
        pass
