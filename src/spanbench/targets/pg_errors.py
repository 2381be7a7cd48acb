"""asyncpg's and the OS's connection failures as one-line messages without secrets."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg

from spanbench.dsn import redact_dsn
from spanbench.errors import TargetError


def where(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    db = parts.path.lstrip("/") or "(default database)"
    return f"{host}{port}/{db}"


def connect_error(exc: BaseException, dsn: str, role: str, timeout: float) -> TargetError:
    """Translate a failed connect to the ``role`` database ("target" or "control store")."""
    at = where(dsn)
    user = urlsplit(dsn).username or "(default user)"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return TargetError(f"{role} {at}: password authentication failed for user {user!r}")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return TargetError(f"{role} {at}: user {user!r} is not allowed to connect ({exc})")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return TargetError(f"{role} {at}: database does not exist")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TargetError(f"{role} {at}: no answer within {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return TargetError(f"{role} {at}: connection refused (is the server running?)")
    if isinstance(exc, OSError):
        return TargetError(f"{role} {at}: cannot connect ({exc.strerror or exc})")
    if isinstance(exc, ValueError):  # asyncpg's DSN parser
        return TargetError(f"{role} DSN {redact_dsn(dsn)} is invalid: {exc}")
    return TargetError(f"{role} {at}: {type(exc).__name__}: {exc}")
