"""Whether the standard OTEL_* variables ask for OTLP export (cheap: no SDK import)."""

from __future__ import annotations

import os


def metrics_endpoint_set() -> bool:
    env = os.environ
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
