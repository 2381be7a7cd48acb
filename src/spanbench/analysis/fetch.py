"""Traces fetched over HTTP from Jaeger's query service or from Tempo (stdlib urllib only)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from spanbench.analysis.model import Trace
from spanbench.analysis.load import trace_from_documents
from spanbench.errors import ConfigError

DEFAULT_TIMEOUT_S = 30.0
# How far back a TraceQL search looks. Without start and end, Tempo searches only the
# recent traces its ingesters still hold (minutes); with them it searches its blocks too.
# 168 h is the query frontend's default search.max_duration: a longer range is refused.
TEMPO_SEARCH_LOOKBACK_S = 168 * 3600


class _NotFound(Exception):
    pass


def _get_json(url: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise _NotFound(url) from None
        raise ConfigError(f"HTTP {err.code} {err.reason} from {url}") from None
    except urllib.error.URLError as err:
        raise ConfigError(f"cannot reach {url}: {err.reason}") from None
    except TimeoutError:
        raise ConfigError(f"no answer from {url} within {timeout:g}s") from None
    except OSError as err:
        raise ConfigError(f"cannot reach {url}: {err}") from None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{url} did not return JSON") from None


def _base(url: str) -> str:
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def fetch_trace_jaeger(url: str, trace_id: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Trace:
    """Trace ``trace_id`` from Jaeger's query service: ``/api/traces/{id}``, else ``/api/v3/traces/{id}``."""
    base = _base(url)
    tid = urllib.parse.quote(trace_id.strip(), safe="")
    tried = []
    for path in (f"/api/traces/{tid}", f"/api/v3/traces/{tid}"):
        full = base + path
        tried.append(full)
        try:
            doc = _get_json(full, timeout)
        except _NotFound:
            continue
        return trace_from_documents([doc], trace_id=trace_id, label=full)
    raise ConfigError(f"trace {trace_id} not found in Jaeger at {base} (tried {', '.join(tried)})")


def fetch_trace_tempo(
    url: str, trace_id: str | None = None, query: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S
) -> Trace:
    """Trace ``trace_id`` from Tempo, or the most recent trace matching the TraceQL ``query``."""
    base = _base(url)
    if (trace_id is None) == (query is None):
        raise ConfigError("--tempo needs exactly one of --trace-id or --query")
    if query is not None:
        trace_id = _tempo_search_latest(base, query, timeout)
    assert trace_id is not None
    full = f"{base}/api/traces/{urllib.parse.quote(trace_id.strip(), safe='')}"
    try:
        doc = _get_json(full, timeout)
    except _NotFound:
        raise ConfigError(f"trace {trace_id} not found in Tempo at {base}") from None
    return trace_from_documents([doc], trace_id=trace_id, label=full)


# A TraceQL metrics query ("{ } | rate()") gives series, not traces: Tempo's search API
# refuses it. String literals are blanked first, so { name = "| rate(" } is a search.
_METRICS_STAGE = re.compile(
    r"\|\s*(rate|count_over_time|min_over_time|max_over_time|avg_over_time|sum_over_time"
    r"|quantile_over_time|histogram_over_time|compare)\s*\("
)
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')


def is_traceql_metrics_query(query: str) -> bool:
    return bool(_METRICS_STAGE.search(_STRING_LITERAL.sub('""', query)))


def tempo_search_url(base: str, query: str, limit: int = 100, *, start: int | None = None,
                     end: int | None = None) -> str:
    """Tempo's search URL for a TraceQL query, every reserved character percent-encoded.

    ``quote`` rather than ``quote_plus``: a space is ``%20`` and a ``+`` is ``%2B``, so the
    query arrives byte for byte whether the server (or a proxy before it) reads ``+`` as a
    space or not. The quotes of quoted attribute names (``."spanbench.run_id"``), ``&&``,
    ``>>`` and ``|`` are all percent-encoded.
    """
    params: dict[str, str | int] = {"q": query, "limit": limit}
    if start is not None and end is not None:
        params.update(start=start, end=end)  # unix seconds
    return f"{_base(base)}/api/search?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def _tempo_search_latest(base: str, query: str, timeout: float) -> str:
    if is_traceql_metrics_query(query):
        raise ConfigError(
            f"{query} is a TraceQL metrics query (it gives series, not traces): "
            "--query needs a span-set query such as '{ name = \"run\" }'"
        )
    end = int(time.time()) + 60  # a minute ahead: a clock a little behind Tempo's
    full = tempo_search_url(base, query, start=end - TEMPO_SEARCH_LOOKBACK_S, end=end)
    try:
        doc = _get_json(full, timeout)
    except _NotFound:
        raise ConfigError(f"{base} has no Tempo search API (/api/search)") from None
    found = doc.get("traces") if isinstance(doc, dict) else None
    if not found:
        raise ConfigError(f"no trace in Tempo at {base} matches {query} in the last "
                          f"{TEMPO_SEARCH_LOOKBACK_S // 3600} h")

    def started(item: dict[str, Any]) -> int:
        try:
            return int(item.get("startTimeUnixNano") or 0)
        except (TypeError, ValueError):
            return 0

    latest = max(found, key=started)
    trace_id = latest.get("traceID") or latest.get("traceId")
    if not trace_id:
        raise ConfigError(f"Tempo's search at {base} returned a trace without an id")
    return str(trace_id)
