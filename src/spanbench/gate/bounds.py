"""The regression gate: ``--fail-on METRIC:CHANGE`` bounds evaluated on a base and a new run.

Pure: parsing, the figures of one side, the noise tests and the verdicts. Reading runs and
printing is ``spanbench.report.gate_report``'s.

Grammar (one bound per ``--fail-on``; the change is after the last ``:``)::

    BOUND  := METRIC ":" CHANGE
    METRIC := qps | errors | error_rate | first_query | wall
            | LAT | LAT "@" KIND                LAT := p50 | p95 | p99 | p999 | max | mean
            | "span:" NAME [":" SPANSTAT]       SPANSTAT := p50 (default) | max | count | total
    CHANGE := ("+" | "-") NUMBER ["%" | UNIT]   UNIT := ns | us | µs | ms | s  (time metrics only)

``+`` fails when the metric grows by more than the amount, ``-`` when it drops by more:
``qps:-5%`` fails when QPS falls more than 5 % below the base, ``p99:+20%`` when p99 rises
more than 20 % above it, ``p99:+5ms`` when it rises more than 5 ms. ``%`` is always
relative to the base; without ``%`` the amount is absolute, with a unit for the time metrics
(latencies, first_query, wall, span durations) and bare for the others (q/s, a count, a
fraction for error_rate). A relative bound on a base of 0 fails on any move in its
direction (``errors:+10%`` with 0 errors in the base fails on the first error).

A metric that one side does not have (no trace for ``span:``, no such query kind, a run
without measured queries) fails its bound: a gate that passes because a figure went
missing guards nothing.

Noise: a latency bound that is passed is also tested on the two runs' merged MEASUREMENT
HDR histograms (every query, binned). A percentile pXX is tested with Mood's quantile test:
the counts above the pooled XX-th percentile, a two-proportion z-test (the 2×2 chi-square
without continuity correction); the mean with the Mann-Whitney U test on the binned values
(mid-ranks for the ties a bin makes, tie-corrected variance, continuity correction); the
max is one query, so it has no test. Noise-aware (the default), a latency bound fails only
when the change is beyond the bound AND significant (p < alpha, in the bound's direction).
The test treats queries as independent draws: it says the change is not sampling noise
among this run's queries, not that the next run will repeat it; run-to-run variation is
what the bound's size must cover.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spanbench.errors import ConfigError

# stat → (key in results.json's latency objects, quantile tested for noise)
LATENCY_STATS: dict[str, tuple[str, float | None]] = {
    "p50": ("p50_ms", 0.50), "p95": ("p95_ms", 0.95), "p99": ("p99_ms", 0.99), "p999": ("p999_ms", 0.999),
    "max": ("max_ms", None), "mean": ("mean_ms", None),
}
SPAN_STATS = ("p50", "max", "count", "total")
SCALARS: dict[str, tuple[str, str]] = {  # name → (unit, label)
    "qps": ("qps", "queries/s (measurement)"),
    "errors": ("count", "errors (measurement)"),
    "error_rate": ("ratio", "error rate (errors / executions)"),
    "first_query": ("ms", "START → first query, slowest worker"),
    "wall": ("s", "wall time"),
}
TIME_UNITS = {"ms", "s"}  # metric units that take a duration
_DURATION_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_UNIT_S = {"ms": 1e-3, "s": 1.0}
_CHANGE = re.compile(r"^([+-])?((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)(%|[a-zµ]+)?$", re.IGNORECASE)
_KIND = re.compile(r"^[A-Za-z0-9_.\-]+$")
DEFAULT_ALPHA = 0.05
GRAMMAR = ("METRIC:+N% | METRIC:-N% | METRIC:+5ms (METRIC: qps, p50, p95, p99, p999, max, mean, errors, "
           "error_rate, first_query, wall, p99@KIND, span:NAME[:p50|max|count|total])")


# --- bounds -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    key: str  # canonical: "qps", "p99", "p99@point_select", "span:pool.init:p50"
    family: str  # "latency" | "span" | one of SCALARS
    unit: str  # "ms" | "s" | "qps" | "count" | "ratio"
    label: str
    stat: str | None = None
    kind: str | None = None  # a query kind, for LAT@KIND
    span: str | None = None

    @property
    def quantile(self) -> float | None:
        return LATENCY_STATS[self.stat][1] if self.family == "latency" and self.stat else None


@dataclass(frozen=True, slots=True)
class Bound:
    text: str
    metric: Metric
    sign: int  # +1: fails on growth beyond the amount; -1: on a drop beyond it
    amount: float  # >= 0; a share (0.05 for 5 %) when relative, else in the metric's unit
    relative: bool

    @property
    def amount_text(self) -> str:
        sign = "+" if self.sign > 0 else "-"
        if self.relative:
            return f"{sign}{_g(self.amount * 100)}%"
        return f"{sign}{_g(self.amount)}{self.metric.unit if self.metric.unit in TIME_UNITS else ''}"


def _g(x: float) -> str:
    return f"{x:.6g}"


def parse_bound(text: str) -> Bound:
    """One ``--fail-on`` value; ConfigError (one line) when it does not follow the grammar."""
    raw = text.strip()
    metric_text, sep, change = raw.rpartition(":")
    if not sep or not metric_text:
        raise _bad(text, "expected METRIC:CHANGE")
    metric = parse_metric(metric_text, text)
    m = _CHANGE.match(change.strip())
    if not m:
        raise _bad(text, f"{change!r} is not a change: a sign, a number, then % or a unit")
    sign_text, number, unit = m.groups()
    if sign_text is None:
        raise _bad(text, "the change needs a sign: + fails on growth, - on a drop")
    amount = float(number)
    sign = 1 if sign_text == "+" else -1
    if unit == "%":
        return Bound(raw, metric, sign, amount / 100.0, relative=True)
    if unit is None:
        if metric.unit in TIME_UNITS:
            raise _bad(text, f"an absolute change of {metric.key} needs a unit (ns, us, ms, s), or % for a relative one")
        return Bound(raw, metric, sign, amount, relative=False)
    unit_s = _DURATION_S.get(unit.lower() if unit != "µs" else unit)
    if unit_s is None:
        raise _bad(text, f"unknown unit {unit!r}: use %, or ns, us, ms, s")
    if metric.unit not in TIME_UNITS:
        raise _bad(text, f"{metric.key} is not a duration: use % or a bare number")
    return Bound(raw, metric, sign, amount * unit_s / _UNIT_S[metric.unit], relative=False)


def parse_metric(text: str, bound: str = "") -> Metric:
    where = bound or text
    if text.startswith("span:"):
        name, stat = text[len("span:"):], "p50"
        head, sep, tail = name.rpartition(":")
        if sep and tail in SPAN_STATS:
            name, stat = head, tail
        if not name:
            raise _bad(where, "span: needs a span name, e.g. span:pool.init")
        unit = "count" if stat == "count" else "ms"
        return Metric(f"span:{name}:{stat}", "span", unit, f"span {name} {stat}", stat=stat, span=name)
    if text in SCALARS:
        unit, label = SCALARS[text]
        return Metric(text, text, unit, label)
    stat, at, kind = text.partition("@")
    if stat in LATENCY_STATS:
        if at and not _KIND.match(kind):
            raise _bad(where, f"{kind!r} is not a query kind name")
        label = f"latency {stat}, " + (f"kind {kind}" if at else "all kinds")
        return Metric(text, "latency", "ms", label, stat=stat, kind=kind if at else None)
    raise _bad(where, f"unknown metric {text!r}")


def parse_bounds(texts: Iterable[str]) -> list[Bound]:
    return [parse_bound(t) for t in texts]


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"--fail-on {text!r}: {why}; a bound is {GRAMMAR}")


# --- one side's figures -------------------------------------------------------------------

Bins = dict[int, int]  # HDR counts index → count; the index order is the value order (noise tests)


@dataclass(frozen=True, slots=True)
class SpanFigures:
    """One span name's durations in one run (as ``spanbench diff`` has them)."""

    count: int
    p50_ms: float
    max_ms: float
    total_ms: float


@dataclass(slots=True)
class GateSide:
    """What the gate reads of one run: results.json (as a dict) and its spans by name."""

    results: Mapping[str, Any] | None
    spans: Mapping[str, SpanFigures] | None = None
    _bins: dict[str, Bins | None] = field(default_factory=dict)

    def bins(self, kind: str | None) -> Bins | None:
        """Merged MEASUREMENT histogram counts of one kind (None: every kind), or None."""
        key = kind or ""
        if key not in self._bins:
            self._bins[key] = _measurement_bins(self.results, kind)
        return self._bins[key]


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metric_value(side: GateSide, metric: Metric) -> tuple[float | None, str | None]:
    """The figure, or None and why it is missing."""
    if metric.family == "span":
        return _span_value(side, metric)
    if side.results is None:
        return None, "no results.json"
    if metric.family == "latency":
        return _latency_value(side.results, metric)
    return _scalar_value(side.results, metric.family)


def _span_value(side: GateSide, metric: Metric) -> tuple[float | None, str | None]:
    if side.spans is None:
        return None, "no trace"
    s = side.spans.get(metric.span or "")
    if s is None:
        return None, f"no span {metric.span!r}"
    return {"p50": s.p50_ms, "max": s.max_ms, "count": float(s.count), "total": s.total_ms}[metric.stat or "p50"], None


def _latency_value(results: Mapping[str, Any], metric: Metric) -> tuple[float | None, str | None]:
    m = _dict(results.get("measurement"))
    lat = _dict(_dict(m.get("latency")).get(metric.kind)) if metric.kind else _dict(m.get("all"))
    if not lat:
        return None, f"no query kind {metric.kind!r}" if metric.kind else "no latency"
    if not _num(lat.get("count")):
        # a run that measured nothing has percentiles of 0: a figure, but not of any query
        return None, "no query measured"
    return _present(_num(lat.get(LATENCY_STATS[metric.stat or "p50"][0])), f"no {metric.stat}")


def _scalar_value(results: Mapping[str, Any], family: str) -> tuple[float | None, str | None]:
    m = _dict(results.get("measurement"))
    if family == "qps":
        return _present(_num(m.get("qps")), "no qps")
    if family == "errors":
        return _present(_num(m.get("errors")), "no error count")
    if family == "error_rate":
        errors, queries = _num(m.get("errors")), _num(m.get("queries"))
        if errors is None or queries is None or errors + queries == 0:
            return None, "no executions"
        return errors / (errors + queries), None  # results.json's queries are the successful ones
    if family == "first_query":
        firsts = [_num(_dict(w).get("start_to_first_query_ms")) for w in results.get("workers") or ()]
        firsts = [f for f in firsts if f is not None]
        return (max(firsts), None) if firsts else (None, "no worker's first query")
    if family == "wall":
        return _present(_num(results.get("wall_time_s")), "no wall time")
    raise AssertionError(family)


def _present(value: float | None, why: str) -> tuple[float | None, str | None]:
    return (value, None) if value is not None else (None, why)


# --- noise: two-sample tests on binned counts -------------------------------------------------

def _measurement_bins(results: Mapping[str, Any] | None, kind: str | None) -> Bins | None:
    texts = _dict(_dict(_dict(results).get("histograms")).get("MEASUREMENT"))
    if kind is None:
        chosen = list(texts.values())  # every kind: the same HDR layout, so the counts add
    else:
        chosen = [texts[kind]] if kind in texts else []
    if not chosen:
        return None
    from spanbench.stats import decode, nonzero_indices

    out: Bins = {}
    try:
        for text in chosen:
            h = decode(str(text))
            for i in nonzero_indices(h.counts):
                out[i] = out.get(i, 0) + h.counts[i]
    except Exception:  # noqa: BLE001 - an unreadable histogram means "no test", not a failed gate
        return None
    return out or None


@functools.lru_cache(maxsize=1)
def _layout() -> Any:
    from spanbench.stats import new_histogram

    return new_histogram()


def bin_value_ms(index: int) -> float:
    """The highest value (ms) an HDR counts index holds: what a percentile read from it reports."""
    h = _layout()
    return h.get_highest_equivalent_value(h.get_value_from_index(index)) / 1e6


@dataclass(frozen=True, slots=True)
class NoiseTest:
    test: str  # "mood-quantile" | "mann-whitney-u"
    statistic: str  # "z"
    value: float
    p_value: float
    direction: int  # +1: B's values larger, -1: smaller, 0: no shift
    n_a: int
    n_b: int
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.test == "mood-quantile":
            return f"Mood's quantile test (q={_g(self.detail.get('q', 0.0))})"
        return "Mann-Whitney U"

    def to_json(self) -> dict[str, Any]:
        return {"test": self.test, "name": self.name, "statistic": self.statistic, "value": _round(self.value),
                "p_value": self.p_value, "direction": self.direction, "n_a": self.n_a, "n_b": self.n_b,
                **{k: _round(v) for k, v in self.detail.items()}}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def p_text(p: float) -> str:
    """A p-value as said: below the smallest double, it is a bound, never a literal 0."""
    return "p<1e-300" if p < 1e-300 else f"p={p:.3g}"


def _two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def _direction(z: float) -> int:
    return 1 if z > 0 else -1 if z < 0 else 0


def mann_whitney(a: Mapping[int, int], b: Mapping[int, int]) -> NoiseTest:
    """Mann-Whitney U of B against A on binned values (the normal approximation; scipy's
    ``mannwhitneyu(b, a, method="asymptotic")``): a bin is a group of ties, given its mid-rank;
    the variance is tie-corrected; a continuity correction of ½. Exact integer sums, so a
    run of millions of queries loses nothing to rounding before the last division."""
    na, nb = sum(a.values()), sum(b.values())
    n = na + nb
    if na == 0 or nb == 0:
        return NoiseTest("mann-whitney-u", "z", 0.0, 1.0, 0, na, nb)
    before = 0  # values ranked below the current bin
    twice_rank_b = 0  # 2 × the rank sum of B (mid-ranks are halves)
    ties = 0
    for key in sorted(set(a) | set(b)):
        ca, cb = a.get(key, 0), b.get(key, 0)
        t = ca + cb
        twice_rank_b += cb * (2 * before + t + 1)
        ties += t ** 3 - t
        before += t
    u_b = twice_rank_b / 2 - nb * (nb + 1) / 2
    mean = na * nb / 2
    var = na * nb / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:  # every value in one bin: nothing to tell apart
        return NoiseTest("mann-whitney-u", "z", 0.0, 1.0, 0, na, nb, {"u": u_b, "p_b_greater": 0.5})
    diff = u_b - mean
    z = (diff - math.copysign(0.5, diff) if diff else 0.0) / math.sqrt(var)
    # P(B > A) + ½ P(tie): how often a query of B is slower than one of A (0.5: no shift).
    return NoiseTest("mann-whitney-u", "z", z, _two_sided_p(z), _direction(diff), na, nb,
                     {"u": u_b, "p_b_greater": u_b / (na * nb)})


def quantile_test(a: Mapping[int, int], b: Mapping[int, int], q: float) -> NoiseTest:
    """Mood's quantile test: is the q-quantile of B where A's is? The pooled q-quantile bin
    splits each run's queries into above it and not; the two shares above are compared with
    a two-proportion z-test (z² is the 2×2 chi-square without continuity correction). Under
    the same distribution both shares are equal, whatever the bins."""
    na, nb = sum(a.values()), sum(b.values())
    n = na + nb
    if na == 0 or nb == 0:
        return NoiseTest("mood-quantile", "z", 0.0, 1.0, 0, na, nb, {"q": q})
    keys = sorted(set(a) | set(b))
    need, seen, split = q * n, 0, keys[-1]
    for key in keys:
        seen += a.get(key, 0) + b.get(key, 0)
        if seen >= need:
            split = key
            break
    above_a = sum(c for k, c in a.items() if k > split)
    above_b = sum(c for k, c in b.items() if k > split)
    pooled = (above_a + above_b) / n
    detail = {"q": q, "threshold_ms": bin_value_ms(split), "share_above_a": above_a / na, "share_above_b": above_b / nb}
    if pooled <= 0.0 or pooled >= 1.0:
        return NoiseTest("mood-quantile", "z", 0.0, 1.0, 0, na, nb, detail)
    shift = above_b / nb - above_a / na
    z = shift / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    return NoiseTest("mood-quantile", "z", z, _two_sided_p(z), _direction(shift), na, nb, detail)


def noise_test(metric: Metric, base: GateSide, new: GateSide) -> tuple[NoiseTest | None, str | None]:
    """The test that fits a latency metric, or None and why there is none."""
    if metric.family != "latency":
        return None, None
    if metric.stat == "max":
        return None, "a maximum is one query: no test"
    a, b = base.bins(metric.kind), new.bins(metric.kind)
    if a is None or b is None:
        return None, "no MEASUREMENT histograms on " + ("both sides" if a is None and b is None else "one side")
    q = metric.quantile
    return (quantile_test(a, b, q) if q is not None else mann_whitney(a, b)), None


# --- verdicts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    bound: Bound
    base: float | None
    new: float | None
    beyond: bool  # the change passes the bound
    verdict: str  # "pass" | "fail" | "missing" | "noise" (beyond the bound, within the noise: a pass)
    why: str
    noise: NoiseTest | None = None
    significant: bool | None = None

    @property
    def failed(self) -> bool:
        return self.verdict in ("fail", "missing")

    @property
    def change(self) -> float | None:
        return None if self.base is None or self.new is None else self.new - self.base

    @property
    def share(self) -> float | None:
        """Relative change; ±inf from a base of 0, None when unknown or 0 → 0."""
        if self.change is None or self.base is None:
            return None
        if self.base == 0:
            return None if self.change == 0 else math.copysign(math.inf, self.change)
        return self.change / abs(self.base)

    def to_json(self) -> dict[str, Any]:
        share = self.share
        return {
            "bound": self.bound.text, "metric": self.bound.metric.key, "label": self.bound.metric.label,
            "unit": self.bound.metric.unit, "base": _round(self.base), "new": _round(self.new),
            "change": _round(self.change),
            "change_share": None if share is None or math.isinf(share) else _round(share),
            "bound_sign": self.bound.sign, "bound_amount": self.bound.amount, "bound_relative": self.bound.relative,
            "beyond_bound": self.beyond, "significant": self.significant,
            "noise": self.noise.to_json() if self.noise else None,
            "verdict": self.verdict, "failed": self.failed, "why": self.why,
        }


def beyond_bound(bound: Bound, base: float, new: float) -> bool:
    """Whether new moved away from base, in the bound's direction, by more than the bound."""
    moved = (new - base) * bound.sign  # > 0: in the bound's direction
    if not bound.relative:
        return moved > bound.amount
    if base == 0:
        return moved > 0
    return moved / abs(base) > bound.amount


def evaluate(bound: Bound, base: GateSide, new: GateSide, *, noise_aware: bool = True,
             alpha: float = DEFAULT_ALPHA) -> Verdict:
    a, why_a = metric_value(base, bound.metric)
    b, why_b = metric_value(new, bound.metric)
    if a is None or b is None:
        missing = "; ".join(f"{side}: {why}" for side, why in (("base", why_a), ("new", why_b)) if why)
        return Verdict(bound, a, b, False, "missing", f"{bound.metric.key} missing ({missing})")
    beyond = beyond_bound(bound, a, b)
    test, no_test = noise_test(bound.metric, base, new)  # also when within the bound: both are reported
    significant = None if test is None else (test.p_value < alpha and test.direction == bound.sign)
    if not beyond:
        return Verdict(bound, a, b, False, "pass", "within the bound", test, significant)
    if test is None:
        return Verdict(bound, a, b, True, "fail", "beyond the bound" + (f" ({no_test})" if no_test else ""))
    said = f"{test.name}: {p_text(test.p_value)}" + ("" if test.direction == bound.sign or not test.direction
                                                   else ", the other way")
    if significant:
        return Verdict(bound, a, b, True, "fail", f"beyond the bound and beyond the noise ({said})", test, True)
    if noise_aware:
        return Verdict(bound, a, b, True, "noise", f"beyond the bound, within the noise ({said}, α={alpha:g})",
                       test, False)
    return Verdict(bound, a, b, True, "fail", f"beyond the bound (within the noise: {said}; --no-noise-aware)",
                   test, False)


@dataclass(frozen=True, slots=True)
class GateReport:
    verdicts: list[Verdict]
    noise_aware: bool
    alpha: float

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    def to_json(self) -> dict[str, Any]:
        return {"noise_aware": self.noise_aware, "alpha": self.alpha, "passed": not self.failed,
                "failed": [v.bound.text for v in self.failed], "bounds": [v.to_json() for v in self.verdicts]}


def check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"--alpha {alpha:g}: a significance level is between 0 and 1, e.g. 0.05")
    return alpha


def run_gate(bounds: Sequence[Bound], base: GateSide, new: GateSide, *, noise_aware: bool = True,
             alpha: float = DEFAULT_ALPHA) -> GateReport:
    check_alpha(alpha)
    return GateReport([evaluate(b, base, new, noise_aware=noise_aware, alpha=alpha) for b in bounds],
                      noise_aware, alpha)
