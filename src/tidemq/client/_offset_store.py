"""Where a consumer keeps its offsets: on the brokers (clustering) or in a local file (broadcasting).

Both stores keep a table in memory, updated as messages are consumed, and write it out on :meth:`persist`
(every 5 s, when a queue is dropped, and at shutdown), as Java's ``RemoteBrokerOffsetStore`` and
``LocalFileOffsetStore`` do.

* :class:`RemoteOffsetStore` reads with QUERY_CONSUMER_OFFSET (``setZeroIfNotFound=false``, so a group that
  never committed gets "not found" and its ``consume_from_where`` applies) and writes with
  UPDATE_CONSUMER_OFFSET, one request per queue, concurrently.
* :class:`LocalFileOffsetStore` keeps one JSON file per group (``{"version", "group", "offsets": [...],
  "crc32"}``), written to a temporary file and renamed into place in a worker thread; a file with a bad CRC
  or an unknown version is ignored (logged), so the consumer starts as a new one rather than from garbage.

State: the offset tables, on the event loop thread; file I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Protocol

from tidemq.client._consumer_api import ConsumerApi
from tidemq.client._routes import MessageQueue
from tidemq.client.errors import ClientError

log = logging.getLogger(__name__)

FILE_VERSION: Final = 1


class OffsetStore(Protocol):
    """The seam the consumers use; one implementation per message model."""

    def read(self, queue: MessageQueue) -> int | None:
        """The offset in memory, ``None`` if there is none."""
        ...

    async def read_stored(self, queue: MessageQueue) -> int | None:
        """The offset as stored (broker or file), ``None`` if the group never committed one."""
        ...

    def update(self, queue: MessageQueue, offset: int, *, increase_only: bool = False) -> None:
        """Set the in-memory offset; with ``increase_only`` never move it back."""
        ...

    async def persist(self, queues: Iterable[MessageQueue]) -> None:
        """Write out the in-memory offsets of ``queues``; failures are logged, not raised."""
        ...

    def remove(self, queue: MessageQueue) -> None:
        """Forget the in-memory offset (the queue went to another member)."""
        ...


class _MemoryTable:
    def __init__(self) -> None:
        self.offsets: dict[MessageQueue, int] = {}

    def read(self, queue: MessageQueue) -> int | None:
        return self.offsets.get(queue)

    def update(self, queue: MessageQueue, offset: int, *, increase_only: bool = False) -> None:
        if offset < 0:
            return
        current = self.offsets.get(queue)
        if increase_only and current is not None and current >= offset:
            return
        self.offsets[queue] = offset

    def remove(self, queue: MessageQueue) -> None:
        self.offsets.pop(queue, None)


class RemoteOffsetStore(_MemoryTable):
    """Offsets on the brokers (clustering)."""

    def __init__(self, api: ConsumerApi) -> None:
        super().__init__()
        self._api = api
        # One persist at a time: a periodic save still in flight when close() saves again could otherwise reach
        # a broker that handles updates on several threads (Apache) after the final one, with older offsets.
        # A cancelled save (close() cancels the periodic one) keeps the lock until its replies are in: its
        # requests are already on the wire, and a broker answers an update only once it has applied it.
        self._persisting = asyncio.Lock()

    async def read_stored(self, queue: MessageQueue) -> int | None:
        offset = await self._api.query_offset(queue, zero_if_not_found=False)
        if offset is not None:
            self.offsets[queue] = offset
        return offset

    async def persist(self, queues: Iterable[MessageQueue]) -> None:
        queues = list(queues)
        async with self._persisting:
            targets = [(queue, self.offsets[queue]) for queue in queues if queue in self.offsets]
            if not targets:
                return
            sending = asyncio.gather(
                *(self._api.update_offset(queue, offset) for queue, offset in targets), return_exceptions=True
            )
            try:
                results = await asyncio.shield(sending)
            except asyncio.CancelledError:
                await asyncio.wait([sending])  # the replies (or the calls' own timeouts), then the cancellation
                raise
        failures = [(queue, result) for (queue, _), result in zip(targets, results, strict=True) if result is not None]
        for _, result in failures:
            if not isinstance(result, ClientError):
                raise result  # not a broker or connection failure: a bug, or our cancellation
        if failures:
            queue, error = failures[0]
            log.warning("cannot commit %d of %d offsets (%s: %s)", len(failures), len(targets), queue, error)


class LocalFileOffsetStore(_MemoryTable):
    """Offsets in a local JSON file (broadcasting: every member keeps its own).

    Args:
        path: the file; its directory is created on the first write.
        group: the consumer group, written into the file.
    """

    def __init__(self, path: Path, group: str) -> None:
        super().__init__()
        self.path = path
        self.group = group
        self._stored: dict[MessageQueue, int] = {}
        self._written: dict[MessageQueue, int] = {}
        self._is_loaded = False

    async def load(self) -> None:
        """Read the file once (a missing or damaged file means no stored offsets)."""
        if not self._is_loaded:
            self._stored = await asyncio.to_thread(read_offset_file, self.path, self.group)
            self._written = dict(self._stored)
            self._is_loaded = True

    async def read_stored(self, queue: MessageQueue) -> int | None:
        await self.load()
        offset = self._stored.get(queue)
        if offset is not None:
            self.offsets[queue] = offset
        return offset

    async def persist(self, queues: Iterable[MessageQueue]) -> None:
        await self.load()
        for queue in queues:
            if queue in self.offsets:
                self._stored[queue] = self.offsets[queue]
        if self._stored == self._written:
            return
        snapshot = dict(self._stored)
        try:
            await asyncio.to_thread(write_offset_file, self.path, self.group, snapshot)
        except OSError as exc:
            log.warning("cannot write the offsets of group %s to %s: %s", self.group, self.path, exc)
            return
        self._written = snapshot


def _offset_rows(offsets: dict[MessageQueue, int]) -> list[dict[str, object]]:
    return [
        {"topic": queue.topic, "brokerName": queue.broker_name, "queueId": queue.queue_id, "offset": offset}
        for queue, offset in sorted(offsets.items())
    ]


def _crc(rows: list[dict[str, object]]) -> int:
    return zlib.crc32(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode())


def write_offset_file(path: Path, group: str, offsets: dict[MessageQueue, int]) -> None:
    """Write ``offsets`` to ``path`` atomically (temporary file, fsync, rename)."""
    rows = _offset_rows(offsets)
    text = json.dumps({"version": FILE_VERSION, "group": group, "offsets": rows, "crc32": _crc(rows)}, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


def read_offset_file(path: Path, group: str) -> dict[MessageQueue, int]:
    """The offsets in ``path``; empty (and a warning logged) when it is missing, damaged or not this group's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the offset file %s: %s", path, exc)
        return {}
    try:
        rows = data["offsets"]
        if data.get("version") != FILE_VERSION or data.get("crc32") != _crc(rows):
            log.warning("ignoring the offset file %s: unknown version or bad CRC", path)
            return {}
        if data.get("group") != group:
            log.warning("ignoring the offset file %s: it belongs to group %s", path, data.get("group"))
            return {}
        return {
            MessageQueue(str(row["topic"]), str(row["brokerName"]), int(row["queueId"])): int(row["offset"])
            for row in rows
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("ignoring the offset file %s: %s", path, exc)
        return {}
