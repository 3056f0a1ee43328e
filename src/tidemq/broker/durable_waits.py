"""SYNC_FLUSH acknowledgements on the event loop: one wake-up per fsync, not one per message.

Appends happen on the loop in commit-log order, so waiting sends form a queue ordered by end offset. The
store's flusher thread reports each new durable offset once (``call_soon_threadsafe``); everything at or
below it is released in one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from tidemq.store.message_store import MessageStore


class DurableWaits:
    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Start hearing the flusher (call on the loop, after the store is open)."""
        loop = asyncio.get_running_loop()
        self._loop = loop

        def on_fsync(durable: int) -> None:
            # The store can outlive the loop (a store closed after its loop, as an embedding test may do):
            # its final flush must still checkpoint, so a closed loop is not the flusher's error.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release, durable)

        self._store.add_durable_listener(on_fsync)

    async def wait(self, end_offset: int, timeout_s: float) -> bool:
        """True once every byte below ``end_offset`` is fsynced; False on timeout."""
        if end_offset <= self._store.durable_offset:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((end_offset, future))
        self._store.request_flush(end_offset)
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            return False
        return True

    def _release(self, durable: int) -> None:
        waiting = self._waiting
        while waiting and waiting[0][0] <= durable:
            _, future = waiting.popleft()
            if not future.done():
                future.set_result(None)

    def release_all(self) -> None:
        """Shutdown: let every waiter finish (it then answers FLUSH_DISK_TIMEOUT or is cancelled)."""
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.cancel()
