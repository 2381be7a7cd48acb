"""Every TraceQL recipe in README and deploy/ parses with Grafana's grammar and fits a real trace.

Grafana's Tempo query editor marks a query red with ``@grafana/lezer-traceql``; this test
runs that same package (under node, installed by .ci/run) over every recipe and fails on
any error node. The recipes are found by the rules in ``support.traceql`` (fenced
``traceql`` blocks and ``gaps --query`` arguments in README; Tempo queries and Explore
links in deploy/), and their counts are pinned here, so a recipe that moves out of reach
of the rules fails too. Then the span names and attributes each recipe uses are looked up
in the trace of one real run on PostgreSQL.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from conftest import run_cli, spanbench_env
from spanbench.analysis.fetch import is_traceql_metrics_query, tempo_search_url
from support.traceql import (
    GRAMMAR, HERE, ROOT, GrammarUnavailable, Recipe, _DeployWalk, deploy_recipes, parse, readme_recipes,
)

README = ROOT / "README.md"

# README: the Grafana/Tempo step of the compose walkthrough (1), "TraceQL for runs": runs (5),
# start-up (5), START → first query (2), trouble (5), find-max (2), errors and queries (3),
# trace budget (2), TraceQL metrics (3), and the `spanbench gaps --query` example (1).
README_RECIPES = 29
# deploy/: the dashboard's three Explore links (every run, this run, START → first query).
DEPLOY_RECIPES = 3
# deploy/: trace-to-metrics tags of the Tempo and Jaeger data sources.
DEPLOY_ATTRIBUTES = 2

# Attributes a recipe may use that a clean, short run's trace does not hold, and why.
CONDITIONAL_ATTRIBUTES = {
    "error.type": "set on a query span only when its query failed (load/query_spans.py); a clean run has none",
    "reconnect.attempts": "on pool.reconnect spans, which exist only when a connection broke (worker.py)",
    "reconnect.outcome": "on pool.reconnect spans, which exist only when a connection broke (worker.py)",
    "load.step.verdict": "on load.step spans, which only a find_max run has (load/find_max.py)",
    "load.step.connections": "on load.step spans, which only a find_max run has (load/find_max.py)",
    "load.step.p95_ms": "on load.step spans, which only a find_max run has (load/find_max.py)",
    "spanbench.coarsened.count": "on summarising heartbeat spans, made past repeating_span_budget "
                                 "(telemetry/repeating.py); tests/test_trace_budget.py makes them",
    "spanbench.coarsened.mean_ms": "on the same summarising spans (telemetry/repeating.py)",
}
# Spans a recipe may name that a clean, short run does not have, and why.
CONDITIONAL_SPANS = {
    "pool.reconnect": "a broken target connection re-opened (worker.py pool_reconnect); tests/test_trouble.py makes them",
    "load.step": "one per step of a find_max run (load/find_max.py); tests/test_load_find_max.py makes them",
}
# Attributes recipes use before the code that sets them has landed.
PENDING_ATTRIBUTES: dict[str, str] = {}

READ_ME, README_STRAYS = readme_recipes(README.read_text(encoding="utf-8"))
DEPLOY, DEPLOY_ATTRS, DEPLOY_STRAYS = deploy_recipes()
RECIPES: list[Recipe] = READ_ME + DEPLOY


# --------------------------------------------------------------------------- the grammar


@pytest.fixture(scope="module")
def grammar() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Grafana's grammar over every recipe (one node process), plus the probes below."""
    try:
        return parse([(r.where, r.query) for r in RECIPES] + [(f"probe:{q}", q) for q in PROBES])
    except GrammarUnavailable as err:
        pytest.fail(str(err), pytrace=False)


# What the grammar says about spanbench's attribute names: these pin the reason the
# recipes quote them, and show that an error node is really reported.
PROBES = {
    '{ .spanbench.run_id = "x" }': False,
    '{ span.spanbench.run_id = "x" }': False,
    '{ resource.spanbench.run_id = "x" }': False,
    '{ name = "run" ': False,
    '{ ."spanbench.run_id" = "x" }': True,
    '{ span."spanbench.run_id" = "x" }': True,
    '{ resource."spanbench.run_id" = "x" }': True,
    '{ resource.service.name = "spanbench-worker" }': True,
}


def test_grammar_is_pinned(grammar) -> None:
    header, _ = grammar
    pkg = json.loads((HERE / "package.json").read_text())
    lock = json.loads((HERE / "package-lock.json").read_text())
    pinned = pkg["dependencies"][GRAMMAR]
    assert pinned[0].isdigit(), f"{GRAMMAR} must be pinned to an exact version, not {pinned!r}"
    assert lock["packages"][f"node_modules/{GRAMMAR}"]["version"] == pinned
    assert header == {"grammar": GRAMMAR, "version": pinned}, "the installed grammar is not the pinned one"


@pytest.mark.parametrize("query,ok", PROBES.items(), ids=list(PROBES))
def test_grammar_reads_span_and_resource_as_scopes(grammar, query: str, ok: bool) -> None:
    result = grammar[1][f"probe:{query}"]
    assert result["ok"] is ok, result["errors"] or result["tree"]


def test_recipe_counts() -> None:
    found = "\n".join(f"  {r.where}: {r.query}" for r in READ_ME)
    assert len(READ_ME) == README_RECIPES, f"README holds {len(READ_ME)} recipes, expected {README_RECIPES}:\n{found}"
    assert len(DEPLOY) == DEPLOY_RECIPES, f"deploy/ holds {[r.where for r in DEPLOY]}"
    assert len(DEPLOY_ATTRS) == DEPLOY_ATTRIBUTES, f"deploy/ names attributes {DEPLOY_ATTRS}"


def test_no_traceql_outside_the_recipes() -> None:
    strays = README_STRAYS + DEPLOY_STRAYS
    assert not strays, "TraceQL outside a ```traceql block (README) or a Tempo query (deploy/), so untested:\n" + \
        "\n".join(f"  {s.where}: {s.text}" for s in strays)


def test_the_rules_find_recipes_and_strays() -> None:
    text = """intro `{ name = "run" }` inline
```sh
pip install x && { command -v y || true; }
spanbench gaps --tempo http://t:3200 --query '{ name = "a" }'
curl 'http://t/api/traces/{id}'
```
- item
  ```traceql
  { .x = 1 }

  { } | rate()
  ```
```
{ status = error }
```
"""
    recipes, strays = readme_recipes(text, "T.md")
    assert [(r.where, r.query) for r in recipes] == [
        ("T.md:4", '{ name = "a" }'), ("T.md:9", "{ .x = 1 }"), ("T.md:11", "{ } | rate()")]
    assert [s.where for s in strays] == ["T.md:1", "T.md:14"]

    panes = {"p": {"datasource": "tempo", "queries": [{"refId": "A", "query": "{ name = \"x\" }"}]}}
    dashboard = {
        "links": [{"title": "L", "url": "/explore?panes=" + quote(json.dumps(panes))},
                  {"title": "old", "url": "/explore?left=" + quote(json.dumps(
                      {"datasource": "other", "queries": [{"queryType": "traceql", "query": "{ }"}]}))}],
        "panels": [{"datasource": {"type": "tempo", "uid": "t"}, "targets": [
            {"refId": "A", "query": "{ status = error }"},
            {"refId": "B", "datasource": {"type": "prometheus", "uid": "p"}, "expr": "up", "query": "x"}]},
            {"description": "see { name = \"hidden\" }"}],
        "jsonData": {"tracesToMetrics": {"tags": [{"key": "spanbench.run_id"}], "queries": [
            {"query": 'sum(rate(m{$$__tags}[1m]))'}]}},
    }
    walk = _DeployWalk({"tempo"})
    walk.walk(dashboard, "d.json: ")
    assert [r.query for r in walk.recipes] == ['{ name = "x" }', "{ }", "{ status = error }"]
    assert walk.recipes[0].where == "d.json: links[0] (L).url → explore p.queries[0] (A)"
    assert [a.name for a in walk.attributes] == ["spanbench.run_id"]
    assert [s.where for s in walk.strays] == ["d.json: panels[1].description"]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.where for r in RECIPES])
def test_recipe_parses_in_grafana(grammar, recipe: Recipe) -> None:
    result = grammar[1][recipe.where]
    assert result["query"] == recipe.query
    errors = "; ".join(f"at {e['from']} ({e['parent']}): {e['near']!r}" for e in result["errors"])
    assert result["ok"], f"{recipe.where}: Grafana's TraceQL grammar marks {recipe.query!r} red {errors}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.where for r in RECIPES])
def test_spanbench_attributes_are_quoted(grammar, recipe: Recipe) -> None:
    for attr in grammar[1][recipe.where]["attributes"]:
        if attr["name"].startswith("spanbench."):
            assert f'"{attr["name"]}"' in attr["text"], f"{recipe.where}: write {attr['text']} quoted"


def test_readme_says_why_spanbench_attributes_are_quoted() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### TraceQL for runs"):text.index("### Metrics")]
    why = section[section.index("Why `spanbench.*` attributes are quoted"):]
    for needed in ("scope", "`.spanbench.run_id`", '`."spanbench.run_id"`', '`span."spanbench.run_id"`', GRAMMAR):
        assert needed in why.split("\n\n")[0], f"the quoting paragraph does not mention {needed}"


# --------------------------------------------------------------------------- the trace model


@dataclass
class TraceModel:
    span_names: set[str] = field(default_factory=set)
    span_attrs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # span name -> keys
    resource_attrs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # span name -> keys
    services: set[str] = field(default_factory=set)

    def has(self, scope: str | None, key: str, names: list[str]) -> bool:
        """Whether spans named ``names`` (any span when empty) carry ``key`` in ``scope``."""
        among = names or sorted(self.span_names)
        span = any(key in self.span_attrs.get(n, ()) for n in among)
        resource = any(key in self.resource_attrs.get(n, ()) for n in among)
        if scope == "span":
            return span
        if scope == "resource":
            return resource
        if scope is None:
            return span or resource
        if scope == "parent":
            return any(key in keys for keys in self.span_attrs.values())
        return False  # event., link., instrumentation.: spanbench records none


def read_model(run_dir: Path) -> TraceModel:
    def value(v: dict[str, Any]) -> Any:
        return next(iter(v.values()), None)

    model = TraceModel()
    files = sorted(run_dir.glob("trace-*.jsonl"))
    assert files, f"no trace-*.jsonl in {run_dir}"
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            for rs in json.loads(line)["resourceSpans"]:
                resource = {a["key"]: value(a["value"]) for a in rs["resource"].get("attributes", [])}
                model.services.add(resource.get("service.name", ""))
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        model.span_names.add(sp["name"])
                        model.span_attrs[sp["name"]].update(a["key"] for a in sp.get("attributes", []))
                        model.resource_attrs[sp["name"]].update(resource)
    return model


@pytest.fixture(scope="module")
def model(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> TraceModel:
    out = tmp_path_factory.mktemp("traceql-run")
    res = run_cli(["run", "--target-dsn", pg_dsn, "--duration", "0.5s", "--warmup", "0s"],
                  output=out, env=spanbench_env(SPANBENCH_TRACING="1"))
    assert res.returncode == 0, res.stderr + res.stdout
    return read_model(res.run_dir())


def problems(model: TraceModel, parsed: dict[str, Any]) -> list[str]:
    """What a parsed recipe uses that the run's trace does not hold (conditional attributes aside)."""
    out = []
    for c in parsed["comparisons"]:
        if c["field"] in ("name", "span:name") and c["value"] not in model.span_names | set(CONDITIONAL_SPANS):
            out.append(f"no span is named {c['value']!r}")
        if c["field"] in ("resource.service.name", 'resource."service.name"') and c["op"] == "=" \
                and c["value"] not in model.services:
            out.append(f"no process is the service {c['value']!r}")

    def check(attr: dict[str, Any], names: list[str]) -> None:
        key = attr["name"]
        if key in CONDITIONAL_ATTRIBUTES or (key in PENDING_ATTRIBUTES and not model.has(None, key, [])):
            return  # once a pending attribute is in the trace, it is checked like any other
        # A conditional span is made by a worker: its resource attributes are the worker's.
        names = ["worker" if n in CONDITIONAL_SPANS and attr["scope"] == "resource" else n for n in names]
        if not model.has(attr["scope"], key, names):
            on = f" on {' or '.join(names)} spans" if names else ""
            out.append(f"{attr['text']}: no {attr['scope'] or 'span or resource'} attribute {key!r}{on}")

    in_filters = set()
    for flt in parsed["filters"]:
        for attr in flt["attributes"]:
            check(attr, flt["names"])
            in_filters.add(attr["text"])
    # metrics arguments, select(), by(): the spans of the last spanset filter
    last = parsed["filters"][-1]["names"] if parsed["filters"] else []
    for attr in parsed["attributes"]:
        if attr["text"] not in in_filters:
            check(attr, last)
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.where for r in RECIPES])
def test_recipe_fits_a_real_trace(grammar, model: TraceModel, recipe: Recipe) -> None:
    found = problems(model, grammar[1][recipe.where])
    assert not found, f"{recipe.where}: {recipe.query}\n  " + "\n  ".join(found)


@pytest.mark.parametrize("ref", DEPLOY_ATTRS, ids=[a.where for a in DEPLOY_ATTRS])
def test_config_attribute_is_in_a_real_trace(model: TraceModel, ref) -> None:
    assert model.has(None, ref.name, []), f"{ref.where}: no span or resource attribute {ref.name!r} in a run's trace"


def test_conditional_attributes_are_real(grammar) -> None:
    """An attribute excused from the trace check is one spanbench sets, and one a recipe uses."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "spanbench").rglob("*.py"))
    for name in CONDITIONAL_ATTRIBUTES:
        assert f'"{name}"' in source, f"{name} is excused as conditional but nothing in src/spanbench sets it"
    used = {a["name"] for r in RECIPES for a in grammar[1][r.where]["attributes"]}
    for name in {**CONDITIONAL_ATTRIBUTES, **PENDING_ATTRIBUTES}:
        assert name in used, f"{name} is excused but no recipe uses it: drop it from the list"


def test_the_trace_check_catches_what_a_run_lacks(grammar, model: TraceModel) -> None:
    """The model check itself: names and attributes a run does not have are reported."""
    bad = {
        '{ name = "no_such_span" }': "no span is named 'no_such_span'",
        '{ name = "run" && span."spanbench.no_such_attr" = 1 }': "'spanbench.no_such_attr' on run spans",
        '{ name = "run" && span."spanbench.worker_id" = "w0" }': "'spanbench.worker_id' on run spans",
        '{ name = "run" && resource."spanbench.sample_reason" = "slow" }': "no resource attribute",
        '{ name = "run" && resource.service.name = "spanbench-nobody" }': "no process is the service",
        '{ name = "first_query" } | avg_over_time(span."spanbench.table.rows")': "'spanbench.table.rows' on first_query",
    }
    _, results = parse(list(zip(bad, bad)))
    for query, expected in bad.items():
        assert results[query]["ok"], results[query]["errors"]
        found = problems(model, results[query])
        assert any(expected in p for p in found), f"{query}: expected a problem like {expected!r}, got {found}"
    good = '{ name = "worker" && span."spanbench.worker_id" = "w0" } | select(resource."spanbench.run_id")'
    _, results = parse([(good, good)])
    assert problems(model, results[good]) == []


# --------------------------------------------------------------------------- spanbench gaps --query


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.where for r in RECIPES])
def test_gaps_query_takes_the_recipe(grammar, recipe: Recipe) -> None:
    """`spanbench gaps --tempo URL --query` sends a span-set recipe intact and refuses a metrics one."""
    metrics = "MetricsOperation" in grammar[1][recipe.where]["tree"]
    assert is_traceql_metrics_query(recipe.query) is metrics, "gaps and Grafana disagree on what is a metrics query"
    if not metrics:
        url = tempo_search_url("http://tempo:3200", recipe.query)
        assert " " not in url and "+" not in url and '"' not in url
        assert parse_qs(urlsplit(url).query)["q"] == [recipe.query]
