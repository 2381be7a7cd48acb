"""Loaded by every Python process started with this folder on PYTHONPATH (tests only).

Injects an *untraced* delay into one worker process, between two of its phases, so a test
can check that `spanbench gaps` finds it where it was put. It changes timing only: the
database, the workers and the trace are all real.
"""

import os

_worker = os.environ.get("SPANBENCH_TEST_INJECT_WORKER")
_delay = float(os.environ.get("SPANBENCH_TEST_INJECT_DELAY_S", "0") or 0)

if _worker and _delay > 0:
    import asyncio

    from spanbench import worker as _w

    _setup = _w.Worker.executor_setup

    async def executor_setup(self):  # type: ignore[no-untyped-def]
        keys = await _setup(self)
        if self.worker_id == _worker:
            await asyncio.sleep(_delay)  # after executor.setup ends, before heartbeat READY
        return keys

    _w.Worker.executor_setup = executor_setup
