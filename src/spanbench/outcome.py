"""What a run hands to its report: the orchestrator writes it, ``report/`` reads it.

It lives apart from the orchestrator so that the report never imports the orchestrator
(and, through it, the launcher, the control store and the targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanbench.telemetry.provider import SpanStats


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    status: str
    reason: str | None
    results: dict[str, Any]
    span_stats: SpanStats = field(default_factory=SpanStats)
