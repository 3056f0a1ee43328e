"""Held pulls: RocketMQ's PullRequestHoldService, on the event loop.

A pull that finds nothing new parks a future keyed by (topic, queue id) until a message arrives on that
queue or its suspend time runs out; the caller then runs the pull again. Arrivals are reported by the store's
append path (which runs on the loop), so waking is a dict lookup plus ``set_result`` — no polling timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict


class PullHoldService:
    def __init__(self) -> None:
        self._waiting: defaultdict[tuple[str, int], list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)

    async def wait_for_message(self, topic: str, queue_id: int, offset: int, timeout_s: float) -> bool:
        """Wait until the queue's max offset passes ``offset``; False on timeout."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (topic, queue_id)
        entry = (offset, future)
        self._waiting[key].append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            return False
        else:
            return True
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(entry)
                if not waiters:
                    del self._waiting[key]

    def notify_arrival(self, topic: str, queue_id: int, max_offset: int) -> None:
        """A message was stored on (topic, queue_id); wake holders waiting below ``max_offset``."""
        waiters = self._waiting.get((topic, queue_id))
        if not waiters:
            return
        for offset, future in waiters:
            if offset < max_offset and not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        """Shutdown: release every held pull."""
        for waiters in self._waiting.values():
            for _, future in waiters:
                if not future.done():
                    future.set_result(None)

    @property
    def held_count(self) -> int:
        return sum(len(w) for w in self._waiting.values())
