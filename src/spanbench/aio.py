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


async def sleep_until_ns(at_ns: int, *, precise: bool = True) -> None:
    """Sleep to a wall-clock instant.

    The loop's timer (1 ms resolution on uvloop) for most of it; with ``precise``, a blocking
    sleep for the next part and a spin of the last 0.2 ms, since workers must open their load
    together. A long spin would be worse: on a small machine three spinning processes take
    turns on two cores, and the one that waits loses a scheduler tick (~4 ms).
    """
    left = (at_ns - time.time_ns()) / 1e9
    if left > 0.003:
        await asyncio.sleep(left - 0.002)
    if not precise:
        left = (at_ns - time.time_ns()) / 1e9
        if left > 0:
            await asyncio.sleep(left)
        return
    left = (at_ns - time.time_ns()) / 1e9
    if left > 0.0004:
        time.sleep(left - 0.0002)
    while time.time_ns() < at_ns:
        pass
