"""The load generator's bookkeeping: percentiles, work plans, reports."""

from __future__ import annotations

import asyncio
import itertools
import math

from tidemq.client._loadgen import BenchReport, LatencyRecorder, _deadline, _Plan


def test_percentiles_by_nearest_rank() -> None:
    recorder = LatencyRecorder()
    assert recorder.summary() is None
    for value in range(1, 1001):  # 1..1000 ms, shuffled order must not matter
        recorder.add(float((value * 7919) % 1000 + 1))
    summary = recorder.summary()
    assert summary == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p999": 999.0, "max": 1000.0, "mean": 500.5}
    assert recorder.samples.itemsize == 8


def test_plan_hands_out_exactly_count_messages_in_batches() -> None:
    stop = asyncio.Event()
    plan = _Plan(count=100, deadline=math.inf, rate=None, batch=32)
    claims = []
    while (claim := plan.claim(stop))[0]:
        claims.append(claim[0])
    assert claims == [32, 32, 32, 4]
    stop.set()
    assert _Plan(count=None, deadline=math.inf, rate=None, batch=1).claim(stop) == (0, 0.0)


def test_fixed_rate_schedules_evenly() -> None:
    plan = _Plan(count=None, deadline=math.inf, rate=1000, batch=10)
    starts = [plan.claim(asyncio.Event())[1] for _ in range(5)]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps == [0.01] * 4, "10 messages per request at 1000/s: one request every 10 ms"


def test_deadlines() -> None:
    assert _deadline(100.0, None, None) == 110.0, "10 s by default"
    assert _deadline(100.0, 5, None) == math.inf, "a count alone bounds the run"
    assert _deadline(100.0, 5, 2.0) == 102.0


def test_report_rates_and_json() -> None:
    report = BenchReport("produce", 2000, 1, 2.0, 256_000, None, {"BrokerError(2)": 1}, {"size": 128})
    assert report.msgs_per_s == 1000
    assert report.mb_per_s == 0.128
    data = report.to_json()
    assert (data["count"], data["errors"], data["msgs_per_s"], data["settings"]) == (2000, 1, 1000.0, {"size": 128})
    assert "2,000 msgs" in report.summary_line()
