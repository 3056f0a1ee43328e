"""Broker statistics for the admin tools: message counts, rates and pull positions (RocketMQ's BrokerStats,
StoreStatsService and BrokerStatsManager, reduced to what mqadmin shows).

The send path calls :meth:`BrokerStats.record_put`, the pull path :meth:`BrokerStats.record_pull`; both run on the
event loop and cost a couple of dict operations. Rates come from per-second buckets, so "TPS over the last 10 s"
is exact to the second without a sampling timer. Nothing here is persisted: counters start at zero with the
broker, as RocketMQ's do.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

WINDOWS_S: Final = (10, 60, 600)
"""The windows RocketMQ reports broker-wide rates over (``putTps`` = "10 s 60 s 600 s")."""
KEY_WINDOW_S: Final = 60
"""Per-topic and per-group rates are over one minute, like BrokerStatsManager's minute statistics."""


class RateCounter:
    """Events in per-second buckets, kept for ``horizon_s`` seconds."""

    __slots__ = ("_buckets", "_horizon_s")

    def __init__(self, horizon_s: int) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._horizon_s = horizon_s

    def add(self, count: int, now_s: float) -> None:
        second = int(now_s)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
            return
        buckets.append([second, count])
        while buckets[0][0] <= second - self._horizon_s:
            buckets.popleft()

    def rate(self, window_s: int, now_s: float) -> float:
        """Events per second over the last ``window_s`` seconds (the current second included)."""
        since = int(now_s) - window_s
        total = 0
        for second, count in reversed(self._buckets):
            if second <= since:
                break
            total += count
        return total / window_s


def _next_midnight_s(now_s: float) -> float:
    today = datetime.fromtimestamp(now_s).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()


class DailyTotal:
    """A running total plus its value at the last two local midnights (``msgPutTotalTodayMorning`` & co.)."""

    __slots__ = ("_next_midnight_s", "now", "today_morning", "yesterday_morning")

    def __init__(self, now_s: float) -> None:
        self.now = 0
        self.today_morning = 0
        self.yesterday_morning = 0
        self._next_midnight_s = _next_midnight_s(now_s)

    def roll(self, now_s: float) -> None:
        """Move the morning marks if one or more midnights passed since the last call."""
        if now_s < self._next_midnight_s:
            return
        days = 1 + int((now_s - self._next_midnight_s) // 86400)
        self.yesterday_morning = self.today_morning if days == 1 else self.now
        self.today_morning = self.now
        self._next_midnight_s = _next_midnight_s(now_s)

    def add(self, count: int, now_s: float) -> None:
        self.roll(now_s)
        self.now += count


class BrokerStats:
    """What GET_BROKER_RUNTIME_INFO, GET_TOPIC_STATS_INFO and GET_CONSUME_STATS report beyond the store's state."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        now_s = self._clock()
        self.boot_timestamp_ms = int(now_s * 1000)
        self._puts = DailyTotal(now_s)
        self._pending_puts: dict[str, int] = {}
        """Puts by topic in the current second, not yet folded into the counters (see :meth:`record_put`)."""
        self._pending_second = int(now_s)
        self.gets = DailyTotal(now_s)
        """Messages handed out by pulls since the broker started."""
        horizon = max(WINDOWS_S)
        self._put_rate = RateCounter(horizon)
        self._get_rate = RateCounter(horizon)
        self._found_rate = RateCounter(horizon)
        self._miss_rate = RateCounter(horizon)
        self._topic_puts: dict[str, RateCounter] = {}
        self._group_gets: dict[tuple[str, str], RateCounter] = {}
        self._pull_offsets: dict[tuple[str, str, int], int] = {}

    @property
    def puts(self) -> DailyTotal:
        """Messages stored by sends since the broker started."""
        self._fold_puts()
        return self._puts

    def record_put(self, topic: str, count: int) -> None:
        """``count`` messages were stored in ``topic`` by a send.

        Every single send calls this, so it only adds to the current second's count per topic; the counters take
        each second's counts when the next second starts or when something reads them (three counter updates a
        send were 3% of the broker's CPU under sync sends)."""
        second = int(self._clock())
        if second != self._pending_second:
            self._fold_puts()
            self._pending_second = second
        pending = self._pending_puts
        pending[topic] = pending.get(topic, 0) + count

    def _fold_puts(self) -> None:
        pending = self._pending_puts
        if not pending:
            return
        self._pending_puts = {}
        second = float(self._pending_second)
        total = sum(pending.values())
        self._puts.add(total, second)
        self._put_rate.add(total, second)
        for topic, count in pending.items():
            counter = self._topic_puts.get(topic)
            if counter is None:
                counter = self._topic_puts[topic] = RateCounter(KEY_WINDOW_S)
            counter.add(count, second)

    def record_pull(self, group: str, topic: str, queue_id: int, next_offset: int, count: int) -> None:
        """A pull of ``group`` returned ``count`` messages (0: none) and the client goes on at ``next_offset``."""
        now_s = self._clock()
        self._pull_offsets[(group, topic, queue_id)] = next_offset
        if count <= 0:
            self._miss_rate.add(1, now_s)
            return
        self.gets.add(count, now_s)
        self._get_rate.add(count, now_s)
        self._found_rate.add(1, now_s)
        key = (group, topic)
        counter = self._group_gets.get(key)
        if counter is None:
            counter = self._group_gets[key] = RateCounter(KEY_WINDOW_S)
        counter.add(count, now_s)

    def pull_offset(self, group: str, topic: str, queue_id: int) -> int:
        """Where the group's last pull on the queue left off, or -1 if it has not pulled since the start."""
        return self._pull_offsets.get((group, topic, queue_id), -1)

    def forget_topic(self, topic: str) -> None:
        self._fold_puts()
        self._topic_puts.pop(topic, None)
        for key in [k for k in self._group_gets if k[1] == topic]:
            del self._group_gets[key]
        for pull_key in [k for k in self._pull_offsets if k[1] == topic]:
            del self._pull_offsets[pull_key]

    def forget_group(self, group: str) -> None:
        for key in [k for k in self._group_gets if k[0] == group]:
            del self._group_gets[key]
        for pull_key in [k for k in self._pull_offsets if k[0] == group]:
            del self._pull_offsets[pull_key]

    # -- rates ------------------------------------------------------------------------------------------

    def _rates(self, counter: RateCounter) -> list[float]:
        now_s = self._clock()
        return [counter.rate(window, now_s) for window in WINDOWS_S]

    def put_tps(self) -> list[float]:
        """Messages stored per second over 10 s, 60 s and 600 s."""
        self._fold_puts()
        return self._rates(self._put_rate)

    def get_transferred_tps(self) -> list[float]:
        """Messages pulled per second over 10 s, 60 s and 600 s."""
        return self._rates(self._get_rate)

    def get_found_tps(self) -> list[float]:
        """Pulls that returned messages, per second."""
        return self._rates(self._found_rate)

    def get_miss_tps(self) -> list[float]:
        """Pulls that returned nothing, per second."""
        return self._rates(self._miss_rate)

    def topic_put_tps(self, topic: str) -> float:
        self._fold_puts()
        counter = self._topic_puts.get(topic)
        return 0.0 if counter is None else counter.rate(KEY_WINDOW_S, self._clock())

    def group_get_tps(self, group: str, topic: str) -> float:
        counter = self._group_gets.get((group, topic))
        return 0.0 if counter is None else counter.rate(KEY_WINDOW_S, self._clock())

    def roll_days(self) -> None:
        """Bring the morning marks up to date (reading them after a quiet midnight)."""
        now_s = self._clock()
        self._fold_puts()
        self._puts.roll(now_s)
        self.gets.roll(now_s)
