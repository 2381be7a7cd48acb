"""``spanbench init``: create and fill the demo table, on the embedded server or a DSN."""

from __future__ import annotations

import asyncio
import time

from spanbench.settings import Settings
from spanbench.targets.embedded import EmbeddedPostgres
from spanbench.targets.open import open_target
from spanbench.workload.demo import init_demo_table


async def init_demo(settings: Settings) -> float:
    embedded = None
    dsn = settings.target_dsn
    if dsn is None:
        embedded = EmbeddedPostgres(settings.embedded_dir)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        t0 = time.monotonic()
        target = await open_target(dsn, settings)
        try:
            await init_demo_table(target, settings.rows)
        finally:
            await target.close()
        return time.monotonic() - t0
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
