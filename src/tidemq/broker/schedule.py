"""Delayed delivery by level: RocketMQ's ScheduleMessageService, on the event loop.

A message sent with DELAY=n (or sent back for retry with a delay level) is stored in SCHEDULE_TOPIC_XXXX,
queue n-1, with REAL_TOPIC / REAL_QID naming where it belongs; its consume-queue entry holds the delivery time
(store/tag_codes.py). Within one level queue delivery times only grow (one delay, store times in order), so
each level needs just a read position: deliver every entry that is due, then sleep until the next one is. A
million scheduled messages cost their disk records and a 20-byte queue entry each, no memory.

The positions persist in ``config/delayOffset.json`` (RocketMQ's file and shape); after a restart delivery
resumes where it stopped, so a message is delivered at least once and never before its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Final

from tidemq.broker.persistence import load_json, save_json
from tidemq.store import record as rec
from tidemq.store.consume_queue import ENTRY
from tidemq.store.message_store import MessageStore
from tidemq.store.tag_codes import SCHEDULE_TOPIC

log = logging.getLogger(__name__)

PROPERTY_REAL_TOPIC: Final = "REAL_TOPIC"
PROPERTY_REAL_QUEUE_ID: Final = "REAL_QID"
BATCH: Final = 256
MAX_SLEEP_S: Final = 1.0


class ScheduleService:
    """Moves due messages from SCHEDULE_TOPIC_XXXX to their real topic. ``start()`` / ``close()`` on the loop."""

    def __init__(self, store: MessageStore, config_dir: Path) -> None:
        self._store = store
        self._path = config_dir / "delayOffset.json"
        self.offsets: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self.delivered = 0

    def load(self) -> None:
        data = load_json(self._path)
        if data is not None:
            self.offsets = {int(level): int(offset) for level, offset in (data.get("offsetTable") or {}).items()}

    def persist(self) -> None:
        if self._dirty:
            self._dirty = False
            save_json(
                self._path, {"offsetTable": {str(level): offset for level, offset in sorted(self.offsets.items())}}
            )

    def on_arrival(self, topic: str, queue_id: int, max_offset: int) -> None:
        """Store arrival listener: a newly scheduled message may be due before the current sleep ends."""
        if topic == SCHEDULE_TOPIC:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.persist()

    async def _run(self) -> None:
        while True:
            try:
                next_due_ms = self.deliver_due(int(time.time() * 1000))
            except Exception:  # a failing pass is logged and retried after a pause; the positions stay put
                log.exception("delayed delivery pass failed")
                next_due_ms = None
            self.persist()
            sleep_s = MAX_SLEEP_S
            if next_due_ms is not None:
                sleep_s = max(0.0, min(MAX_SLEEP_S, next_due_ms / 1000 - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep_s):
                    await self._wake.wait()

    def deliver_due(self, now_ms: int) -> int | None:
        """Deliver every due message of every level; return the earliest time still pending (or None)."""
        store = self._store
        earliest: int | None = None
        for queue_id in store.queue_ids(SCHEDULE_TOPIC):
            level = queue_id + 1
            offset = max(self.offsets.get(level, 0), store.get_min_offset(SCHEDULE_TOPIC, queue_id))
            queue = store.consume_queue(SCHEDULE_TOPIC, queue_id)
            if queue is None:
                continue
            while offset < queue.max_offset:
                raw = queue.read_entries(offset, BATCH)
                if not raw:
                    break
                stop = False
                for physical, _size, deliver_ms in ENTRY.iter_unpack(raw):
                    if deliver_ms > now_ms:
                        earliest = deliver_ms if earliest is None else min(earliest, deliver_ms)
                        stop = True
                        break
                    if physical >= store.min_physical_offset:
                        self._deliver(physical)
                    offset += 1
                if stop:
                    break
            if self.offsets.get(level) != offset:
                self.offsets[level] = offset
                self._dirty = True
        return earliest

    def _deliver(self, physical: int) -> None:
        data = self._store.read_record(physical)
        if data is None:
            log.warning("scheduled message at %d is gone; skipping it", physical)
            return
        record = rec.decode_record(data)
        properties = dict(record.properties)
        real_topic = properties.get(PROPERTY_REAL_TOPIC)
        if not real_topic:
            log.warning("scheduled message at %d has no REAL_TOPIC; dropping it", physical)
            return
        try:
            real_queue = int(properties.get(PROPERTY_REAL_QUEUE_ID, "0"))
        except ValueError:
            real_queue = 0
        # DELAY stays in the delivered record, as in Apache's (messageTimeup clears the level only after it has
        # encoded the stored properties): consumers see getDelayTimeLevel() = the level. Only sends are scheduled,
        # so it is not delayed again here.
        result = self._store.append_messages(
            real_topic,
            real_queue,
            [(record.body, rec.encode_properties(properties), record.flag)],
            sys_flag=record.sys_flag,
            born_timestamp=record.born_timestamp,
            born_host=record.born_host,
            reconsume_times=record.reconsume_times,
        )
        if not result.is_ok:
            # Keep the position: the pass raises so the message is retried, not lost.
            raise RuntimeError(f"cannot deliver scheduled message at {physical}: {result.error or result.status}")
        self.delivered += 1
