"""What a report may show of a value: secrets masked, DSN passwords redacted.

Span attributes come from foreign programs and settings from the user: a password given
to a run must never reach a report, even if an upstream redaction was missed.
"""

from __future__ import annotations

import json
from typing import Any

from spanbench.dsn import redact_dsn

_SECRET_WORDS = ("password", "passwd", "secret", "token", "passcode", "private_key", "authorization", "api_key")


def clean(key: str, value: Any) -> Any:
    """The value as it may be shown: secrets masked, DSN passwords redacted."""
    if any(word in key.lower() for word in _SECRET_WORDS) and value not in (None, "", False):
        return "***"
    if isinstance(value, str) and "://" in value:
        return redact_dsn(value)
    if isinstance(value, dict):
        return {k: clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(key, v) for v in value]
    return value


def shown(value: Any) -> str:
    """A value as one line of text: strings as they are, anything else as JSON, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
