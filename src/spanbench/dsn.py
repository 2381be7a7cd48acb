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


SNOWFLAKE_INSTALL = "pip install 'spanbench[snowflake]'"


def check_dsn(dsn: str) -> str:
    """``dsn_system``, and ConfigError when the driver for that system is not installed."""
    system = dsn_system(dsn)
    require_driver(system)
    return system


def require_driver(system: str) -> None:
    """ConfigError, saying how to install it, when ``system``'s driver is missing (cheap: nothing is imported)."""
    if system == "snowflake" and not _module_found("snowflake.connector"):
        raise ConfigError(f"snowflake:// DSNs need the Snowflake connector, which is not installed: {SNOWFLAKE_INSTALL}")


def _module_found(name: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # its parent package is missing or broken
        return False


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


def where_of(dsn: str | None) -> str:
    """host:port/database of a DSN, for one-line messages: never a user or a password."""
    if not dsn:
        return "(embedded)"
    parts = urlsplit(dsn)
    if parts.scheme.startswith("snowflake"):
        return f"{parts.hostname or 'snowflake'}{parts.path or ''}"
    query = dict(parse_qsl(parts.query))
    host = parts.hostname or query.get("host") or "local socket"
    port = f":{parts.port}" if parts.port else ""
    db = parts.path.lstrip("/") or "(default database)"
    return f"{host}{port}/{db}"
