"""Run folders: which one a command-line argument names, and the list of runs in a folder.

Every command that reads a run (``gaps``, ``report``, ``diff``, ``export``) takes the
same RUN argument, resolved here once:

- a run folder (it holds ``results.json`` or a ``trace-*.jsonl``): itself;
- a file (a trace file for ``gaps``/``diff``/``export``): passed through unchanged;
- a folder of run folders, as given to ``run --output``: its latest run, by folder
  mtime then run id, named in one line on stderr so nobody reads the wrong run unaware;
- a run id: ``<parent>/<id>``, looked up in the given parent and in ``spanbench-runs``.

Anything else is a ConfigError with one line (exit 2).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spanbench.dsn import redact_dsn
from spanbench.errors import ConfigError
from spanbench.results import read_results_file

DEFAULT_PARENT = Path("spanbench-runs")
# Run ids made by the orchestrator start with their UTC start time: 20261201-230249-57ed21.
_RUN_ID_TIME = re.compile(r"^(\d{8}-\d{6})")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


# --- resolving the RUN argument ---------------------------------------------------------


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "results.json").is_file() or any(p.is_file() for p in path.glob("trace-*.jsonl")))


def run_folders(parent: Path) -> list[Path]:
    """The run folders directly under ``parent``, in no particular order."""
    try:
        return [d for d in parent.iterdir() if is_run_folder(d)]
    except OSError:
        return []


def latest_run(parent: Path) -> Path | None:
    folders = run_folders(parent)
    if not folders:
        return None
    # mtime first: a run id set by hand (``run_id`` setting) need not sort by time.
    return max(folders, key=lambda d: (d.stat().st_mtime_ns, d.name))


def resolve_run(arg: str | None, default_parent: Path = DEFAULT_PARENT) -> Path:
    """The run folder (or trace file) that ``arg`` names; see the module docstring."""
    if arg is None:
        return _latest_or_fail(default_parent)
    if not arg.strip():
        raise ConfigError("empty RUN argument: give a run folder, a run id or a runs folder")
    path = Path(arg)
    if path.is_file():
        return path
    if path.is_dir():
        if is_run_folder(path):
            return path
        if run_folders(path):
            return _latest_or_fail(path)
        raise ConfigError(f"{path} is not a run folder (no results.json or trace-*.jsonl) and holds no run folders")
    if path.name == arg and arg not in (".", ".."):  # a bare name: a run id
        parents = _unique([default_parent, DEFAULT_PARENT])
        for parent in parents:
            candidate = parent / arg
            if is_run_folder(candidate):
                return candidate
            if candidate.is_dir():
                raise ConfigError(f"{candidate} is not a run folder: no results.json or trace-*.jsonl in it")
        where = " or ".join(str(p) for p in parents)
        raise ConfigError(f"no run {arg!r}: no such file or folder, and no run of that id in {where}")
    raise ConfigError(f"no such run folder or trace file: {path}")


def _latest_or_fail(parent: Path) -> Path:
    if not parent.is_dir():
        raise ConfigError(f"no runs folder {parent}: give a run folder, a run id or a runs folder")
    latest = latest_run(parent)
    if latest is None:
        raise ConfigError(f"no run folders in {parent}")
    print(f"latest run in {parent}: {latest.name}", file=sys.stderr)
    return latest


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


# --- listing runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One run as ``spanbench runs`` shows it. Nothing in it may hold a secret."""

    id: str
    path: str
    start_unix_ns: int
    status: str
    target: str
    qps: float | None
    p99_ms: float | None  # measurement phase, all query kinds merged
    start_to_first_query_ms: float | None  # the worst worker's START → first query
    reason: str | None

    @property
    def when(self) -> str:
        local = datetime.fromtimestamp(self.start_unix_ns / 1e9, tz=timezone.utc).astimezone()
        return local.strftime("%Y-%m-%d %H:%M:%S")

    def as_json(self) -> dict[str, Any]:
        when_utc = datetime.fromtimestamp(self.start_unix_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")
        return {**asdict(self), "when": when_utc}


def list_runs(parent: Path) -> list[RunRow]:
    """Every run under ``parent`` (or ``parent`` itself when it is a run folder), newest last."""
    if not parent.is_dir():
        raise ConfigError(f"no runs folder {parent}")
    folders = [parent] if is_run_folder(parent) else run_folders(parent)
    rows = [_row(folder) for folder in folders]
    return sorted(rows, key=lambda r: (r.start_unix_ns, r.id))


def _row(folder: Path) -> RunRow:
    try:
        results = read_results_file(folder)
        status = None
    except ConfigError:
        results, status = None, "unreadable results.json"
    r = results or {}
    if results is None and status is None:
        status = "no results.json"  # still running, or its orchestrator died
    measurement = r.get("measurement") if isinstance(r.get("measurement"), dict) else {}
    all_kinds = measurement.get("all") if isinstance(measurement.get("all"), dict) else {}
    firsts = [w.get("start_to_first_query_ms") for w in r.get("workers") or () if isinstance(w, dict)]
    firsts = [f for f in firsts if isinstance(f, (int, float))]
    return RunRow(
        id=str(r.get("run_id") or folder.name),
        path=str(folder),
        start_unix_ns=_start_ns(folder, r),
        status=str(status or r.get("status") or "—"),
        target=_target(r),
        qps=_number(measurement.get("qps")),
        p99_ms=_number(all_kinds.get("p99_ms")),
        start_to_first_query_ms=max(firsts) if firsts else None,
        reason=_redact_text(r.get("reason")) if r.get("reason") else None,
    )


def _start_ns(folder: Path, results: dict[str, Any]) -> int:
    """The run's start: its trace's, else the time in its run id, else the folder's mtime."""
    gaps = results.get("gaps")
    if isinstance(gaps, dict) and isinstance(gaps.get("start_unix_ns"), int):
        return gaps["start_unix_ns"]
    m = _RUN_ID_TIME.match(folder.name)
    if m:
        try:
            return int(datetime.strptime(m.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc).timestamp()) * 10**9
        except ValueError:
            pass
    return folder.stat().st_mtime_ns


def _target(results: dict[str, Any]) -> str:
    settings = results.get("settings")
    if not isinstance(settings, dict):
        return "—"
    dsn = settings.get("target_dsn")
    # results.json already holds redacted DSNs; redacting again costs nothing and covers
    # a results.json written by an older or foreign version.
    return redact_dsn(str(dsn)) if dsn else "embedded PostgreSQL"


def _redact_text(text: Any) -> str:
    return _URL.sub(lambda m: redact_dsn(m.group(0)), str(text))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- the command ------------------------------------------------------------------------


def runs_command(folder: str | None, *, as_json: bool = False, console: Any = None) -> int:
    """``spanbench runs [FOLDER]``: a table of the runs in FOLDER (default spanbench-runs)."""
    parent = Path(folder) if folder else DEFAULT_PARENT
    if folder is not None and not folder.strip():
        raise ConfigError("empty FOLDER argument")
    rows = list_runs(parent)
    if as_json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console(highlight=False)
    if not rows:
        console.print(f"no runs in {parent}")
        return 0
    table = _table(rows, parent)
    need = Measurement.get(console, console.options.update(max_width=100_000), table)
    # A pipe or a file has no width to respect: one line per run reads and greps best. A
    # terminal too narrow for the ids and figures gets lines it soft-wraps, never a cut figure.
    width = need.maximum if not console.is_terminal else max(console.width, need.minimum)
    console.width = width  # print(width=) can only narrow a console, never widen it
    console.print(table)
    return 0


def _table(rows: list[RunRow], parent: Path) -> Any:
    from rich import box
    from rich.table import Table

    # No outer edges and one space between columns: seven columns fit an 80-column terminal.
    table = Table(title=f"runs in {parent}", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, 1, 0, 0))
    # Ids and figures never wrap (nor get cut, see runs_command); the words around them may.
    table.add_column("run", no_wrap=True)
    table.add_column("when", overflow="fold")
    table.add_column("status", overflow="fold")
    table.add_column("target", overflow="fold")
    for name in ("QPS", "p99 ms", "START →\nfirst query\nms"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.id, row.when, row.status, row.target, _fmt(row.qps, "{:,.0f}"), _fmt(row.p99_ms, "{:.3f}"),
            _fmt(row.start_to_first_query_ms, "{:.1f}"),
        )
    return table


def _fmt(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)
