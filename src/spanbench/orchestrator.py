"""A run, as the orchestrator lives it: prepare, launch, await READY, start, phases, stop, collect.

Each method opens the span it is named after; ``run`` is the root of the trace. Whatever
goes wrong after RUN_STATUS exists, the run is marked FAILED (or CANCELLED) with its
reason, the workers are told to stop, and what they measured is still collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from spanbench.control import records as rec
from spanbench.control.open import open_control_store
from spanbench.control.records import Heartbeat, RunStatus, TestResult
from spanbench.control.store import ControlStore
from spanbench.dsn import dsn_system
from spanbench.errors import RunFailed, SpanbenchError
from spanbench.launcher import WorkerProcess, launch_worker, stop_workers
from spanbench.load.state import COOLDOWN, MEASUREMENT, WARMUP
from spanbench.report.progress import RunProgress
from spanbench.results import merge_results
from spanbench.settings import Settings
from spanbench.targets.embedded import EmbeddedPostgres
from spanbench.targets.open import open_target
from spanbench.telemetry.context import traceparent_of
from spanbench.telemetry.provider import SpanStats, Telemetry

_READY_POLL_S = 0.02
_FINAL = frozenset({"COMPLETED", "FAILED", "ABANDONED"})
_FLUSH_S = 5.0
_BEAT_S = 0.5


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    results: dict[str, Any]
    span_stats: SpanStats = field(default_factory=SpanStats)


class Orchestrator:
    def __init__(self, settings: Settings, *, process_start_ns: int, main_ns: int) -> None:
        self.s = settings
        self.run_id = settings.run_id or new_run_id()
        self.run_dir = (settings.output / self.run_id).resolve()
        self.process_start_ns = process_start_ns
        self.main_ns = main_ns
        self.tracing = settings.tracing_enabled
        self.telemetry = Telemetry(enabled=False, service_name="spanbench-orchestrator", trace_file=None)
        self.tracer: trace.Tracer = self.telemetry.tracer
        self.ctx: Context | None = None
        self.control: ControlStore | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.target_dsn: str | None = settings.target_dsn
        self.workers: list[WorkerProcess] = []
        self.run_created = False
        self.status = rec.PREPARING
        self.reason: str | None = None
        self.start_unix_ns: int | None = None
        self.results: dict[str, Any] = {}
        self.progress = RunProgress()

    async def run(self) -> RunOutcome:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.telemetry = Telemetry(
            enabled=self.tracing, service_name="spanbench-orchestrator",
            trace_file=self.run_dir / "trace-orchestrator.jsonl", attributes={"spanbench.run_id": self.run_id},
        )
        self.tracer = self.telemetry.tracer
        run_span = self.tracer.start_span(
            "run", start_time=self.process_start_ns,
            attributes={"spanbench.run_id": self.run_id, "spanbench.workers": self.s.workers,
                        "spanbench.connections": self.s.connections, "spanbench.pool_batch_size": self.s.pool_batch_size,
                        "spanbench.warmup_s": self.s.warmup, "spanbench.duration_s": self.s.duration},
        )
        self.ctx = trace.set_span_in_context(run_span)
        main = asyncio.current_task()
        if main is not None:  # SIGTERM ends a run as Ctrl-C does: marked, stopped, results kept
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        self._retro("orchestrator.startup", self.process_start_ns, self.main_ns)
        self._retro("orchestrator.bootstrap", self.main_ns, time.time_ns())
        try:
            await self._lifecycle()
            self.status = rec.COMPLETED
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self._abort(rec.CANCELLED, "cancelled by the user")
        except SpanbenchError as exc:
            await self._abort(rec.FAILED, str(exc))
        except Exception as exc:
            await self._abort(rec.FAILED, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        finally:
            self.progress.stop()
            run_span.set_attribute("spanbench.run.status", self.status)
            if self.reason:
                run_span.set_status(trace.Status(trace.StatusCode.ERROR, self.reason))
            with contextlib.suppress(Exception):
                await self._close()
            if self.embedded is not None:
                with self.tracer.start_as_current_span("target.stop_embedded", context=self.ctx):
                    await asyncio.to_thread(self.embedded.stop)
            run_span.end()
        # The workers flush their spans while we flush ours: one bounded wait for all of them,
        # so a collector that is down or hangs adds at most _FLUSH_S to the run, not a sum.
        stats, _ = await asyncio.gather(
            asyncio.to_thread(self.telemetry.shutdown, _FLUSH_S), self._wait_workers_exit(_FLUSH_S + 0.5)
        )
        await self.server_timings()
        return RunOutcome(self.run_id, self.run_dir, self.status, self.reason, self.results, stats)

    async def _lifecycle(self) -> None:
        await self.orchestrator_prepare()
        await self.orchestrator_launch_workers()
        await self.orchestrator_await_ready()
        await self.orchestrator_start()
        await self.phase("phase.warmup", WARMUP, self.s.warmup, first=True)
        await self.phase("phase.measurement", MEASUREMENT, self.s.duration)
        await self.phase("phase.cooldown", COOLDOWN, self.s.cooldown)
        await self.orchestrator_stop()
        await self.orchestrator_collect_results()

    # ------------------------------------------------------------------ phases

    async def orchestrator_prepare(self) -> None:
        with self.tracer.start_as_current_span("orchestrator.prepare", context=self.ctx):
            if self.target_dsn is None:
                with self.tracer.start_as_current_span("target.start_embedded") as span:
                    self.embedded = EmbeddedPostgres(self.s.embedded_dir)
                    self.target_dsn = await asyncio.to_thread(self.embedded.start)
                    span.set_attribute("spanbench.embedded.data_dir", str(self.embedded.data_dir))
            assert self.target_dsn is not None
            with self.tracer.start_as_current_span("target.open"):
                target = await open_target(self.target_dsn, self.s)
            try:
                with self.tracer.start_as_current_span("target.check_demo_table") as span:
                    present = await target.demo_table_exists()
                    span.set_attribute("spanbench.demo_table.present", present)
                if not present:
                    with self.tracer.start_as_current_span("target.init_demo_table", attributes={"spanbench.rows": self.s.rows}):
                        await target.init_demo_table(self.s.rows)
            finally:
                await target.close()
            control_dsn = self.s.control_dsn or self.target_dsn
            with self.tracer.start_as_current_span("control.connect"):
                self.control = await open_control_store(control_dsn, self.s)
            with self.tracer.start_as_current_span("control.ensure_schema"):
                await self.control.ensure_schema()
            with self.tracer.start_as_current_span("control.create_run"):
                scenario = self.s.public()
                scenario["run_id"] = self.run_id
                await self.control.create_run(
                    RunStatus(run_id=self.run_id, status=rec.PREPARING, phase=None, scenario=scenario,
                              traceparent=traceparent_of(trace.get_current_span(self.ctx)), workers_expected=self.s.workers)
                )
                self.run_created = True

    async def orchestrator_launch_workers(self) -> None:
        assert self.target_dsn is not None
        env = {
            "SPANBENCH_CONTROL_DSN": self.s.control_dsn or self.target_dsn,
            "SPANBENCH_TARGET_DSN": self.target_dsn,
            "SPANBENCH_RUN_DIR": str(self.run_dir),
        }
        tp = traceparent_of(trace.get_current_span(self.ctx))
        if tp:
            env["TRACEPARENT"] = tp
        with self.tracer.start_as_current_span(
            "orchestrator.launch_workers", context=self.ctx,
            attributes={"spanbench.workers": self.s.workers, "spanbench.launch": "local" if self.s.launch_workers else "external"},
        ):
            if not self.s.launch_workers:
                return  # started elsewhere: they find the run (and its traceparent) in RUN_STATUS
            for g in range(self.s.workers):
                self.workers.append(
                    launch_worker(run_id=self.run_id, group_id=g, group_count=self.s.workers, run_dir=self.run_dir, env_extra=env)
                )

    async def orchestrator_await_ready(self) -> None:
        assert self.control is not None
        deadline = time.monotonic() + self.s.ready_timeout
        with self.tracer.start_as_current_span("orchestrator.await_ready", context=self.ctx) as span:
            polls = 0
            next_beat = 0.0
            while True:
                polls += 1
                self._check_workers_alive()
                if time.monotonic() >= next_beat:  # workers watch this beat from their first poll on
                    next_beat = time.monotonic() + _BEAT_S
                    await self.control.touch_run(self.run_id)
                beats = await self.control.fetch_heartbeats(self.run_id)
                failed = [b for b in beats if b.status == "FAILED"]
                if failed:
                    raise RunFailed(f"worker {failed[0].worker_id} failed: {failed[0].last_error or 'no reason given'}")
                ready = sum(1 for b in beats if b.status == "READY")
                if ready >= self.s.workers:
                    break
                if time.monotonic() > deadline:
                    raise RunFailed(f"only {ready} of {self.s.workers} workers READY after {self.s.ready_timeout:g}s")
                await asyncio.sleep(_READY_POLL_S)
            span.set_attribute("await_ready.polls", polls)
            await self.control.update_run(self.run_id, status=rec.READY)

    async def orchestrator_start(self) -> None:
        assert self.control is not None
        with self.tracer.start_as_current_span("orchestrator.start", context=self.ctx):
            self.start_unix_ns = time.time_ns()
            start = datetime.fromtimestamp(self.start_unix_ns / 1e9, timezone.utc)
            await self.control.update_run(self.run_id, status=rec.RUNNING, phase=WARMUP, start_time=start, warmup_start=start)
            await self.control.append_event(
                self.run_id, rec.START, "RUN",
                {"start_unix_ns": self.start_unix_ns, "warmup_s": self.s.warmup, "duration_s": self.s.duration,
                 "cooldown_s": self.s.cooldown},
            )

    async def phase(self, name: str, phase: str, seconds: float, *, first: bool = False) -> None:
        """Hold a phase until its absolute end time; the workers switch on the same clock."""
        assert self.control is not None and self.start_unix_ns is not None
        offsets = {WARMUP: 0.0, MEASUREMENT: self.s.warmup, COOLDOWN: self.s.warmup + self.s.duration}
        begin_ns = self.start_unix_ns + int(offsets[phase] * 1e9)
        end_ns = begin_ns + int(seconds * 1e9)
        with self.tracer.start_as_current_span(name, context=self.ctx, start_time=max(begin_ns, time.time_ns()) if not first else begin_ns):
            if not first:
                column = {MEASUREMENT: "measurement_start", COOLDOWN: "measurement_end"}[phase]
                await self.control.update_run(self.run_id, phase=phase, **{column: datetime.now(timezone.utc)})
                await self.control.append_event(self.run_id, rec.SET_PHASE, "RUN", {"phase": phase})
            next_beat = 0.0
            while (left := (end_ns - time.time_ns()) / 1e9) > 0:
                self._check_workers_alive(running=True)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + _BEAT_S
                    await self.control.touch_run(self.run_id)
                    beats = await self._check_heartbeats()
                    self.progress.update(phase, seconds - left, seconds, beats)
                await asyncio.sleep(min(left, 0.1))

    async def orchestrator_stop(self) -> None:
        assert self.control is not None
        self.progress.stop()
        with self.tracer.start_as_current_span("orchestrator.stop", context=self.ctx):
            await self.control.update_run(self.run_id, status=rec.STOPPING, end_time=datetime.now(timezone.utc))
            await self.control.append_event(self.run_id, rec.STOP, "RUN", {})
            await self._await_workers_done(self.s.drain_timeout + 30.0)

    async def orchestrator_collect_results(self) -> None:
        assert self.control is not None
        with self.tracer.start_as_current_span("orchestrator.collect_results", context=self.ctx) as span:
            rows = await self._merge_worker_results()
            span.set_attribute("spanbench.results.workers", len(rows))
            missing = self.s.workers - len(rows)
            failed = [w for w in self.results["workers"] if w["status"] != "COMPLETED"]
            m = self.results["measurement"]
            await self.control.insert_test_result(
                TestResult(run_id=self.run_id, worker_id="run", scope="RUN",
                           status=rec.FAILED if missing > 0 or failed else rec.COMPLETED,
                           started_at=datetime.fromtimestamp((self.start_unix_ns or time.time_ns()) / 1e9, timezone.utc),
                           ended_at=datetime.now(timezone.utc), queries=m["queries"], errors=m["errors"], qps=m["qps"],
                           measurement_seconds=m["seconds"], latency=m["latency"], histograms=self.results["histograms"],
                           details={"workers": self.results["workers"]})
            )
            if missing > 0:
                raise RunFailed(f"{missing} of {self.s.workers} workers persisted no results")
            if failed:
                raise RunFailed(f"worker {failed[0]['worker_id']} {failed[0]['status'].lower()}: {failed[0].get('error') or ''}")
            await self.control.update_run(self.run_id, status=rec.COMPLETED)

    async def _merge_worker_results(self) -> list[TestResult]:
        """The workers' TEST_RESULTS rows, merged into ``self.results``; returns the rows."""
        assert self.control is not None
        rows = [r for r in await self.control.fetch_test_results(self.run_id) if r.scope == "WORKER"]
        self.results = merge_results(rows, self.s.workers, window_s=self.s.warmup + self.s.duration + self.s.cooldown)
        return rows

    async def server_timings(self) -> None:
        """Snowflake's own timings for the sampled queries, in a second trace file (post-run, opt-in).

        It reads the workers' finished trace files, so it runs after the run's trace is
        complete; the client-side trace files are left as they are.
        """
        if not (self.s.server_timings and self.tracing and self.target_dsn) or dsn_system(self.target_dsn) != "snowflake":
            return
        from spanbench.targets.snowflake_history import enrich_run_folder

        try:
            await asyncio.wait_for(
                enrich_run_folder(self.run_dir, self.target_dsn, self.s, enabled=True, run_id=self.run_id), 120
            )
        except Exception as exc:  # enrichment is a bonus: it never fails a measured run
            self.results.setdefault("warnings", []).append(f"server timings: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ failure

    async def _abort(self, status: str, reason: str) -> None:
        """Mark the run, stop the workers, keep what they measured."""
        self.status, self.reason = status, reason
        with self.tracer.start_as_current_span("orchestrator.abort", context=self.ctx, attributes={"spanbench.reason": reason}):
            if self.control is None or not self.run_created:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.control.update_run(self.run_id, status=status, cancel_reason=reason[:1000]), 5)
                await asyncio.wait_for(self.control.append_event(self.run_id, rec.STOP, "RUN", {"reason": reason[:1000]}), 5)
            with contextlib.suppress(Exception):
                await self._await_workers_done(self.s.drain_timeout + 10.0)
            if not self.results:
                with contextlib.suppress(Exception):
                    await self._merge_worker_results()

    def _check_workers_alive(self, running: bool = False) -> None:
        for w in self.workers:
            code = w.exit_code()
            if code is not None and (code != 0 or not running):
                detail = w.last_error_line()
                raise RunFailed(f"worker {w.worker_id} exited with code {code}" + (f": {detail}" if detail else ""))

    async def _check_heartbeats(self) -> list[Heartbeat]:
        assert self.control is not None
        beats = await self.control.fetch_heartbeats(self.run_id)
        for b in beats:
            if b.status == "FAILED":
                raise RunFailed(f"worker {b.worker_id} failed: {b.last_error or 'no reason given'}")
        return beats

    async def _await_workers_done(self, timeout_s: float) -> None:
        """Until every worker has reported a final status (its results are persisted then) or,
        for one started here, exited. External workers that never joined are not waited for."""
        assert self.control is not None
        deadline = time.monotonic() + timeout_s
        next_beat = 0.0
        if self.s.launch_workers:
            expected = {w.worker_id for w in self.workers}
        else:
            expected = {f"w{g}" for g in range(self.s.workers)}
        while time.monotonic() < deadline:
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + _BEAT_S
                await self.control.touch_run(self.run_id)
            beats = {b.worker_id: b.status for b in await self.control.fetch_heartbeats(self.run_id)}
            exited = {w.worker_id for w in self.workers if w.exit_code() is not None}
            pending = {w for w in expected if beats.get(w) not in _FINAL and w not in exited}
            if not self.s.launch_workers:
                pending &= set(beats)
            if not pending:
                return
            await asyncio.sleep(0.05)

    async def _wait_workers_exit(self, timeout_s: float) -> None:
        await asyncio.to_thread(stop_workers, self.workers, timeout_s)

    async def _close(self) -> None:
        if self.control is not None:
            await asyncio.wait_for(self.control.close(), 5)

    def _retro(self, name: str, start_ns: int, end_ns: int) -> None:
        span = self.tracer.start_span(name, context=self.ctx, start_time=start_ns)
        span.end(end_time=max(start_ns, end_ns))
