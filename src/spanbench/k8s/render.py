"""``spanbench k8s render``: one run's manifests written as YAML, one object per file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from spanbench.errors import ConfigError
from spanbench.k8s.manifests import HEADERS_KEY, SECRET_ENV, Manifest, RunSpec, manifests
from spanbench.k8s.scenario_text import cluster_scenario

_DSN_KEYS = {"target_dsn": "target-dsn", "control_dsn": "control-dsn"}


def render_command(scenario: Path, *, image: str, workers: int, run_id: str | None = None,
                   namespace: str = "default", out: Path | None = None, otlp_endpoint: str | None = None,
                   secret: str = "spanbench") -> Path:
    """Write the manifests of one run into ``out`` (default ``spanbench-k8s/<run id>``); return the folder."""
    if workers < 1:  # before the file is read: the one line names the flag
        raise ConfigError(f"--workers must be at least 1 (got {workers})")
    found = cluster_scenario(scenario, workers)
    run = RunSpec(
        run_id=run_id or _scenario_run_id(found.removed) or _new_run_id(), image=image, workers=workers,
        scenario_text=found.text, namespace=namespace, secret=secret,
        **({"otlp_endpoint": otlp_endpoint} if otlp_endpoint else {}),
    )
    folder = out or Path("spanbench-k8s") / run.run_id
    written = write_manifests(run, folder)
    _tell_about_dsns(found.removed, run)
    for path in written:
        print(path)
    print(f"run id {run.run_id}: create Secret {run.secret!r} (keys {', '.join(SECRET_ENV)}, "
          f"optional {HEADERS_KEY}), then kubectl apply -f {folder}", file=sys.stderr)
    return folder


def write_manifests(run: RunSpec, folder: Path) -> list[Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, manifest in manifests(run).items():
            path = folder / name
            path.write_text(to_yaml(manifest, run), encoding="utf-8")
            paths.append(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the manifests into {folder}: {exc.strerror or exc}") from None
    return paths


def to_yaml(manifest: Manifest, run: RunSpec) -> str:
    header = (f"# spanbench k8s render: run {run.run_id}, {run.workers} worker(s), image {run.image}.\n"
              "# The next run: render again, for a new run id (every file of one run shares it).\n")
    return header + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100,
                              allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the scenario) as ``|`` blocks, so the ConfigMap reads as the file does."""


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    # A block scalar cannot hold trailing spaces on a line, so such text keeps the quoted style.
    block = "\n" in value and not any(line != line.rstrip() for line in value.splitlines())
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if block else None)


_Dumper.add_representer(str, _str)


def _scenario_run_id(removed: dict[str, Any]) -> str | None:
    value = removed.get("run_id")
    return value if isinstance(value, str) and value else None


def _new_run_id() -> str:
    from spanbench.orchestrator import new_run_id  # the one format of a run id, as `spanbench run` makes it

    return new_run_id()


def _tell_about_dsns(removed: dict[str, Any], run: RunSpec) -> None:
    """Say which DSNs left the scenario: the Secret must hold them now (the values are never printed)."""
    from urllib.parse import urlsplit

    for key, secret_key in _DSN_KEYS.items():
        value = removed.get(key)
        if not isinstance(value, str):
            continue
        try:
            had_password = bool(urlsplit(value).password) or "password=" in value.lower()
        except ValueError:
            had_password = False
        what = f"{key} (with its password)" if had_password else key
        print(f"spanbench: note: the scenario's {what} is not in the manifests: the pods read it from "
              f"Secret {run.secret!r}, key {secret_key}", file=sys.stderr)
