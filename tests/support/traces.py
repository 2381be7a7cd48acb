"""Reading a run folder's OTLP/JSON trace in tests, independently of spanbench.analysis."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class S:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: int
    end: int
    service: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return (self.end - self.start) / 1e6


def _value(v: dict[str, Any]) -> Any:
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        return int(v["intValue"])
    return v


def read_spans(run_dir: Path) -> list[S]:
    out: list[S] = []
    for f in sorted(run_dir.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            for rs in json.loads(line)["resourceSpans"]:
                res = {a["key"]: _value(a["value"]) for a in rs["resource"].get("attributes", [])}
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        out.append(
                            S(
                                trace_id=sp["traceId"], span_id=sp["spanId"], parent_id=sp.get("parentSpanId") or None,
                                name=sp["name"], start=int(sp["startTimeUnixNano"]), end=int(sp["endTimeUnixNano"]),
                                service=res.get("service.name", ""),
                                attrs={a["key"]: _value(a["value"]) for a in sp.get("attributes", [])},
                            )
                        )
    return out


class Tree:
    def __init__(self, spans: list[S]) -> None:
        self.spans = spans
        self.by_id = {s.span_id: s for s in spans}
        self.children: dict[str, list[S]] = {}
        for s in spans:
            if s.parent_id:
                self.children.setdefault(s.parent_id, []).append(s)
        for kids in self.children.values():
            kids.sort(key=lambda s: s.start)

    def roots(self) -> list[S]:
        return [s for s in self.spans if not s.parent_id or s.parent_id not in self.by_id]

    def named(self, name: str) -> list[S]:
        return [s for s in self.spans if s.name == name]

    def kids(self, span: S, name: str | None = None) -> list[S]:
        return [k for k in self.children.get(span.span_id, []) if name is None or k.name == name]

    def one(self, span: S, name: str) -> S:
        found = self.kids(span, name)
        assert len(found) == 1, f"{span.name} has {len(found)} {name!r} children"
        return found[0]

    def workers(self) -> dict[str, S]:
        return {s.attrs["spanbench.worker_id"]: s for s in self.named("worker")}
