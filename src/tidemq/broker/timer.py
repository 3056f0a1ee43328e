"""Messages delivered at an arbitrary time (RocketMQ 5 timer messages), with disk-bound state.

A producer names the time with ``TIMER_DELIVER_MS`` (absolute ms), ``TIMER_DELAY_SEC`` / ``TIMER_DELAY_MS``
(relative) or ``__STARTDELIVERTIME`` (absolute, the 4.x / Aliyun name). RocketMQ keeps a timing wheel in its own
files; tidemq reuses what the store already has — FIFO queues whose entries hold a due time — as a cascade:

* ``rmq_sys_wheel_timer`` has one queue per hop length 2^k s (k = 0..MAX_HOP); queue PRECISE_QUEUE holds
  messages due in under a second.
* A waiting message is stored in the queue of the longest hop not past its delivery time T, with
  TIMER_OUT_MS = now + hop as its due time. Within one queue due times only grow (one hop length, store times
  in order), so each queue is drained front to back like a delay level.
* When a hop ends the message is re-stored for the next, shorter hop — at most one hop per length, so a
  3-day wait costs ~18 record copies — until under a second remains: then it enters the precise queue, whose
  entries are delivered from a small in-memory heap at exactly T (never early, a few ms late).

A million waiting messages cost their records on disk and 20-byte queue entries; memory holds only what is
due within the next second. Queue positions persist in ``config/timerOffset.json``: after a restart at-least-once
delivery resumes; nothing is delivered before its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from pathlib import Path
from typing import Final

from tidemq.broker.persistence import load_json, save_json
from tidemq.store import record as rec
from tidemq.store.consume_queue import ENTRY
from tidemq.store.message_store import MessageStore
from tidemq.store.results import PutResult
from tidemq.store.tag_codes import PROPERTY_TIMER_OUT_MS, TIMER_TOPIC

log = logging.getLogger(__name__)

PROPERTY_DELIVER_MS: Final = "TIMER_DELIVER_MS"
PROPERTY_DELAY_SEC: Final = "TIMER_DELAY_SEC"
PROPERTY_DELAY_MS: Final = "TIMER_DELAY_MS"
PROPERTY_START_DELIVER_TIME: Final = "__STARTDELIVERTIME"
PROPERTY_REAL_TOPIC: Final = "REAL_TOPIC"
PROPERTY_REAL_QUEUE_ID: Final = "REAL_QID"
TIMER_PROPERTIES: Final = (PROPERTY_DELIVER_MS, PROPERTY_DELAY_SEC, PROPERTY_DELAY_MS, PROPERTY_START_DELIVER_TIME)
MAX_HOP: Final = 18
"""Longest hop 2^18 s (about 3 days): RocketMQ's timerMaxDelaySec default is 3 days."""
PRECISE_QUEUE: Final = MAX_HOP + 1
MAX_DELAY_MS: Final = 3 * 24 * 3600 * 1000
BATCH: Final = 256


def deliver_time_of(properties: dict[str, str], now_ms: int) -> int | None:
    """The delivery time a message asks for, or None. Relative delays count from ``now_ms``.

    Raises:
        ValueError: a timer property that is not a number.
    """
    if PROPERTY_DELIVER_MS in properties:
        return int(properties[PROPERTY_DELIVER_MS])
    if PROPERTY_START_DELIVER_TIME in properties:
        return int(properties[PROPERTY_START_DELIVER_TIME])
    if PROPERTY_DELAY_SEC in properties:
        return now_ms + int(properties[PROPERTY_DELAY_SEC]) * 1000
    if PROPERTY_DELAY_MS in properties:
        return now_ms + int(properties[PROPERTY_DELAY_MS])
    return None


def hop_for(remaining_ms: int) -> tuple[int, int]:
    """(queue id, hop length in ms) of the next hop for a message ``remaining_ms`` from its time."""
    if remaining_ms < 1000:
        return PRECISE_QUEUE, remaining_ms
    k = min(MAX_HOP, (remaining_ms // 1000).bit_length() - 1)
    return k, 1000 << k


class TimerService:
    """Runs the cascade on the event loop. ``schedule`` is the send path; ``start`` / ``close`` the lifecycle."""

    def __init__(self, store: MessageStore, config_dir: Path) -> None:
        self._store = store
        self._path = config_dir / "timerOffset.json"
        self.offsets: dict[int, int] = {}
        self._heap: list[tuple[int, int, int]] = []  # (deliver ms, precise queue offset, physical offset)
        self._queued: int = 0  # precise-queue entries already read into the heap
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self.delivered = 0

    def load(self) -> None:
        data = load_json(self._path)
        if data is not None:
            self.offsets = {int(q): int(o) for q, o in (data.get("offsetTable") or {}).items()}
        self._queued = self.offsets.get(PRECISE_QUEUE, 0)

    def persist(self) -> None:
        if self._dirty:
            self._dirty = False
            save_json(self._path, {"offsetTable": {str(q): o for q, o in sorted(self.offsets.items())}})

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.persist()

    def on_arrival(self, topic: str, queue_id: int, max_offset: int) -> None:
        if topic == TIMER_TOPIC:
            self._wake.set()

    # -- the send path ---------------------------------------------------------------------------------

    def schedule(
        self,
        properties: dict[str, str],
        deliver_ms: int,
        now_ms: int,
        real_topic: str,
        real_queue: int,
    ) -> tuple[str, int, str]:
        """Where a timer message is stored now: (topic, queue id, properties)."""
        pairs = dict(properties)
        pairs[PROPERTY_DELIVER_MS] = str(deliver_ms)
        pairs[PROPERTY_REAL_TOPIC] = real_topic
        pairs[PROPERTY_REAL_QUEUE_ID] = str(real_queue)
        for key in (PROPERTY_DELAY_SEC, PROPERTY_DELAY_MS):
            pairs.pop(key, None)
        queue_id, hop_ms = hop_for(deliver_ms - now_ms)
        pairs[PROPERTY_TIMER_OUT_MS] = str(deliver_ms if queue_id == PRECISE_QUEUE else now_ms + hop_ms)
        return TIMER_TOPIC, queue_id, rec.encode_properties(pairs)

    # -- the cascade -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                next_due = self.advance(int(time.time() * 1000))
            except Exception:  # a failed pass is retried shortly; positions stay where they were
                log.exception("timer pass failed")
                next_due = None
            self.persist()
            sleep_s = 1.0 if next_due is None else max(0.0, min(1.0, next_due / 1000 - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep_s):
                    await self._wake.wait()

    def advance(self, now_ms: int) -> int | None:
        """Move every ended hop on, deliver what is due; return the next time something is due."""
        earliest: int | None = None
        for queue_id in range(MAX_HOP + 1):
            due = self._drain_hops(queue_id, now_ms)
            if due is not None:
                earliest = due if earliest is None else min(earliest, due)
        due = self._drain_precise(now_ms)
        if due is not None:
            earliest = due if earliest is None else min(earliest, due)
        return earliest

    def _drain_hops(self, queue_id: int, now_ms: int) -> int | None:
        store = self._store
        queue = store.consume_queue(TIMER_TOPIC, queue_id)
        if queue is None:
            return None
        offset = max(self.offsets.get(queue_id, 0), queue.min_offset)
        earliest: int | None = None
        while offset < queue.max_offset and earliest is None:
            raw = queue.read_entries(offset, BATCH)
            if not raw:
                break
            for physical, _size, hop_end in ENTRY.iter_unpack(raw):
                if hop_end > now_ms:
                    earliest = hop_end
                    break
                self._next_hop(physical, now_ms)
                offset += 1
        self._set_offset(queue_id, offset)
        return earliest

    def _next_hop(self, physical: int, now_ms: int) -> None:
        data = self._store.read_record(physical)
        if data is None:
            return
        record = rec.decode_record(data)
        properties = dict(record.properties)
        try:
            deliver_ms = int(properties[PROPERTY_DELIVER_MS])
        except (KeyError, ValueError):
            log.warning("timer record at %d has no TIMER_DELIVER_MS; dropping it", physical)
            return
        if deliver_ms <= now_ms:
            self._put(
                record, properties, properties.get(PROPERTY_REAL_TOPIC, ""), _int(properties, PROPERTY_REAL_QUEUE_ID)
            )
            return
        topic, queue_id, text = self.schedule(
            properties,
            deliver_ms,
            now_ms,
            properties.get(PROPERTY_REAL_TOPIC, ""),
            _int(properties, PROPERTY_REAL_QUEUE_ID),
        )
        self._append(record, topic, queue_id, text)

    def _drain_precise(self, now_ms: int) -> int | None:
        store = self._store
        queue = store.consume_queue(TIMER_TOPIC, PRECISE_QUEUE)
        if queue is not None:
            self._queued = max(self._queued, queue.min_offset)
            while self._queued < queue.max_offset:
                raw = queue.read_entries(self._queued, BATCH)
                if not raw:
                    break
                for physical, _size, deliver_ms in ENTRY.iter_unpack(raw):
                    heapq.heappush(self._heap, (deliver_ms, self._queued, physical))
                    self._queued += 1
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            _, _, physical = heapq.heappop(heap)
            data = store.read_record(physical)
            if data is not None:
                record = rec.decode_record(data)
                properties = dict(record.properties)
                self._put(
                    record,
                    properties,
                    properties.get(PROPERTY_REAL_TOPIC, ""),
                    _int(properties, PROPERTY_REAL_QUEUE_ID),
                )
        # The persisted position is the oldest entry not yet delivered (redelivery after a crash, never loss).
        self._set_offset(PRECISE_QUEUE, min((entry[1] for entry in heap), default=self._queued))
        return heap[0][0] if heap else None

    def _set_offset(self, queue_id: int, offset: int) -> None:
        if self.offsets.get(queue_id) != offset:
            self.offsets[queue_id] = offset
            self._dirty = True

    def _put(self, record: rec.StoredRecord, properties: dict[str, str], topic: str, queue_id: int) -> None:
        if not topic:
            log.warning("timer record at %d has no REAL_TOPIC; dropping it", record.physical_offset)
            return
        for key in (PROPERTY_TIMER_OUT_MS, PROPERTY_REAL_TOPIC, PROPERTY_REAL_QUEUE_ID):
            properties.pop(key, None)
        self._append(record, topic, queue_id, rec.encode_properties(properties))
        self.delivered += 1

    def _append(self, record: rec.StoredRecord, topic: str, queue_id: int, properties: str) -> PutResult:
        result = self._store.append_messages(
            topic,
            queue_id,
            [(record.body, properties, record.flag)],
            sys_flag=record.sys_flag,
            born_timestamp=record.born_timestamp,
            born_host=record.born_host,
            reconsume_times=record.reconsume_times,
        )
        if not result.is_ok:
            raise RuntimeError(f"timer: cannot store into {topic}/{queue_id}: {result.error or result.status}")
        return result


def _int(properties: dict[str, str], key: str) -> int:
    try:
        return int(properties.get(key, "0"))
    except ValueError:
        return 0
