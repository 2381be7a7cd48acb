"""spanbench's TraceQL: where the recipes live (README, deploy/), and Grafana's grammar over them.

The recipes are found by rule, not by guess:

* README: every line of a fenced block tagged ``traceql`` (one query per line, blank lines
  ignored; the fence may be indented under a list item), and every ``--query '…'``
  argument in a fenced ``sh`` block. Any other text in README that looks like TraceQL is
  a *stray* and fails the tests, so a recipe cannot hide from them.
* deploy/: every JSON and YAML file is walked as data. A TraceQL query is the ``query`` of
  an object whose ``queryType`` is ``traceql`` or whose data source is Tempo; a link to
  Grafana's Explore (``/explore?panes=…`` or ``?left=…``) is decoded and walked the same
  way. Trace-to-metrics ``tags`` name trace attributes (checked against a run's trace);
  their ``queries`` are PromQL. Any other string that looks like TraceQL is a stray.

``parse`` runs ``parse.mjs`` (node, with ``@grafana/lezer-traceql`` installed by
``npm ci --prefix tests/support/traceql``) over a list of queries.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PARSER = HERE / "parse.mjs"
GRAMMAR = "@grafana/lezer-traceql"

# Text that reads as TraceQL: a spanset filter that opens with a field, an attribute or "}".
# It leaves out shell braces ("{ command -v …; }"), PromQL selectors ({span_name="x"},
# {$__tags}) and URL templates (/api/traces/{id}).
TRACEQL_LIKE = re.compile(
    r"\{\s*(?:\}|\.[\w\"]|(?:name|status|statusMessage|duration|kind|childCount|rootName|rootServiceName"
    r"|traceDuration)\s*(?:=|!=|>|<|=~|!~)|(?:span|resource|parent|event|link|instrumentation|trace)[.:])"
)


@dataclass(frozen=True)
class Recipe:
    where: str  # "README.md:412" or "deploy/…json: links[1] (This run in Tempo) → …"
    query: str


@dataclass(frozen=True)
class AttributeRef:
    """A trace attribute named in a config outside TraceQL (trace-to-metrics tags)."""

    where: str
    name: str


@dataclass(frozen=True)
class Stray:
    where: str
    text: str


# --------------------------------------------------------------------------- README

_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
_QUERY_ARG = re.compile(r"--query\s+'([^']*)'")


def readme_recipes(text: str, name: str = "README.md") -> tuple[list[Recipe], list[Stray]]:
    recipes: list[Recipe] = []
    strays: list[Stray] = []
    fence: tuple[str, str] | None = None  # (marker, info string) of the open block
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        m = _FENCE.match(line)
        if fence is None and m:
            fence = (m.group(2), m.group(3).lower())
            continue
        if fence is not None and m and m.group(2).startswith(fence[0]) and not m.group(3):
            fence = None
            continue
        rest = line
        if fence is not None and fence[1] == "traceql":
            if line.strip():
                recipes.append(Recipe(where, line.strip()))
            continue
        if fence is not None and fence[1] in ("toml", "json", "yaml", "python"):
            continue  # data and code: TOML inline tables look like spansets, and are not TraceQL
        if fence is not None and fence[1] in ("sh", "bash", "shell"):
            for q in _QUERY_ARG.finditer(line):
                recipes.append(Recipe(where, q.group(1)))
            rest = _QUERY_ARG.sub("--query ''", line)
        if TRACEQL_LIKE.search(rest):
            strays.append(Stray(where, line.strip()))
    assert fence is None, f"{name}: a fenced block is never closed"
    return recipes, strays


# --------------------------------------------------------------------------- deploy/


def _label(node: dict[str, Any]) -> str:
    for key in ("title", "name", "refId"):
        if isinstance(node.get(key), str):
            return f" ({node[key]})"
    return ""


def _is_tempo(datasource: Any, tempo_uids: set[str]) -> bool:
    if isinstance(datasource, dict):
        return datasource.get("type") == "tempo" or datasource.get("uid") in tempo_uids
    return isinstance(datasource, str) and datasource in tempo_uids


def _explore_panes(url: str) -> Any | None:
    """The decoded pane state of a link to Grafana's Explore, or None for any other string."""
    if "/explore" not in url or "?" not in url:
        return None
    params = parse_qs(urlsplit(url).query)
    if "panes" in params:
        return json.loads(params["panes"][0])
    if "left" in params:
        return {"left": json.loads(params["left"][0])}
    return None


def _join(where: str, key: str) -> str:
    return f"{where}{key}" if where.endswith(" ") else f"{where}.{key}"


class _DeployWalk:
    def __init__(self, tempo_uids: set[str]) -> None:
        self.tempo_uids = tempo_uids
        self.recipes: list[Recipe] = []
        self.attributes: list[AttributeRef] = []
        self.strays: list[Stray] = []

    def walk(self, node: Any, where: str, tempo: bool = False) -> None:
        if isinstance(node, dict):
            if "datasource" in node:  # an object's own data source wins over its parent's
                tempo = _is_tempo(node["datasource"], self.tempo_uids)
            query = node.get("query")
            taken = isinstance(query, str) and (node.get("queryType") == "traceql" or (tempo and "expr" not in node))
            if taken:
                self.recipes.append(Recipe(where, query))
            t2m = node.get("tracesToMetrics")
            if isinstance(t2m, dict):
                for i, tag in enumerate(t2m.get("tags") or []):
                    self.attributes.append(AttributeRef(f"{_join(where, 'tracesToMetrics')}.tags[{i}]", tag["key"]))
            for key, value in node.items():
                if not (taken and key == "query"):
                    self.walk(value, _join(where, str(key)), tempo)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self.walk(value, f"{where}[{i}]{_label(value) if isinstance(value, dict) else ''}", tempo)
        elif isinstance(node, str):
            panes = _explore_panes(node)
            if panes is not None:
                self.walk(panes, f"{where} → explore ", False)
            elif TRACEQL_LIKE.search(node):
                self.strays.append(Stray(where, node))


def deploy_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "deploy").rglob("*") if p.suffix in (".json", ".yaml", ".yml"))


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def deploy_recipes(root: Path = ROOT) -> tuple[list[Recipe], list[AttributeRef], list[Stray]]:
    docs = {p: _load(p) for p in deploy_files(root)}
    tempo_uids = {
        ds["uid"] for doc in docs.values() if isinstance(doc, dict)
        for ds in doc.get("datasources") or [] if ds.get("type") == "tempo" and ds.get("uid")
    }
    walk = _DeployWalk(tempo_uids)
    for path, doc in docs.items():
        walk.walk(doc, path.relative_to(root).as_posix() + ": ")
    return walk.recipes, walk.attributes, walk.strays


# --------------------------------------------------------------------------- the grammar


class GrammarUnavailable(Exception):
    """node or the npm package is missing: the message says how to install them."""


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise GrammarUnavailable(
            "node is not on PATH: the TraceQL recipes are parsed with Grafana's grammar "
            f"({GRAMMAR}) under node. Install node and npm (apt-get install nodejs npm), then "
            "`npm ci --prefix tests/support/traceql`; .ci/run does both."
        )
    return node


def parse(queries: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Parse (id, query) pairs: the grammar's name and version, and each id's result."""
    node = node_binary()
    if not (HERE / "node_modules" / GRAMMAR / "package.json").is_file():
        raise GrammarUnavailable(
            f"{GRAMMAR} is not installed in {HERE.relative_to(ROOT)}/node_modules: run "
            "`npm ci --prefix tests/support/traceql` (.ci/run does, before the tests)."
        )
    lines = "".join(json.dumps({"id": i, "query": q}) + "\n" for i, q in queries)
    proc = subprocess.run([node, str(PARSER)], input=lines, capture_output=True, text=True, timeout=120,
                          cwd=HERE)
    if proc.returncode != 0:
        raise GrammarUnavailable(f"{PARSER.name} failed ({proc.returncode}): {proc.stderr.strip()}")
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    header, results = out[0], {r["id"]: r for r in out[1:]}
    assert len(results) == len({i for i, _ in queries}), f"{PARSER.name} answered {len(results)} of {len(queries)}"
    return header, results
