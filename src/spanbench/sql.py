"""What spanbench reads from a statement's text: its placeholders and its first keyword.

A leaf module (no spanbench imports), shared by the scenario model, ``spanbench check``
and the targets. It never rewrites SQL: parameters are always bound by the driver.
"""

from __future__ import annotations

import re

# String literals, quoted identifiers and comments, where a "$1" or "?" is text, not a placeholder.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
_DOLLAR = re.compile(r"\$(\d+)")
_KEYWORD = re.compile(r"\s*\(*\s*([A-Za-z]+)")
_READS = frozenset({"SELECT", "WITH", "SHOW", "VALUES", "TABLE", "EXPLAIN", "DESCRIBE"})


def code_only(sql: str) -> str:
    """The statement with literals, quoted identifiers and comments blanked out."""
    return _NOT_CODE.sub(" ", sql)


def placeholders(sql: str, dialect: str) -> tuple[int, str | None]:
    """(how many parameters the statement takes, a problem with its placeholders or None).

    PostgreSQL numbers them (``$1``, ``$2``: every number from 1 to the highest must be
    there); Snowflake's ``?`` are positional, one parameter each.
    """
    code = code_only(sql)
    if dialect == "snowflake":
        if _DOLLAR.search(code):
            return 0, "uses $n placeholders; Snowflake takes ?"
        return code.count("?"), None
    numbers = {int(n) for n in _DOLLAR.findall(code)}
    if not numbers:
        if "?" in code.replace("??", "").replace("?|", "").replace("?&", ""):
            return 0, "uses ? placeholders; PostgreSQL takes $1, $2, …"
        return 0, None
    highest = max(numbers)
    missing = sorted(set(range(1, highest + 1)) - numbers)
    if missing:
        return highest, f"placeholder ${missing[0]} is missing (the highest is ${highest})"
    return highest, None


def first_keyword(sql: str) -> str:
    """SELECT, UPDATE, INSERT, …: the statement's first keyword, upper-case ("" when none)."""
    m = _KEYWORD.match(code_only(sql))
    return m.group(1).upper() if m else ""


def access_of(sql: str) -> str:
    """READ for a statement whose first keyword only reads, WRITE for anything else."""
    kw = first_keyword(sql)
    if kw == "WITH":  # a CTE may still write: WITH … UPDATE / INSERT / DELETE
        body = code_only(sql).upper()
        if re.search(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", body):
            return "WRITE"
    return "READ" if kw in _READS else "WRITE"


def collection_of(sql: str) -> str:
    """The first table a statement names after FROM, INTO, UPDATE or JOIN ("" when none)."""
    m = re.search(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+([A-Za-z_][\w.$]*)", code_only(sql), re.I)
    return m.group(1) if m else ""
