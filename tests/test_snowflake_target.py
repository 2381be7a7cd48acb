"""The Snowflake target against a real fakesnow server, through the real connector."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from support.fakesnow_server import FakesnowServer, free_port, unique_name

from spanbench.errors import TargetError
from spanbench.settings import Settings
from spanbench.targets.open import open_target
from spanbench.targets.snowflake import SnowflakeTarget, build_query_tag
from spanbench.workload import demo
from spanbench.workload.setup import column_range

SETTINGS = Settings(connect_timeout=5, statement_timeout=30)
TAG = {"run": "run-1", "worker": "w0", "phase": "INIT", "trace": "0af7651916cd43dd8448eb211c80319c"}


@pytest.fixture(scope="module")
def demo_dsn(fakesnow: FakesnowServer) -> str:
    dsn = fakesnow.dsn(unique_name("DEMO"))

    async def init() -> None:
        target = await open_target(dsn, SETTINGS)
        assert await demo.demo_table_rows(target) is None
        await demo.init_demo_table(target, 5_000)
        assert await demo.demo_table_rows(target) == 5_000
        await target.close()

    asyncio.run(init())
    return dsn


def test_query_tag_format() -> None:
    assert build_query_tag(TAG, "WARMUP") == (
        "spanbench:run=run-1:worker=w0:phase=WARMUP:trace=0af7651916cd43dd8448eb211c80319c")
    assert build_query_tag({"run": "a:b=c'd", "worker": "w 1"}, "X") == "spanbench:run=a_b_c_d:worker=w_1:phase=X"


def test_connect_prepare_query(demo_dsn: str) -> None:
    async def main() -> None:
        target = await open_target(demo_dsn, SETTINGS)
        assert isinstance(target, SnowflakeTarget)
        assert (target.system, target.dialect, target.server_address) == ("snowflake", "snowflake", "127.0.0.1")
        conn = await target.connect(phase="INIT", tag=TAG)
        assert target.emulator is True
        select, update = await conn.prepare(demo.demo_queries("snowflake", with_updates=True))
        assert await select((42,)) == [(0,)]
        qid_select = conn.last_query_id()
        assert await update((42,)) == 1
        qid_update = conn.last_query_id()
        assert await select((42,)) == [(1,)]
        assert qid_select and qid_update and qid_select != qid_update
        assert re.fullmatch(r"[0-9a-f-]{36}", qid_select)
        assert await select((10**9,)) == []  # a key that is not there
        assert await column_range(conn, f"{demo.TABLE}.{demo.KEY}") == (1, 5_000)
        await conn.close()
        await target.close()

    asyncio.run(main())


def test_prepare_fails_before_start_on_a_bad_query(demo_dsn: str) -> None:
    from spanbench.targets.base import QuerySpec

    async def main() -> None:
        target = await open_target(demo_dsn, SETTINGS)
        conn = await target.connect(phase="INIT", tag=TAG)
        bad = QuerySpec(kind="bad", operation="SELECT", sql="SELECT x FROM no_such_table WHERE aid = ?", collection="t")
        with pytest.raises(TargetError, match="does not compile"):
            await conn.prepare([bad])
        await conn.close()
        await target.close()

    asyncio.run(main())


def test_set_phase_sends_query_tag_per_phase(fakesnow: FakesnowServer, demo_dsn: str) -> None:
    """QUERY_TAG goes with the login (session parameter) and changes with every phase.

    fakesnow keeps no QUERY_TAG (ALTER SESSION SET QUERY_TAG is "not implemented" there and
    SHOW PARAMETERS does not list it), so the value the session reports cannot be read back;
    what can be checked is the statement the server received for each phase, in its log.
    """
    run = unique_name("RUN")
    tag = dict(TAG, run=run)

    async def main() -> None:
        target = await open_target(demo_dsn, SETTINGS)
        conn = await target.connect(phase="INIT", tag=tag)
        assert conn.query_tag == build_query_tag(tag, "INIT")
        assert target.session_parameters(conn.query_tag) == {
            "QUERY_TAG": conn.query_tag, "USE_CACHED_RESULT": False, "STATEMENT_TIMEOUT_IN_SECONDS": 30}
        for phase in ("WARMUP", "MEASUREMENT", "COOLDOWN"):
            await conn.set_phase(phase)
            assert conn.query_tag == build_query_tag(tag, phase)
            assert conn.query_tag_applied is False  # fakesnow refused it (Snowflake applies it)
        (select,) = await conn.prepare(demo.demo_queries("snowflake", with_updates=False))
        assert len(await select((1,))) == 1  # the session still works after the refusal
        await conn.close()
        await target.close()

    asyncio.run(main())
    log = fakesnow.log_text()
    sent = re.findall(rf"sql_text=\"ALTER SESSION SET QUERY_TAG = 'spanbench:run={run}:worker=w0:phase=(\w+):trace=[0-9a-f]+'", log)
    assert sent == ["WARMUP", "MEASUREMENT", "COOLDOWN"], sent
    cached = Settings(use_cached_result=True, statement_timeout=2.5)
    from spanbench.targets.snowflake_dsn import parse_snowflake_dsn

    assert SnowflakeTarget(parse_snowflake_dsn(demo_dsn), cached).session_parameters("t") == {
        "QUERY_TAG": "t", "USE_CACHED_RESULT": True, "STATEMENT_TIMEOUT_IN_SECONDS": 3}


def test_batched_connects_are_concurrent(demo_dsn: str) -> None:
    """16 connections in batches of 8, as the worker opens them: the connects of a batch overlap.

    fakesnow handles logins one at a time on its event loop, so wall time cannot show the
    client's concurrency; the overlap of the eight calls can: every connect of a batch has
    started before the first one returns (a connect that blocked the loop could not).
    """

    async def main() -> list[list[tuple[float, float]]]:
        target = await open_target(demo_dsn, SETTINGS)
        conns, batches = [], []
        for b in range(2):
            spans: list[tuple[float, float]] = []

            async def one(i: int) -> object:
                t0 = time.perf_counter()
                c = await target.connect(phase="INIT", tag=dict(TAG, worker=f"w{b}-{i}"))
                spans.append((t0, time.perf_counter()))
                return c

            conns += await asyncio.gather(*(one(i) for i in range(8)))
            batches.append(spans)
        assert len(conns) == 16
        await asyncio.gather(*(c.close() for c in conns))
        await target.close()
        return batches

    for spans in asyncio.run(main()):
        assert len(spans) == 8
        assert max(s for s, _ in spans) < min(e for _, e in spans), spans


def test_demo_table_and_profile(fakesnow: FakesnowServer) -> None:
    async def main() -> None:
        target = await open_target(fakesnow.dsn(unique_name("INIT")), SETTINGS)
        assert await demo.demo_table_rows(target) is None
        await demo.init_demo_table(target, 1_234)
        assert await demo.demo_table_rows(target) == 1_234
        conn = await target.connect(phase="INIT", tag=TAG)
        assert await column_range(conn, f"{demo.TABLE}.{demo.KEY}") == (1, 1_234)
        await demo.init_demo_table(target, 10)  # drop and refill
        assert await column_range(conn, f"{demo.TABLE}.{demo.KEY}") == (1, 10)
        await target.resume_warehouse()  # fakesnow: skipped, no error
        await conn.close()
        await target.close()

    asyncio.run(main())


def test_unreachable_server_is_a_one_line_target_error() -> None:
    """fakesnow accepts any password, so the real failure path here is a server that is not there."""
    port = free_port()
    dsn = f"snowflake://fake:hunter2secret@fakesnow/DB/PUBLIC?host=127.0.0.1&port={port}&protocol=http"

    async def main() -> None:
        target = await open_target(dsn, Settings(connect_timeout=2))
        with pytest.raises(TargetError) as err:
            await target.connect(phase="INIT", tag=TAG)
        msg = str(err.value)
        assert "\n" not in msg and "hunter2" not in msg
        assert msg.startswith("cannot connect to Snowflake account fakesnow as fake:"), msg

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 15


def test_empty_password_is_a_one_line_target_error(fakesnow: FakesnowServer) -> None:
    async def main() -> None:
        target = await open_target(fakesnow.dsn(password=None), Settings(connect_timeout=2))
        with pytest.raises(TargetError, match="Password is empty") as err:
            await target.connect(phase="INIT", tag=TAG)
        assert "\n" not in str(err.value)

    asyncio.run(main())
