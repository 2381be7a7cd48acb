"""Which database a DSN names, and its printable form with every secret removed."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from spanbench.errors import ConfigError

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
SNOWFLAKE_SCHEMES = frozenset({"snowflake"})
_SECRET_PARAMS = frozenset({"password", "passcode", "token", "private_key_file_pwd", "private_key_passphrase", "sslpassword"})


def dsn_system(dsn: str) -> str:
    """``postgresql`` or ``snowflake``; ConfigError for anything else."""
    scheme = urlsplit(dsn).scheme.lower() if "://" in dsn else ""
    if scheme in POSTGRES_SCHEMES:
        return "postgresql"
    if scheme in SNOWFLAKE_SCHEMES:
        return "snowflake"
    shown = scheme or redact_dsn(dsn)
    raise ConfigError(f"unsupported DSN scheme {shown!r}: use postgresql://… or snowflake://…")


def redact_dsn(dsn: str) -> str:
    """The DSN with its password and secret query parameters replaced by ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if password else f"{userinfo}@{hostport}"
    query = urlencode(
        [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="/:*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
