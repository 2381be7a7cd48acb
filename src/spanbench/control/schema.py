"""The control tables once, as data; each dialect renders its DDL from them.

PostgreSQL (``postgres_schema.py``) gets ``CREATE TABLE IF NOT EXISTS`` in its own schema,
with NOT NULL and defaults; Snowflake (``snowflake.py``) gets hybrid tables, or plain ones
where hybrid tables are not available, and keeps JSON as text. A column only one dialect
needs says so (``only``). tests/test_control_contract.py runs the same calls on both.
"""

from __future__ import annotations

from dataclasses import dataclass

# Logical types: what a column holds, whatever the dialect calls it.
TEXT, INT, BIGINT, FLOAT, TIMESTAMP, JSON = "text", "int", "bigint", "float", "timestamp", "json"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    default: str | None = None  # "now", "0", "{}": rendered per dialect
    only: str | None = None  # a dialect that alone has this column


@dataclass(frozen=True)
class Table:
    name: str  # as Snowflake spells it; PostgreSQL lower-cases it
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    def for_dialect(self, dialect: str) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.only in (None, dialect))


def _c(name: str, type: str, *, nn: bool = False, default: str | None = None, only: str | None = None) -> Column:
    return Column(name, type, nn, default, only)


RUN_STATUS = Table("RUN_STATUS", (
    _c("run_id", TEXT, nn=True), _c("status", TEXT, nn=True), _c("phase", TEXT), _c("scenario", JSON, nn=True),
    _c("traceparent", TEXT), _c("workers_expected", INT, nn=True), _c("created_at", TIMESTAMP, nn=True, default="now"),
    _c("start_time", TIMESTAMP), _c("warmup_start", TIMESTAMP), _c("measurement_start", TIMESTAMP),
    _c("measurement_end", TIMESTAMP), _c("end_time", TIMESTAMP), _c("updated_at", TIMESTAMP, nn=True, default="now"),
    _c("next_seq", BIGINT, nn=True, default="0"), _c("cancel_reason", TEXT),
), ("run_id",))

EVENTS = Table("RUN_CONTROL_EVENTS", (
    _c("run_id", TEXT, nn=True), _c("seq", BIGINT, nn=True), _c("type", TEXT, nn=True), _c("scope", TEXT, nn=True),
    _c("payload", JSON, nn=True, default="{}"), _c("created_at", TIMESTAMP, nn=True, default="now"),
    # Snowflake appends an event in two statements where it has no atomic UPDATE … RETURNING:
    # the id finds the row again.
    _c("event_id", TEXT, only="snowflake"),
), ("run_id", "seq"))

HEARTBEATS = Table("WORKER_HEARTBEATS", (
    _c("run_id", TEXT, nn=True), _c("worker_id", TEXT, nn=True), _c("group_id", INT, nn=True),
    _c("status", TEXT, nn=True), _c("phase", TEXT), _c("last_beat", TIMESTAMP, nn=True, default="now"),
    _c("active_connections", INT, nn=True, default="0"), _c("target_connections", INT, nn=True, default="0"),
    _c("queries", BIGINT, nn=True, default="0"), _c("errors", BIGINT, nn=True, default="0"), _c("last_error", TEXT),
    _c("pid", INT), _c("host", TEXT),
), ("run_id", "worker_id"))

RESULTS = Table("TEST_RESULTS", (
    _c("run_id", TEXT, nn=True), _c("worker_id", TEXT, nn=True), _c("scope", TEXT, nn=True), _c("status", TEXT, nn=True),
    _c("started_at", TIMESTAMP), _c("ended_at", TIMESTAMP), _c("queries", BIGINT, nn=True, default="0"),
    _c("errors", BIGINT, nn=True, default="0"), _c("qps", FLOAT, nn=True, default="0"),
    _c("measurement_seconds", FLOAT, nn=True, default="0"), _c("latency", JSON, nn=True, default="{}"),
    _c("histograms", JSON, nn=True, default="{}"), _c("details", JSON, nn=True, default="{}"),
), ("run_id", "worker_id"))

VALUE_POOLS = Table("TEMPLATE_VALUE_POOLS", (
    _c("pool_name", TEXT, nn=True), _c("ordinal", INT, nn=True), _c("value", JSON, nn=True),
), ("pool_name", "ordinal"))

TABLES: tuple[Table, ...] = (RUN_STATUS, EVENTS, HEARTBEATS, RESULTS, VALUE_POOLS)

# ---------------------------------------------------------------- PostgreSQL

_PG_TYPES = {TEXT: "text", INT: "integer", BIGINT: "bigint", FLOAT: "double precision", TIMESTAMP: "timestamptz",
             JSON: "jsonb"}
_PG_DEFAULTS = {"now": "now()", "0": "0", "{}": "'{}'"}


def postgres_ddl(schema: str) -> str:
    """Every control table, in ``schema`` (created if missing); safe to run again."""
    out = [f"CREATE SCHEMA IF NOT EXISTS {schema};"]
    for table in TABLES:
        cols = []
        for c in table.for_dialect("postgresql"):
            text = f"{c.name} {_PG_TYPES[c.type]}"
            if c.not_null:
                text += " NOT NULL"
            if c.default is not None:
                text += f" DEFAULT {_PG_DEFAULTS[c.default]}"
            cols.append(text)
        if len(table.key) == 1:
            cols = [col + " PRIMARY KEY" if col.startswith(table.key[0] + " ") else col for col in cols]
        else:
            cols.append(f"PRIMARY KEY ({', '.join(table.key)})")
        out.append(f"CREATE TABLE IF NOT EXISTS {schema}.{table.name.lower()} (\n    " + ",\n    ".join(cols) + "\n);")
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------- Snowflake

_SF_TYPES = {TEXT: "VARCHAR", INT: "NUMBER(38,0)", BIGINT: "NUMBER(38,0)", FLOAT: "FLOAT", TIMESTAMP: "TIMESTAMP_TZ",
             JSON: "VARCHAR"}  # JSON kept as text: portable, and the same in hybrid and plain tables


def snowflake_columns(table: Table) -> list[tuple[str, str, bool]]:
    """(name, Snowflake type, is JSON) of each column, in order."""
    return [(c.name, "VARCHAR(64)" if c.name == "event_id" else _SF_TYPES[c.type], c.type == JSON)
            for c in table.for_dialect("snowflake")]
