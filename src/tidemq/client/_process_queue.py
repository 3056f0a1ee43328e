"""A consumer's local view of one assigned queue (Java's ``ProcessQueue``).

It holds the messages pulled but not yet consumed, in queue-offset order, and answers the question offsets are
committed by: the lowest offset not yet consumed (:meth:`ProcessQueue.remove` returns it). It also carries the
flags the pull and consume tasks of the queue share: dropped (the queue went to another member), locked and
the time of the last lock (orderly consumption), and an event the pull task waits on while the queue holds more
than its limit (flow control).

State: everything on the event loop thread; the queue's pull task adds, consume tasks remove.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Final

from tidemq.client._message import ReceivedMessage

LOCK_MAX_LIVE_S: Final = 30.0
"""A lock not renewed for this long is not trusted any more (Java's ``rebalance.lockMaxLiveTime``, 30 s): the
broker keeps it 60 s, so the client stops consuming well before another member could take the queue."""


class ProcessQueue:
    """Messages of one queue between pull and consumption.

    Args:
        limit: above this many cached messages, :meth:`wait_for_room` blocks (``max_cached_messages_per_queue``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._messages: dict[int, ReceivedMessage] = {}
        self.max_offset_seen = -1
        """The highest queue offset ever added, -1 before the first."""
        self.pulled_up_to = -1
        """The last pull's ``next_begin_offset``: past filtered-out messages, where consumption stands once
        everything held is consumed."""
        self.is_dropped = False
        self.is_locked = False
        self.last_lock_s = 0.0
        """``time.monotonic()`` of the last successful lock or renewal."""
        self._room = asyncio.Event()
        self._room.set()
        self._arrived = asyncio.Event()

    @property
    def count(self) -> int:
        """Messages held (pulled, not consumed)."""
        return len(self._messages)

    @property
    def is_lock_expired(self) -> bool:
        return time.monotonic() - self.last_lock_s > LOCK_MAX_LIVE_S

    def add(self, messages: Iterable[ReceivedMessage]) -> None:
        """Hold newly pulled messages, keeping them in offset order (the first held is the lowest)."""
        batch = list(messages)
        offsets = [message.queue_offset for message in batch]
        held = self._messages
        if offsets and (not held or offsets[0] > next(reversed(held))) and offsets == sorted(offsets):
            # A pull's messages, after everything held and in order (always, from a broker): in bulk, in C.
            held.update(zip(offsets, batch, strict=True))
            self.max_offset_seen = max(self.max_offset_seen, offsets[-1])
        else:
            self._add_one_by_one(batch)
        held = self._messages  # after _add_one_by_one, which may replace the dict
        if len(held) >= self.limit:
            self._room.clear()
        if held:
            self._arrived.set()

    def _add_one_by_one(self, messages: list[ReceivedMessage]) -> None:
        for message in messages:
            offset = message.queue_offset
            held = self._messages
            if held and offset < next(reversed(held)) and offset not in held:
                # Below the highest held (an offset moved back): re-sort, so the first key stays the lowest and
                # the offset committed never passes a message not yet consumed.
                held[offset] = message
                self._messages = dict(sorted(held.items()))
            else:
                held[offset] = message
            self.max_offset_seen = max(self.max_offset_seen, offset)

    def remove(self, message: ReceivedMessage) -> int:
        """Forget a consumed message; return the offset to commit: the lowest still held, else one past the last.

        Returns -1 when nothing was ever added (no offset to commit).
        """
        return self.remove_many((message,))

    def remove_many(self, messages: Iterable[ReceivedMessage]) -> int:
        """:meth:`remove` for several consumed messages at once (one offset to commit for all of them)."""
        held = self._messages
        for message in messages:
            held.pop(message.queue_offset, None)
        if len(held) < self.limit:
            self._room.set()
        if held:
            return next(iter(held))
        self._arrived.clear()
        return max(self.pulled_up_to, self.max_offset_seen + 1) if self.max_offset_seen >= 0 else self.pulled_up_to

    def replace(self, message: ReceivedMessage) -> None:
        """Put back a changed copy of a held message (a local retry's reconsume count)."""
        if message.queue_offset in self._messages:
            self._messages[message.queue_offset] = message

    def first(self) -> ReceivedMessage | None:
        """The held message with the lowest offset (orderly consumption takes them in this order)."""
        return next(iter(self._messages.values()), None)

    def cached_span(self) -> tuple[int, int, int]:
        """(lowest offset, highest offset, body bytes) of the held messages, zeros when none (running info)."""
        held = self._messages
        if not held:
            return 0, 0, 0
        return next(iter(held)), max(held), sum(len(m.body) for m in held.values())

    def contains(self, message: ReceivedMessage) -> bool:
        return message.queue_offset in self._messages

    def clear(self) -> None:
        """Forget every held message (a seek, an offset reset)."""
        self._messages.clear()
        self.max_offset_seen = self.pulled_up_to = -1
        self._room.set()
        self._arrived.clear()

    def drop(self) -> None:
        """Mark the queue gone: its tasks stop at their next check, waiters wake."""
        self.is_dropped = True
        self._room.set()
        self._arrived.set()

    async def wait_for_room(self) -> None:
        """Return once fewer than ``limit`` messages are held (or the queue was dropped)."""
        await self._room.wait()

    async def wait_for_messages(self) -> None:
        """Return once a message is held (or the queue was dropped)."""
        await self._arrived.wait()
