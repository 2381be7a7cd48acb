"""Full runs on Snowflake (a real fakesnow server, the real connector), checked through the trace.

Every run is ``spanbench run`` as a subprocess with SPANBENCH_TRACING=1; the assertions read
the OTLP/JSON lines in the run folder.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from conftest import run_cli, spanbench_env
from support.fakesnow_server import FakesnowServer, free_port, unique_name
from support.traces import Tree, read_spans

from spanbench.settings import Settings
from spanbench.targets.open import open_target

ROWS = 5_000


@pytest.fixture(scope="module")
def sf_dsn(fakesnow: FakesnowServer) -> str:
    """One fakesnow database with the demo table, shared by the runs of this module."""
    dsn = fakesnow.dsn(unique_name("RUNS"))

    async def init() -> None:
        target = await open_target(dsn, Settings())
        from spanbench.workload.demo import init_demo_table

        await init_demo_table(target, ROWS)
        await target.close()

    asyncio.run(init())
    return dsn


def run(tmp: Path, target: str, control: str | None = None, *, workers: int = 2, connections: int = 4,
        batch: int = 8) -> tuple[Tree, dict, Path]:
    args = ["run", "--target-dsn", target, "--workers", str(workers), "--connections", str(connections),
            "--pool-batch-size", str(batch), "--warmup", "0.2s", "--duration", "1s"]
    if control:
        args += ["--control-dsn", control]
    res = run_cli(args, output=tmp, env=spanbench_env(SPANBENCH_TRACING="1"), timeout=240)
    assert res.returncode == 0, res.stderr + res.stdout
    run_dir = res.run_dir()
    return Tree(read_spans(run_dir)), json.loads((run_dir / "results.json").read_text()), run_dir


def edges(tree: Tree) -> set[tuple[str, str]]:
    """(parent name, child name) pairs: the shape of the tree without counts or timings.

    Spans that exist only when something happens are left out: ``query`` spans are sampled
    (first per connection, slow ones, 1 in N), so whether a worker has more than its
    first_query depends on the target's speed; a ``control.poll`` span during the load is
    made only when a NOTIFY (PostgreSQL) wakes the worker between two heartbeats.
    """
    optional = {"query", "control.poll"}
    out = set()
    for s in tree.spans:
        parent = tree.by_id.get(s.parent_id or "")
        if parent is not None and s.name not in optional:
            out.add((parent.name, s.name))
    return out


@pytest.fixture(scope="module")
def sf_run(sf_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, dict, Path]:
    return run(tmp_path_factory.mktemp("sf"), sf_dsn)


def test_snowflake_run_has_the_postgres_span_tree(sf_run, pg_dsn: str, tmp_path: Path) -> None:
    sf_tree, sf_results, _ = sf_run
    pg_tree, _, _ = run(tmp_path, pg_dsn)
    assert len(sf_tree.roots()) == 1 and sf_tree.roots()[0].name == "run"
    assert len({s.trace_id for s in sf_tree.spans}) == 1
    assert edges(sf_tree) == edges(pg_tree)
    assert sf_results  # results.json was written


def test_snowflake_query_spans_carry_system_and_query_id(sf_run) -> None:
    tree, _, _ = sf_run
    firsts = tree.named("first_query")
    assert len(firsts) == 2  # one per worker
    for s in firsts + tree.named("query"):
        assert s.attrs["db.system.name"] == "snowflake"
        qid = s.attrs.get("db.snowflake.query_id")
        assert isinstance(qid, str) and len(qid) == 36, s.attrs
        assert s.attrs.get("db.query.text", "").endswith("WHERE aid = ?")
        assert "snow" not in json.dumps(s.attrs).replace("snowflake", "")  # no password anywhere
    for c in tree.named("pool.connect"):
        assert c.attrs["db.system.name"] == "snowflake"


@pytest.mark.parametrize(("connections", "sizes"), [(16, [8, 8]), (20, [8, 8, 4])])
def test_batch_structure(sf_dsn: str, tmp_path: Path, connections: int, sizes: list[int]) -> None:
    tree, _, _ = run(tmp_path, sf_dsn, workers=1, connections=connections, batch=8)
    (pool,) = tree.named("pool.init")
    assert pool.attrs["pool.size"] == connections and pool.attrs["pool.batch_size"] == 8
    batches = tree.kids(pool, "pool.batch")
    assert [len(tree.kids(b, "pool.connect")) for b in batches] == sizes
    assert [b.attrs["batch.index"] for b in batches] == list(range(len(sizes)))
    for a, b in zip(batches, batches[1:]):
        assert a.end <= b.start  # batches in sequence
    for b in batches:
        connects = tree.kids(b, "pool.connect")
        assert max(c.start for c in connects) < min(c.end for c in connects)  # concurrent within a batch
    assert math.isclose(len(tree.named("pool.connect")), connections)


def test_postgres_target_with_snowflake_control(pg_dsn: str, fakesnow: FakesnowServer, tmp_path: Path) -> None:
    tree, results, _ = run(tmp_path, pg_dsn, fakesnow.dsn(unique_name("CTL")))
    assert {s.attrs.get("db.system.name") for s in tree.named("first_query")} == {"postgresql"}
    assert len(tree.named("worker")) == 2 and results


def test_snowflake_target_with_postgres_control(sf_dsn: str, pg_dsn: str, tmp_path: Path) -> None:
    tree, results, _ = run(tmp_path, sf_dsn, pg_dsn)
    assert {s.attrs.get("db.system.name") for s in tree.named("first_query")} == {"snowflake"}
    assert len(tree.named("worker")) == 2 and results


def test_unreachable_snowflake_is_one_line_and_non_zero(tmp_path: Path) -> None:
    """fakesnow accepts any password; a login that cannot happen at all takes the same error path."""
    dsn = f"snowflake://fake:hunter2secret@fakesnow/DB/PUBLIC?host=127.0.0.1&port={free_port()}&protocol=http"
    res = run_cli(["run", "--target-dsn", dsn, "--workers", "1", "--connections", "1", "--duration", "1s"],
                  output=tmp_path, env=spanbench_env(SPANBENCH_CONNECT_TIMEOUT="2s"), timeout=120)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and "hunter2" not in res.stderr + res.stdout
    assert "cannot connect to Snowflake" in lines[0]
