"""BrokerStats: the counters and rates behind GET_BROKER_RUNTIME_INFO, GET_TOPIC_STATS_INFO and GET_CONSUME_STATS."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tidemq.broker.stats import BrokerStats, DailyTotal, RateCounter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_counter_windows() -> None:
    counter = RateCounter(600)
    for second in range(100):  # 10 per second for 100 s
        counter.add(10, 1000 + second + 0.5)
    now = 1099.9
    assert counter.rate(10, now) == pytest.approx(10.0)
    assert counter.rate(60, now) == pytest.approx(10.0)
    assert counter.rate(600, now) == pytest.approx(1000 / 600)
    assert counter.rate(10, now + 30) == 0.0  # quiet for 30 s


def test_rate_counter_forgets_past_its_horizon() -> None:
    counter = RateCounter(60)
    counter.add(5, 0.0)
    counter.add(5, 100.0)
    assert counter.rate(60, 100.0) == pytest.approx(5 / 60)
    assert len(counter._buckets) == 1


def test_daily_total_rolls_at_local_midnight() -> None:
    midnight = datetime(2030, 5, 10).timestamp()
    total = DailyTotal(midnight - 60)
    total.add(3, midnight - 30)
    total.add(4, midnight + 30)  # first event of the new day
    assert (total.yesterday_morning, total.today_morning, total.now) == (0, 3, 7)
    total.add(1, (datetime(2030, 5, 11) + timedelta(hours=1)).timestamp())
    assert (total.yesterday_morning, total.today_morning, total.now) == (3, 7, 8)
    total.roll((datetime(2030, 5, 14)).timestamp() + 5)  # days without events: both marks are the total
    assert (total.yesterday_morning, total.today_morning, total.now) == (8, 8, 8)


def test_broker_stats_puts_pulls_and_positions() -> None:
    clock = Clock(5000.0)
    stats = BrokerStats(clock=clock)
    stats.record_put("T", 3)
    stats.record_put("T", 1)
    stats.record_put("U", 2)
    stats.record_pull("G", "T", 0, next_offset=4, count=4)
    stats.record_pull("G", "T", 1, next_offset=0, count=0)  # a pull that found nothing
    clock.now += 1
    assert (stats.puts.now, stats.gets.now) == (6, 4)
    assert stats.put_tps()[0] == pytest.approx(0.6)
    assert stats.get_transferred_tps()[0] == pytest.approx(0.4)
    assert stats.get_found_tps()[0] == pytest.approx(0.1)
    assert stats.get_miss_tps()[0] == pytest.approx(0.1)
    assert stats.topic_put_tps("T") == pytest.approx(4 / 60)
    assert stats.group_get_tps("G", "T") == pytest.approx(4 / 60)
    assert stats.group_get_tps("G", "U") == 0.0
    assert (stats.pull_offset("G", "T", 0), stats.pull_offset("G", "T", 1), stats.pull_offset("G", "T", 2)) == (
        4,
        0,
        -1,
    )
    stats.forget_topic("T")
    assert stats.pull_offset("G", "T", 0) == -1
    assert stats.topic_put_tps("T") == 0.0
    stats.record_pull("G", "U", 0, next_offset=9, count=1)
    stats.forget_group("G")
    assert stats.pull_offset("G", "U", 0) == -1


def test_broker_stats_puts_count_in_the_second_they_happened() -> None:
    # record_put defers its counter updates to the next second or the next read: both must see every put.
    clock = Clock(7000.2)
    stats = BrokerStats(clock=clock)
    stats.record_put("T", 5)
    assert stats.puts.now == 5  # read in the same second
    stats.record_put("T", 2)  # same second, after a read
    clock.now += 1.0
    stats.record_put("U", 4)  # a new second: the previous one is folded into its own bucket
    clock.now += 0.5
    assert stats.puts.now == 11
    assert stats.put_tps()[0] == pytest.approx(11 / 10)
    assert stats.topic_put_tps("T") == pytest.approx(7 / 60)
    assert stats.topic_put_tps("U") == pytest.approx(4 / 60)
    clock.now += 59.0  # T's second leaves the one-minute window; U's, a second later, is still in it
    assert stats.topic_put_tps("T") == 0.0
    assert stats.topic_put_tps("U") == pytest.approx(4 / 60)
