"""``spanbench pools build``: every pool of a scenario sampled from the target into the control store."""

from __future__ import annotations

import asyncio

from spanbench.control.open import open_control_store
from spanbench.errors import ConfigError
from spanbench.settings import Settings
from spanbench.targets.embedded import EmbeddedPostgres
from spanbench.targets.open import open_target
from spanbench.workload.pools import build_pools


async def build_pools_command(settings: Settings) -> dict[str, int]:
    """{pool name: values stored}. The control schema is created when missing, as a run does."""
    workload = settings.workload
    if workload is None or not workload.pool_params():
        raise ConfigError("the scenario has no pool parameters ([params.NAME] with kind = \"pool\")")
    embedded = None
    dsn = settings.target_dsn
    if dsn is None:
        embedded = EmbeddedPostgres(settings.embedded_dir)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        control = await open_control_store(settings.control_dsn or dsn, settings)
        try:
            await control.ensure_schema()
            target = await open_target(dsn, settings)
            try:
                return await build_pools(target, control, workload)
            finally:
                await target.close()
        finally:
            await control.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
