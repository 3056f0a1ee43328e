"""What a consume-queue entry's third field holds: the tag hash — or, for delayed messages, the delivery time.

RocketMQ's CommitLog.checkMessageAndReturnSize puts the delivery timestamp (store time + the level's delay)
into SCHEDULE_TOPIC_XXXX entries, so the schedule service finds due messages without reading the commit log.
Timer-topic records (arbitrary delivery times, broker/timer.py) carry their hop's end in TIMER_OUT_MS, which
becomes their tag code the same way. Appends and recovery both go through :func:`tag_code_of`, so a rebuilt
queue equals the original.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from tidemq.errors import ConfigError
from tidemq.store import record as rec

SCHEDULE_TOPIC: Final = "SCHEDULE_TOPIC_XXXX"
TIMER_TOPIC: Final = "rmq_sys_wheel_timer"
PROPERTY_TIMER_OUT_MS: Final = "TIMER_OUT_MS"
"""On a timer-topic record: when this hop of its wait ends (the consume-queue tag code)."""
DEFAULT_DELAY_LEVELS: Final = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
_UNITS_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_LEVEL: Final = re.compile(r"^(\d+)([smhd])$")

_tag_hash_cache: dict[str, int] = {}


def parse_delay_levels(text: str) -> tuple[int, ...]:
    """``messageDelayLevel`` ("1s 5s ... 2h") as milliseconds per level (level n is item n-1).

    Raises:
        ConfigError: an item is not a number followed by s, m, h or d.
    """
    levels: list[int] = []
    for item in text.split():
        match = _LEVEL.match(item)
        if match is None:
            raise ConfigError(f"messageDelayLevel: {item!r} is not like 5s, 1m, 2h or 1d")
        levels.append(int(match.group(1)) * _UNITS_MS[match.group(2)])
    if not levels:
        raise ConfigError("messageDelayLevel is empty")
    return tuple(levels)


def delay_level_of(properties: str, level_count: int) -> int:
    """The DELAY property as a level in 1..level_count (0 when absent or not a number)."""
    text = rec.find_property(properties, rec.PROPERTY_DELAY)
    if not text:
        return 0
    try:
        level = int(text)
    except ValueError:
        return 0
    return 0 if level <= 0 else min(level, level_count)


def tag_hash(tags: str) -> int:
    code = _tag_hash_cache.get(tags)
    if code is None:
        code = rec.java_string_hash(tags)
        if len(_tag_hash_cache) < 100_000:
            _tag_hash_cache[tags] = code
    return code


@functools.lru_cache(maxsize=100_000)
def tag_hash_of_bytes(tags: bytes) -> int:
    """:func:`tag_hash` of UTF-8 encoded tags (what dispatch finds in a record's properties), memoized."""
    return tag_hash(tags.decode(errors="replace"))


def tag_code_of(topic: str, properties: str, store_timestamp: int, delay_levels_ms: tuple[int, ...]) -> int:
    """The consume-queue tag code of a record."""
    if topic == SCHEDULE_TOPIC:
        level = delay_level_of(properties, len(delay_levels_ms))
        return store_timestamp + (delay_levels_ms[level - 1] if level else 0)
    if topic == TIMER_TOPIC:
        due = rec.find_property(properties, PROPERTY_TIMER_OUT_MS)
        return int(due) if due and due.isdigit() else store_timestamp
    tags = rec.find_property(properties, rec.PROPERTY_TAGS) if "TAGS\x01" in properties else None
    return tag_hash(tags) if tags else 0
