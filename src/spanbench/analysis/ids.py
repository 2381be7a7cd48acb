"""Trace and span ids in one spelling: lowercase hex, zero-padded to full width.

OTLP/JSON writes ids as hex; Tempo's ``/api/traces`` and protobuf's own JSON mapping
write them as base64; Jaeger drops leading zeros. Length tells them apart: a 16-byte
trace id is 32 hex characters or 24 base64 ones, an 8-byte span id 16 or 12.
"""

from __future__ import annotations

import base64
import binascii
import string

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
_HEX = frozenset(string.hexdigits)


def _b64_len(nbytes: int) -> int:
    return 4 * ((nbytes + 2) // 3)


def normalize_id(raw: object, nbytes: int, *, allow_base64: bool = True) -> str | None:
    """Hex id, or None for an absent or all-zero id (OTLP's "no parent")."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    is_hex = all(c in _HEX for c in text)
    if is_hex and len(text) == 2 * nbytes:
        value = text.lower()
    elif allow_base64 and len(text) == _b64_len(nbytes):
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        value = decoded.hex() if len(decoded) == nbytes else text.lower()
    elif is_hex and len(text) < 2 * nbytes:
        value = text.lower().rjust(2 * nbytes, "0")
    else:
        # An id we cannot decode still works as a key, as long as it is spelled one way.
        value = text.lower() if is_hex else text
    if value.strip("0") == "":
        return None
    return value


def trace_id(raw: object, *, allow_base64: bool = True) -> str | None:
    return normalize_id(raw, TRACE_ID_BYTES, allow_base64=allow_base64)


def span_id(raw: object, *, allow_base64: bool = True) -> str | None:
    return normalize_id(raw, SPAN_ID_BYTES, allow_base64=allow_base64)
