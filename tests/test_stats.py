"""HDR recording and merging: pure logic, no database."""

from __future__ import annotations

import random

from hdrh.histogram import HdrHistogram

from spanbench.stats import LatencyRecorder, decode, encode, merge, new_histogram, summarize


def test_recorder_counts_match_hdrhistogram_exactly() -> None:
    rng = random.Random(7)
    values = [rng.randint(1, 10**11) for _ in range(20_000)] + [1, 2, 1023, 1024, 2047, 2048, 10**12]
    rec, ref = LatencyRecorder(), new_histogram()
    for v in values:
        rec.record(v)
        ref.record_value(v)
    got = rec.to_hdr()
    assert list(got.counts) == list(ref.counts)
    assert got.get_total_count() == ref.get_total_count() == len(values)
    for p in (50, 90, 99, 99.9, 100):
        assert got.get_value_at_percentile(p) == ref.get_value_at_percentile(p)
    assert got.get_max_value() == ref.get_max_value()


def test_values_above_the_range_are_clamped_not_lost() -> None:
    rec = LatencyRecorder()
    rec.record(10**15)
    assert rec.total == 1 and rec.to_hdr().get_total_count() == 1


def test_merge_is_exact_and_not_a_max_of_p99s() -> None:
    fast, slow = LatencyRecorder(), LatencyRecorder()
    for _ in range(9_900):
        fast.record(1_000_000)  # 1 ms
    for _ in range(100):
        slow.record(100_000_000)  # 100 ms
    a, b = decode(encode(fast.to_hdr())), decode(encode(slow.to_hdr()))
    m = merge([a, b])
    assert m.get_total_count() == 10_000
    s = summarize(m)
    # 99 % of all queries took 1 ms: the run's p99 is ~1 ms, although one worker's p99 is 100 ms.
    assert abs(s.p99_ms - 1.0) < 0.01
    assert summarize(b).p99_ms > 99
    assert abs(s.max_ms - 100) < 0.1
    assert abs(s.mean_ms - (9_900 * 1 + 100 * 100) / 10_000) < 0.01


def test_encoding_round_trip_and_empty() -> None:
    h = new_histogram()
    for v in (5, 50, 500_000):
        h.record_value(v)
    back = decode(encode(h))
    assert isinstance(back, HdrHistogram) and list(back.counts) == list(h.counts)
    empty = summarize(merge([]))
    assert empty.count == 0 and empty.p99_ms == 0.0


def test_run_timeline_sums_workers_per_second() -> None:
    from spanbench.control.records import TestResult
    from spanbench.results import run_timeline

    s = 1_000_000_000
    t0 = 1_700_000_000 * s

    def row(wid: str, samples: list[tuple[int, int, int]]) -> TestResult:
        return TestResult(run_id="r", worker_id=wid, scope="WORKER", status="COMPLETED",
                          details={"start_unix_ns": t0, "timeline": samples})

    # w0: 100 q/s for 2 s, sampled on the half second; w1: 50 q/s for 1 s then 0, sampled off-grid.
    w0 = row("w0", [(t0 + i * s // 2, 50 * i, 0) for i in range(5)])
    w1 = row("w1", [(t0, 0, 0), (t0 + s // 4, 12, 1), (t0 + s, 50, 1), (t0 + 2 * s, 50, 1)])
    tl = run_timeline([w0, w1])
    assert [round(p["qps"], 6) for p in tl] == [150.0, 100.0]
    assert [round(p["errors_per_s"], 6) for p in tl] == [1.0, 0.0]
    assert sum(p["qps"] for p in tl) == 100 * 2 + 50


def test_run_timeline_stops_at_the_scheduled_end() -> None:
    from spanbench.control.records import TestResult
    from spanbench.results import run_timeline

    s = 1_000_000_000
    t0 = 1_700_000_000 * s
    # 3 s of load, then a drain that trickles on for another 1.5 s
    row = TestResult(run_id="r", worker_id="w0", scope="WORKER", status="COMPLETED",
                     details={"start_unix_ns": t0, "timeline": [(t0, 0, 0), (t0 + 3 * s, 300, 0), (t0 + 9 * s // 2, 303, 0)]})
    assert len(run_timeline([row])) == 5
    assert [p["qps"] for p in run_timeline([row], window_s=3.0)] == [100.0, 100.0, 100.0]
