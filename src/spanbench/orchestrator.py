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
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from spanbench.aio import sleep_until_ns
from spanbench.control import records as rec
from spanbench.control.open import open_control_store
from spanbench.control.records import Heartbeat, RunStatus, TestResult
from spanbench.control.sides import OrchestratorSide
from spanbench.control.store import ControlStore
from spanbench.dsn import dsn_system, where_of
from spanbench.errors import RunFailed, SpanbenchError
from spanbench.launcher import WorkerProcess, can_fork, fork_workers, launch_worker, preload, stop_workers
from spanbench.load.state import COOLDOWN, MEASUREMENT, WARMUP
from spanbench.outcome import RunOutcome  # re-exported: the report reads it from spanbench.outcome
from spanbench.report.progress import RunProgress
from spanbench.results import find_stalls, merge_results, pick_worker_rows, read_local_rows
from spanbench.settings import Settings
from spanbench.targets.embedded import EarlyStart, EmbeddedPostgres
from spanbench.targets.open import open_target
from spanbench.telemetry.context import traceparent_of
from spanbench.telemetry.process_start import ProcessStart
from spanbench.telemetry.provider import Telemetry

_READY_POLL_S = 0.005  # a cheap look; READY → START is on every run's critical path
_FINAL = rec.WORKER_FINAL
_FLUSH_S = 5.0
_BEAT_S = 0.5


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Orchestrator:
    def __init__(self, settings: Settings, *, start: ProcessStart, main_ns: int) -> None:
        self.s = settings
        self.run_id = settings.run_id or new_run_id()
        self.run_dir = (settings.output / self.run_id).resolve()
        self.boot = start
        self.process_start_ns = start.exec_ns
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
        self.progress = RunProgress(settings.progress)
        self._control_rtt_s = 0.0  # the slowest control round trip while awaiting READY
        self.side: OrchestratorSide = None  # type: ignore[assignment]  # set at connect: our half of the protocol
        self._forked: tuple[int, int] | None = None  # when the workers were forked (start, end)
        self._control_down_since: tuple[float, float] | None = None  # (monotonic, run seconds) of a blip
        self.lost: dict[str, str] = {}  # workers lost mid-run (on_worker_loss = "continue"): why
        self._lost_to_mark: list[str] = []  # lost, not yet marked LOST in WORKER_HEARTBEATS
        self.early_embedded: EarlyStart | None = None  # the embedded server, started during our imports
        # The measurement's length: ``duration``, or find-max's steps (shortened when a criterion stops it).
        load = settings.load
        self._measure_s = len(load.steps()) * load.step_duration if load.model == "find_max" else settings.duration
        self.find_max: dict[str, Any] | None = None
        self._measurement_window: tuple[int, int] | None = None  # (begin, end) on our clock

    def prefork_workers(self) -> None:
        """Fork the local workers now, before the event loop and any thread exist (launcher.py).

        They wait for the run to exist; meanwhile they cost nothing, and they start with
        everything imported instead of paying an interpreter's start each.
        """
        if not (self.s.launch_workers and can_fork()):
            return
        # Imported here, so that the fork's span is the fork alone.
        systems = {dsn_system(d) for d in (self.s.target_dsn, self.s.control_dsn) if d}
        preload(systems | {"postgresql"} if self.s.target_dsn is None else systems)
        t0 = time.time_ns()
        self.workers = fork_workers(run_id=self.run_id, group_count=self.s.workers, run_dir=self.run_dir)
        self._forked = (t0, time.time_ns())

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
                        "spanbench.warmup_s": self.s.warmup, "spanbench.duration_s": self.s.duration,
                        # What this PID did before it was spanbench (a shell's wait, an install)
                        # is the launcher's: said here, never inside a span.
                        "spanbench.process.start_source": self.boot.source,
                        "spanbench.process.before_exec_ms": self.boot.before_exec_ns / 1e6},
        )
        self.ctx = trace.set_span_in_context(run_span)
        main = asyncio.current_task()
        if main is not None:  # SIGTERM ends a run as Ctrl-C does: marked, stopped, results kept
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        self._retro("orchestrator.startup", self.process_start_ns, self.main_ns)
        if self._forked is None:
            self._retro("orchestrator.bootstrap", self.main_ns, time.time_ns())
        else:
            self._retro("orchestrator.bootstrap", self.main_ns, self._forked[0])
            self._retro("orchestrator.launch_workers", *self._forked,
                        {"spanbench.workers": self.s.workers, "spanbench.launch": "fork"})
            self._retro("telemetry.init", self._forked[1], time.time_ns())
        try:
            await self._lifecycle()  # ends with the status set: COMPLETED or COMPLETED_WITH_ERRORS
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self._abort(rec.CANCELLED, "cancelled by the user")
        except SpanbenchError as exc:
            await self._abort(rec.FAILED, str(exc))
        except Exception as exc:
            await self._abort(rec.FAILED, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        finally:
            self.progress.stop()
            run_span.set_attribute("spanbench.run.status", self.status)
            worst = max((w.get("start_to_first_query_ms") or 0.0 for w in self.results.get("workers", [])), default=None)
            if worst is not None:
                run_span.set_attribute("spanbench.start_to_first_query_ms", float(worst))
            if self.results:
                # What kept the run from being clean, for TraceQL: { name = "run" && ."spanbench.stalls" > 0 }
                m = self.results.get("measurement", {})
                run_span.set_attributes({
                    "spanbench.stalls": len(self.results.get("stalls") or []),
                    "spanbench.errors": int(m.get("errors") or 0),
                    "spanbench.queries_cut": int(m.get("cut") or 0),
                    "spanbench.workers_lost": len(self.lost),
                })
            if self.reason:
                run_span.set_status(trace.Status(trace.StatusCode.ERROR, self.reason))
            with contextlib.suppress(Exception):
                await self._close()
            if self.embedded is None and self.early_embedded is not None:
                # Failed before prepare joined the early start: join it now, only to stop it.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.early_embedded.finish)
                    self.embedded = EmbeddedPostgres(self.s.embedded_dir)
                    await asyncio.to_thread(self.embedded.start)
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
        await self.phase("phase.measurement", MEASUREMENT, self._measure_s)
        if not (self.find_max and self.find_max.get("stopped_early")):
            await self.phase("phase.cooldown", COOLDOWN, self.s.cooldown)
        await self.orchestrator_stop()
        await self.orchestrator_collect_results()

    # ------------------------------------------------------------------ phases

    async def orchestrator_prepare(self) -> None:
        with self.tracer.start_as_current_span("orchestrator.prepare", context=self.ctx):
            if self.target_dsn is None:
                # Started in a child meanwhile (cli.run): then this span waits for it and joins.
                early = self.early_embedded is not None
                with self.tracer.start_as_current_span("target.join_embedded" if early else "target.start_embedded") as span:
                    if early:
                        await asyncio.to_thread(self._early_embedded_span)
                    self.embedded = EmbeddedPostgres(self.s.embedded_dir)
                    self.target_dsn = await asyncio.to_thread(self.embedded.start)
                    span.set_attribute("spanbench.embedded.data_dir", str(self.embedded.data_dir))
            assert self.target_dsn is not None
            if self.s.queries is None:  # the built-in demo needs its table; a scenario brings its own
                from spanbench.workload.demo import TABLE, demo_table_rows, init_demo_table

                with self.tracer.start_as_current_span("target.open"):
                    target = await open_target(self.target_dsn, self.s)
                try:
                    with self.tracer.start_as_current_span("target.check_demo_table") as span:
                        rows = await demo_table_rows(target)
                        span.set_attribute("spanbench.demo_table.present", bool(rows))
                    # Never write to someone's database unasked: only the embedded server (ours)
                    # is filled without `spanbench init` or `run --init`.
                    if self.s.init or (not rows and self.s.target_dsn is None):
                        with self.tracer.start_as_current_span("target.init_demo_table", attributes={"spanbench.rows": self.s.rows}):
                            await init_demo_table(target, self.s.rows)
                    elif not rows:
                        from spanbench.dsn import redact_dsn

                        raise RunFailed(
                            f"the demo table {TABLE} is {'empty' if rows == 0 else 'not there'} on {redact_dsn(self.target_dsn)}: "
                            "create it with `spanbench init --target-dsn DSN [--rows N]` or `spanbench run --init`, "
                            "or give the scenario file your own [[queries]]")
                finally:
                    await target.close()
            control_dsn = self.s.control_dsn or self.target_dsn
            with self.tracer.start_as_current_span("control.connect"):
                self.control = await open_control_store(control_dsn, self.s)
                self.side = OrchestratorSide(self.control, self.run_id, blip_s=self.s.orchestrator_timeout,
                                             where=where_of(control_dsn))
            with self.tracer.start_as_current_span("control.ensure_schema"):
                await self.control.ensure_schema()
            await self.control_clock()
            await self.orchestrator_build_value_pools()
            with self.tracer.start_as_current_span("control.create_run"):
                scenario = self.s.public()
                scenario["run_id"] = self.run_id
                await self.side.create(
                    RunStatus(run_id=self.run_id, status=rec.PREPARING, phase=None, scenario=scenario,
                              traceparent=traceparent_of(trace.get_current_span(self.ctx)), workers_expected=self.s.workers)
                )
                self.run_created = True

    async def control_clock(self) -> None:
        """Our clock against the control store's (control/clock.py). The instants we announce
        (START, find-max's steps) go out on the store's clock through our side, so a worker
        whose own clock is off still switches with us; ours stay local for our own timers."""
        with self.tracer.start_as_current_span("control.clock") as span:
            try:
                offset = await self.side.measure_clock()
            except Exception as exc:  # a store that cannot say its time: offset 0, as before
                span.set_attribute("spanbench.clock.error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
                return
            span.set_attributes(offset.attributes())
            trace.get_current_span(self.ctx).set_attributes(offset.attributes())  # on `run`, too

    async def orchestrator_build_value_pools(self) -> None:
        """Sample the scenario's pools that TEMPLATE_VALUE_POOLS lacks (reads only), and say so."""
        from spanbench.workload.pools import build_pools, missing_pools

        workload = self.s.workload
        if workload is None or not workload.pool_params():
            return
        assert self.control is not None and self.target_dsn is not None
        missing = await missing_pools(self.control, workload)
        if not missing:
            return
        with self.tracer.start_as_current_span("orchestrator.build_value_pools",
                                               attributes={"spanbench.value_pools": missing}):
            target = await open_target(self.target_dsn, self.s)
            try:
                built = await build_pools(target, self.control, workload, only=set(missing))
            finally:
                await target.close()
        import sys

        said = ", ".join(f"{name} ({n} values)" for name, n in built.items())
        print(f"spanbench: value pools missing, sampled from the target: {said} "
              "(`spanbench pools build SCENARIO` does this ahead of a run)", file=sys.stderr)

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
        if self._forked is not None:
            await self.orchestrator_handoff(env)
            return
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

    async def orchestrator_handoff(self, env: dict[str, str]) -> None:
        """The forked workers learn their run: DSNs and traceparent, down their pipes."""
        with self.tracer.start_as_current_span("orchestrator.handoff", context=self.ctx,
                                               attributes={"spanbench.workers": len(self.workers)}):
            for w in self.workers:
                w.hand_off(env)

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
                    await self.side.beat()
                t0 = time.perf_counter()
                beats = await self.side.look()
                self._control_rtt_s = max(self._control_rtt_s, time.perf_counter() - t0)
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
            await self.side.set(status=rec.READY)

    async def orchestrator_start(self) -> None:
        """Announce a start instant a little ahead, so the write of START is not inside the run.

        The lead covers the event's write, its delivery and the workers' read of it, so every
        worker holds the instant itself and they open their load together; a worker that hears
        late starts at once, and START → first query says by how much.
        """
        assert self.control is not None
        lead_s = self._start_lead_s()
        span = self.tracer.start_span("orchestrator.start", context=self.ctx,
                                      attributes={"spanbench.start.lead_ms": lead_s * 1e3})
        written = 0
        try:
            self.start_unix_ns = time.time_ns() + int(lead_s * 1e9)
            self.progress.started(self.start_unix_ns)
            start = datetime.fromtimestamp(self.start_unix_ns / 1e9, timezone.utc)
            # The event first: its NOTIFY is what the waiting workers act on.
            await self.side.announce(
                rec.START,
                {"start_unix_ns": self.start_unix_ns, "warmup_s": self.s.warmup, "duration_s": self._measure_s,
                 "cooldown_s": self.s.cooldown}, retried=False,
            )
            await self.side.set(status=rec.RUNNING, phase=WARMUP, start_time=start, warmup_start=start)
            written = time.time_ns()
            await sleep_until_ns(self.start_unix_ns, precise=False)  # the workers hold it exactly
        finally:
            # The span ends at the instant (where phase.warmup begins), or when the writes did,
            # if they took longer than the lead.
            ends = time.time_ns() if self.start_unix_ns is None else max(self.start_unix_ns, written)
            span.end(end_time=min(ends, time.time_ns()))

    def _start_lead_s(self) -> float:
        # Four of the slowest control round trips seen so far (the event's write, the NOTIFY,
        # the workers' two reads), never under 15 ms; a store without push adds a poll interval.
        lead = max(0.015, 4 * self._control_rtt_s)
        if not getattr(self.control, "pushes_signals", False):
            lead += self.s.poll_interval
        return min(lead, 2.0)

    async def phase(self, name: str, phase: str, seconds: float, *, first: bool = False) -> None:
        """Hold a phase until its absolute end time; the workers switch on the same clock."""
        assert self.control is not None and self.start_unix_ns is not None
        offsets = {WARMUP: 0.0, MEASUREMENT: self.s.warmup, COOLDOWN: self.s.warmup + self._measure_s}
        begin_ns = self.start_unix_ns + int(offsets[phase] * 1e9)
        end_ns = begin_ns + int(seconds * 1e9)
        with self.tracer.start_as_current_span(name, context=self.ctx, start_time=max(begin_ns, time.time_ns()) if not first else begin_ns) as phase_span:
            if not first:
                column = {MEASUREMENT: "measurement_start", COOLDOWN: "measurement_end"}[phase]
                now = datetime.now(timezone.utc)
                # The workers switch on the schedule's clock; these rows only record it, so a
                # control-store blip here is ridden out, not fatal.
                await self.side.set(phase=phase, **{column: now})
                await self.side.announce(rec.SET_PHASE, {"phase": phase})
            if phase == MEASUREMENT and self.s.load.model == "find_max":
                from spanbench.load.find_max import FindMaxRun

                await FindMaxRun(self, begin_ns).run()
            else:
                await self._hold_phase(phase, seconds, end_ns)
            if phase == MEASUREMENT:  # the window the workers' are held to, in results.json
                self._measurement_window = (begin_ns, max(begin_ns, min(end_ns, time.time_ns())))
            self._stage_spans(phase_span, begin_ns, end_ns)

    async def _hold_phase(self, phase: str, seconds: float, end_ns: int, label: str | None = None) -> None:
        """Beat, watch the workers and show progress until ``end_ns``."""
        assert self.start_unix_ns is not None
        next_beat = 0.0
        while (left := (end_ns - time.time_ns()) / 1e9) > 0:
            self._check_workers_alive(running=True)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + _BEAT_S
                beats = await self._beat_and_look()
                run_s = (time.time_ns() - self.start_unix_ns) / 1e9
                p99 = await self._phase_p99(phase) if self.progress.line_due(run_s) else None
                self.progress.update(label or self._progress_label(phase, run_s), seconds - left, seconds, beats,
                                     run_elapsed_s=run_s, p99_ms=p99)
            await asyncio.sleep(min(left, 0.1))

    def _progress_label(self, phase: str, run_s: float) -> str:
        """The phase, and the open model's target rate now (the progress line shows it)."""
        load = self.s.load
        if load.model != "open":
            return phase
        from spanbench.load.open import rate_curve

        return f"{phase} target {rate_curve(load).rate_at(run_s):,.0f}/s"

    def _stage_spans(self, parent: Any, begin_ns: int, end_ns: int) -> None:
        """A ``load.stage`` span per stage of the [load] table, clipped to this phase, under it."""
        load = self.s.load
        if not load.stages or self.start_unix_ns is None:
            return
        ctx = trace.set_span_in_context(parent)
        end_ns = min(end_ns, time.time_ns())
        t, prev_rate = self.start_unix_ns, load.rate or 0.0
        prev_conns = self.s.connections
        for i, st in enumerate(load.stages):
            s0, s1 = t, t + int(st.duration * 1e9)
            t = s1
            lo, hi = max(s0, begin_ns), min(s1, end_ns)
            attrs: dict[str, Any] = {"load.stage.index": i, "load.stage.duration_s": st.duration}
            if st.rate is not None:
                attrs.update({"load.stage.rate_from": float(prev_rate), "load.stage.rate_to": float(st.rate)})
                prev_rate = st.rate
            if st.connections is not None:
                attrs.update({"load.stage.connections_from": prev_conns, "load.stage.connections_to": st.connections})
                prev_conns = st.connections
            if lo < hi:
                span = self.tracer.start_span("load.stage", context=ctx, start_time=lo, attributes=attrs)
                span.end(end_time=hi)

    async def orchestrator_stop(self) -> None:
        assert self.control is not None
        self.progress.stop()
        with self.tracer.start_as_current_span("orchestrator.stop", context=self.ctx):
            end = datetime.now(timezone.utc)
            await self.side.set(status=rec.STOPPING, end_time=end)
            await self.side.announce(rec.STOP, {})
            await self._await_workers_done(self.s.drain_timeout + self.s.reconnect_timeout + 30.0)

    async def orchestrator_collect_results(self) -> None:
        assert self.control is not None
        with self.tracer.start_as_current_span("orchestrator.collect_results", context=self.ctx) as span:
            from spanbench.run_identity import identity, server_version

            # The server's version is asked beside the merge, on its own connection: no wait added.
            assert self.target_dsn is not None
            rows, version = await asyncio.gather(self._merge_worker_results(), server_version(self.target_dsn, self.s, self.tracer))
            # What the run was (scenario hash, target, spanbench version): diff's comparability check.
            self.results.update(identity(self.s.public(), version))
            span.set_attribute("spanbench.results.workers", len(rows))
            missing = sorted(self._expected_ids() - {r.worker_id for r in rows})
            failed = [w for w in self.results["workers"] if w["status"] == "FAILED"]
            if missing and self.s.on_worker_loss == "fail":
                raise RunFailed(f"{len(missing)} of {self.s.workers} workers persisted no results ({', '.join(missing)})")
            if failed:
                raise RunFailed(f"worker {failed[0]['worker_id']} failed: {failed[0].get('error') or ''}".strip())
            trouble = self._trouble()
            self.status = rec.COMPLETED_WITH_ERRORS if trouble else rec.COMPLETED
            self.reason = "; ".join(trouble) or None
            await self._insert_run_row()
            await self.side.set(status=self.status, cancel_reason=self.reason)

    def _trouble(self) -> list[str]:
        """What keeps a finished run from being clean: errors, stalls, cut queries, lost workers."""
        r, out = self.results, []
        m = r.get("measurement", {})
        if m.get("errors"):
            out.append(f"{m['errors']:,} errors in the measurement")
        for st in r.get("stalls", []):
            what = "no errors" if not st["errors"] else f"{st['errors']:,} errors"
            out.append(f"stall of {st['seconds']:.0f}s at +{st['start_s']:.0f}s ({st['kind']}, "
                       f"{st['min_qps']:,.0f} q/s against a median of {st['median_qps']:,.0f}, {what})")
        if m.get("cut"):
            out.append(f"{m['cut']} queries still running at the drain (recorded as lower bounds)")
        for wid, why in self.lost.items():
            out.append(f"worker {wid} lost: {why}")
        partial = r.get("partial") or {}
        if partial.get("workers") and not self.lost:
            out.append(f"partial results from {', '.join(partial['workers'])}")
        return out

    async def _insert_run_row(self) -> None:
        """The RUN-scope TEST_RESULTS row: every run has one, also a failed or cancelled one."""
        if self.control is None or not self.run_created or not self.results:
            return
        m = self.results["measurement"]
        await self.side.save_result(
            TestResult(run_id=self.run_id, worker_id="run", scope="RUN", status=self.status,
                       started_at=datetime.fromtimestamp((self.start_unix_ns or time.time_ns()) / 1e9, timezone.utc),
                       ended_at=datetime.now(timezone.utc), queries=m["queries"], errors=m["errors"], qps=m["qps"],
                       measurement_seconds=m["seconds"], latency=m["latency"], histograms=self.results["histograms"],
                       details={"workers": self.results["workers"], "partial": self.results.get("partial"),
                                "stalls": self.results.get("stalls", []), "reason": self.reason})
        )

    def _expected_ids(self) -> set[str]:
        return {f"w{g}" for g in range(self.s.workers)}

    async def _merge_worker_results(self) -> list[TestResult]:
        """The workers' rows, from the control store and the run folder, merged into ``self.results``."""
        control_rows: list[TestResult] = []
        unreachable = None
        if self.control is not None:
            try:
                control_rows = await asyncio.wait_for(self.side.results(), self.s.statement_timeout)
            except Exception as exc:  # the run folder's copies may still hold everything
                unreachable = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        rows = pick_worker_rows(control_rows, read_local_rows(self.run_dir))
        window_s = self.s.warmup + self._measure_s + self.s.cooldown
        self.results = merge_results(rows, self.s.workers, window_s=window_s)
        self.results["sources"] = {r.worker_id: r.details.get("source") for r in rows}
        if unreachable:
            self.results.setdefault("warnings", []).append(f"control store unreachable at the end ({unreachable}): "
                                                          "results from the run folder's copies")
        self.results["partial"] = self._partial(rows, window_s)
        self._clock_results()
        self.results["stalls"] = find_stalls(self.results.get("timeline", []), start_s=self.s.warmup,
                                             end_s=self.s.warmup + self._measure_s)
        self._load_results()
        return rows

    def _clock_results(self) -> None:
        """Our clock's offset and the measurement window, on the control store's clock: the
        workers' own (``workers[].clock``, ``measurement_window_unix_ns``) are on it too."""
        c = self.side.clock
        self.results["clock"] = c.as_dict()
        if self._measurement_window is not None:
            self.results["measurement_window_unix_ns"] = [c.to_store(t) for t in self._measurement_window]

    def _load_results(self) -> None:
        """What the load model adds to results.json: the open model's rate shortfall, find-max's curve."""
        load = self.s.load
        if load.model == "open":
            from spanbench.load.open import rate_curve
            from spanbench.results import rate_shortfall

            short = rate_shortfall(self.results, rate_curve(load), start_s=self.s.warmup,
                                   end_s=self.s.warmup + self._measure_s)
            self.results["measurement"]["rate_shortfall"] = short
            if not short["met"]:
                # The report prints the warnings: an unmet rate is said, with how much and since when.
                since = f" from +{short['from_s']:.0f}s" if short["from_s"] is not None else ""
                self.results.setdefault("warnings", []).append(
                    f"target rate not met: {short['achieved_qps']:,.0f}/s of {short['target_qps']:,.0f}/s "
                    f"({short['shortfall_share']:.1%} short){since}; {short['dropped']:,} arrivals dropped "
                    f"beyond max_queue = {load.max_queue}")
        if self.find_max is not None:
            self.results["find_max"] = {k: v for k, v in self.find_max.items() if k != "stopped_early"}
        self.results["load"] = {"model": load.model}

    def _partial(self, rows: list[TestResult], window_s: float) -> dict[str, Any] | None:
        """Which workers' figures are incomplete, and how many seconds of the load they miss."""
        if self.start_unix_ns is None:
            return None
        end_ns = self.start_unix_ns + int(window_s * 1e9)
        missing: dict[str, float] = {}
        by_id = {r.worker_id: r for r in rows}
        for wid in sorted(self._expected_ids()):
            r = by_id.get(wid)
            if r is None:
                missing[wid] = window_s
            elif r.details.get("partial"):
                saved_at = r.details.get("saved_unix_ns")  # the store's clock, as every instant of a row
                saved = self.side.clock.to_local(int(saved_at)) if saved_at else self.start_unix_ns
                missing[wid] = round(max(0.0, (min(end_ns, time.time_ns()) - saved) / 1e9), 3)
        if not missing:
            return None
        return {"workers": sorted(missing), "seconds_missing": missing}

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
            # Each on its own: a failed status update must not also lose the STOP.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.side.set(status=status, cancel_reason=reason[:1000], retried=False), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.side.announce(rec.STOP, {"reason": reason[:1000]}, retried=False), 5)
            with contextlib.suppress(Exception):
                await self._await_workers_done(self.s.drain_timeout + 10.0)
            with contextlib.suppress(Exception):
                await self._merge_worker_results()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._insert_run_row(), 5)

    def _check_workers_alive(self, running: bool = False) -> None:
        for w in self.workers:
            code = w.exit_code()
            if w.worker_id in self.lost or code is None or (code == 0 and running):
                continue
            line = w.last_error_line()
            if line.startswith("spanbench: error: "):  # its own last words
                why = f"failed: {line.removeprefix('spanbench: error: ')}"
            else:
                why = f"exited with code {code}" + (f": {line}" if line else "")
            self._worker_lost(w.worker_id, why, running=running)

    def _worker_lost(self, worker_id: str, why: str, *, running: bool) -> None:
        """A worker is gone mid-run: fail the run, or (on_worker_loss = "continue") go on without it."""
        if not running or self.s.on_worker_loss == "fail":
            raise RunFailed(f"worker {worker_id} {why}")
        self.lost[worker_id] = why
        self._lost_to_mark.append(worker_id)

    async def _phase_p99(self, phase: str) -> float | None:
        """p99 of ``phase`` so far, all kinds, merged exactly from the workers' latest flushes."""
        from spanbench.stats import decode, merge, summarize

        assert self.control is not None
        try:
            rows = await asyncio.wait_for(self.side.results(), 2.0)
        except Exception:
            return None
        hs = [decode(text) for r in rows if r.scope == "WORKER" for text in (r.histograms or {}).get(phase, {}).values()]
        merged = merge(hs)
        return summarize(merged).p99_ms if merged.get_total_count() else None

    async def _beat_and_look(self) -> list[Heartbeat]:
        """The orchestrator's beat and a look at the workers', riding out a control-store blip:
        the workers wait ``orchestrator_timeout`` for a beat, and so does this for the store."""
        assert self.control is not None
        try:
            await self.side.beat()
            beats = await self._check_heartbeats()
        except RunFailed:
            raise
        except Exception as exc:
            now = time.monotonic()
            if self._control_down_since is None:
                self._control_down_since = (now, (time.time_ns() - (self.start_unix_ns or time.time_ns())) / 1e9)
            since, at_s = self._control_down_since
            if now - since > self.s.orchestrator_timeout:
                raise RunFailed(f"control store {where_of(self.s.control_dsn or self.target_dsn)} went away at "
                                f"+{at_s:.1f}s and did not come back within {self.s.orchestrator_timeout:g}s "
                                f"({type(exc).__name__})") from None
            return []
        self._control_down_since = None
        return beats

    async def _check_heartbeats(self) -> list[Heartbeat]:
        """The workers' beats; a FAILED one fails the run, a silent one (3 beat intervals) is LOST."""
        assert self.control is not None
        beats = await self.side.look()
        now = datetime.now(timezone.utc)
        silent_s = 3 * self.s.heartbeat_interval + 1.0
        for b in beats:
            if b.worker_id in self.lost:
                continue
            if b.status == "FAILED":
                self._worker_lost(b.worker_id, f"failed: {b.last_error or 'no reason given'}", running=True)
            elif b.status == "RUNNING" and b.last_beat is not None:
                age = b.beat_age_s if b.beat_age_s is not None else (now - b.last_beat).total_seconds()
                if age > silent_s:
                    self._worker_lost(b.worker_id, f"no heartbeat for {age:.1f}s", running=True)
        for wid in self._lost_to_mark:
            with contextlib.suppress(Exception):
                await self.side.mark(wid, rec.LOST, self.lost[wid])
        self._lost_to_mark.clear()
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
        beats: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + _BEAT_S
                    await self.side.beat()
                beats = {b.worker_id: b.status for b in await self.side.look()}
            except Exception:
                # The store is away: local workers still say they are done by exiting.
                if not self.s.launch_workers:
                    await asyncio.sleep(0.2)
                    continue
            exited = {w.worker_id for w in self.workers if w.exit_code() is not None}
            pending = {w for w in expected if beats.get(w) not in _FINAL and w not in exited and w not in self.lost}
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

    def _early_embedded_span(self) -> None:
        """The early start's own span, under the run beside the bootstrap it overlapped."""
        assert self.early_embedded is not None
        done = self.early_embedded.finish()
        if done is not None:
            start, end, error = done
            attrs: dict[str, Any] = {"spanbench.embedded.early": True, "spanbench.embedded.data_dir": str(self.early_embedded.data_dir)}
            if error:
                attrs["spanbench.embedded.early_error"] = error[:300]
            self._retro("target.start_embedded", start, end, attrs)

    def _retro(self, name: str, start_ns: int, end_ns: int, attrs: dict[str, Any] | None = None) -> None:
        span = self.tracer.start_span(name, context=self.ctx, start_time=start_ns, attributes=attrs)
        span.end(end_time=max(start_ns, end_ns))
