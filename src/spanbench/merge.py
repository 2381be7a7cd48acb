"""``spanbench merge RUN_FOLDER OTHER…``: one run's files from several machines, in one folder.

Without a collector, each worker writes ``trace-wN.jsonl`` (and ``results-wN.json``,
``spans-wN.json``) into the run folder of the machine it ran on. ``merge`` copies those
files into the first folder so that ``gaps``, ``report`` and ``export`` see every worker.

- A folder of another run (another run id or trace id) is refused, one line, exit 2,
  before anything is copied.
- Running it twice changes nothing: a file already there with the same bytes is skipped.
  A trace file that has grown since (its worker was still writing) replaces the shorter
  copy; a results file replaces an older one (``saved_unix_ns``). Two different files of
  one name otherwise (two workers given the same group id) are refused.
- An OTHER may be a runs folder (as ``spanbench-runs`` on that machine): its subfolder
  named after the run is used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from spanbench.errors import ConfigError

# What a worker leaves in its run folder: its trace, its latest result row, its span counts.
PATTERNS = ("trace-*.jsonl", "results-w*.json", "spans-*.json")


@dataclass(frozen=True)
class Identity:
    """Which run a folder belongs to, as its own files say."""

    run_ids: frozenset[str]
    trace_ids: frozenset[str]


@dataclass
class Plan:
    copies: list[tuple[Path, Path, str]] = field(default_factory=list)  # (source, destination, why)
    same: list[Path] = field(default_factory=list)  # already there, byte for byte (or older)


def _first_line(path: Path) -> dict[str, Any] | None:
    """The first JSON line of a trace file: enough for its resource and trace id."""
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    doc = json.loads(line)
                    return doc if isinstance(doc, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def _ids_of_trace(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    run_ids: set[str] = set()
    trace_ids: set[str] = set()
    for rs in doc.get("resourceSpans") or ():
        for attr in (rs.get("resource") or {}).get("attributes") or ():
            if attr.get("key") == "spanbench.run_id":
                run_ids.add(str((attr.get("value") or {}).get("stringValue", "")))
        for ss in rs.get("scopeSpans") or ():
            trace_ids.update(str(s["traceId"]).lower() for s in ss.get("spans") or () if s.get("traceId"))
    return run_ids, trace_ids


def identity(folder: Path) -> Identity:
    """Run ids and trace ids named by the folder's trace files, results files and results.json."""
    run_ids: set[str] = set()
    trace_ids: set[str] = set()
    for path in sorted(folder.glob("trace-*.jsonl")):
        doc = _first_line(path)
        if doc is not None:
            r, t = _ids_of_trace(doc)
            run_ids |= r
            trace_ids |= t
    for path in [folder / "results.json", *sorted(folder.glob("results-w*.json"))]:
        try:
            run_id = json.loads(path.read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError, AttributeError):
            continue
        if run_id:
            run_ids.add(str(run_id))
    return Identity(frozenset(run_ids - {""}), frozenset(trace_ids))


def _files(folder: Path) -> list[Path]:
    return sorted(p for pattern in PATTERNS for p in folder.glob(pattern) if p.is_file())


def source_folder(arg: Path, run_id: str | None) -> Path:
    """OTHER as given, or its subfolder named after the run when OTHER is a runs folder."""
    if not arg.is_dir():
        raise ConfigError(f"merge: {arg} is not a folder")
    if not _files(arg) and run_id and (arg / run_id).is_dir():
        return arg / run_id
    if not _files(arg):
        raise ConfigError(f"merge: {arg} holds no trace-*.jsonl, results-w*.json or spans-*.json")
    return arg


def check_same_run(target: Identity, folder: Path, other: Identity) -> None:
    """Refuse a folder of another run: its files would make a second trace in this one."""
    if target.run_ids and other.run_ids and not other.run_ids <= target.run_ids:
        raise ConfigError(f"merge: {folder} is run {', '.join(sorted(other.run_ids))}, "
                          f"not {', '.join(sorted(target.run_ids))}")
    if target.trace_ids and other.trace_ids and not other.trace_ids <= target.trace_ids:
        raise ConfigError(f"merge: {folder} holds trace {', '.join(sorted(other.trace_ids))}, "
                          f"not {', '.join(sorted(target.trace_ids))} of this run")


def _saved_ns(path: Path) -> int:
    try:
        return int((json.loads(path.read_text(encoding="utf-8")).get("details") or {}).get("saved_unix_ns") or 0)
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def _decide(src: Path, dst: Path) -> str | None:
    """Why ``src`` should be copied over ``dst`` ("new", "grown", "newer"), or None if it is there."""
    if not dst.exists():
        return "new"
    a, b = src.read_bytes(), dst.read_bytes()
    if a == b:
        return None
    if src.name.startswith("trace-"):
        if a.startswith(b):
            return "grown"  # the worker wrote more since the last merge
        if b.startswith(a):
            return None  # ours is the longer copy already
    elif src.name.startswith("results-"):
        return "newer" if _saved_ns(src) > _saved_ns(dst) else None
    elif src.name.startswith("spans-"):
        return "newer" if src.stat().st_mtime_ns > dst.stat().st_mtime_ns else None
    raise ConfigError(f"merge: {src} and {dst} differ: two workers with one group id? Nothing was copied")


def plan_merge(target: Path, others: list[Path]) -> Plan:
    """Every check first, so a refused merge copies nothing."""
    if not target.is_dir():
        raise ConfigError(f"merge: {target} is not a run folder")
    mine = identity(target)
    run_id = next(iter(sorted(mine.run_ids)), None) or target.name
    best: dict[str, Path] = {}  # file name -> the copy to bring: the longest trace, the newest results
    for arg in others:
        folder = source_folder(arg, run_id)
        if folder.resolve() == target.resolve():
            continue  # the run folder itself: nothing to gather
        check_same_run(mine, folder, identity(folder))
        for src in _files(folder):
            have = best.get(src.name)
            # Two OTHER folders with one file (copies made at different times): the better one.
            if have is None or _decide(src, have) is not None:
                best[src.name] = src
    plan = Plan()
    for name, src in sorted(best.items()):
        why = _decide(src, target / name)
        if why is None:
            plan.same.append(src)
        else:
            plan.copies.append((src, target / name, why))
    return plan


def _copy(src: Path, dst: Path) -> None:
    """Atomically: a reader (``gaps`` running beside) never sees half a file."""
    tmp = dst.with_name(f".{dst.name}.merge-tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def merge_command(target: Path, others: list[Path], *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    plan = plan_merge(target, others)
    for src, dst, why in plan.copies:
        _copy(src, dst)
        print(f"{dst.name}: {why}, from {src.parent}", file=out)
    print(f"merged into {target}: {len(plan.copies)} file(s) copied, {len(plan.same)} already there", file=out)
    return 0
