"""A real fakesnow server (``fakesnow[server]``) in its own process on loopback.

The tests talk to it with the real snowflake-connector-python over HTTP: no patch mode, no
mocks. It runs as a separate process (``python -m fakesnow -s``), so its CPU does not share
the test's GIL and connect timings mean something. Its log (uvicorn access lines and the
SQL of every statement it refused) goes to a file the tests can read: fakesnow has no
QUERY_TAG, so the log is where a test sees that ``ALTER SESSION SET QUERY_TAG`` reached
the server with the right value.

All sessions share one in-memory DuckDB, so every test uses its own database name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

USER = "fake"
PASSWORD = "snow"
ACCOUNT = "fakesnow"


@dataclass
class FakesnowServer:
    host: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def dsn(self, database: str | None = None, schema: str = "PUBLIC", *, user: str = USER,
            password: str | None = PASSWORD, **params: str) -> str:
        """A spanbench Snowflake DSN for this server (a fresh database when none is named)."""
        db = database or unique_name()
        auth = quote(user) + (f":{quote(password, safe='')}" if password is not None else "")
        query = "&".join([f"host={self.host}", f"port={self.port}", "protocol=http"]
                         + [f"{k}={quote(v, safe='')}" for k, v in params.items()])
        return f"snowflake://{auth}@{ACCOUNT}/{db}/{schema}?{query}"

    def connect_kwargs(self, database: str | None = None, schema: str | None = None) -> dict[str, object]:
        """Keyword arguments for snowflake.connector.connect against this server."""
        kw: dict[str, object] = dict(user=USER, password=PASSWORD, account=ACCOUNT, host=self.host, port=self.port,
                                     protocol="http", paramstyle="qmark", platform_detection_timeout_seconds=0.0,
                                     login_timeout=10, network_timeout=30)
        if database:
            kw["database"] = database
        if schema:
            kw["schema"] = schema
        return kw

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None


def unique_name(prefix: str = "SB") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10].upper()}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def fakesnow_server(host: str = "127.0.0.1", startup_timeout: float = 30.0) -> Iterator[FakesnowServer]:
    """Start ``python -m fakesnow -s`` on a free loopback port; stop it (SIGINT, then kill) after."""
    port = free_port(host)
    log_dir = Path(tempfile.mkdtemp(prefix="spanbench-fakesnow-"))
    log_path = log_dir / "fakesnow.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the process writes it until it stops
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANBENCH_", "OTEL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakesnow", "-s", "--host", host, "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    server = FakesnowServer(host, port, log_path, proc)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"fakesnow server exited with {proc.returncode}:\n{server.log_text()[-2000:]}")
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fakesnow server did not listen on {host}:{port}") from None
                time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


try:  # the fixture, for test modules that import it (``from support.fakesnow_server import fakesnow``)
    import pytest

    @pytest.fixture(scope="session")
    def fakesnow() -> Iterator[FakesnowServer]:
        with fakesnow_server() as server:
            yield server
except ImportError:  # pragma: no cover - used outside pytest
    pass
