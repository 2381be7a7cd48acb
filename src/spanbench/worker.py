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
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from spanbench.control import records as rec
from spanbench.control.open import open_control_store
from spanbench.control.records import Heartbeat, RunStatus, TestResult
from spanbench.control.store import ControlStore
from spanbench.errors import RunFailed, SpanbenchError
from spanbench.load.closed import ClosedLoop
from spanbench.load.query_spans import QuerySpans
from spanbench.load.state import COOLDOWN, MEASUREMENT, WARMUP, LoadState
from spanbench.settings import Settings
from spanbench.stats import encode, summarize
from spanbench.targets.base import QueryFn, Target, TargetConnection
from spanbench.targets.open import open_target
from spanbench.telemetry.context import context_from_traceparent
from spanbench.telemetry.endpoints import metrics_endpoint_set
from spanbench.telemetry.provider import Telemetry
from spanbench.workload import demo
from spanbench.workload.mix import build_mix, build_keys


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
        self.target: Target | None = None
        self.settings: Settings | None = None
        self.conns: list[TargetConnection] = []
        self.fns: list[list[QueryFn]] = []
        self.state: LoadState | None = None
        self.loop: ClosedLoop | None = None
        self.spans: QuerySpans | None = None
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
        timings.append(("control.fetch_run_status", t, time.time_ns(),
                        {"spanbench.run.status": status.status, "control.attempts": attempts}))
        self.settings = self._settings_from(status)
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
            },
        )
        self.ctx = trace.set_span_in_context(worker_span)
        self._retro("worker.startup", self.boot.process_start_ns, self.boot.main_ns, {"spanbench.stage": "interpreter, imports"})
        self._retro("worker.bootstrap", self.boot.main_ns, timings[0][1], {})
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
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            worker_span.record_exception(exc)
            worker_span.set_status(trace.Status(trace.StatusCode.ERROR, self.error))
            await self._report_failure()
            raise RunFailed(f"worker {self.worker_id}: {self.error}") from None
        finally:
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
        tasks = self.scale_to(keys)
        await self.worker_load(tasks)
        await self.worker_drain(tasks)
        if self._bookkeeping is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bookkeeping, self.settings.drain_timeout)
        await self.results_persist()
        assert self.state is not None
        lost = self.state.stop_reason is not None and self.state.stop_reason.startswith("lost")
        self.status = "FAILED" if self.error else ("ABANDONED" if lost else "COMPLETED")
        await self.heartbeat(self.status)
        return 0 if self.status == "COMPLETED" else (3 if lost else 1)

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
        deadline = time.monotonic() + self.args.join_timeout
        attempts = 0
        while True:
            attempts += 1
            try:
                status = await self.control.fetch_run_status(self.args.run_id)
            except Exception as exc:  # the control schema may not exist yet
                status, why = None, f"{type(exc).__name__}: {exc}"
            else:
                why = "no RUN_STATUS row"
            if status is not None:
                return status, attempts
            if time.monotonic() > deadline:
                raise RunFailed(f"run {self.args.run_id} not found in the control store within "
                                f"{self.args.join_timeout:g}s ({' '.join(why.split())[:200]})")
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ phases

    async def heartbeat(self, status: str) -> None:
        self.status = status
        with self.tracer.start_as_current_span("heartbeat", context=self.ctx, attributes={"worker.status": status}):
            await self._beat()

    async def target_warehouse_resume(self) -> None:
        assert self.target is not None
        with self.tracer.start_as_current_span("target.warehouse_resume", context=self.ctx):
            await self.target.resume_warehouse()

    async def pool_init(self) -> None:
        assert self.settings is not None and self.target is not None
        s = self.settings
        size = connections_for(self.args.group_id, s.workers, s.connections)
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

    async def executor_setup(self) -> list[int]:
        assert self.target is not None and self.control is not None and self.conns
        with self.tracer.start_as_current_span("executor.setup", context=self.ctx):
            with self.tracer.start_as_current_span("setup.profile_table", attributes={"db.collection.name": demo.TABLE}) as s:
                profile = await self.target.profile_table(self.conns[0], demo.TABLE, demo.KEY)
                s.set_attribute("spanbench.table.rows", profile.rows)
                if profile.rows == 0:
                    raise RunFailed(f"table {demo.TABLE} is empty: run `spanbench init` first")
            with self.tracer.start_as_current_span("setup.load_value_pools") as s:
                pool = await self.control.fetch_value_pool(f"{demo.TABLE}.{demo.KEY}")
                s.set_attribute("spanbench.value_pool.size", len(pool))
            with self.tracer.start_as_current_span("setup.build_keys"):
                seed = zlib.crc32(f"{self.args.run_id}/{self.worker_id}".encode())
                return build_keys(profile, [int(v) for v in pool], seed=seed)

    async def wait_for_start(self) -> bool:
        """Poll RUN_STATUS and the control events until START; every poll is a span."""
        assert self.settings is not None and self.control is not None
        s = self.settings
        deadline = time.monotonic() + s.start_timeout
        with self.tracer.start_as_current_span("wait_for_start", context=self.ctx) as span:
            polls = 0
            while True:
                polls += 1
                # The poll span also covers the wait for the next one, so the time between
                # polls is claimed, and a NOTIFY (on PostgreSQL) ends the wait at once.
                with self.tracer.start_as_current_span("wait_for_start.poll", attributes={"poll.index": polls}) as poll:
                    started, why = await self._poll_for_start()
                    poll.set_attribute("poll.outcome", "start" if started else (why or "waiting"))
                    if started or why:
                        break
                    if time.monotonic() > deadline:
                        why = f"no START within {s.start_timeout:g}s"
                        break
                    woke = await self.control.wait_for_signal(self.args.run_id, s.poll_interval)
                    poll.set_attribute("poll.woken_by", "notify" if woke else "timeout")
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
            await self.control.insert_test_result(
                TestResult(run_id=self.args.run_id, worker_id=self.worker_id, scope="WORKER", status="RUNNING",
                           started_at=self.started_at)
            )

    def scale_to(self, keys: list[int]) -> list[asyncio.Task[None]]:
        assert self.settings is not None and self.target is not None
        s = self.settings
        with self.tracer.start_as_current_span("scale_to", context=self.ctx, attributes={"scale.target": len(self.conns)}):
            queries = self._queries()
            self.state = LoadState(len(queries))
            self._schedule_phases()
            self.spans = QuerySpans(
                self.tracer, self.ctx, queries, system=self.target.system, server_address=self.target.server_address,
                every=s.query_sample_every, slow_s=s.slow_query_threshold, cap=s.query_span_cap,
                enabled=self.telemetry.enabled,
            )
            self.metrics = self._metrics_pump(queries)
            self.loop = ClosedLoop(
                self.state, mix=build_mix(queries, s.update_share), keys=keys, spans=self.spans,
                max_consecutive_errors=s.max_consecutive_errors,
            )
            return [
                asyncio.create_task(self.loop.run_connection(i, conn, fns), name=f"conn-{i}")
                for i, (conn, fns) in enumerate(zip(self.conns, self.fns))
            ]

    async def worker_load(self, tasks: list[asyncio.Task[None]]) -> None:
        """The load itself: one span from the first query to the stop, plus the control loop beside it."""
        assert self.state is not None and self.settings is not None
        st = self.state
        with self.tracer.start_as_current_span("worker.load", context=self.ctx) as span:
            control = asyncio.create_task(self._control_loop())
            pump = asyncio.create_task(self.metrics.run()) if self.metrics else None
            pending = set(tasks)
            while pending and not st.stop:
                done, pending = await asyncio.wait(pending, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
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
            q, e = st.totals()
            span.set_attributes({"spanbench.queries": q, "spanbench.errors": e, "spanbench.stop_reason": st.stop_reason or ""})

    async def worker_drain(self, tasks: list[asyncio.Task[None]]) -> None:
        assert self.state is not None and self.settings is not None
        with self.tracer.start_as_current_span("worker.drain", context=self.ctx) as span:
            self.state.request_stop(self.state.stop_reason or "drain")
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
        assert self.control is not None and self.state is not None and self.spans is not None
        with self.tracer.start_as_current_span("results.persist", context=self.ctx):
            row = self._result_row()
            await self.control.update_test_result(row)

    # ------------------------------------------------------------------ helpers

    def _result_row(self) -> TestResult:
        assert self.state is not None and self.spans is not None
        st = self.state
        kinds = [q.kind for q in self._queries()]
        histograms = {
            phase: {kind: encode(data.recorders[i].to_hdr()) for i, kind in enumerate(kinds) if data.recorders[i].total}
            for phase, data in st.phases.items()
        }
        m = st.phases[MEASUREMENT]
        seconds = m.seconds()
        latency = {kind: summarize(m.recorders[i].to_hdr()).as_dict() for i, kind in enumerate(kinds)}
        queries, errors = m.queries, sum(m.errors)
        details = {
            "first_query_unix_ns": self.spans.first_query_wall_ns,
            "start_unix_ns": self.start_payload.get("start_unix_ns"),
            "connections": len(self.fns),
            "phases": {
                p: {"seconds": d.seconds(), "queries": {k: d.recorders[i].total for i, k in enumerate(kinds)},
                    "errors": {k: d.errors[i] for i, k in enumerate(kinds)}}
                for p, d in st.phases.items()
            },
            "query_spans_skipped": self.spans.skipped,
            "timeline": self.timeline + [(time.time_ns(), *st.totals())],
            "stop_reason": st.stop_reason,
            "last_error": st.last_error,
            "error": self.error,
        }
        return TestResult(
            run_id=self.args.run_id, worker_id=self.worker_id, scope="WORKER",
            status="FAILED" if self.error else "COMPLETED", started_at=self.started_at,
            ended_at=datetime.now(timezone.utc), queries=queries, errors=errors,
            qps=queries / seconds if seconds > 0 else 0.0, measurement_seconds=seconds, latency=latency,
            histograms=histograms, details=details,
        )

    def _schedule_phases(self) -> None:
        """Phase changes at the orchestrator's absolute times, so every worker switches together."""
        assert self.state is not None
        st = self.state
        p = self.start_payload
        start_ns = int(p.get("start_unix_ns") or time.time_ns())
        marks = [
            (MEASUREMENT, start_ns + int(float(p.get("warmup_s", 0)) * 1e9)),
            (COOLDOWN, start_ns + int(float(p.get("warmup_s", 0)) * 1e9 + float(p.get("duration_s", 0)) * 1e9)),
            ("STOP", start_ns + int((float(p.get("warmup_s", 0)) + float(p.get("duration_s", 0)) + float(p.get("cooldown_s", 0))) * 1e9)),
        ]
        loop = asyncio.get_running_loop()
        st.enter(WARMUP)
        now = time.time_ns()
        for phase, at in marks:
            delay = max(0.0, (at - now) / 1e9)
            if phase == "STOP":
                loop.call_later(delay, st.request_stop, "schedule")
            elif delay == 0.0:
                st.enter(phase)
            else:
                loop.call_later(delay, st.enter, phase)

    async def _control_loop(self) -> None:
        """Heartbeats and control polls while the load runs; stops the load when told or orphaned."""
        assert self.state is not None and self.settings is not None and self.control is not None
        s, st = self.settings, self.state
        next_beat = time.monotonic() + s.heartbeat_interval
        next_sample = time.monotonic()
        while not st.stop:
            if time.monotonic() >= next_sample:
                next_sample += TIMELINE_S
                self.timeline.append((time.time_ns(), *st.totals()))
            woke = False
            with contextlib.suppress(Exception):
                woke = await self.control.wait_for_signal(self.args.run_id, min(0.25, s.heartbeat_interval))
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
            name = "heartbeat" if beat else "control.poll"
            with self.tracer.start_as_current_span(name, context=self.ctx, attributes={"worker.status": "RUNNING"}) as span:
                if beat:
                    with contextlib.suppress(Exception):
                        await self._beat()
                _, why = await self._poll_for_start(running=True)
                if why:
                    span.set_attribute("poll.outcome", why)
                    st.request_stop(why)

    async def _poll_for_start(self, *, running: bool = False) -> tuple[bool, str | None]:
        """One look at RUN_STATUS and new events. Returns (started, reason to stop)."""
        assert self.control is not None and self.settings is not None
        try:
            status = await self.control.fetch_run_status(self.args.run_id)
            events = await self.control.fetch_events(self.args.run_id, self.last_seq)
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
        await self.control.heartbeat(
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

    def _queries(self) -> list[Any]:
        assert self.settings is not None and self.target is not None
        return demo.demo_queries(self.target.dialect, with_updates=not self.settings.point_select_only and self.settings.update_share > 0)

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
        return await worker.live()
    finally:
        stats = worker.telemetry.shutdown(timeout_s=5.0)
        if worker.telemetry.enabled and args.run_dir is not None:
            import json

            with contextlib.suppress(OSError):
                (args.run_dir / f"spans-{worker.worker_id}.json").write_text(json.dumps(stats.as_dict()))
