"""The scenario as the ConfigMap holds it: checked, and without the keys the manifests own.

A scenario file's keys win over ``SPANBENCH_*`` variables, so a key the pods must get from
elsewhere has to leave the file: the DSNs come from the Secret (a password must never be in
a manifest, and even a DSN without one would hide the Secret's DSN), the run id and
``launch_workers = false`` from the orchestrator's environment, and ``workers`` from the
Indexed Job's size. Each removed line becomes a comment saying where the value comes from;
everything else, comments included, is kept as written.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanbench.errors import ConfigError

# key -> where the pods get it instead (the comment left in its place)
OWNED_KEYS: dict[str, str] = {
    "target_dsn": "SPANBENCH_TARGET_DSN, from the Secret",
    "control_dsn": "SPANBENCH_CONTROL_DSN, from the Secret",
    "run_id": "SPANBENCH_RUN_ID, set by the manifests",
    "launch_workers": "SPANBENCH_LAUNCH_WORKERS=false, set by the manifests",
    "workers": "the orchestrator's --workers, the Indexed Job's completions",
}
_TABLE_HEADER = re.compile(r"^\s*\[")


@dataclass(frozen=True)
class ClusterScenario:
    text: str  # what the ConfigMap holds
    removed: dict[str, Any]  # the keys taken out, with the file's values (DSNs still in them: never print)


def cluster_scenario(path: Path, workers: int) -> ClusterScenario:
    """The scenario at ``path``, validated as the orchestrator will run it, minus ``OWNED_KEYS``."""
    from spanbench.settings import build_settings

    # Validated with the file's own target_dsn (its placeholder style) and the Job's size,
    # so a scenario the orchestrator would refuse is refused here, before any pod starts.
    build_settings(path, workers=workers, launch_workers=False)
    text = path.read_text(encoding="utf-8")
    original = tomllib.loads(text)
    removed = {k: original[k] for k in OWNED_KEYS if k in original}
    stripped = _drop_top_level_lines(text, set(removed))
    _check_only_those_went(path, stripped, original, set(removed))
    return ClusterScenario(stripped, removed)


def _drop_top_level_lines(text: str, keys: set[str]) -> str:
    """Comment out each ``key = …`` line above the first table header."""
    if not keys:
        return text
    pattern = re.compile(r"^\s*[\"']?(" + "|".join(map(re.escape, sorted(keys))) + r")[\"']?\s*=")
    out: list[str] = []
    in_tables = False
    for line in text.splitlines(keepends=True):
        in_tables = in_tables or bool(_TABLE_HEADER.match(line))
        match = None if in_tables else pattern.match(line)
        if match:
            newline = "\n" if line.endswith("\n") else ""
            out.append(f"# {match.group(1)}: {OWNED_KEYS[match.group(1)]}{newline}")
        else:
            out.append(line)
    return "".join(out)


def _check_only_those_went(path: Path, stripped: str, original: dict[str, Any], keys: set[str]) -> None:
    # A value written over several lines (or a dotted key) would leave TOML behind that means
    # something else: refuse rather than hand the pods a scenario that differs from the file.
    expected = {k: v for k, v in original.items() if k not in keys}
    try:
        ok = tomllib.loads(stripped) == expected
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise ConfigError(f"{path}: cannot take {', '.join(sorted(keys))} out of the file for the cluster: "
                          "write each of them on one line of its own, before the first [table]")
