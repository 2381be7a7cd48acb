"""A worker's life, in the order of its spans: join, connect, set up, wait, load, drain, persist.

Each method opens the span it is named after, so this file reads like the trace. The
worker talks only to the control store; it learns the run's settings from RUN_STATUS and
its start from a START event, and stops when told, when the schedule ends, or within
``orchestrator_timeout`` of losing its orchestrator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from spanbench.aio import sleep_until_ns
from spanbench.control import records as rec
from spanbench.control.open import open_control_store
from spanbench.control.records import Heartbeat, RunStatus, TestResult
from spanbench.control.sides import WorkerSide
from spanbench.control.store import ControlStore
from spanbench.dsn import where_of
from spanbench.errors import RunFailed, SpanbenchError, TargetGone
from spanbench.load.closed import ClosedLoop, ConnectionAbandoned
from spanbench.load.query_spans import QuerySpans, query_span_share
from spanbench.load.schedule import PhaseSchedule
from spanbench.load.state import MEASUREMENT, LoadState
from spanbench.settings import Settings
from spanbench.stats import Snapshot, encode, summarize
from spanbench.targets.base import QueryFn, Target, TargetConnection
from spanbench.targets.open import open_target
from spanbench.telemetry.context import context_from_traceparent
from spanbench.telemetry.endpoints import metrics_endpoint_set
from spanbench.telemetry.provider import Telemetry
from spanbench.telemetry.repeating import RepeatingSpans, keep_first_per_worker, span_count_attributes, span_counts
from spanbench.workload.setup import Plan


TIMELINE_S = 0.5


@dataclass
class WorkerArgs:
    run_id: str
    control_dsn: str
    group_id: int = 0
    group_count: int | None = None
    target_dsn: str | None = None  # overrides the (redacted) one in RUN_STATUS
    run_dir: Path | None = None
    parent_pid: int | None = None  # set by a local orchestrator: its death stops us at once
    join_timeout: float = 120.0  # how long a worker waits for its run to appear


@dataclass
class BootTimes:
    process_start_ns: int
    main_ns: int
    stage: str = "interpreter, imports"  # what worker.startup covered: an exec's, or a fork's
    handoff: tuple[int, int] | None = None  # a forked worker's wait for its run (start, end)


def connections_for(group_id: int, groups: int, total: int) -> int:
    """This group's share of ``total`` connections, split as evenly as possible."""
    return total // groups + (1 if group_id < total % groups else 0)


class Worker:
    def __init__(self, args: WorkerArgs, boot: BootTimes) -> None:
        self.args = args
        self.boot = boot
        self.worker_id = f"w{args.group_id}"
        self.telemetry: Telemetry = Telemetry(enabled=False, service_name="spanbench-worker", trace_file=None)
        self.tracer: trace.Tracer = self.telemetry.tracer
        self.control: ControlStore | None = None
        self.side: WorkerSide = None  # type: ignore[assignment]  # set at join: our half of the protocol
        self.target: Target | None = None
        self.settings: Settings | None = None
        self.conns: list[TargetConnection] = []
        self.fns: list[list[QueryFn]] = []
        self.state: LoadState | None = None
        self.loop: ClosedLoop | None = None  # the load model (load/closed.py, open.py, find_max.py)
        self.schedule: PhaseSchedule | None = None
        self.find_max: Any = None  # load/find_max.py's Steps, for model = "find_max"
        self.ramp: Any = None  # load/closed.py's ConnectionRamp, for closed-model stages
        self.spans: QuerySpans | None = None
        # process CPU seconds (every thread) at the load's start and end: the client's cost per query
        self._load_cpu: tuple[float, float | None] | None = None
        self.repeating: dict[str, RepeatingSpans] = {}  # heartbeat, control.poll, results.flush: coarsened past a budget
        self.ctx: Context | None = None  # the worker span's context: parent of every span here
        self.status = "INITIALIZING"
        self.error: str | None = None
        self.last_seq = 0
        self.start_payload: dict[str, Any] = {}
        self.started_at: datetime | None = None
        self._lost_control_since: float | None = None
        # (unix ns, queries so far, errors so far) every TIMELINE_S: throughput over time
        self.timeline: list[tuple[int, int, int]] = []
        self._bookkeeping: asyncio.Task[None] | None = None
        self.metrics: Any = None  # a telemetry.metrics.MetricsPump when metrics are exported
        self._metrics_module: Any = None  # imported only when needed: ~70 ms of start-up
        self._metrics_exporter: Any = None
        self._flush_task: asyncio.Task[None] | None = None
        self._encoded: dict[tuple[str, int], tuple[int, str]] = {}  # (phase, kind) -> (count, histogram)
        self._encoded_open: dict[tuple[str, str, str], tuple[int, str]] = {}  # open model: service and lag

    # ------------------------------------------------------------------ the life

    async def live(self) -> int:
        timings: list[tuple[str, int, int, dict[str, Any]]] = []
        t = time.time_ns()
        try:
            self.control = await asyncio.wait_for(open_control_store(self.args.control_dsn, self._boot_settings()), 60)
        except asyncio.TimeoutError:
            raise RunFailed("control store: no answer within 60s") from None
        timings.append(("control.connect", t, time.time_ns(), {}))
        t = time.time_ns()
        status, attempts = await self._join_run()
        joined = {"spanbench.run.status": status.status, "control.attempts": attempts}
        timings.append(("control.fetch_run_status", t, time.time_ns(), joined))
        t = time.time_ns()
        clock_attrs = await self._measure_clock()
        joined.update(clock_attrs)  # the registration span says on which clock this worker runs
        timings.append(("control.clock", t, time.time_ns(), clock_attrs))
        try:
            self.settings = self._settings_from(status)
        except Exception as exc:
            # Nobody would hear of it otherwise: the orchestrator waits for our heartbeat.
            why = f"settings of run {self.args.run_id} refused: {' '.join(str(exc).split())[:300]}"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.side.beat(Heartbeat(
                    run_id=self.args.run_id, worker_id=self.worker_id, group_id=self.args.group_id, status="FAILED",
                    last_error=why, pid=os.getpid(), host=socket.gethostname())), 5)
            raise RunFailed(why) from None
        t = time.time_ns()
        parent = context_from_traceparent(os.environ.get("TRACEPARENT") or status.traceparent)
        self._init_telemetry(enabled=parent is not None)
        timings.append(("telemetry.init", t, time.time_ns(), {}))

        worker_span = self.tracer.start_span(
            "worker",
            context=parent,
            start_time=self.boot.process_start_ns,
            attributes={
                "spanbench.run_id": self.args.run_id,
                "spanbench.worker_id": self.worker_id,
                "spanbench.group_id": self.args.group_id,
                "process.pid": os.getpid(),
                # Every span of this process is on its own clock: this says how to put them
                # on the control store's (what `spanbench gaps` does when it is significant).
                **clock_attrs,
            },
        )
        self.ctx = trace.set_span_in_context(worker_span)
        self._retro("worker.startup", self.boot.process_start_ns, self.boot.main_ns, {"spanbench.stage": self.boot.stage})
        booted = self.boot.main_ns
        if self.boot.handoff is not None:
            # Forked before the run existed: waiting here is waiting on orchestrator.prepare.
            self._retro("worker.await_handoff", *self.boot.handoff, {})
            booted = self.boot.handoff[1]
        self._retro("worker.bootstrap", booted, timings[0][1], {})
        for name, start, end, attrs in timings:
            self._retro(name, start, end, attrs)
        code = 1
        self._handle_signals()
        try:
            code = await self._run_phases(status)
        except SpanbenchError as exc:
            self.error = str(exc)
            worker_span.set_status(trace.Status(trace.StatusCode.ERROR, self.error))
            await self._report_failure()
            raise
        except asyncio.CancelledError:
            # Stopped (a signal) before the load began: say so, never stay READY.
            self.error = self.error or "stopped before the load began"
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.heartbeat("ABANDONED"), 5)
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            worker_span.record_exception(exc)
            worker_span.set_status(trace.Status(trace.StatusCode.ERROR, self.error))
            await self._report_failure()
            raise RunFailed(f"worker {self.worker_id}: {self.error}") from None
        finally:
            self._end_repeating(worker_span)
            worker_span.set_attribute("spanbench.worker.status", self.status)
            worker_span.end()
            await self._close_all()
        return code

    async def _run_phases(self, status: RunStatus) -> int:
        assert self.settings is not None
        await self.heartbeat("INITIALIZING")
        self.target = await open_target(self._target_dsn(), self.settings)
        if self.settings.warehouse_resume:
            await self.target_warehouse_resume()
        await self.pool_init()
        keys = await self.executor_setup()
        await self.telemetry_metrics_init()
        await self.heartbeat("READY")
        if not await self.wait_for_start():
            # Never started (stopped, orphaned or timed out first): say so, so that nobody waits on us.
            await self.heartbeat("ABANDONED")
            return 3
        # Bookkeeping that must not delay the first query runs beside it, on the
        # control connection (the seed measured 100–200 ms each for these).
        self._bookkeeping = asyncio.create_task(self._after_start())
        tasks = await self.scale_to(keys)
        await self.worker_load(tasks)
        await self.worker_drain(tasks)
        if self._bookkeeping is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bookkeeping, self.settings.drain_timeout)
        await self.results_persist()
        assert self.state is not None
        lost = self.state.stop_reason is not None and self.state.stop_reason.startswith("lost")
        self.status = "FAILED" if self.error else ("ABANDONED" if lost else "COMPLETED")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.heartbeat(self.status), self.settings.statement_timeout)
        if lost:
            await self.run_abandon(self.state.stop_reason or "lost orchestrator")
        return 0 if self.status == "COMPLETED" else (3 if lost else 1)

    async def run_abandon(self, reason: str) -> None:
        """The orchestrator is gone: mark the run ABANDONED (the first worker to get here wins) and,
        having won, leave what the run measured where the orchestrator would have: a RUN-scope
        TEST_RESULTS row and results.json."""
        assert self.control is not None and self.settings is not None
        with self.tracer.start_as_current_span("run.abandon", context=self.ctx, attributes={"spanbench.reason": reason}) as span:
            try:
                won = await asyncio.wait_for(self.side.abandon(reason), 10)
            except Exception as exc:
                span.set_attribute("abandon.outcome", f"control store unreachable: {type(exc).__name__}")
                return
            span.set_attribute("abandon.outcome", "marked" if won else "already final")
            if won:
                from spanbench.results import finalize_abandoned

                with contextlib.suppress(Exception):
                    await finalize_abandoned(self.control, self.args.run_id, self.args.run_dir, self.settings,
                                             reason=f"{self.worker_id}: {reason}")

    def _handle_signals(self) -> None:
        """SIGINT/SIGTERM stop the load gracefully: drain, persist, exit."""
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def stop(signame: str) -> None:
            if self.state is not None:
                self.state.request_stop(f"stop requested: {signame}")
            elif main is not None:
                main.cancel(f"stop requested: {signame}")  # nothing measured yet

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop, sig.name)

    async def _join_run(self) -> tuple[RunStatus, int]:
        """RUN_STATUS of our run; a worker started before its orchestrator waits for it (bounded)."""
        assert self.control is not None
        self.side = WorkerSide(self.control, self.args.run_id, self.worker_id)
        return await self.side.join(self.args.join_timeout)

    async def _measure_clock(self) -> dict[str, Any]:
        """Our clock against the control store's (control/clock.py): the offset, as span attributes.

        From here on the side reads the events' instants (START, SET_TARGET) on our clock, so
        the schedule, the open model's arrivals and find-max's steps need no conversion of
        their own; a store that cannot say its time leaves the offset 0, as before.
        """
        try:
            return (await self.side.measure_clock()).attributes()
        except Exception as exc:
            return {"spanbench.clock.offset_ms": 0.0, "spanbench.clock.uncertainty_ms": 0.0,
                    "spanbench.clock.error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}

    def _load_cpu_s(self) -> float | None:
        """CPU seconds of this process while its load ran (so far, before the load's end)."""
        if self._load_cpu is None:
            return None
        start, end = self._load_cpu
        return (time.process_time() if end is None else end) - start

    def _store_ns(self, local_ns: int | None) -> int | None:
        """An instant of ours, as written to results: on the control store's clock."""
        return None if local_ns is None else self.side.clock.to_store(int(local_ns))

    def _phase_window(self, data: Any) -> dict[str, int | None]:
        """When a phase began and ended here (perf clock), as store-clock instants."""
        assert self.spans is not None
        wall = self.spans.wall_ns  # perf -> our wall clock, the same fixed offset the query spans use
        entered, left = data.entered_ns, data.left_ns
        return {"entered_unix_ns": None if entered is None else self._store_ns(wall(entered)),
                "left_unix_ns": None if left is None else self._store_ns(wall(left))}

    # ------------------------------------------------------------------ phases

    async def heartbeat(self, status: str) -> None:
        self.status = status
        with self.tracer.start_as_current_span("heartbeat", context=self.ctx, attributes={"worker.status": status}):
            await self._beat()
        self._repeating("heartbeat").counted_elsewhere()  # a status beat: always a span of its own

    def _repeating(self, name: str, parent: Context | None = None) -> RepeatingSpans:
        """The coarsening of one repeating span kind; made on first use, once the worker span
        exists, under ``parent`` (default: the worker span)."""
        kind = self.repeating.get(name)
        if kind is None:
            s = self.settings or self._boot_settings()
            interval = s.flush_interval if name == "results.flush" else s.heartbeat_interval
            kind = self.repeating[name] = RepeatingSpans(
                self.tracer, parent or self.ctx, name, keep_first=keep_first_per_worker(s.repeating_span_budget, s.workers),
                # slower than half its interval (and than usual): the rhythm slips, worth a span of its own
                slow_s=interval / 2, attributes={"worker.status": "RUNNING"} if name in ("heartbeat", "control.poll") else {})
        return kind

    def _end_repeating(self, worker_span: trace.Span) -> None:
        """Close the pending summaries and say on the worker span what every kind counted."""
        for kind in self.repeating.values():
            kind.flush()
        worker_span.set_attributes(span_count_attributes(self.repeating))
        if self.spans is not None:
            worker_span.set_attribute("spanbench.query_spans_skipped", self.spans.skipped)

    async def target_warehouse_resume(self) -> None:
        assert self.target is not None
        with self.tracer.start_as_current_span("target.warehouse_resume", context=self.ctx):
            await self.target.resume_warehouse()

    async def pool_init(self) -> None:
        assert self.settings is not None and self.target is not None
        s = self.settings
        size = self._pool_size()
        batch = s.pool_batch_size
        queries = self._queries()
        with self.tracer.start_as_current_span(
            "pool.init", context=self.ctx, attributes={"pool.size": size, "pool.batch_size": batch}
        ) as span:
            for index, first in enumerate(range(0, size, batch)):
                members = list(range(first, min(first + batch, size)))
                with self.tracer.start_as_current_span(
                    "pool.batch", attributes={"batch.index": index, "batch.size": len(members)}
                ):
                    opened = await asyncio.gather(*(self.pool_connect(i, queries) for i in members), return_exceptions=True)
                failures = [o for o in opened if isinstance(o, BaseException)]
                for o in opened:
                    if not isinstance(o, BaseException):
                        self.conns.append(o[0])
                        self.fns.append(o[1])
                if failures:
                    raise failures[0] if isinstance(failures[0], SpanbenchError) else RunFailed(
                        f"pool.connect failed: {type(failures[0]).__name__}: {failures[0]}"
                    )
            span.set_attribute("pool.opened", len(self.conns))

    def _pool_size(self) -> int:
        """This worker's connections: its share of ``connections``, or of find-max's ``max``."""
        assert self.settings is not None
        s = self.settings
        total = s.load.max if s.load.model == "find_max" else s.connections
        if s.load.model == "closed" and s.load.stages:  # the most any stage asks for
            total = max([total] + [st.connections or 0 for st in s.load.stages])
        return max(1, connections_for(self.args.group_id, s.workers, total))

    async def pool_connect(self, index: int, queries: list[Any]) -> tuple[TargetConnection, list[QueryFn]]:
        assert self.target is not None
        with self.tracer.start_as_current_span(
            "pool.connect",
            kind=trace.SpanKind.CLIENT,
            attributes={"spanbench.connection": index, "db.system.name": self.target.system,
                        "server.address": self.target.server_address},
        ):
            conn = await self.target.connect(phase="INIT", tag=self._tag("INIT"))
            try:
                return conn, await conn.prepare(queries)
            except BaseException:
                await conn.close()
                raise

    async def pool_reconnect(self, index: int, old: TargetConnection, broke_at_ns: int) -> tuple[TargetConnection, list[QueryFn]]:
        """Re-open connection ``index`` after it broke: backoff from 50 ms to 1 s, for at most
        ``reconnect_timeout``; then the target is gone, and the run is told so in one line."""
        assert self.target is not None and self.settings is not None and self.state is not None
        s, st = self.settings, self.state
        deadline = time.monotonic() + s.reconnect_timeout
        delay = 0.05
        attempts = 0
        with self.tracer.start_as_current_span(
            "pool.reconnect", context=self.ctx, kind=trace.SpanKind.CLIENT,
            attributes={"spanbench.connection": index, "db.system.name": self.target.system,
                        "server.address": self.target.server_address},
        ) as span:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(old.close(), 1.0)
            last: BaseException | None = None
            while not st.stop:
                attempts += 1
                try:
                    conn = await self.target.connect(phase=st.phase, tag=self._tag(st.phase))
                    try:
                        fns = await conn.prepare(self._queries())
                    except BaseException:
                        await conn.close()
                        raise
                except Exception as exc:
                    last = exc
                    if time.monotonic() + delay > deadline:
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if index < len(self.conns):
                    self.conns[index], self.fns[index] = conn, fns
                span.set_attributes({"reconnect.attempts": attempts, "reconnect.outcome": "reconnected"})
                return conn, fns
            outcome = "stopped" if st.stop else "gone"
            span.set_attributes({"reconnect.attempts": attempts, "reconnect.outcome": outcome})
            if st.stop:
                raise ConnectionAbandoned(index, attempts, "stopped while reconnecting")
            start_ns = int(self.start_payload.get("start_unix_ns") or broke_at_ns)
            why = (f"target {where_of(self._target_dsn())} went away at +{(broke_at_ns - start_ns) / 1e9:.1f}s and did not "
                   f"come back within {s.reconnect_timeout:g}s")
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{why} ({type(last).__name__ if last else 'no answer'})"))
            raise TargetGone(why)

    async def executor_setup(self) -> Plan:
        """Ranges and pools from the scenario's parameters, then every execution's arguments, before READY."""
        from spanbench.workload import setup as ws

        assert self.target is not None and self.control is not None and self.conns and self.settings is not None
        workload = self._workload()
        with self.tracer.start_as_current_span("executor.setup", context=self.ctx):
            ranges: dict[str, tuple[int, int]] = {}
            for column in ws.profiled_columns(workload):
                table = column.rsplit(".", 1)[0]
                with self.tracer.start_as_current_span("setup.profile_table", attributes={"db.collection.name": table}) as s:
                    found = await ws.column_range(self.conns[0], column)
                    if found is None:
                        raise ws.empty_column_error(column, demo=self.settings.queries is None)
                    ranges[column] = found
                    s.set_attributes({"spanbench.column": column, "spanbench.column.min": found[0],
                                      "spanbench.column.max": found[1]})
            with self.tracer.start_as_current_span("setup.load_value_pools") as s:
                pools = await ws.load_pools(self.control, workload)
                s.set_attribute("spanbench.value_pool.size", sum(len(v) for v in pools.values()))
            with self.tracer.start_as_current_span("setup.draw_params") as s:
                plan = ws.build_plan(workload, seed_text=f"{self.args.run_id}/{self.worker_id}",
                                     group=self.args.group_id, groups=self.settings.workers, ranges=ranges, pools=pools)
                s.set_attribute("spanbench.plan.length", len(plan.mix))
                for name, size in plan.pools.items():
                    s.set_attribute(f"spanbench.value_pool.{name}.shard", size)
            return plan

    async def wait_for_start(self) -> bool:
        """Poll RUN_STATUS and the control events until START; every poll is timed, and a span
        of its own until the run's budget of routine spans is spent (then summaries)."""
        assert self.settings is not None and self.control is not None
        s = self.settings
        deadline = time.monotonic() + s.start_timeout
        with self.tracer.start_as_current_span("wait_for_start", context=self.ctx) as span:
            polls = 0
            # 64 workers waiting 15 s for a slow pod would make ~10,000 poll spans: past the
            # budget, routine polls go into summaries; the START (or the reason to give up) and
            # every poll that failed keep a span of their own.
            kind = self._repeating("wait_for_start.poll", parent=trace.set_span_in_context(span))
            started, why = False, None
            try:
                while True:
                    polls += 1
                    # A poll's span also covers the wait for the next one, so the time between
                    # polls is claimed, and a NOTIFY (on PostgreSQL) ends the wait at once.
                    t0 = time.time_ns()
                    attrs: dict[str, Any] = {"poll.index": polls}
                    done = False
                    try:
                        started, why = await self._poll_for_start()
                        attrs["poll.outcome"] = "start" if started else (why or "waiting")
                        if not (started or why) and time.monotonic() > deadline:
                            why = f"no START within {s.start_timeout:g}s"
                        done = started or why is not None
                        if not done:
                            woke = await self.side.wait(s.poll_interval)
                            attrs["poll.woken_by"] = "notify" if woke else "timeout"
                    finally:
                        kind.record(t0, time.time_ns(), attributes=attrs, event=done)
                    if done:
                        break
            finally:
                kind.flush()  # the pending summary ends inside wait_for_start
            span.set_attribute("wait_for_start.polls", polls)
            if not started:
                span.set_status(trace.Status(trace.StatusCode.ERROR, why))
                self.error = why
                return False
        return True

    async def _after_start(self) -> None:
        await self.heartbeat("RUNNING")
        await self.test_results_insert()

    async def test_results_insert(self) -> None:
        assert self.control is not None
        with self.tracer.start_as_current_span("test_results.insert", context=self.ctx):
            # An upsert that never replaces a final row: if this lands late (a slow Snowflake
            # statement), it can neither duplicate nor overwrite the worker's results.
            await self.control.update_test_result(
                TestResult(run_id=self.args.run_id, worker_id=self.worker_id, scope="WORKER", status="RUNNING",
                           started_at=self.started_at)
            )

    async def scale_to(self, keys: Plan) -> list[asyncio.Task[None]]:
        """Build the load, hold the start instant, then open every connection's loop at once."""
        assert self.settings is not None and self.target is not None
        s = self.settings
        start_ns = int(self.start_payload.get("start_unix_ns") or time.time_ns())
        with self.tracer.start_as_current_span("scale_to", context=self.ctx, attributes={"scale.target": len(self.conns)}) as span:
            queries = self._queries()
            model = s.load.model
            self.state = LoadState(len(queries), open_model=model == "open")
            self.spans = QuerySpans(
                self.tracer, self.ctx, queries, system=self.target.system, server_address=self.target.server_address,
                every=s.query_sample_every, slow_s=s.slow_query_threshold,
                cap=query_span_share(s.query_span_budget, s.query_span_cap, s.workers),
                enabled=self.telemetry.enabled,
            )
            self.spans.start_unix_ns = start_ns
            self.metrics = self._metrics_pump(queries)
            common = dict(mix=keys.mix, args=keys.args, spans=self.spans,
                          max_consecutive_errors=s.max_consecutive_errors, kinds=[q.kind for q in queries],
                          query_log=self._query_log(queries))
            if model == "open":
                from spanbench.load.open import open_loop

                self.loop = open_loop(self.state, s, group=self.args.group_id, seed=f"{self.args.run_id}/{self.worker_id}",
                                      start_unix_ns=start_ns, **common)
                span.set_attribute("scale.model", "open")
            else:
                self.loop = ClosedLoop(self.state, **common)
                self.loop.think_s = s.load.think_time
            self.loop.reconnect = self.pool_reconnect
            self.schedule = PhaseSchedule(self.state, on_change=self._sample)
            early_ms = (start_ns - time.time_ns()) / 1e6
            span.set_attribute("scale.before_start_instant_ms", round(early_ms, 3))
            await sleep_until_ns(start_ns)
            self.schedule.start(self.start_payload)
            pairs = list(enumerate(zip(self.conns, self.fns)))
            if model == "find_max":
                from spanbench.load.find_max import Steps

                # The first step's share opens now; SET_TARGET events grow it on the orchestrator's clock.
                self.find_max = Steps(self, s)
                return self.find_max.begin(pairs)
            if model == "closed" and s.load.stages:
                from spanbench.load.closed import ConnectionRamp

                self.ramp = ConnectionRamp(
                    self.loop, self.schedule, lambda: list(zip(self.conns, self.fns)), group=self.args.group_id,
                    groups=s.workers, start_total=s.connections,
                    stages=[(st.duration, int(st.connections or 0)) for st in s.load.stages], start_unix_ns=start_ns)
                return self.ramp.begin()
            return [asyncio.create_task(self.loop.run_connection(i, conn, fns), name=f"conn-{i}") for i, (conn, fns) in pairs]

    async def worker_load(self, tasks: list[asyncio.Task[None]]) -> None:
        """The load itself: one span from the first query to the stop, plus the control loop beside it."""
        assert self.state is not None and self.settings is not None
        st = self.state
        with self.tracer.start_as_current_span("worker.load", context=self.ctx) as span:
            self._load_cpu = (time.process_time(), None)
            control = asyncio.create_task(self._control_loop())
            pump = asyncio.create_task(self.metrics.run()) if self.metrics else None
            pending = set(tasks)
            seen = len(tasks)
            # find-max: a worker may have no connection before its first step that gives it one
            waiting = self.ramp is not None or (self.find_max is not None and len(tasks) < len(self.conns))
            while (pending or waiting) and not st.stop:
                if pending:
                    done, pending = await asyncio.wait(pending, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
                else:
                    done = set()
                    await asyncio.sleep(0.05)
                if len(tasks) > seen:  # find-max: a step opened more connections
                    pending |= set(tasks[seen:])
                    seen = len(tasks)
                waiting = self.ramp is not None or (self.find_max is not None and len(tasks) < len(self.conns))
                for t in done:
                    exc = t.exception()
                    if exc is not None:
                        self.error = self.error or str(exc)
            if not pending and not st.stop:
                st.request_stop("every connection stopped")
            for task in (control, pump):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self._flush_task is not None:
                # A flush still writing must land before the final row, never after it.
                with contextlib.suppress(asyncio.CancelledError, Exception, asyncio.TimeoutError):
                    await asyncio.wait_for(self._flush_task, self.settings.drain_timeout)
            assert self._load_cpu is not None
            self._load_cpu = (self._load_cpu[0], time.process_time())
            q, e = st.totals()
            span.set_attributes({"spanbench.queries": q, "spanbench.errors": e, "spanbench.stop_reason": st.stop_reason or "",
                                 "spanbench.load_cpu_s": round(self._load_cpu_s() or 0.0, 4)})

    async def worker_drain(self, tasks: list[asyncio.Task[None]]) -> None:
        assert self.state is not None and self.settings is not None
        with self.tracer.start_as_current_span("worker.drain", context=self.ctx) as span:
            self.state.request_stop(self.state.stop_reason or "drain")
            if self.schedule is not None:
                self.schedule.cancel()  # no timer left to reopen a phase or a step
            _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout) if tasks else (set(), set())
            for t in pending:
                t.cancel()
            span.set_attribute("drain.cancelled", len(pending))
            if pending:
                await asyncio.wait(pending, timeout=1.0)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    self.error = self.error or str(t.exception())
            conns, self.conns = self.conns, []
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
            if self.metrics is not None:
                await asyncio.to_thread(self.metrics.close)

    async def results_persist(self) -> None:
        """The final row: to the run folder first (it cannot be lost there), then the control store."""
        assert self.control is not None and self.state is not None and self.spans is not None
        with self.tracer.start_as_current_span("results.persist", context=self.ctx) as span:
            row = self._result_row()
            await asyncio.to_thread(self._save_local, row)
            timeout = self.settings.statement_timeout if self.settings is not None else 30.0
            try:
                await asyncio.wait_for(self.control.update_test_result(row), timeout)
            except Exception as exc:
                # The orchestrator reads the run folder's copy when it can (a local worker);
                # a remote worker's copy waits in its own run folder.
                span.set_attribute("results.control_store", f"unreachable: {type(exc).__name__}")
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"control store: {type(exc).__name__}: {exc}"[:200]))

    async def results_flush(self) -> None:
        """The histograms and counts so far, to the control store and the run folder, so a worker
        that dies loses one ``flush_interval`` at most. Encoding is done a slice at a time
        between queries (stats.Snapshot): a flush never holds the loop for more than a fraction
        of a millisecond."""
        assert self.control is not None and self.state is not None and self.settings is not None
        histograms = await self._encode_gently()
        t0 = time.time_ns()
        row = self._result_row(final=False, histograms=histograms)
        attrs: dict[str, Any] = {"spanbench.queries": row.queries, "results.control_store": "ok"}
        failed: Exception | None = None
        try:
            try:
                await asyncio.wait_for(self.control.update_test_result(row), self.settings.statement_timeout)
            except Exception as exc:
                attrs["results.control_store"] = f"unreachable: {type(exc).__name__}"
                failed = exc  # news: a span of its own, never folded into a summary
            await asyncio.to_thread(self._save_local, row)
        finally:
            # A span made after the fact, so a routine flush can join a summary past the budget.
            self._repeating("results.flush").record(t0, time.time_ns(), attributes=attrs, error=failed)

    async def _encode_gently(self) -> dict[str, dict[str, str]]:
        assert self.state is not None
        kinds = [q.kind for q in self._queries()]
        out: dict[str, dict[str, str]] = {}
        for phase, data in self.state.phases.items():
            for i, kind in enumerate(kinds):
                rec = data.recorders[i]
                total = rec.total
                if not total:
                    continue
                cached = self._encoded.get((phase, i))
                if cached is None or cached[0] != total:
                    snap = Snapshot(rec)
                    while not snap.step(4096):
                        await asyncio.sleep(0)  # let the queries that finished meanwhile be recorded
                    cached = (total, snap.encoded())
                    self._encoded[(phase, i)] = cached
                    await asyncio.sleep(0)
                out.setdefault(phase, {})[kind] = cached[1]
        if self.state.open_model:
            await self._encode_open_gently(kinds)
        return out

    async def _encode_open_gently(self, kinds: list[str]) -> None:
        """The open model's service-time and lag histograms, encoded as gently, for the flush."""
        assert self.state is not None
        for phase, data in list(self.state.phases.items()):
            recs: list[tuple[Any, Any]] = [(("service", phase, k), data.service[i]) for i, k in enumerate(kinds)]
            recs.append((("lag", phase, ""), data.lag))
            for key, recorder in recs:
                total = recorder.total
                if not total:
                    continue
                cached = self._encoded_open.get(key)
                if cached is None or cached[0] != total:
                    snap = Snapshot(recorder)
                    while not snap.step(4096):
                        await asyncio.sleep(0)
                    self._encoded_open[key] = (total, snap.encoded())
                    await asyncio.sleep(0)

    def _save_local(self, row: TestResult) -> None:
        """This worker's latest row in the run folder, replaced atomically."""
        if self.args.run_dir is None:
            return
        import dataclasses
        import json

        path = self.args.run_dir / f"results-{self.worker_id}.json"
        tmp = path.with_suffix(".json.tmp")
        with contextlib.suppress(OSError):
            self.args.run_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(dataclasses.asdict(row), default=str))
            os.replace(tmp, path)

    # ------------------------------------------------------------------ helpers

    def _result_row(self, *, final: bool = True, histograms: dict[str, dict[str, str]] | None = None) -> TestResult:
        """The worker's TEST_RESULTS row: the final one, or a flush of what is measured so far."""
        assert self.state is not None and self.spans is not None
        st = self.state
        kinds = [q.kind for q in self._queries()]
        if histograms is None:
            histograms = {
                phase: {kind: encode(data.recorders[i].to_hdr()) for i, kind in enumerate(kinds) if data.recorders[i].total}
                for phase, data in st.phases.items()
            }
        m = st.phases[MEASUREMENT]
        seconds = m.seconds()
        # Percentiles of a flush are worked out from its histograms by whoever reads it.
        latency = {kind: summarize(m.recorders[i].to_hdr()).as_dict() for i, kind in enumerate(kinds)} if final else {}
        queries, errors = m.queries, sum(m.errors)
        details = {
            # Every instant in the row is on the control store's clock (control/clock.py),
            # so rows of workers whose clocks disagree line up; "clock" says by how much ours is off.
            "first_query_unix_ns": self._store_ns(self.spans.first_query_wall_ns),
            "start_unix_ns": self._store_ns(self.start_payload.get("start_unix_ns")),
            "clock": self.side.clock.as_dict(),
            "connections": len(self.fns),
            "phases": {
                p: {"seconds": d.seconds(), "queries": {k: d.recorders[i].total for i, k in enumerate(kinds)},
                    "errors": {k: d.errors[i] for i, k in enumerate(kinds)}, "cut": d.cut, **self._phase_window(d)}
                for p, d in st.phases.items()
            },
            "query_spans_skipped": self.spans.skipped,
            # CPU the worker process used while its load ran (so far, in a flush)
            "load_cpu_s": self._load_cpu_s(),
            # {kind: {count, coarsened, summaries}}: every repeating beat, and how many summaries hold
            "repeating_spans": span_counts(self.repeating),
            "timeline": [(self.side.clock.to_store(t), q, e)
                         for t, q, e in self.timeline + [(time.time_ns(), *st.totals())]],
            "stop_reason": st.stop_reason,
            "last_error": st.last_error,
            "errors_by_class": self.loop.errors_by_class() if self.loop is not None else {},
            "error": self.error,
            **self._model_details(kinds, final=final),
            "partial": not final,
            "saved_unix_ns": self.side.clock.to_store(time.time_ns()),
        }
        status = ("FAILED" if self.error else "COMPLETED") if final else "RUNNING"
        return TestResult(
            run_id=self.args.run_id, worker_id=self.worker_id, scope="WORKER",
            status=status, started_at=self.started_at,
            ended_at=datetime.now(timezone.utc), queries=queries, errors=errors,
            qps=queries / seconds if seconds > 0 else 0.0, measurement_seconds=seconds, latency=latency,
            histograms=histograms, details=details,
        )

    def _model_details(self, kinds: list[str], *, final: bool = True) -> dict[str, Any]:
        """What the open model and find-max add to the row (additive keys of ``details``)."""
        assert self.state is not None and self.settings is not None
        st = self.state
        out: dict[str, Any] = {"load_model": self.settings.load.model}
        if st.open_model:
            loop: Any = self.loop
            if final:
                service = {p: {k: encode(d.service[i].to_hdr()) for i, k in enumerate(kinds) if d.service[i].total}
                           for p, d in st.phases.items() if d.service is not None}
                lag = {p: encode(d.lag.to_hdr()) for p, d in st.phases.items() if d.lag is not None and d.lag.total}
            else:  # a flush: what _encode_open_gently left, a slice at a time between queries
                service, lag = {}, {}
                for (what, p, k), (_, text) in self._encoded_open.items():
                    if what == "service":
                        service.setdefault(p, {})[k] = text
                    else:
                        lag[p] = text
            out["open"] = {
                "service": service,
                "lag": lag,
                "dropped": {p: d.dropped for p, d in st.phases.items()},
                "queued_at_stop": len(getattr(loop, "queue", ()) or ()),
            }
        if self.find_max is not None:
            out["find_max"] = self.find_max.details()
        return out

    def _sample(self) -> None:
        assert self.state is not None
        self.timeline.append((time.time_ns(), *self.state.totals()))

    async def _control_loop(self) -> None:
        """Heartbeats and control polls while the load runs; stops the load when told or orphaned."""
        try:
            await self._control_until_stop()
        finally:
            for name in ("heartbeat", "control.poll"):  # the load is over: no window stays open
                if name in self.repeating:
                    self.repeating[name].flush()

    async def _control_until_stop(self) -> None:
        assert self.state is not None and self.settings is not None and self.control is not None
        s, st = self.settings, self.state
        next_beat = time.monotonic() + s.heartbeat_interval
        next_sample = time.monotonic()
        # The first flush a little early: the orchestrator's progress lines (every 5 s by
        # default, as flushes are) then find a fresh histogram for their p99.
        next_flush = time.monotonic() + 0.9 * s.flush_interval
        while not st.stop:
            now = time.monotonic()
            if now >= next_sample:
                next_sample += TIMELINE_S
                self._sample()
            if now >= next_flush and (self._flush_task is None or self._flush_task.done()):
                next_flush = now + s.flush_interval
                self._flush_task = asyncio.create_task(self.results_flush())
            woke = False
            try:
                woke = await self.side.wait(min(0.25, s.heartbeat_interval))
            except Exception:
                # A closed control connection fails at once: wait anyway, never spin.
                await asyncio.sleep(min(0.25, s.heartbeat_interval))
            if self._parent_gone():
                st.request_stop("lost orchestrator: its process is gone")
                break
            beat = time.monotonic() >= next_beat
            if not (beat or woke):
                continue
            # One span a second for the routine beat and look at the control tables; a NOTIFY
            # (a phase change, a STOP) gets its own control.poll span at once.
            if beat:
                next_beat += s.heartbeat_interval
            await self._control_beat(beat)

    async def _control_beat(self, beat: bool) -> None:
        """One heartbeat (or NOTIFY-woken control.poll) of the load, timed here and handed to its
        RepeatingSpans: routine ones are coarsened past the run's budget, news always has a span."""
        assert self.state is not None
        st = self.state
        kind = self._repeating("heartbeat" if beat else "control.poll")
        seq, t0 = self.last_seq, time.time_ns()
        error: Exception | None = None
        why: str | None = None
        try:
            if beat:
                try:
                    await self._beat()
                except Exception as exc:  # a failed beat never stops the load; it is a span of its own
                    error = exc
            _, why = await self._poll_for_start(running=True)
        finally:
            # Cancelled mid-beat (the load stopped): the beat still counts, and is never lost.
            kind.record(t0, time.time_ns(), error=error, event=self.last_seq != seq or why is not None,
                        attributes={"poll.outcome": why} if why else None)
        if why:
            st.request_stop(why)

    async def _poll_for_start(self, *, running: bool = False) -> tuple[bool, str | None]:
        """One look at RUN_STATUS and new events. Returns (started, reason to stop)."""
        assert self.control is not None and self.settings is not None
        try:
            status, events = await self.side.poll(self.last_seq)
            self._lost_control_since = None
        except Exception as exc:
            now = time.monotonic()
            self._lost_control_since = self._lost_control_since or now
            if now - self._lost_control_since > self.settings.orchestrator_timeout:
                return False, f"lost orchestrator: control store unreachable ({type(exc).__name__})"
            return False, None
        if self._parent_gone():
            return False, "lost orchestrator: its process is gone"
        if status is None:
            return False, "run vanished from RUN_STATUS"
        if status.status in rec.TERMINAL:
            return False, f"run {status.status.lower()}: {status.cancel_reason or ''}".strip()
        if status.beat_age_s is not None and status.beat_age_s > self.settings.orchestrator_timeout:
            return False, f"lost orchestrator: no beat for {status.beat_age_s:.1f}s"
        started = False
        for ev in events:
            self.last_seq = max(self.last_seq, ev.seq)
            if ev.type == rec.STOP:
                return False, "stop requested"
            if ev.type == rec.SET_TARGET and running and self.find_max is not None:
                self.find_max.on_event(ev.payload)  # a find-max step, at the orchestrator's time
            if ev.type == rec.START and not running:
                self.start_payload = ev.payload
                self.started_at = datetime.now(timezone.utc)
                started = True
        return started, None

    def _parent_gone(self) -> bool:
        pp = self.args.parent_pid
        return pp is not None and os.getppid() != pp

    async def _beat(self) -> None:
        assert self.control is not None and self.settings is not None
        st = self.state
        q, e = st.totals() if st else (0, 0)
        await self.side.beat(
            Heartbeat(
                run_id=self.args.run_id, worker_id=self.worker_id, group_id=self.args.group_id, status=self.status,
                phase=st.phase if st else None, active_connections=st.active if st else len(self.conns),
                target_connections=connections_for(self.args.group_id, self.settings.workers, self.settings.connections),
                queries=q, errors=e, last_error=self.error or (st.last_error if st else None), pid=os.getpid(),
                host=socket.gethostname(),
            )
        )

    async def _report_failure(self) -> None:
        self.status = "FAILED"
        if self.control is None or self.settings is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.heartbeat("FAILED"), 5)
        if self.state is not None and self.spans is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.control.update_test_result(self._result_row()), 5)

    async def _close_all(self) -> None:
        if self.state is not None:
            self.state.request_stop(self.state.stop_reason or "exit")
        conns, self.conns = self.conns, []
        if conns:
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        for res in (self.target, self.control):
            if res is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(res.close(), 5)

    def _retro(self, name: str, start_ns: int, end_ns: int, attrs: dict[str, Any]) -> None:
        span = self.tracer.start_span(name, context=self.ctx, start_time=start_ns, attributes=attrs)
        span.end(end_time=max(start_ns, end_ns))

    async def telemetry_metrics_init(self) -> None:
        """Load the metrics SDK and open its exporter before READY, off the path to the first query."""
        if not (self.telemetry.enabled and metrics_endpoint_set()) or self.telemetry.resource is None:
            return
        with self.tracer.start_as_current_span("telemetry.metrics_init", context=self.ctx):
            from spanbench.telemetry import metrics

            self._metrics_module = metrics
            self._metrics_exporter = metrics.otlp_metric_exporter()
            metrics.bucket_map()  # ~0.1 s of CPU that must not compete with the first queries

    def _metrics_pump(self, queries: list[Any]) -> Any:
        """OTLP metrics beside the traces, when tracing is on and an endpoint is set."""
        if self._metrics_exporter is None:
            return None
        assert self.state is not None and self.spans is not None and self.telemetry.resource is not None
        spans = self.spans
        interval_ms = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "") or 5000)
        return self._metrics_module.MetricsPump(
            self._metrics_exporter, self.telemetry.resource, self.state, [q.kind for q in queries],
            attributes={"run_id": self.args.run_id, "worker_id": self.worker_id},
            exemplars=lambda: list(spans.recent), interval_s=max(0.5, interval_ms / 1000),
        )

    def _init_telemetry(self, *, enabled: bool) -> None:
        run_dir = self.args.run_dir
        trace_file = None
        if enabled and run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            trace_file = run_dir / f"trace-{self.worker_id}.jsonl"
        self.telemetry = Telemetry(
            enabled=enabled, service_name="spanbench-worker", trace_file=trace_file,
            attributes={"spanbench.run_id": self.args.run_id, "spanbench.worker_id": self.worker_id},
        )
        self.tracer = self.telemetry.tracer

    def _boot_settings(self) -> Settings:
        return Settings(target_dsn=None, control_dsn=self.args.control_dsn)

    def _settings_from(self, status: RunStatus) -> Settings:
        values = dict(status.scenario)
        values["target_dsn"] = self.args.target_dsn or values.get("target_dsn")
        values["control_dsn"] = self.args.control_dsn
        if self.args.group_count is not None and self.args.group_count != values.get("workers"):
            raise RunFailed(
                f"--group-count {self.args.group_count} does not match the run's {values.get('workers')} workers"
            )
        return Settings(**values)

    def _target_dsn(self) -> str:
        assert self.settings is not None
        if not self.settings.target_dsn:
            raise RunFailed("no target DSN: pass --target-dsn or SPANBENCH_TARGET_DSN")
        return self.settings.target_dsn

    def _workload(self) -> Any:
        """The scenario's workload, or the built-in demo's (built for this target's dialect)."""
        assert self.settings is not None and self.target is not None
        if getattr(self, "_workload_cache", None) is None:
            from spanbench.workload.demo import demo_workload

            s = self.settings
            self._workload_cache = s.workload or demo_workload(
                self.target.dialect, update_share=s.update_share, point_select_only=s.point_select_only)
        return self._workload_cache

    def _queries(self) -> list[Any]:
        from spanbench.workload.plan import query_specs

        assert self.target is not None
        return query_specs(self._workload(), self.target.dialect)

    def _query_log(self, queries: list[Any]) -> Any:
        """The opt-in per-query log (``query_log``), one file per worker in the run folder."""
        s = self.settings
        if s is None or s.query_log is None or s.query_log_sample <= 0 or self.args.run_dir is None:
            return None
        from spanbench.load.query_log import QueryLog

        assert self.spans is not None
        self.args.run_dir.mkdir(parents=True, exist_ok=True)
        ext = "parquet" if s.query_log == "parquet" else "csv"
        return QueryLog(self.args.run_dir / f"queries-{self.worker_id}.{ext}", s.query_log,
                        [q.kind for q in queries], s.query_log_sample, self.side.clock.to_store(self.spans.wall_ns(0)))

    def _tag(self, phase: str) -> dict[str, str]:
        tag = {"run": self.args.run_id, "worker": self.worker_id, "phase": phase}
        if self.ctx is not None:
            sc = trace.get_current_span(self.ctx).get_span_context()
            if sc.is_valid:
                tag["trace"] = format(sc.trace_id, "032x")
        return tag


async def run_worker(args: WorkerArgs, boot: BootTimes) -> int:
    worker = Worker(args, boot)
    try:
        code = await worker.live()
        if code != 0 and worker.error:
            # Its last words, for the log the orchestrator reads when this process exits.
            print(f"spanbench: error: {' '.join(worker.error.split())}", file=sys.stderr, flush=True)
        return code
    finally:
        stats = worker.telemetry.shutdown(timeout_s=5.0)
        if worker.telemetry.enabled and args.run_dir is not None:
            import json

            with contextlib.suppress(OSError):
                (args.run_dir / f"spans-{worker.worker_id}.json").write_text(json.dumps(stats.as_dict()))
