"""Snowflake DSN parsing: every documented form, key-pair auth, and no secret in any printout."""

from __future__ import annotations

import pytest

from spanbench.dsn import dsn_system, redact_dsn
from spanbench.errors import ConfigError
from spanbench.settings import Settings
from spanbench.targets.snowflake_dsn import PASSPHRASE_ENV, PASSWORD_ENV, parse_snowflake_dsn

SECRET = "s3cr:et/p@ss"
PASSPHRASE = "key-passphrase-XYZ"


def test_full_form() -> None:
    dsn = parse_snowflake_dsn(
        "snowflake://ALICE:s3cr%3Aet%2Fp%40ss@xy12345.eu-west-1/BENCH/PUBLIC?warehouse=WH_XS&role=BENCH_ROLE", env={}
    )
    assert (dsn.user, dsn.account, dsn.database, dsn.schema) == ("ALICE", "xy12345.eu-west-1", "BENCH", "PUBLIC")
    assert (dsn.warehouse, dsn.role) == ("WH_XS", "BENCH_ROLE")
    assert dsn.password == SECRET
    assert dsn.server_address == "xy12345.eu-west-1.snowflakecomputing.com"
    assert dsn.server_port == 443
    kw = dsn.connect_kwargs()
    assert kw == {"user": "ALICE", "account": "xy12345.eu-west-1", "database": "BENCH", "schema": "PUBLIC",
                  "warehouse": "WH_XS", "role": "BENCH_ROLE", "password": SECRET}


def test_host_port_protocol_for_fakesnow() -> None:
    dsn = parse_snowflake_dsn("snowflake://fake:snow@fakesnow/DB/SCH?host=127.0.0.1&port=8123&protocol=http", env={})
    assert dsn.server_address == "127.0.0.1" and dsn.server_port == 8123
    kw = dsn.connect_kwargs()
    assert (kw["host"], kw["port"], kw["protocol"]) == ("127.0.0.1", 8123, "http")


def test_password_from_environment() -> None:
    dsn = parse_snowflake_dsn("snowflake://bob@acct/DB/SCH", env={PASSWORD_ENV: SECRET})
    assert dsn.password == SECRET
    # the URL's password wins over the environment
    assert parse_snowflake_dsn("snowflake://bob:other@acct/DB", env={PASSWORD_ENV: SECRET}).password == "other"
    assert parse_snowflake_dsn("snowflake://bob@acct/DB", env={}).password is None


def test_key_pair_auth() -> None:
    dsn = parse_snowflake_dsn(
        "snowflake://svc_bench@acct/DB/SCH?warehouse=W&private_key_file=/keys/rsa_key.p8",
        env={PASSPHRASE_ENV: PASSPHRASE, PASSWORD_ENV: SECRET},
    )
    kw = dsn.connect_kwargs()
    assert kw["private_key_file"] == "/keys/rsa_key.p8"
    assert kw["private_key_file_pwd"] == PASSPHRASE
    assert kw["authenticator"] == "SNOWFLAKE_JWT"
    assert "password" not in kw  # key-pair auth never sends a password
    unencrypted = parse_snowflake_dsn("snowflake://svc@acct/DB?private_key_file=/k.p8", env={})
    assert "private_key_file_pwd" not in unencrypted.connect_kwargs()


def test_authenticator_passes_through() -> None:
    kw = parse_snowflake_dsn("snowflake://u@acct/DB?authenticator=externalbrowser", env={}).connect_kwargs()
    assert kw["authenticator"] == "externalbrowser" and "password" not in kw


@pytest.mark.parametrize("bad", [
    "snowflake://acct/DB",                                   # no user
    "snowflake://u:p@acct/DB/SCH/EXTRA",                     # path too long
    "snowflake://u:p@acct:443/DB",                           # port on the account
    "snowflake://u:p@acct/DB?warehouse=W&nonsense=1",        # unknown parameter
    "snowflake://u:p@acct/DB?password=p2",                   # secret in the query string
    "snowflake://u:p@acct/DB?private_key_file_pwd=p2",
    "snowflake://u:p@acct/DB?port=notanumber",
    "snowflake://u:p@acct/DB?protocol=ftp",
    "snowflake://u@acct/DB?private_key_file=/k.p8&authenticator=oauth",
])
def test_malformed_dsns_are_one_line_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_snowflake_dsn(bad, env={})
    msg = str(err.value)
    assert "\n" not in msg
    assert "p2" not in msg or "p2" in redact_dsn(bad)  # the secret itself is redacted
    assert ":p@" not in msg


def test_no_secret_in_repr_str_or_settings() -> None:
    url = f"snowflake://ALICE:{SECRET.replace(':', '%3A').replace('/', '%2F').replace('@', '%40')}@acct/DB/SCH?warehouse=W"
    dsn = parse_snowflake_dsn(url, env={PASSPHRASE_ENV: PASSPHRASE})
    for text in (repr(dsn), str(dsn), redact_dsn(url), str(Settings(target_dsn=url, control_dsn=url).public())):
        assert SECRET not in text and "s3cr" not in text and PASSPHRASE not in text, text
    assert "***" in str(dsn)
    key = parse_snowflake_dsn("snowflake://svc@acct/DB?private_key_file=/k.p8", env={PASSPHRASE_ENV: PASSPHRASE})
    assert PASSPHRASE not in repr(key) and PASSPHRASE not in str(key)
    assert dsn_system(url) == "snowflake"


def test_target_and_store_reprs_hold_no_secret() -> None:
    from spanbench.control.snowflake import SnowflakeControlStore
    from spanbench.targets.snowflake import SnowflakeTarget

    url = "snowflake://ALICE:hunter2hunter2@acct/DB/SCH?warehouse=W"
    dsn = parse_snowflake_dsn(url, env={})
    for obj in (SnowflakeTarget(dsn, Settings()), SnowflakeControlStore(dsn, Settings())):
        assert "hunter2" not in repr(obj) and "hunter2" not in str(obj)
