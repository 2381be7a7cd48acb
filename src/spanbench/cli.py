"""The commands: run, worker, init, gaps, report, diff.

Every failure a user can cause ends as one line on stderr and a non-zero exit:
2 for bad input, 1 for a run that failed, 130 for an interrupt. A traceback appears
only with SPANBENCH_DEBUG=1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from spanbench.errors import ConfigError, RunCancelled, SpanbenchError

_MAIN_NS = 0  # when main() began: the end of this process's ``*.startup`` span


def _usage_error_types() -> tuple[type[BaseException], ...]:
    # Typer 0.29+ vendors click; older releases raise click's own exceptions.
    types: list[type[BaseException]] = [getattr(typer, "TyperException", None) or typer.BadParameter]
    try:
        import click

        types.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return tuple(types)


def _exit_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Exit]
    try:
        import click

        types.append(click.exceptions.Exit)
    except ImportError:
        pass
    return tuple(types)

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="A database benchmark in which every second of a run is an OpenTelemetry span.",
)


@app.command()
def run(
    scenario: Annotated[Optional[Path], typer.Argument(help="scenario TOML file (keys as the options below)")] = None,
    target_dsn: Annotated[Optional[str], typer.Option(help="database under test (postgresql:// or snowflake://); default: embedded PostgreSQL")] = None,
    control_dsn: Annotated[Optional[str], typer.Option(help="where the control tables live; default: the target")] = None,
    workers: Annotated[Optional[int], typer.Option(help="worker processes [2]")] = None,
    connections: Annotated[Optional[int], typer.Option(help="connections in total across workers [16]")] = None,
    pool_batch_size: Annotated[Optional[int], typer.Option(help="connections opened concurrently per batch [8]")] = None,
    warmup: Annotated[Optional[str], typer.Option(help="warmup duration, e.g. 2s [2s]")] = None,
    duration: Annotated[Optional[str], typer.Option(help="measurement duration, e.g. 10s [10s]")] = None,
    output: Annotated[Optional[Path], typer.Option(help="parent folder of run folders [spanbench-runs]")] = None,
    warehouse_resume: Annotated[Optional[bool], typer.Option("--warehouse-resume/--no-warehouse-resume", help="Snowflake: resume the warehouse and wait for it before the pool init")] = None,
    use_cached_result: Annotated[Optional[bool], typer.Option("--use-cached-result/--no-use-cached-result", help="Snowflake: allow the result cache [off]")] = None,
    server_timings: Annotated[Optional[bool], typer.Option("--server-timings/--no-server-timings", help="Snowflake: add QUERY_HISTORY timings to sampled query spans after the run")] = None,
) -> None:
    """Run a benchmark: one trace, a report, and a run folder with the trace and results.json."""
    from spanbench import aio
    from spanbench.orchestrator import Orchestrator
    from spanbench.report.run_report import finish_run
    from spanbench.settings import build_settings
    from spanbench.telemetry.process_start import process_start_time_ns

    settings = build_settings(
        scenario, target_dsn=target_dsn, control_dsn=control_dsn, workers=workers, connections=connections,
        pool_batch_size=pool_batch_size, warmup=warmup, duration=duration, output=output,
        warehouse_resume=warehouse_resume, use_cached_result=use_cached_result, server_timings=server_timings,
    )
    _check_dsns(settings.target_dsn, settings.control_dsn)
    orchestrator = Orchestrator(settings, process_start_ns=process_start_time_ns(), main_ns=_MAIN_NS)
    outcome = aio.run(orchestrator.run())
    raise typer.Exit(finish_run(outcome, settings))


@app.command()
def worker(
    run_id: Annotated[str, typer.Option(help="the run to join")],
    control_dsn: Annotated[Optional[str], typer.Option(envvar="SPANBENCH_CONTROL_DSN", show_envvar=True, help="control store")] = None,
    group_id: Annotated[int, typer.Option(min=0, help="this worker's group index")] = 0,
    group_count: Annotated[Optional[int], typer.Option(min=1, help="number of worker groups (must match the run)")] = None,
    target_dsn: Annotated[Optional[str], typer.Option(envvar="SPANBENCH_TARGET_DSN", show_envvar=True, help="target, if RUN_STATUS's redacted one will not do")] = None,
    join_timeout: Annotated[str, typer.Option(help="how long to wait for the run to appear in the control store")] = "120s",
) -> None:
    """Join a run as one worker group (the orchestrator starts these; start more on other machines)."""
    from spanbench import aio
    from spanbench.telemetry.process_start import process_start_time_ns
    from spanbench.units import parse_duration
    from spanbench.worker import BootTimes, WorkerArgs, run_worker

    if not control_dsn:
        raise ConfigError("worker needs --control-dsn (or SPANBENCH_CONTROL_DSN)")
    _check_dsns(target_dsn, control_dsn)
    run_dir = os.environ.get("SPANBENCH_RUN_DIR")
    parent = os.environ.get("SPANBENCH_PARENT_PID")
    args = WorkerArgs(
        run_id=run_id, control_dsn=control_dsn, group_id=group_id, group_count=group_count, target_dsn=target_dsn,
        run_dir=Path(run_dir) if run_dir else Path("spanbench-runs") / run_id,
        parent_pid=int(parent) if parent else None, join_timeout=parse_duration(join_timeout),
    )
    code = aio.run(run_worker(args, BootTimes(process_start_time_ns(), _MAIN_NS)))
    raise typer.Exit(code)


@app.command()
def init(
    target_dsn: Annotated[Optional[str], typer.Option(help="database to fill; default: embedded PostgreSQL")] = None,
    rows: Annotated[Optional[int], typer.Option(help="rows in the demo table [100000]")] = None,
) -> None:
    """Create and fill the demo table (as `pgbench -i` does)."""
    from spanbench import aio
    from spanbench.settings import build_settings
    from spanbench.workload.init import init_demo

    settings = build_settings(None, target_dsn=target_dsn, rows=rows)
    _check_dsns(settings.target_dsn, None)
    seconds = aio.run(init_demo(settings))
    typer.echo(f"demo table filled with {settings.rows} rows in {seconds:.2f}s")


@app.command()
def gaps(
    path: Annotated[Optional[str], typer.Argument(help="a run folder or a trace file")] = None,
    min_gap: Annotated[str, typer.Option(help="smallest gap to report")] = "50ms",
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    fail_over: Annotated[Optional[str], typer.Option(help="exit 1 when a gap on the critical path exceeds this")] = None,
    jaeger: Annotated[Optional[str], typer.Option(help="Jaeger query URL to fetch the trace from")] = None,
    tempo: Annotated[Optional[str], typer.Option(help="Tempo URL to fetch the trace from")] = None,
    trace_id: Annotated[Optional[str], typer.Option(help="trace id (with --jaeger or --tempo)")] = None,
    query: Annotated[Optional[str], typer.Option(help="TraceQL query (with --tempo): the most recent match")] = None,
) -> None:
    """Where did the time go: the start-up waterfall and every gap no span claims."""
    from spanbench.analysis.command import gaps_command

    if path is None and not (jaeger or tempo):
        raise ConfigError("gaps needs a PATH, or --jaeger/--tempo with --trace-id")
    code = gaps_command(
        path or "", min_gap=min_gap, as_json=json_out, fail_over=fail_over, jaeger=jaeger, tempo=tempo,
        trace_id=trace_id, query=query,
    )
    raise typer.Exit(code)


@app.command()
def report(
    run_folder: Annotated[str, typer.Argument(help="a run folder (spanbench-runs/<run id>)")],
) -> None:
    """Write the run's self-contained report.html: waterfall, gaps, latency, throughput, settings."""
    from spanbench.report.html import report_command

    raise typer.Exit(report_command(run_folder))


@app.command()
def diff(
    run_a: Annotated[str, typer.Argument(help="the baseline: a run folder or a trace file")],
    run_b: Annotated[str, typer.Argument(help="the run to compare with it")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Line two runs up per span name (count, p50, max): what grew, and by how much."""
    from spanbench.analysis.diff import diff_command

    raise typer.Exit(diff_command(run_a, run_b, as_json=json_out))


def _check_dsns(*dsns: str | None) -> None:
    from spanbench.dsn import dsn_system

    for dsn in dsns:
        if dsn:
            dsn_system(dsn)


def _fail(message: str, code: int) -> int:
    print(f"spanbench: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> None:
    global _MAIN_NS
    _MAIN_NS = time.time_ns()
    debug = os.environ.get("SPANBENCH_DEBUG") == "1"
    try:
        result = app(args=argv, prog_name="spanbench", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except _exit_types() as exc:
        code = int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:
        code = _fail("interrupted", 130)
    except _usage_error_types() as exc:  # usage errors: bad flag, bad int, missing option
        fmt = getattr(exc, "format_message", None)
        code = _fail(fmt() if fmt else str(exc), 2)
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = _fail("interrupted", 130)
    except RunCancelled as exc:
        code = _fail(str(exc), 130)
    except ConfigError as exc:
        code = _fail(str(exc), 2)
    except SpanbenchError as exc:
        code = _fail(str(exc), 1)
    except Exception as exc:  # a bug of ours: still one line, the traceback only when asked
        if debug:
            raise
        code = _fail(f"internal error: {type(exc).__name__}: {exc} (SPANBENCH_DEBUG=1 shows the traceback)", 1)
    sys.stdout.flush()
    sys.exit(code)
