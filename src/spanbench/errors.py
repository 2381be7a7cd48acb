"""The one exception type a user sees: a one-line message, never a traceback."""

from __future__ import annotations


class SpanbenchError(Exception):
    """A failure the user can act on. ``str(err)`` is the whole message, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(SpanbenchError):
    """Bad input: options, scenario file, DSN."""


class TargetError(SpanbenchError):
    """The target or control database could not be reached or refused us."""


class RunFailed(SpanbenchError):
    """The run started but could not finish; it is marked FAILED in the control tables."""


class RunCancelled(SpanbenchError):
    """The user stopped the run (Ctrl-C, SIGTERM); it is marked CANCELLED, its results kept."""


class RunCompletedWithErrors(SpanbenchError):
    """The run finished its schedule, but with errors, stalls, cut queries or a lost worker (exit 4)."""


class TargetGone(SpanbenchError):
    """The target went away mid-run and did not come back within ``reconnect_timeout``."""


class DuplicateRun(ConfigError):
    """A run id that exists already: refused before anything of the other run is touched."""
