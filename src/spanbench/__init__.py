"""spanbench: a database benchmark in which every second of a run is a span."""

import resource as _resource
import time as _time

# The first moment spanbench's own code runs in this process, the CPU time the process had
# used by then, and whether this PID had already run (and reaped) other programs before it
# became spanbench: telemetry/process_start.py works out from these when the exec happened,
# so that a shell that ran `pip install` or `sleep 4` before exec'ing us is not blamed on us.
FIRST_CODE_NS = _time.time_ns()
FIRST_CODE_CPU_NS = _time.process_time_ns()
_children = _resource.getrusage(_resource.RUSAGE_CHILDREN)
RAN_CHILDREN_BEFORE = (_children.ru_minflt + _children.ru_majflt) > 0 or (_children.ru_utime + _children.ru_stime) > 0
del _children

__version__ = "0.1.0"
