"""The per-query log (as pgbench's ``-l``): opt-in, one file per worker, written off the loop.

The loop appends a tuple of values it already holds (phase, kind index, perf-counter start
and end, error class) to a list; every ``FLUSH_ROWS`` rows the list goes to a writer thread
and the loop gets a fresh one. The thread turns perf-counter times into Unix ns and writes
CSV (or Parquet row groups, when pyarrow is installed). The loop never waits on the disk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FLUSH_ROWS = 8192
COLUMNS = ("phase", "kind", "start_unix_ns", "end_unix_ns", "error_class")

Row = tuple[str, int, int, int, str]


class QueryLog:
    def __init__(self, path: Path, fmt: str, kinds: Sequence[str], sample: float, offset_ns: int) -> None:
        self.path = path
        self.fmt = fmt
        self.kinds = list(kinds)
        self.sample = sample  # the loop's accumulator adds this per query; a row at every 1.0
        self.offset_ns = offset_ns  # perf_counter_ns -> Unix ns
        self.rows = 0
        self._queue: queue.Queue[list[Row] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._write, name=f"query-log-{path.stem}", daemon=False)
        self._thread.start()

    def flush(self, rows: list[Row]) -> list[Row]:
        """Hand ``rows`` to the writer; returns the empty list the loop appends to next."""
        if rows:
            self._queue.put(rows)
        return []

    def close(self) -> None:
        """No more rows: the thread writes what it has and ends (the process waits for it at exit)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _write(self) -> None:
        if self.fmt == "parquet":
            self._write_parquet()
        else:
            self._write_csv()

    def _write_csv(self) -> None:
        kinds, off = self.kinds, self.offset_ns
        with self.path.open("w", encoding="utf-8", newline="") as f:
            f.write(",".join(COLUMNS) + "\n")
            while (batch := self._queue.get()) is not None:
                f.write("".join(f"{p},{kinds[k]},{t0 + off},{t1 + off},{e}\n" for p, k, t0, t1, e in batch))
                self.rows += len(batch)

    def _write_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("phase", pa.string()), ("kind", pa.string()), ("start_unix_ns", pa.int64()),
                            ("end_unix_ns", pa.int64()), ("error_class", pa.string())])
        kinds, off = self.kinds, self.offset_ns
        with pq.ParquetWriter(str(self.path), schema) as writer:
            while (batch := self._queue.get()) is not None:
                cols: list[list[Any]] = [[], [], [], [], []]
                for p, k, t0, t1, e in batch:
                    cols[0].append(p)
                    cols[1].append(kinds[k])
                    cols[2].append(t0 + off)
                    cols[3].append(t1 + off)
                    cols[4].append(e)
                writer.write_table(pa.Table.from_arrays([pa.array(c) for c in cols], schema=schema))
                self.rows += len(batch)
