"""Whether two runs compare: the same load settings, scenario, target and spanbench.

A difference in any of them explains a change as well as a regression would, so
``spanbench diff`` names each one ("connections: 16 → 8") before anyone reads the figures.
A fact one side does not record (an older results.json, a trace without results) is
listed as unknown, never as a difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spanbench.run_identity import scenario_of, target_of

# The settings that shape the load (each compared and named on its own); ``load`` is the
# [load] table, compared key by key (model, rate, think_time, stages, …).
LOAD_SETTINGS = ("workers", "connections", "pool_batch_size", "warmup", "duration", "cooldown",
                 "query_log", "query_log_sample", "use_cached_result")


@dataclass(frozen=True, slots=True)
class Difference:
    what: str  # "connections", "load.rate", "scenario", "target.version", "spanbench version"
    a: Any
    b: Any

    @property
    def text(self) -> str:
        return f"{self.what}: {_show(self.a)} → {_show(self.b)}"

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "a": self.a, "b": self.b}


def _show(value: Any) -> str:
    return "unset" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Comparability:
    differences: list[Difference] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # facts one side (or both) does not record
    checked: bool = True  # False: a side has no results.json, so nothing could be compared

    @property
    def comparable(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"comparable": self.comparable, "checked": self.checked,
                "differences": [d.to_json() for d in self.differences], "unknown": self.unknown}


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def compare_runs(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Comparability:
    """What differs between two results.json documents (either may be None: a trace alone)."""
    if a is None or b is None:
        return Comparability([], ["settings", "scenario", "target", "spanbench version"], checked=False)
    diffs: list[Difference] = []
    unknown: list[str] = []
    sa, sb = _dict(a.get("settings")), _dict(b.get("settings"))
    if sa and sb:
        diffs += _settings(sa, sb)
    else:
        unknown.append("settings")
    diffs += _facts("scenario", _scenario(a), _scenario(b), unknown, keys=("hash",))
    diffs += _facts("target", _target(a), _target(b), unknown, keys=("system", "server", "version"))
    va, vb = a.get("spanbench_version"), b.get("spanbench_version")
    if va is None or vb is None:
        unknown.append("spanbench version")
    elif va != vb:
        diffs.append(Difference("spanbench version", va, vb))
    return Comparability(diffs, unknown)


def _settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Difference]:
    out = [Difference(k, a.get(k), b.get(k)) for k in LOAD_SETTINGS if a.get(k) != b.get(k)]
    la, lb = _dict(a.get("load")), _dict(b.get("load"))
    if la.get("model") != lb.get("model"):
        # Another model makes every other [load] key moot: the model is the difference.
        out.append(Difference("load.model", la.get("model"), lb.get("model")))
    else:
        out += [Difference(f"load.{k}", la.get(k), lb.get(k)) for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k)]
    return out


def _scenario(r: Mapping[str, Any]) -> Mapping[str, Any] | None:
    recorded = _dict(r.get("scenario"))
    if recorded.get("hash"):
        return recorded
    settings = _dict(r.get("settings"))
    # An older results.json: the same hash, computed from the settings it kept.
    return scenario_of(settings) if settings else None


def _target(r: Mapping[str, Any]) -> Mapping[str, Any] | None:
    recorded = _dict(r.get("target"))
    if recorded:
        return recorded
    settings = _dict(r.get("settings"))
    return target_of(settings, None) if settings else None


def _facts(what: str, a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, unknown: list[str], *,
           keys: tuple[str, ...]) -> list[Difference]:
    if a is None or b is None:
        unknown.append(what)
        return []
    out = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        name = what if keys == ("hash",) else f"{what}.{key}"
        if va is None or vb is None:
            unknown.append(name)
        elif va != vb:
            out.append(Difference(name, va, vb))
    if what == "scenario" and out:
        # The hash alone says little: the query names say which workload each side ran.
        qa, qb = a.get("queries"), b.get("queries")
        if qa != qb:
            out.append(Difference("scenario queries", qa or "built-in demo", qb or "built-in demo"))
    return out
