"""Find-max: a closed loop whose connections grow step by step, on the orchestrator's clock.

The worker side. The orchestrator sends one SET_TARGET per step (payload: ``step``,
``connections`` across the run, ``at_unix_ns``); every worker switches at that instant
(its PhaseSchedule holds the timer, cancelled at the stop). The phase stays MEASUREMENT,
so the run's results are computed exactly as a closed loop's; each step's own figures are
the difference of the histograms' counts between two snapshots: one taken once the step's
new connections have all finished a query (a step is measured only when they are busy),
one at the next switch. The differences are exact, so the orchestrator merges them across
workers as it merges any histogram. The worker flushes its row at every step's end.

The verdicts (stable, or the criterion that stopped the search) are the orchestrator's
(``step_verdict`` below, shared with it), from the merged figures of every worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from spanbench.stats import encode_sparse, merge, summarize, decode


def _connections_for(group_id: int, groups: int, total: int) -> int:
    return total // groups + (1 if group_id < total % groups else 0)


class Steps:
    def __init__(self, worker: Any, settings: Any) -> None:
        self.w = worker
        self.load = settings.load
        self.groups = settings.workers
        self.group = worker.args.group_id
        self.tasks: list[asyncio.Task[None]] = []
        self.pairs: list[tuple[int, tuple[Any, Any]]] = []
        self.started = 0
        self.current: dict[str, Any] | None = None  # the step being measured
        self.done: list[dict[str, Any]] = []  # finished steps, their histograms encoded
        self._base: list[list[int]] | None = None
        self._base_errors: list[int] = []
        self._waiting = 0
        self._flush_again = False

    # ---------------------------------------------------------------- connections

    def begin(self, pairs: list[tuple[int, tuple[Any, Any]]]) -> list[asyncio.Task[None]]:
        self.pairs = pairs
        # A phase switch at the same instant as a step (MEASUREMENT and step 1) keeps the step's tag.
        schedule = self.w.schedule
        sample = schedule.on_change

        def on_change() -> None:
            sample()
            self._retag()

        schedule.on_change = on_change
        self._grow(_connections_for(self.group, self.groups, self.load.start), step=0)
        return self.tasks

    def _grow(self, target: int, step: int) -> None:
        target = min(target, len(self.pairs))
        loop = self.w.loop
        for i, (conn, fns) in self.pairs[self.started:target]:
            self._waiting += 1
            self.tasks.append(asyncio.create_task(self._run(loop, i, conn, fns, step), name=f"conn-{i}"))
        self.started = max(self.started, target)

    async def _run(self, loop: Any, i: int, conn: Any, fns: Any, step: int) -> None:
        st = loop.state
        st.active += 1
        try:
            if step:
                await conn.set_phase(st.tag)  # a step's new session: QUERY_TAG names the step from its first query
            await loop._first_query(i, conn, fns)
            self._busy(step)
            await loop._loop(i, conn, fns)
        finally:
            st.active -= 1

    def _busy(self, step: int) -> None:
        self._waiting -= 1
        if self._waiting <= 0 and self.current is not None and self.current["step"] == step and self._base is None:
            self._snapshot_begin()

    # ---------------------------------------------------------------- steps

    def on_event(self, payload: dict[str, Any]) -> None:
        step, total = int(payload["step"]), int(payload["connections"])
        at = int(payload.get("at_unix_ns") or time.time_ns())
        self.w.schedule.at(at, self._switch, step, total)

    def _switch(self, step: int, total: int) -> None:
        self._close_step()
        share = min(_connections_for(self.group, self.groups, total), len(self.pairs))
        self.current = {"step": step, "connections": total, "worker_connections": share}
        # On Snowflake every session's QUERY_TAG names the step (phase=MEASUREMENT_STEP3).
        self._retag()
        self._base = None
        self._grow(share, step)
        if self._waiting <= 0:
            self._snapshot_begin()

    def _retag(self) -> None:
        st = self.w.state
        cur = self.current
        if cur is not None and cur["step"] <= len(self.load.steps()):
            tag = f"MEASUREMENT_STEP{cur['step']}"
            if st.tag != tag:
                st.retag(tag)

    def _snapshot_begin(self) -> None:
        st = self.w.state
        self._base = [r.counts[:] for r in st.recorders]
        self._base_errors = list(st.errors)
        assert self.current is not None
        self.current["begin_ns"] = time.perf_counter_ns()

    def _close_step(self, *, flush: bool = True) -> None:
        cur = self.current
        if cur is None:
            return
        self.current = None
        st = self.w.state
        kinds = self.w.loop.kinds
        now = time.perf_counter_ns()
        out = {k: v for k, v in cur.items() if k != "begin_ns"}
        if self._base is None:  # its connections never all got busy: nothing measured
            out.update(seconds=0.0, queries=0, errors=0, histograms={})
        else:
            hists, queries = {}, 0
            for i, rec in enumerate(st.recorders):
                base = self._base[i]
                diff = {j: c - base[j] for j, c in enumerate(rec.counts) if c != base[j]}
                n = sum(diff.values())
                queries += n
                if n:
                    hists[kinds[i]] = encode_sparse(diff)
            errors = sum(e - b for e, b in zip(st.errors, self._base_errors))
            out.update(seconds=(now - cur["begin_ns"]) / 1e9, queries=queries, errors=errors, histograms=hists)
        self._base = None
        self.done.append(out)
        if flush:
            self._request_flush()

    def _request_flush(self) -> None:
        w = self.w
        task = w._flush_task
        if task is not None and not task.done():
            if not self._flush_again:
                self._flush_again = True
                task.add_done_callback(lambda _t: self._flush_now())
            return
        self._flush_now()

    def _flush_now(self) -> None:
        self._flush_again = False
        if self.w.state is not None:
            self.w._flush_task = asyncio.get_running_loop().create_task(self.w.results_flush())

    def details(self) -> dict[str, Any]:
        """The finished steps (and the one running, measured so far: the final row's last step)."""
        if self.w.state is not None and self.w.state.stop and self.current is not None:
            self._close_step(flush=False)
        return {"steps": list(self.done)}


# ---------------------------------------------------------------- the orchestrator's side


def merge_step(rows: list[Any], step: int) -> dict[str, Any] | None:
    """One step's figures across the workers' rows, histograms merged exactly; None while a
    worker has not reported it."""
    parts = []
    for r in rows:
        got = [s for s in (r.details.get("find_max") or {}).get("steps", []) if s.get("step") == step]
        if not got:
            return None
        parts.append(got[0])
    if not parts:
        return None
    hs = [decode(t) for p in parts for t in p["histograms"].values()]
    merged = merge(hs)
    summary = summarize(merged)
    queries = sum(p["queries"] for p in parts)
    errors = sum(p["errors"] for p in parts)
    seconds = [p["seconds"] for p in parts if p["seconds"] > 0]
    qps = sum(p["queries"] / p["seconds"] for p in parts if p["seconds"] > 0)
    executions = queries + errors
    return {
        "step": step, "connections": parts[0]["connections"], "qps": qps,
        "p50_ms": summary.p50_ms if merged.get_total_count() else None,
        "p95_ms": summary.p95_ms if merged.get_total_count() else None,
        "p99_ms": summary.p99_ms if merged.get_total_count() else None,
        "error_rate": errors / executions if executions else 0.0,
        "queries": queries, "errors": errors, "seconds": max(seconds, default=0.0),
    }


def step_verdict(load: Any, step: dict[str, Any], first: dict[str, Any] | None, prev: dict[str, Any] | None) -> str:
    """``stable``, or the criterion that this step broke: error_rate, p95_growth, qps_gain."""
    if step["queries"] + step["errors"] == 0:
        return "no_data"
    if step["error_rate"] > load.stop_error_rate:
        return "error_rate"
    if first is not None and first is not step and first.get("p95_ms") and step.get("p95_ms") is not None:
        if step["p95_ms"] > first["p95_ms"] * (1 + load.stop_p95_growth):
            return "p95_growth"
    if prev is not None and prev["qps"] > 0 and step["qps"] < prev["qps"] * (1 + load.stop_qps_gain):
        return "qps_gain"
    return "stable"


class FindMaxRun:
    """The orchestrator's measurement phase under find-max: one ``load.step`` span per step,
    SET_TARGET a little ahead of each step's instant, a verdict per step from every worker's
    figures, merged exactly."""

    def __init__(self, orchestrator: Any, begin_ns: int) -> None:
        self.o = orchestrator
        self.begin_ns = begin_ns

    def _lead_ns(self) -> int:
        o = self.o
        lead = o._start_lead_s() + 0.1
        if not getattr(o.control, "pushes_signals", False):
            lead += o.s.heartbeat_interval  # a worker without NOTIFY reads the events at its beat
        return int(lead * 1e9)

    async def _send(self, step: int, connections: int, at_ns: int) -> None:
        from spanbench.control import records as rec

        o = self.o
        payload = {"step": step, "connections": connections, "at_unix_ns": at_ns}
        await o.side.announce(rec.SET_TARGET, payload)

    async def _figures(self, step: int, timeout_s: float) -> dict[str, Any] | None:
        """Step ``step`` merged over every worker still in the run, once each has reported it."""
        from spanbench.results import pick_worker_rows

        o = self.o
        deadline = time.monotonic() + timeout_s
        next_beat = 0.0
        while True:
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + 0.5
                await o._beat_and_look()
            try:
                rows = [r for r in pick_worker_rows(await o.control.fetch_test_results(o.run_id), [])
                        if r.worker_id not in o.lost]
            except Exception:
                rows = []
            if len(rows) >= o.s.workers - len(o.lost):
                got = merge_step(rows, step)
                if got is not None:
                    return got
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        from opentelemetry import trace

        from spanbench.load.state import MEASUREMENT

        o = self.o
        load = o.s.load
        steps = load.steps()
        dur_ns = int(load.step_duration * 1e9)
        lead_ns = self._lead_ns()
        total_s = len(steps) * load.step_duration
        ctx = trace.set_span_in_context(trace.get_current_span())
        curve: list[dict[str, Any]] = []
        first = prev = None
        max_stable: int | None = None
        stopped_by = "max"
        stopped_early = False
        t = self.begin_ns
        await self._send(1, steps[0], t)
        for k, conns in enumerate(steps, 1):
            s1 = t + dur_ns
            label = f"MEASUREMENT step {k}/{len(steps)}: {conns} connections"
            await o._hold_phase(MEASUREMENT, total_s, s1 - lead_ns, label=label)
            # The next step (or, after the last, a step that only closes it) on the same clock.
            await self._send(k + 1, steps[k] if k < len(steps) else conns, s1)
            await o._hold_phase(MEASUREMENT, total_s, s1, label=label)
            fig = await self._figures(k, timeout_s=max(5.0, 2 * o.s.statement_timeout / 10) + lead_ns / 1e9)
            span = o.tracer.start_span("load.step", context=ctx, start_time=t,
                                       attributes={"load.step.index": k, "load.step.connections": conns})
            if fig is None:
                verdict = "no_data"
            else:
                verdict = step_verdict(load, fig, first, prev)
                span.set_attributes({
                    "load.step.qps": fig["qps"], "load.step.p50_ms": fig["p50_ms"] or 0.0,
                    "load.step.p95_ms": fig["p95_ms"] or 0.0, "load.step.p99_ms": fig["p99_ms"] or 0.0,
                    "load.step.error_rate": fig["error_rate"], "load.step.queries": fig["queries"],
                })
                curve.append({"connections": conns, "qps": fig["qps"], "p50_ms": fig["p50_ms"], "p95_ms": fig["p95_ms"],
                              "p99_ms": fig["p99_ms"], "error_rate": fig["error_rate"], "verdict": verdict,
                              "seconds": fig["seconds"]})
            span.set_attribute("load.step.verdict", verdict)
            span.end(end_time=s1)
            t = s1
            if verdict != "stable":
                stopped_by = verdict
                stopped_early = True
                break
            max_stable = conns
            first = first or fig
            prev = fig
        if stopped_early:
            # The measurement ends here: the stall finder and the timeline stop with it.
            o._measure_s = max(0.0, (time.time_ns() - o.start_unix_ns) / 1e9 - o.s.warmup)
        o.find_max = {"max_stable_connections": max_stable, "stopped_by": stopped_by, "steps": curve,
                      "stopped_early": stopped_early}
