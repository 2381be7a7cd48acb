"""``spanbench check SCENARIO [--target-dsn …]``: a scenario validated without running it.

Every problem is one line naming where it is (the query by name, the param, the key), so a
file with three mistakes shows three lines at once. With a DSN, every statement is prepared
(PostgreSQL) or compiled (Snowflake) on the target, and each parameter's column is looked
up; nothing is written.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spanbench.scenario import WORKLOAD_KEYS, Workload, dialect_of, problems


def read_toml(path: Path) -> dict[str, Any]:
    from spanbench.errors import ConfigError

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"scenario file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario file {path} is not valid TOML: {exc}") from None


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """('queries', 1, 'weight') -> "query 'tpcb': weight"; ('params', 'aid', 'int', 'min') -> "param 'aid': min"."""
    if len(loc) >= 2 and loc[0] == "queries" and isinstance(loc[1], int):
        queries = raw.get("queries") or []
        name = queries[loc[1]].get("name") if loc[1] < len(queries) and isinstance(queries[loc[1]], dict) else None
        head = f"query {name!r}" if name else f"queries[{loc[1]}]"
        rest = [str(p) for p in loc[2:]]
        if len(rest) >= 2 and rest[0] == "transaction":
            rest = [f"statement {int(rest[1]) + 1}", *rest[2:]]
        return head + (": " + ".".join(rest) if rest else "")
    if len(loc) >= 2 and loc[0] == "params":
        kinds = {"int", "pool", "choice", "string", "uuid", "timestamp"}
        rest = [str(p) for p in loc[2:] if str(p) not in kinds]
        return f"param {loc[1]!r}" + (": " + ".".join(rest) if rest else "")
    return ".".join(str(p) for p in loc) or "scenario"


def _describe(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    out = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing"
        value = err.get("input")
        shown = "" if isinstance(value, (dict, list)) or err["type"] in ("missing", "extra_forbidden") else f" (got {value!r})"
        out.append(f"{_where(tuple(err['loc']), raw)}: {msg}{shown}")
    return out


def static_problems(raw: dict[str, Any], target_dsn: str | None) -> tuple[list[str], Workload | None]:
    """Keys, types, names and placeholders: every problem found without a database."""
    from spanbench.settings import Settings

    out: list[str] = []
    known = set(Settings.model_fields)
    for key in sorted(set(raw) - known):
        out.append(f"{key}: unknown key")
    flat = {k: v for k, v in raw.items() if k in known and k not in WORKLOAD_KEYS}
    if target_dsn:
        flat["target_dsn"] = target_dsn
    try:
        Settings(**flat)
    except ValidationError as exc:
        out += _describe(exc, raw)
    workload = None
    if "queries" not in raw:
        if raw.get("params"):
            out.append("params: given without [[queries]]")
        return out, None
    if raw.get("version") != 1:
        out.append(f"version: a scenario with queries needs version = 1 (got {raw.get('version')!r})")
    try:
        workload = Workload(**{k: raw[k] for k in ("queries", "params") if k in raw})
    except ValidationError as exc:
        out += _describe(exc, raw)
        partial = _valid_part(raw)  # the queries and params that are fine still get their checks
        if partial is not None:
            dialect = dialect_of(flat.get("target_dsn")) if flat.get("target_dsn") else guess_dialect(partial)
            broken = _raw_params(raw) - set(partial.params)  # already reported: not "unknown" too

            def known(line: str) -> bool:
                m = re.search(r"unknown param '([^']+)'", line)
                return m is None or m.group(1) not in broken

            out += [p for p in problems(partial, dialect) if known(p)]
        return out, None
    out += problems(workload, dialect_of(flat.get("target_dsn")) if flat.get("target_dsn") else guess_dialect(workload))
    return out, workload


def guess_dialect(workload: Workload) -> str:
    """Without a DSN, the placeholder style the file uses: ? only (no $n) reads as Snowflake."""
    from spanbench.sql import code_only

    codes = [code_only(st.sql) for q in workload.queries for st in q.statements]
    if any("?" in c for c in codes) and not any(re.search(r"\$\d", c) for c in codes):
        return "snowflake"
    return "postgresql"


async def target_problems(workload: Workload, dsn: str) -> list[str]:
    """Each statement prepared on the target, each parameter's column looked up: one line per failure."""
    from spanbench.settings import Settings
    from spanbench.targets.base import QuerySpec
    from spanbench.targets.open import open_target

    target = await open_target(dsn, Settings(target_dsn=dsn))
    out: list[str] = []
    try:
        conn = await target.admin()
        for q in workload.queries:
            for i, st in enumerate(q.statements):
                where = f"query {q.name!r}" + (f" statement {i + 1}" if q.transaction is not None else "")
                spec = QuerySpec(kind=q.name, operation="", sql=st.sql, collection="")
                try:
                    await conn.prepare([spec])
                except Exception as exc:  # noqa: BLE001 - each failure is one line of the report
                    out.append(f"{where}: {_error_text(exc)}")
        for name, p in workload.params.items():
            column = getattr(p, "column", None)
            if not column:
                continue
            table, col = column.rsplit(".", 1)
            try:
                await conn.fetch_all(f"SELECT {col} FROM {table} WHERE 1 = 0")
            except Exception as exc:  # noqa: BLE001
                out.append(f"param {name!r}: column {column}: {_error_text(exc)}")
    finally:
        await target.close()
    return out


def _error_text(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    text = " ".join(str(msg).split())[:300]
    text = text.removeprefix("query ").split(" does not compile on Snowflake: ", 1)[-1]
    state = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {state})" if state and "SQLSTATE" not in text else text


def check(path: Path, target_dsn: str | None) -> tuple[list[str], str]:
    """(problems, the summary line when there are none)."""
    raw = read_toml(path)
    dsn = target_dsn or raw.get("target_dsn")
    found, workload = static_problems(raw, dsn)
    if found:
        return found, ""
    if workload is None:
        summary = "the built-in demo (no [[queries]])"
    else:
        summary = f"{len(workload.queries)} queries ({', '.join(workload.kinds)}), {len(workload.params)} params"
    if dsn and workload is not None:
        from spanbench import aio
        from spanbench.dsn import check_dsn, redact_dsn

        check_dsn(dsn)
        found = aio.run(target_problems(workload, dsn))
        summary += f"; every statement prepared on {redact_dsn(dsn)}"
    return found, summary


def _raw_params(raw: dict[str, Any]) -> set[str]:
    params = raw.get("params")
    return set(params) if isinstance(params, dict) else set()


def _valid_part(raw: dict[str, Any]) -> Workload | None:
    """A workload of the queries and params that validate on their own (None when no query does)."""
    from spanbench.scenario import Query

    queries = []
    for q in raw.get("queries") or []:
        try:
            queries.append(Query(**q) if isinstance(q, dict) else None)
        except (ValidationError, TypeError):
            continue
    params = {}
    for name, p in (raw.get("params") or {}).items() if isinstance(raw.get("params"), dict) else ():
        try:
            params[name] = Workload(queries=[{"name": "x", "sql": "SELECT 1"}], params={name: p}).params[name]
        except (ValidationError, TypeError):
            continue
    queries = [q for q in queries if q is not None]
    return Workload(queries=queries, params=params) if queries else None
