"""Layers that point one way: the import graph of spanbench's own modules, read from the source.

Every ``import`` counts, at module level and inside functions (a lazy import is still a
dependency: it only moves the failure to the first call). Nodes of the package graph are
``spanbench.X``: a subpackage (``analysis``, ``report``, …) or a top-level module
(``orchestrator``, ``results``, …).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "spanbench"

# Imports that break a rule and wait for a file outside this change, each with why. Each entry
# must still be there (the last test says when one can go), so this list only shrinks.
PENDING: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[str]:
    """Every spanbench module ``path`` imports, wherever the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # ``from spanbench.report import html`` imports spanbench.report.html
                yield f"{target}.{alias.name}"


def module_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {t for t in imports_of(path) if t in modules and t != name}
    return graph


def node(module: str) -> str:
    """``spanbench.analysis.gaps`` → ``spanbench.analysis``; the root package stays itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in graph.items() for b in targets if (a, b) not in PENDING}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph()


def _offending(graph: dict[str, set[str]], source: str, allowed: set[str] | None = None,
               forbidden: set[str] | None = None) -> list[str]:
    out = []
    for a, b in sorted(edges(graph)):
        if node(a) != source or node(b) == source or b == "spanbench":
            continue
        if (allowed is not None and node(b) not in allowed) or (forbidden is not None and node(b) in forbidden):
            out.append(f"{a} imports {b}")
    return out


def test_the_graph_is_read_from_the_source(graph: dict[str, set[str]]) -> None:
    # the walker sees module-level, function-level and ``from package import module`` imports
    assert "spanbench.analysis.analyze" in graph["spanbench.report.waterfall"]
    assert "spanbench.report.run_report" in graph["spanbench.cli"]  # a lazy import inside a command
    assert "spanbench.outcome" in graph["spanbench.orchestrator"]


def test_analysis_imports_only_analysis_errors_units(graph: dict[str, set[str]]) -> None:
    allowed = {"spanbench.analysis", "spanbench.errors", "spanbench.units"}
    assert _offending(graph, "spanbench.analysis", allowed=allowed) == []


def test_targets_import_nothing_above_them(graph: dict[str, set[str]]) -> None:
    above = {f"spanbench.{n}" for n in ("orchestrator", "worker", "report", "analysis", "cli")}
    assert _offending(graph, "spanbench.targets", forbidden=above) == []


def test_report_does_not_import_the_orchestrator_or_the_worker(graph: dict[str, set[str]]) -> None:
    assert _offending(graph, "spanbench.report", forbidden={"spanbench.orchestrator", "spanbench.worker"}) == []


def _cycles(nodes_graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(nodes_graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(nodes_graph):
        if v not in index:
            visit(v)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, b in edges(graph):
        if node(a) != node(b) and "spanbench" not in (node(a), node(b)):
            out.setdefault(node(a), set()).add(node(b))
    return out


def test_cycle_detection_finds_a_planted_cycle() -> None:
    planted = {"spanbench.a": {"spanbench.b"}, "spanbench.b": {"spanbench.c"}, "spanbench.c": {"spanbench.a"}}
    assert _cycles(planted) == [["spanbench.a", "spanbench.b", "spanbench.c"]]


def test_no_package_imports_one_that_imports_it_back(graph: dict[str, set[str]]) -> None:
    pkgs = package_graph(graph)
    report = []
    for component in _cycles(pkgs):
        inside = set(component)
        report.append(f"packages {' → '.join(component)} import each other: " + "; ".join(
            f"{a} imports {b}" for a, targets in sorted(graph.items()) for b in sorted(targets)
            if (a, b) not in PENDING and node(a) in inside and node(b) in inside and node(a) != node(b)
        ))
    assert report == []


def test_every_pending_exception_is_still_needed(graph: dict[str, set[str]]) -> None:
    gone = sorted(f"{a} → {b}" for a, b in PENDING if b not in graph.get(a, set()))
    assert gone == [], f"these imports are gone: remove them from PENDING in tests/test_layers.py: {gone}"
