"""Open the database under test named by a DSN (the module for each system is imported lazily)."""

from __future__ import annotations

from spanbench.dsn import check_dsn
from spanbench.settings import Settings
from spanbench.targets.base import Target


async def open_target(dsn: str, settings: Settings) -> Target:
    if check_dsn(dsn) == "snowflake":
        from spanbench.targets.snowflake import SnowflakeTarget

        return await SnowflakeTarget.open(dsn, settings)
    from spanbench.targets.postgres import PostgresTarget

    return await PostgresTarget.open(dsn, settings)
