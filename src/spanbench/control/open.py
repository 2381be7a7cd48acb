"""Open the control store named by a DSN (the module for each dialect is imported lazily)."""

from __future__ import annotations

from spanbench.control.store import ControlStore
from spanbench.dsn import check_dsn
from spanbench.settings import Settings


async def open_control_store(dsn: str, settings: Settings) -> ControlStore:
    if check_dsn(dsn) == "snowflake":
        from spanbench.control.snowflake import SnowflakeControlStore

        return await SnowflakeControlStore.open(dsn, settings)
    from spanbench.control.postgres import PostgresControlStore

    return await PostgresControlStore.open(dsn, settings)
