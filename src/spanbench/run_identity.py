"""What a run ran, against what, with what: the facts that decide whether two runs compare.

results.json records them (``spanbench_version``, ``scenario``, ``target``) so that
``spanbench diff`` and the regression gate can say "these runs are not comparable" and
list why, instead of blaming the code for a change of settings, workload or server.

The scenario hash covers what decides the work itself: the queries and their parameters,
or, for the built-in demo, the table size and the update share. Settings that shape the load
(connections, durations, the load model) are compared one by one instead, so a difference
is named, not hidden in a hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# The settings keys that make up the workload (see the module docstring).
SCENARIO_KEYS = ("version", "queries", "params", "rows", "update_share", "point_select_only")
_VERSION_TIMEOUT_S = 5.0  # a target that does not answer after the run must not hold the report


def spanbench_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spanbench")
    except PackageNotFoundError:  # a source tree that was never installed
        from spanbench import __version__

        return str(__version__)


def scenario_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The workload part of a run's public settings, hashed: equal hashes, the same work."""
    part = {key: settings.get(key) for key in SCENARIO_KEYS}
    if part.get("queries") is not None:
        # A scenario's own queries: the demo's knobs do nothing, so they must not split hashes.
        part = {k: v for k, v in part.items() if k not in ("rows", "update_share", "point_select_only")}
    canonical = json.dumps(part, sort_keys=True, separators=(",", ":"), default=str)
    queries = settings.get("queries")
    names = [q.get("name") for q in queries if isinstance(q, Mapping)] if isinstance(queries, list) else None
    return {"hash": hashlib.sha256(canonical.encode()).hexdigest()[:16], "kind": "demo" if names is None else "scenario",
            "queries": names}


def target_of(settings: Mapping[str, Any], version: str | None) -> dict[str, Any]:
    """System, server (host:port/database, never a credential) and server version."""
    dsn = settings.get("target_dsn")
    if not dsn:
        return {"system": "postgresql", "server": "embedded", "version": version}
    parts = urlsplit(str(dsn))
    system = "snowflake" if parts.scheme.startswith("snowflake") else "postgresql"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    # A socket folder (?host=/tmp/...) names the server as well as a host name does.
    socket = next((v for k, v in _query_pairs(parts.query) if k == "host"), None)
    where = socket if socket and socket.startswith("/") else f"{host}{port}"
    return {"system": system, "server": f"{where}{parts.path or ''}", "version": version}


def _query_pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


def identity(settings: Mapping[str, Any], server_version: str | None) -> dict[str, Any]:
    """The results.json keys this module owns."""
    return {"spanbench_version": spanbench_version(), "scenario": scenario_of(settings),
            "target": target_of(settings, server_version)}


async def server_version(dsn: str, settings: Any, tracer: Any | None = None) -> str | None:
    """The target's own version string, best effort: None when it cannot be asked.

    Asked once, after the load, on a connection of its own: never on the path to the
    first query, never in the measurement. With a tracer, in a ``target.server_version``
    span, which also keeps the connect's attributes (login time, session) off its parent.
    """
    from contextlib import nullcontext

    from spanbench.dsn import check_dsn
    from spanbench.targets.open import open_target

    sql = "SELECT CURRENT_VERSION()" if check_dsn(dsn) == "snowflake" else "SHOW server_version"

    async def ask() -> str | None:
        target = await open_target(dsn, settings)
        try:
            rows = await (await target.admin()).fetch_all(sql)
        finally:
            await target.close()
        return str(rows[0][0]) if rows and rows[0] else None

    with tracer.start_as_current_span("target.server_version") if tracer is not None else nullcontext() as span:
        try:
            version = await asyncio.wait_for(ask(), _VERSION_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a version we cannot read is "unknown", never a failed run
            if span is not None:
                span.set_attribute("spanbench.server_version.error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            return None
        if span is not None and version is not None:
            span.set_attribute("spanbench.target.version", version)
        return version
