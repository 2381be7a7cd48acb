"""Trace analysis, separate from any trace source: load (files, Jaeger, Tempo) → Trace →
``analyze`` (gaps, self time, skew, critical paths, processes) → report or JSON.

Entry points: ``load.load_trace``, ``fetch.fetch_trace_jaeger`` / ``fetch_trace_tempo``,
``analyze.analyze``, ``command.gaps_command``.
"""
