"""The control tables in the PostgreSQL dialect, in their own schema so they never mix with user tables.

The tables themselves are defined once, for both dialects, in ``schema.py``.
"""

from spanbench.control.schema import postgres_ddl

SCHEMA = "spanbench"

DDL = postgres_ddl(SCHEMA)
