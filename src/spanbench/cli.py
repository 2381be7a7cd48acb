"""The commands: run, worker, init, check, pools, gaps, report, diff, runs, export.

Every failure a user can cause ends as one line on stderr and a non-zero exit:
2 for bad input, 1 for a run that failed, 130 for an interrupt. A traceback appears
only with SPANBENCH_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from spanbench.errors import ConfigError, RunCancelled, RunCompletedWithErrors, SpanbenchError

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


def _interrupt_types() -> tuple[type[BaseException], ...]:
    # asyncio costs ~0.1 s to import: `--help` must not pay it, so it is asked for only when
    # a command already loaded it.
    mod = sys.modules.get("asyncio")
    return (KeyboardInterrupt, mod.CancelledError) if mod is not None else (KeyboardInterrupt,)


def _exit_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Exit]
    try:
        import click

        types.append(click.exceptions.Exit)
    except ImportError:
        pass
    return tuple(types)

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    help="A database benchmark in which every second of a run is an OpenTelemetry span.",
)


def _print_version(value: bool | None) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("spanbench")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from spanbench import __version__ as text
        typer.echo(f"spanbench {text}")
        raise typer.Exit(0)


@app.callback()
def _options(
    ctx: typer.Context,
    version: Annotated[Optional[bool], typer.Option("--version", is_eager=True, callback=_print_version,
                                                    help="print spanbench's version and exit")] = None,
) -> None:
    if ctx.invoked_subcommand in ("run", "init", "worker", "pools"):
        # run and init refuse it when they build their settings; a worker builds its own only
        # once it has joined a run, too late to refuse bad input.
        from spanbench.telemetry.endpoints import check_otlp_protocols

        check_otlp_protocols()


class _RunCommand(typer.core.TyperCommand):
    """``run``: its help ends with every setting that is not a flag, built from Settings when shown."""

    @property  # type: ignore[override]
    def epilog(self) -> str:  # Rich help (rich_markup_mode set) prints this text
        from spanbench.settings import settings_help

        return settings_help({p.name for p in self.params if p.name})

    @epilog.setter
    def epilog(self, value: str | None) -> None:  # click sets it in __init__; the property wins
        pass

    def format_epilog(self, ctx, formatter) -> None:  # type: ignore[no-untyped-def]  # plain help: a definition list
        from spanbench.settings import SETTINGS_HELP_INTRO, SETTINGS_HELP_TITLE, settings_help_rows

        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(SETTINGS_HELP_INTRO)
        with formatter.section(SETTINGS_HELP_TITLE):
            formatter.write_dl(settings_help_rows({p.name for p in self.params if p.name}))


@app.command(cls=_RunCommand)
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
    progress: Annotated[Optional[str], typer.Option(help="a plain progress line every INTERVAL, as pgbench's -P (0: none) [a live line on a terminal, else 5s]")] = None,
    init: Annotated[Optional[bool], typer.Option("--init/--no-init", help="create (or re-create) and fill the demo table first, as `spanbench init` [off]")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="after the run, diff it against this run (folder, run id or results.json) and apply --fail-on")] = None,
    fail_on: Annotated[Optional[list[str]], typer.Option("--fail-on", metavar="METRIC:CHANGE", help="with --baseline: exit 1 when the run passes this bound, as `diff --fail-on` (repeatable)")] = None,
    require_comparable: Annotated[bool, typer.Option("--require-comparable", help="with --baseline: exit 1 when the run does not compare with it")] = False,
) -> None:
    """Run a benchmark: one trace, a report, and a run folder with the trace and results.json."""
    from spanbench.settings import build_settings

    settings = build_settings(
        scenario, target_dsn=target_dsn, control_dsn=control_dsn, workers=workers, connections=connections,
        pool_batch_size=pool_batch_size, warmup=warmup, duration=duration, output=output,
        warehouse_resume=warehouse_resume, use_cached_result=use_cached_result, server_timings=server_timings,
        progress=progress, init=init,
    )
    if settings.init and settings.queries is not None:
        raise ConfigError("--init creates the built-in demo's table; this scenario has its own [[queries]]")
    _check_dsns(settings.target_dsn, settings.control_dsn)
    if settings.run_id and (settings.output / settings.run_id).exists():
        # A run never writes into another run's folder: refused before anything starts.
        raise ConfigError(f"run id {settings.run_id} already has a folder in {settings.output}: "
                          "pick another run_id (or leave it unset)")
    gate = None
    if baseline is not None or fail_on or require_comparable:
        if baseline is None:
            raise ConfigError("--fail-on and --require-comparable need --baseline RUN to compare the run with")
        from spanbench.report.gate_report import BaselineGate

        gate = BaselineGate.prepare(baseline, fail_on, runs_folder=settings.output, require_comparable=require_comparable)
    early = None
    if settings.target_dsn is None and hasattr(os, "fork"):
        # The embedded server starts in a child while the rest of spanbench is imported.
        from spanbench.targets.embedded import EarlyStart

        early = EarlyStart.fork(settings.embedded_dir)
    from spanbench import aio
    from spanbench.orchestrator import Orchestrator
    from spanbench.telemetry.process_start import own_start

    orchestrator = Orchestrator(settings, start=own_start(), main_ns=_MAIN_NS)
    orchestrator.early_embedded = early
    orchestrator.prefork_workers()  # before the event loop: a fork must not see one
    outcome = aio.run(orchestrator.run())
    from spanbench.report.run_report import finish_run  # the report's imports wait for the report

    try:
        code = finish_run(outcome, settings)
    except RunCompletedWithErrors:
        if gate is not None:  # shown, but the run's own exit code (4) wins over the gate's
            gate.after_run(outcome.run_dir)
        raise
    if gate is not None:
        code = code or gate.after_run(outcome.run_dir)
    raise typer.Exit(code)


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
    from spanbench.telemetry.process_start import own_start
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
    code = aio.run(run_worker(args, BootTimes(own_start().exec_ns, _MAIN_NS)))
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
def check(
    scenario: Annotated[Path, typer.Argument(help="scenario TOML file")],
    target_dsn: Annotated[Optional[str], typer.Option(help="also prepare every statement on this database (nothing is written)")] = None,
) -> None:
    """Validate a scenario without running it: keys, types, placeholders; with a DSN, every statement."""
    from spanbench.workload.check import check as check_scenario

    found, summary = check_scenario(scenario, target_dsn)
    if found:
        for line in found:
            print(f"{scenario}: {' '.join(line.split())}", file=sys.stderr)
        raise typer.Exit(2)
    typer.echo(f"{scenario}: ok: {summary}")


pools_app = typer.Typer(help="Value pools: column values sampled from the target into TEMPLATE_VALUE_POOLS.",
                        no_args_is_help=True)
app.add_typer(pools_app, name="pools")


@pools_app.command("build")
def pools_build(
    scenario: Annotated[Path, typer.Argument(help="scenario TOML file whose pool parameters to sample")],
    target_dsn: Annotated[Optional[str], typer.Option(help="database to sample from; default: the file's, else embedded PostgreSQL")] = None,
    control_dsn: Annotated[Optional[str], typer.Option(help="where TEMPLATE_VALUE_POOLS lives; default: the target")] = None,
) -> None:
    """Sample every `pool` column of SCENARIO (TABLESAMPLE / SAMPLE: reads only) into the control store."""
    from spanbench import aio
    from spanbench.settings import build_settings
    from spanbench.workload.pools_command import build_pools_command

    settings = build_settings(scenario, target_dsn=target_dsn, control_dsn=control_dsn)
    _check_dsns(settings.target_dsn, settings.control_dsn)
    for name, n in aio.run(build_pools_command(settings)).items():
        typer.echo(f"value pool {name}: {n} values")


k8s_app = typer.Typer(help="Kubernetes: the manifests of a run whose workers are an Indexed Job.",
                      no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
def k8s_render(
    scenario: Annotated[Path, typer.Argument(help="scenario TOML file (its DSNs go to the Secret, never the manifests)")],
    image: Annotated[str, typer.Option(help="the spanbench image (the repository's Dockerfile)")],
    workers: Annotated[int, typer.Option(help="worker pods: the Indexed Job's completions and parallelism")],
    run_id: Annotated[Optional[str], typer.Option(help="the run id every pod shares [the scenario's, else a new one]")] = None,
    namespace: Annotated[str, typer.Option(help="namespace of every object")] = "default",
    out: Annotated[Optional[Path], typer.Option(help="folder to write the manifests to [spanbench-k8s/<run id>]")] = None,
    otlp_endpoint: Annotated[Optional[str], typer.Option(help="OTLP endpoint of the pods [http://otel-collector:4318]")] = None,
    secret: Annotated[str, typer.Option(help="Secret with keys target-dsn, control-dsn and optional otlp-headers")] = "spanbench",
) -> None:
    """Write one run's manifests: the scenario ConfigMap, the orchestrator Job, the workers' Indexed Job."""
    from spanbench.k8s.render import render_command

    render_command(scenario, image=image, workers=workers, run_id=run_id, namespace=namespace, out=out,
                   otlp_endpoint=otlp_endpoint, secret=secret)


@app.command()
def gaps(
    path: Annotated[Optional[str], typer.Argument(help="a run folder or a trace file")] = None,
    min_gap: Annotated[str, typer.Option(help="smallest gap to report")] = "50ms",
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    fail_over: Annotated[Optional[str], typer.Option(help="exit 1 when a gap on the critical path exceeds this")] = None,
    fail_if_first_query_over: Annotated[Optional[str], typer.Option(help="exit 1 when run start → the slowest worker's first_query exceeds this")] = None,
    jaeger: Annotated[Optional[str], typer.Option(help="Jaeger query URL to fetch the trace from")] = None,
    tempo: Annotated[Optional[str], typer.Option(help="Tempo URL to fetch the trace from")] = None,
    trace_id: Annotated[Optional[str], typer.Option(help="trace id (with --jaeger or --tempo)")] = None,
    query: Annotated[Optional[str], typer.Option(help="TraceQL query (with --tempo): the most recent match")] = None,
) -> None:
    """Where did the time go: the start-up waterfall and every gap no span claims."""
    from spanbench.report.gaps_report import gaps_command
    from spanbench.runs import resolve_run

    if path is None and not (jaeger or tempo):
        raise ConfigError("gaps needs a PATH, or --jaeger/--tempo with --trace-id")
    source = str(resolve_run(path)) if path else ""  # a run folder, run id or runs folder
    code = gaps_command(
        source, min_gap=min_gap, as_json=json_out, fail_over=fail_over, jaeger=jaeger, tempo=tempo,
        trace_id=trace_id, query=query, fail_if_first_query_over=fail_if_first_query_over,
    )
    raise typer.Exit(code)


@app.command()
def report(
    run_folder: Annotated[str, typer.Argument(help="a run folder, a run id, or a runs folder (its latest run)")],
) -> None:
    """Write the run's self-contained report.html: waterfall, gaps, latency, throughput, settings."""
    from spanbench.report.html import report_command
    from spanbench.runs import resolve_run

    raise typer.Exit(report_command(str(resolve_run(run_folder))))


@app.command()
def diff(
    run_a: Annotated[str, typer.Argument(help="the baseline: a run folder, run id, runs folder, results.json or trace file")],
    run_b: Annotated[str, typer.Argument(help="the run to compare with it")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    fail_on: Annotated[Optional[list[str]], typer.Option("--fail-on", metavar="METRIC:CHANGE", help="exit 1 when B passes this bound against A, e.g. qps:-5%, p99:+20%, p99:+5ms, span:pool.init:+30% (repeatable)")] = None,
    require_comparable: Annotated[bool, typer.Option("--require-comparable", help="exit 1 when the runs differ in settings, scenario, target or spanbench version")] = False,
    noise_aware: Annotated[bool, typer.Option("--noise-aware/--no-noise-aware", help="a latency bound fails only when its change is also beyond the noise (p < --alpha)")] = True,
    alpha: Annotated[float, typer.Option(help="significance level of the noise tests")] = 0.05,
) -> None:
    """Line two runs up per span name (count, p50, max): what grew, and by how much; with --fail-on, a regression gate."""
    from spanbench.report.diff_report import diff_command
    from spanbench.report.gate_report import GateOptions
    from spanbench.runs import resolve_run

    # The bounds first: a malformed one is exit 2 before any run is read.
    gate = GateOptions.parse(fail_on, require_comparable=require_comparable, noise_aware=noise_aware, alpha=alpha)
    raise typer.Exit(diff_command(str(resolve_run(run_a)), str(resolve_run(run_b)), as_json=json_out,
                                  gate=gate if gate.active else None))


@app.command()
def merge(
    run_folder: Annotated[str, typer.Argument(help="the run folder to gather into: a run folder, run id, or runs folder")],
    others: Annotated[list[Path], typer.Argument(metavar="OTHER_FOLDER...", help="the same run's folders from other machines (or their runs folders)")],
) -> None:
    """Gather one run's worker trace and result files from other machines' run folders into RUN_FOLDER."""
    from spanbench.merge import merge_command
    from spanbench.runs import resolve_run

    raise typer.Exit(merge_command(resolve_run(run_folder), others))


@app.command()
def runs(
    folder: Annotated[Optional[str], typer.Argument(metavar="FOLDER", help="a runs folder, as given to run --output [spanbench-runs]")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The runs in a folder, newest last: when, status, target, QPS, p99, START → first query."""
    from spanbench.runs import runs_command

    raise typer.Exit(runs_command(folder, as_json=json_out))


@app.command()
def export(
    run: Annotated[str, typer.Argument(metavar="RUN", help="a run folder, a run id, a runs folder (its latest run) or a trace file")],
    fmt: Annotated[str, typer.Option("--format", help="jaeger (the Jaeger UI's Upload opens it) or otlp (one request for /v1/traces)")] = "jaeger",
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="file to write [stdout]")] = None,
) -> None:
    """A run's trace as one file: Jaeger JSON for any Jaeger UI, or one OTLP/JSON request for a collector."""
    from spanbench.export import export_command

    raise typer.Exit(export_command(run, fmt=fmt, output=output))


def _check_dsns(*dsns: str | None) -> None:
    """Bad input before anything starts: an unknown scheme, or a missing driver (Snowflake is an extra)."""
    from spanbench.dsn import check_dsn

    for dsn in dsns:
        if dsn:
            check_dsn(dsn)


def _fail(message: str, code: int) -> int:
    """The one line a failure is said in, after whatever the command printed (even on one pipe, 2>&1)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed or gone (a pipe whose reader left): the error still goes out
        pass
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
    except _interrupt_types():
        code = _fail("interrupted", 130)
    except RunCancelled as exc:
        code = _fail(str(exc), 130)
    except RunCompletedWithErrors as exc:
        code = _fail(str(exc), 4)
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
