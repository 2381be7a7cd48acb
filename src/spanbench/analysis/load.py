"""``load_trace``: a run folder or a trace file, in whichever JSON shape it comes, to a Trace.

Shapes are told apart by their keys, not by file name, so a file saved from Jaeger's UI,
curl'ed from Tempo or Zipkin, or written by the Collector loads the same way. Spans that
cannot be placed (no id, no start time) are left out and counted, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.clocks import to_store_clock
from spanbench.analysis.jaeger import envelope_errors, is_jaeger_envelope, is_jaeger_trace, spans_from_jaeger_trace
from spanbench.analysis.model import LoadNotes, Span, Trace
from spanbench.analysis.otlp import resource_spans_of, spans_from_resource_spans
from spanbench.analysis.zipkin import is_zipkin_list, is_zipkin_span, spans_from_zipkin
from spanbench.errors import ConfigError

FORMATS = "OTLP/JSON lines or request, Jaeger JSON, Tempo JSON, Zipkin v2 JSON"


def spans_from_document(doc: Any, notes: LoadNotes | None = None) -> Iterator[Span]:
    """Every span in one parsed JSON document, whatever its envelope. ``notes`` gathers
    the formats recognised, the spans left out and the source's own warnings."""
    notes = notes if notes is not None else LoadNotes()
    if isinstance(doc, list):
        if is_zipkin_list(doc):
            # As a whole: shared spans and fragments of one span are resolved across the list.
            notes.formats.add("Zipkin v2 JSON")
            yield from spans_from_zipkin(doc, notes)
            return
        for item in doc:
            yield from spans_from_document(item, notes)
        return
    if not isinstance(doc, Mapping):
        return
    resource_spans = resource_spans_of(doc)
    if resource_spans is not None:
        notes.formats.add("Tempo JSON" if "batches" in doc else "OTLP/JSON")
        yield from spans_from_resource_spans(resource_spans, notes)
        return
    if is_jaeger_trace(doc):
        notes.formats.add("Jaeger JSON")
        yield from spans_from_jaeger_trace(doc, notes)
        return
    if is_zipkin_span(doc):
        notes.formats.add("Zipkin v2 JSON")
        yield from spans_from_zipkin([doc], notes)
        return
    if is_jaeger_envelope(doc):
        notes.formats.add("Jaeger JSON")
        envelope_errors(doc, notes)
    # Envelopes: Jaeger v1 {"data": [...]}, Tempo v2 {"trace": {...}}, Jaeger v3 {"result": {...}}.
    for key in ("data", "trace", "result"):
        if key in doc:
            yield from spans_from_document(doc[key], notes)


def _parse_text(text: str, label: str, warnings: list[str]) -> list[Any]:
    """One JSON document, or JSON lines (one ExportTraceServiceRequest per line)."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        pass
    docs: list[Any] = []
    bad = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            docs.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1  # typically a last line cut short by a process that died mid-write
    if not docs:
        raise ConfigError(f"{label} is not JSON or JSON lines")
    if bad:
        warnings.append(f"{bad} line(s) of {label} were not JSON and were skipped")
    return docs


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"trace file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read trace file {path}: {err}") from None


def _documents_at(path: Path, warnings: list[str]) -> list[Any]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
        if not files:
            raise ConfigError(f"no *.jsonl trace files in {path}")
        docs: list[Any] = []
        for file in files:
            # One broken file (a worker killed mid-write) costs that file, never the folder.
            try:
                text = _read(file)
                if text.strip():
                    docs.extend(_parse_text(text, str(file), warnings))
            except ConfigError as err:
                warnings.append(f"{err}; skipped")
        return docs
    if not path.exists():
        raise ConfigError(f"trace file not found: {path}")
    text = _read(path)
    if not text.strip():
        raise ConfigError(f"trace file is empty: {path}")
    return _parse_text(text, str(path), warnings)


def _no_spans(label: str, notes: LoadNotes, docs: list[Any]) -> ConfigError:
    """Why nothing was found: spans there but unusable, a known format with none, or not a trace."""
    if notes.skipped:
        return ConfigError(f"no spans found in {label}: {notes.skipped_text()}")
    said = "; ".join(notes.warnings())
    if notes.formats:
        formats = ", ".join(sorted(notes.formats))
        return ConfigError(f"no spans found in {label} ({formats} without spans{': ' + said if said else ''})")
    if all(doc == [] for doc in docs):
        return ConfigError(f"no spans found in {label} (an empty list)")
    return ConfigError(f"{label}: not a trace this reads ({FORMATS}); no spans found")


def trace_from_documents(docs: Iterable[Any], *, trace_id: str | None, label: str, warnings: list[str] | None = None) -> Trace:
    """Pick one trace out of the spans in ``docs``: ``trace_id``'s, else the one with most spans."""
    docs = list(docs)
    notes = LoadNotes()
    by_trace: dict[str, list[Span]] = {}
    for doc in docs:
        for span in spans_from_document(doc, notes):
            by_trace.setdefault(span.trace_id, []).append(span)
    if not by_trace:
        raise _no_spans(label, notes, docs)
    if trace_id is not None:
        wanted = ids.trace_id(trace_id)
        if wanted not in by_trace:
            raise ConfigError(f"trace {trace_id} not in {label} ({len(by_trace)} trace(s) there)")
        chosen = wanted
    else:
        chosen = max(by_trace, key=lambda t: (len(by_trace[t]), t))
    warnings = [*(warnings or ()), *notes.warnings()]
    if trace_id is None and len(by_trace) > 1:
        warnings.append(f"{label} holds {len(by_trace)} traces; showing {chosen}, the one with most spans")
    spans = by_trace[chosen]
    warnings.extend(to_store_clock(spans))  # a host whose clock is off, drawn where its work happened
    return Trace(spans, warnings=warnings)


def load_trace(source: str | Path, trace_id: str | None = None) -> Trace:
    """A run folder (every ``*.jsonl`` in it) or one trace file, as a Trace."""
    path = Path(source)
    warnings: list[str] = []
    docs = _documents_at(path, warnings)
    return trace_from_documents(docs, trace_id=trace_id, label=str(path), warnings=warnings)
