"""What the standard OTEL_* variables ask for OTLP export (cheap: no SDK import)."""

from __future__ import annotations

import os

from spanbench.errors import ConfigError

# The protocols the installed exporters speak (opentelemetry-exporter-otlp ships protobuf over
# gRPC and over HTTP; it has no http/json exporter). Anything else would quietly become HTTP.
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
PROTOCOL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
)


def metrics_endpoint_set() -> bool:
    env = os.environ
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


def check_otlp_protocols() -> None:
    """ConfigError (bad input) when an OTLP protocol variable names a protocol we cannot export with."""
    for name in PROTOCOL_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value and value not in OTLP_PROTOCOLS:
            supported = " or ".join(OTLP_PROTOCOLS)
            hint = " (http/json is not supported by the installed OTLP exporter)" if value.lower() == "http/json" else ""
            raise ConfigError(f"{name}={value!r} is not a supported OTLP protocol: use {supported}{hint}")
