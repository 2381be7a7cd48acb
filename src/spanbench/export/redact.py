"""Secrets out of an export: a file made to be mailed around must not carry a password.

spanbench's own spans hold no secret (DSNs are redacted before they reach a span), but a
trace file may come from another program, or from an older spanbench. Every string
attribute value is scrubbed the way ``redact_dsn`` scrubs a DSN: the password of a URL's
user info and secret query parameters become ``***``. Nothing else changes, so the
export stays byte-for-byte the trace everywhere no secret was.
"""

from __future__ import annotations

import re
from typing import Any

from spanbench.dsn import _SECRET_PARAMS  # one list of secret parameter names for the project

_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<pw>[^@/?#\s]+)@")
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&](?:" + "|".join(sorted(map(re.escape, _SECRET_PARAMS))) + r")=)(?P<value>[^&#\s]*)", re.IGNORECASE
)
_STRING_KEYS = ("stringValue", "string_value")


def scrub_text(text: str) -> str:
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)
    return _SECRET_PARAM.sub(lambda m: m.group("head") + ("***" if m.group("value") else ""), text)


def scrubbed(obj: Any) -> Any:
    """A copy of a parsed JSON structure with every OTLP ``stringValue`` scrubbed."""
    # Concrete types, not Mapping: this runs over every value of every span, and parsed
    # JSON is only ever dicts and lists.
    if type(obj) is dict:
        return {k: (scrub_text(v) if k in _STRING_KEYS and type(v) is str else scrubbed(v)) for k, v in obj.items()}
    if type(obj) is list:
        return [scrubbed(v) for v in obj]
    return obj
