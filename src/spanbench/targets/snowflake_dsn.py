"""Snowflake DSNs in snowflake-sqlalchemy's URL form, turned into connector keyword arguments.

    snowflake://USER[:PASSWORD]@ACCOUNT/DATABASE/SCHEMA?warehouse=W&role=R

Optional query parameters: ``host``, ``port`` and ``protocol`` (how tests reach a fakesnow
server on loopback), ``authenticator`` (passed through to the connector), ``private_key_file``
(key-pair auth; the passphrase comes from ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE``) and
``application``. The password may also come from ``SNOWFLAKE_PASSWORD``.

Secrets live only in the fields marked ``repr=False`` and in the dict that
``connect_kwargs()`` builds for one call to the connector; ``str()`` of a ``SnowflakeDsn``
is the redacted DSN.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from spanbench.dsn import redact_dsn
from spanbench.errors import ConfigError

PASSWORD_ENV = "SNOWFLAKE_PASSWORD"
PASSPHRASE_ENV = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"

_PARAMS = ("warehouse", "role", "host", "port", "protocol", "authenticator", "private_key_file", "application")
# Secrets are not accepted in the query string: they would end up in shell history and
# process listings. The password may sit in the userinfo part (as in every SQLAlchemy URL).
_REFUSED = {
    "password": f"put the password in the userinfo part or in {PASSWORD_ENV}",
    "private_key_file_pwd": f"set {PASSPHRASE_ENV} instead",
    "private_key_passphrase": f"set {PASSPHRASE_ENV} instead",
    "token": "token authentication is not supported in the DSN",
}


@dataclass(frozen=True)
class SnowflakeDsn:
    user: str
    account: str
    database: str | None
    schema: str | None
    warehouse: str | None = None
    role: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    authenticator: str | None = None
    private_key_file: str | None = None
    application: str | None = None
    redacted: str = ""
    password: str | None = field(default=None, repr=False, compare=False)
    private_key_passphrase: str | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.redacted

    @property
    def server_address(self) -> str:
        """``server.address`` for spans: the host the connector talks to."""
        return self.host or f"{self.account}.snowflakecomputing.com"

    @property
    def server_port(self) -> int:
        if self.port:
            return self.port
        return 80 if (self.protocol or "https") == "http" else 443

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``snowflake.connector.connect`` (holds the secrets: never log it)."""
        kw: dict[str, Any] = {"user": self.user, "account": self.account}
        for name in ("database", "schema", "warehouse", "role", "host", "port", "protocol", "application"):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        if self.private_key_file:
            kw["private_key_file"] = self.private_key_file
            if self.private_key_passphrase:
                kw["private_key_file_pwd"] = self.private_key_passphrase
            kw["authenticator"] = self.authenticator or "SNOWFLAKE_JWT"
        else:
            if self.authenticator:
                kw["authenticator"] = self.authenticator
            if self.password is not None:
                kw["password"] = self.password
        return kw


def parse_snowflake_dsn(dsn: str, env: dict[str, str] | None = None) -> SnowflakeDsn:
    """Parse a ``snowflake://`` URL; ConfigError (without any secret in it) when malformed."""
    env = os.environ if env is None else env
    shown = redact_dsn(dsn)
    try:
        parts = urlsplit(dsn)
        port_in_netloc = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"malformed Snowflake DSN {shown}") from None
    if parts.scheme.lower() != "snowflake":
        raise ConfigError(f"not a Snowflake DSN: {shown}")
    if port_in_netloc is not None:
        raise ConfigError(f"Snowflake DSN {shown}: ACCOUNT takes no port; use ?host=…&port=… for a custom endpoint")
    if "@" not in parts.netloc:
        raise ConfigError(f"Snowflake DSN {shown} needs USER@ACCOUNT")
    userinfo, _, account = parts.netloc.rpartition("@")
    user, has_pw, password = userinfo.partition(":")
    user, account = unquote(user), unquote(account)
    if not user or not account:
        raise ConfigError(f"Snowflake DSN {shown} needs USER@ACCOUNT")
    # account identifiers are sometimes given as the full host name
    account = account.removesuffix(".snowflakecomputing.com")

    path = [unquote(p) for p in parts.path.split("/") if p]
    if len(path) > 2:
        raise ConfigError(f"Snowflake DSN {shown}: the path is /DATABASE/SCHEMA")
    database = path[0] if path else None
    schema = path[1] if len(path) > 1 else None

    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        k = key.lower()
        if k in _REFUSED:
            raise ConfigError(f"Snowflake DSN {shown}: parameter {key!r} is not accepted; {_REFUSED[k]}")
        if k not in _PARAMS:
            raise ConfigError(
                f"Snowflake DSN {shown}: unknown parameter {key!r} (known: {', '.join(_PARAMS)})"
            )
        if k in params:
            raise ConfigError(f"Snowflake DSN {shown}: parameter {key!r} given twice")
        params[k] = value

    port: int | None = None
    if "port" in params:
        try:
            port = int(params["port"])
        except ValueError:
            raise ConfigError(f"Snowflake DSN {shown}: port must be a number") from None
        if not 0 < port < 65536:
            raise ConfigError(f"Snowflake DSN {shown}: port out of range")
    protocol = params.get("protocol")
    if protocol is not None and protocol.lower() not in ("http", "https"):
        raise ConfigError(f"Snowflake DSN {shown}: protocol must be http or https")

    pw: str | None = unquote(password) if has_pw else None
    if pw is None:
        pw = env.get(PASSWORD_ENV) or None
    key_file = params.get("private_key_file") or None
    passphrase = env.get(PASSPHRASE_ENV) or None if key_file else None
    authenticator = params.get("authenticator") or None
    if key_file and authenticator and authenticator.upper() != "SNOWFLAKE_JWT":
        raise ConfigError(f"Snowflake DSN {shown}: private_key_file needs authenticator=SNOWFLAKE_JWT (or none)")

    return SnowflakeDsn(
        user=user,
        account=account,
        database=database,
        schema=schema,
        warehouse=params.get("warehouse") or None,
        role=params.get("role") or None,
        host=params.get("host") or None,
        port=port,
        protocol=protocol.lower() if protocol else None,
        authenticator=authenticator,
        private_key_file=key_file,
        application=params.get("application") or None,
        redacted=shown,
        password=pw,
        private_key_passphrase=passphrase,
    )
