"""MessageStore: the commit log, its consume queues and index, behind one synchronous API.

Appends are serialised by ``_lock`` (one writer at a time, as RocketMQ's putMessageLock); each append packs
its records into one buffer (:mod:`tidemq.store.packing`), copies it into the mapped segment, then publishes
the consume-queue entries before returning, so a record is readable the moment its put returns. Index keys
wait in a list and go into the index every 512 records, before each index sync and before any lookup.
Reads (:mod:`tidemq.store.reads`) take no lock: they ``pread`` below the published queue ends.

Threads: callers (any thread) append and read; the ``tidemq-flush`` thread (flush.py) fsyncs and writes the
checkpoint; the ``tidemq-clean`` thread deletes expired segments (retention.py).
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from tidemq.errors import StoreFullError
from tidemq.store import record as rec
from tidemq.store.checkpoint import (
    ABORT_FILE,
    Checkpoint,
    ensure_store_marker,
    lock_store_root,
    refuse_foreign_directory,
)
from tidemq.store.config import FlushDiskType, StoreConfig
from tidemq.store.consume_queue import ConsumeQueue
from tidemq.store.flush import FlushCallback, FlushService
from tidemq.store.index import IndexService
from tidemq.store.index_keys import PendingIndex, hash_index_keys, index_prefix_crc
from tidemq.store.index_worker import IndexClient, IndexWorkerError
from tidemq.store.packing import (
    BLANK_MIN,
    BatchFormatError,
    HeadCommon,
    pack_batch,
    pack_one_into,
    pack_raw_batch,
    split_batch,
)
from tidemq.store.reads import StoreReads
from tidemq.store.results import PutResult, PutStatus
from tidemq.store.segment_file import SegmentFile, SegmentQueue
from tidemq.store.tag_codes import SCHEDULE_TOPIC, TIMER_TOPIC

log = logging.getLogger(__name__)

_HOST_V6_FLAGS: Final = rec.SYSFLAG_BORNHOST_V6 | rec.SYSFLAG_STOREHOST_V6
"""Cleared in every record: the store writes IPv4 born and store hosts (4-byte addresses)."""
_TOPIC_LENGTH_ERROR: Final = f"topic must be 1..{rec.MAX_TOPIC_BYTES} bytes"
INDEX_BATCH: Final = 512
"""Records with index keys appended before their keys are put into the index in one go."""
INDEX_SYNC_INTERVAL_S: Final = 2.0
"""How often a checkpoint also syncs the index. A sync write-protects the pages it writes back, and hash slots
are written at random, so syncing at every checkpoint (each ``flushIntervalCommitLog``) made most key inserts
take a page fault. The checkpoint's safe offset stays at or below what the synced index covers, so recovery
after a crash re-indexes the rest (RocketMQ likewise syncs an index file only when it is full)."""
MessageEntry = tuple[bytes, str, int]
"""One message of a put: (body as stored, properties string, user flag)."""
SingleAppend = tuple[str, int, bytes, str, int, int, int, int]
"""One message of :meth:`MessageStore.append_singles`: (topic, queue id, body, properties, user flag, sys flag,
born timestamp, reconsume times)."""
ArrivalListener = Callable[[str, int, int], None]
"""Called after dispatch with (topic, queue_id, new max offset), on the appending thread."""


class MessageStore(StoreReads):
    """A RocketMQ-style message store in one directory. Use ``with MessageStore(cfg) as store:``."""

    def __init__(self, config: StoreConfig, *, clock_ms: Callable[[], int] | None = None) -> None:
        self.config = config
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self.commit_log = SegmentQueue(
            config.commit_log_dir, config.mapped_file_size_commit_log, map_writes=True, release_written=True
        )
        self.write_offset = 0
        self._queues: dict[tuple[str, int], ConsumeQueue] = {}
        self._queues_by_topic: dict[str, dict[int, ConsumeQueue]] = {}
        index_geometry = {"max_hash_slots": config.max_hash_slot_num, "max_entries": config.max_index_num}
        self.index: IndexService | IndexClient = (
            IndexClient(config.index_dir, **index_geometry)
            if config.index_worker_enable and config.message_index_enable
            else IndexService(config.index_dir, **index_geometry)
        )
        # Index keys of appended records not yet in the index: (topic, KEYS, UNIQ_KEY, offset, store time).
        # Inserted in bulk (every INDEX_BATCH records, each index sync, before any lookup) rather than per append:
        # per-append insertion cost a single send ~40% of its store time in call overhead. RocketMQ too builds
        # its index behind the append (ReputMessageService); recovery re-indexes what a crash left pending.
        self._pending_index: list[PendingIndex] = []
        self._index_synced_offset = 0
        """Every record below it has its index keys on disk: the checkpoint's safe offset never passes it."""
        self._next_index_sync = 0.0  # the first checkpoint syncs the index, whatever recovery put into it
        self._flusher: FlushService | None = None
        self._cleaner: threading.Thread | None = None
        self._closing = threading.Event()
        self._graveyard: list[SegmentFile] = []
        self._graveyard_previous: list[SegmentFile] = []
        self.arrival_listeners: list[ArrivalListener] = []
        self._root_lock = -1
        """The fd holding ``<root>/lock`` while open (:func:`~tidemq.store.checkpoint.lock_store_root`)."""
        self.is_open = False
        self.is_writable = True
        self.not_writable_reason = ""
        self.recovery_report: dict[str, int | bool] = {}
        store_ip, store_port = config.store_host
        self._store_ip = rec.ipv4_bytes(store_ip)
        self._store_port = store_port

    # -- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> MessageStore:
        """Check the directory's format, recover, and start the flusher and cleaner threads."""
        if self.is_open:
            raise RuntimeError("the store is already open")
        from tidemq.store.recovery import recover  # recovery uses this class's parts; import late

        root = self.config.store_path_root_dir
        refuse_foreign_directory(root)  # before the lock file is created in it
        self._root_lock = lock_store_root(root)
        try:
            ensure_store_marker(root)
            self.commit_log.load()
            self._load_consume_queues()
            self.index.open()
            self.recovery_report = recover(self)
        except BaseException:
            self.index.close()  # ends the index worker, if one started (a no-op on an index never opened)
            self._unlock_root()
            raise
        (root / ABORT_FILE).touch()
        self._flusher = FlushService(
            self._sync_commit_log, self._checkpoint, self.config.flush_interval_commit_log_ms / 1000
        )
        self._flusher.start(self.write_offset)
        from tidemq.store.retention import run_cleaner

        self._cleaner = threading.Thread(target=run_cleaner, args=(self,), name="tidemq-clean", daemon=True)
        self._cleaner.start()
        self.is_open = True
        return self

    def close(self) -> None:
        """Flush everything, write a clean checkpoint, remove the abort marker."""
        if not self.is_open:
            return
        self.is_open = False
        self._closing.set()
        if self._flusher is not None:
            self._flusher.stop()
        if self._cleaner is not None:
            self._cleaner.join()
        with self._lock:
            self._sync_commit_log()
            for queue in self._queues.values():
                queue.sync()
            self._drain_index_locked()
            self._flush_index(is_locked=True)
            Checkpoint(self.write_offset, self.write_offset, True, self._clock_ms()).save(
                self.config.store_path_root_dir
            )
            (self.config.store_path_root_dir / ABORT_FILE).unlink(missing_ok=True)
            self.commit_log.close()
            for queue in self._queues.values():
                queue.close()
            self.index.close()
            for segment in self._graveyard + self._graveyard_previous:
                segment.close()
        self._unlock_root()

    def _unlock_root(self) -> None:
        if self._root_lock >= 0:
            os.close(self._root_lock)
            self._root_lock = -1

    def abandon(self) -> None:
        """Stop as a crash would: no final flush, no clean checkpoint, the abort marker left behind.

        For fault drills and tests of recovery; data already written stays in the page cache, as after kill -9.
        """
        if not self.is_open:
            return
        self.is_open = False
        self._closing.set()
        if self._flusher is not None:
            self._flusher.stop(final_flush=False)
        if self._cleaner is not None:
            self._cleaner.join()
        with self._lock:
            self.commit_log.close()
            for queue in self._queues.values():
                queue.close()
            self.index.close()
        self._unlock_root()

    def __enter__(self) -> MessageStore:
        return self if self.is_open else self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _load_consume_queues(self) -> None:
        base = self.config.consume_queue_dir
        base.mkdir(parents=True, exist_ok=True)
        for topic_dir in sorted(base.iterdir()):
            if not topic_dir.is_dir():
                continue
            for queue_dir in sorted(topic_dir.iterdir()):
                if queue_dir.is_dir() and queue_dir.name.isdigit():
                    queue = self._queue(topic_dir.name, int(queue_dir.name))
                    queue.load()

    def _queue(self, topic: str, queue_id: int) -> ConsumeQueue:
        key = (topic, queue_id)
        queue = self._queues.get(key)
        if queue is None:
            directory = self.config.consume_queue_dir / topic / str(queue_id)
            queue = ConsumeQueue(topic, queue_id, directory, self.config.mapped_file_size_consume_queue)
            self._queues[key] = queue
            self._queues_by_topic.setdefault(topic, {})[queue_id] = queue
        return queue

    # -- appends ---------------------------------------------------------------------------------------

    def put_message(
        self,
        topic: str,
        queue_id: int,
        body: bytes,
        properties: str = "",
        *,
        flag: int = 0,
        sys_flag: int = 0,
        born_timestamp: int = 0,
        born_host: tuple[str, int] = ("127.0.0.1", 0),
        reconsume_times: int = 0,
        prepared_transaction_offset: int = 0,
        wait_store: bool = True,
    ) -> PutResult:
        """Store one message; see :meth:`put_messages`."""
        result = self.append_one(
            topic,
            queue_id,
            body,
            properties,
            flag=flag,
            sys_flag=sys_flag,
            born_timestamp=born_timestamp,
            born_host=born_host,
            reconsume_times=reconsume_times,
            prepared_transaction_offset=prepared_transaction_offset,
        )
        return self._waited(result) if wait_store else result

    def put_messages(
        self,
        topic: str,
        queue_id: int,
        messages: Sequence[MessageEntry],
        *,
        sys_flag: int = 0,
        born_timestamp: int = 0,
        born_host: tuple[str, int] = ("127.0.0.1", 0),
        reconsume_times: int = 0,
        prepared_transaction_offset: int = 0,
        wait_store: bool = True,
        tag_code_override: int | None = None,
    ) -> PutResult:
        """Append messages of one queue as consecutive records, in one write.

        Under SYNC_FLUSH with ``wait_store`` the call returns once the records are fsynced (or with
        FLUSH_DISK_TIMEOUT); use :meth:`append_messages` plus :meth:`when_durable` to wait without a thread.
        """
        result = self.append_messages(
            topic,
            queue_id,
            messages,
            sys_flag=sys_flag,
            born_timestamp=born_timestamp,
            born_host=born_host,
            reconsume_times=reconsume_times,
            prepared_transaction_offset=prepared_transaction_offset,
            tag_code_override=tag_code_override,
        )
        return self._waited(result) if wait_store else result

    def _waited(self, result: PutResult) -> PutResult:
        """Under SYNC_FLUSH, ``result`` once its records are fsynced (or with FLUSH_DISK_TIMEOUT)."""
        if (
            result.status is PutStatus.PUT_OK
            and self.config.flush_disk_type is FlushDiskType.SYNC_FLUSH
            and self._flusher is not None
            and not self._flusher.wait_durable(result.end_offset, self.config.sync_flush_timeout_ms / 1000)
        ):
            return _with_status(result, PutStatus.FLUSH_DISK_TIMEOUT)
        return result

    def request_flush(self, end_offset: int) -> None:
        """SYNC_FLUSH without a callback per append: ask for a group commit covering ``end_offset``; listeners
        added with :meth:`add_durable_listener` hear the durable offset after each fsync."""
        if self._flusher is not None:
            self._flusher.request_flush(end_offset)

    def add_durable_listener(self, listener: Callable[[int], None]) -> None:
        """``listener(durable_offset)`` runs on the flusher thread after every fsync."""
        if self._flusher is None:
            raise RuntimeError("the store is not open")
        self._flusher.durable_listeners.append(listener)

    def when_durable(self, end_offset: int, callback: FlushCallback) -> None:
        """Call ``callback(True)`` on the flusher thread once ``end_offset`` is fsynced (SYNC_FLUSH)."""
        if self._flusher is None:
            callback(False)
            return
        self._flusher.when_durable(end_offset, callback)

    def append_messages(
        self,
        topic: str,
        queue_id: int,
        messages: Sequence[MessageEntry],
        *,
        sys_flag: int = 0,
        born_timestamp: int = 0,
        born_host: tuple[str, int] = ("127.0.0.1", 0),
        reconsume_times: int = 0,
        prepared_transaction_offset: int = 0,
        tag_code_override: int | None = None,
    ) -> PutResult:
        """Append and dispatch without waiting for the disk: the records are readable when this returns."""
        topic_bytes = _topic_bytes(topic)
        refusal = self._refusal(topic_bytes)
        if refusal is not None:
            return refusal
        if not messages:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, error="no message to put")
        max_body = self.config.max_message_size
        encoded: list[tuple[bytes, bytes, int]] = []
        total = 0
        topic_length = len(topic_bytes)
        for body, properties, flag in messages:
            if len(body) > max_body:
                return _body_too_large(len(body), max_body)
            props = properties.encode()
            if len(props) > rec.MAX_PROPERTIES_BYTES:
                return _properties_too_large(len(props))
            encoded.append((body, props, flag))
            total += 91 + len(body) + topic_length + len(props)
        born_address = _born_address(born_host[0])
        try:
            with self._lock:
                if not self.is_open:
                    return PutResult(PutStatus.SERVICE_NOT_AVAILABLE, error="the store is closed")
                common = self._head_common(
                    sys_flag, born_timestamp, born_address, born_host[1], reconsume_times, prepared_transaction_offset
                )
                if len(encoded) == 1:
                    single = self._append_one_locked(
                        topic, topic_bytes, queue_id, encoded[0], messages[0][1], common, tag_code_override
                    )
                    if single is not None:
                        return single
                return self._append_locked(
                    topic, topic_bytes, queue_id, encoded, total, messages, common, tag_code_override
                )
        except (StoreFullError, OSError) as exc:
            return self._write_failed(exc)

    def append_one(
        self,
        topic: str,
        queue_id: int,
        body: bytes,
        properties: str = "",
        *,
        flag: int = 0,
        sys_flag: int = 0,
        born_timestamp: int = 0,
        born_host: tuple[str, int] = ("127.0.0.1", 0),
        reconsume_times: int = 0,
        prepared_transaction_offset: int = 0,
        tag_code_override: int | None = None,
    ) -> PutResult:
        """:meth:`append_messages` for one message, without the per-batch lists: most of a broker's appends
        are single sends, so their fixed cost is what counts."""
        topic_bytes = _topic_bytes(topic)
        refusal = self._refusal(topic_bytes)
        if refusal is not None:
            return refusal
        if len(body) > self.config.max_message_size:
            return _body_too_large(len(body), self.config.max_message_size)
        props = properties.encode()
        if len(props) > rec.MAX_PROPERTIES_BYTES:
            return _properties_too_large(len(props))
        born_address = _born_address(born_host[0])
        message = (body, props, flag)
        try:
            with self._lock:
                if not self.is_open:
                    return PutResult(PutStatus.SERVICE_NOT_AVAILABLE, error="the store is closed")
                common = self._head_common(
                    sys_flag, born_timestamp, born_address, born_host[1], reconsume_times, prepared_transaction_offset
                )
                single = self._append_one_locked(
                    topic, topic_bytes, queue_id, message, properties, common, tag_code_override
                )
                if single is not None:
                    return single
                total = 91 + len(body) + len(topic_bytes) + len(props)
                return self._append_locked(
                    topic,
                    topic_bytes,
                    queue_id,
                    [message],
                    total,
                    [(body, properties, flag)],
                    common,
                    tag_code_override,
                )
        except (StoreFullError, OSError) as exc:
            return self._write_failed(exc)

    def append_singles(self, messages: Sequence[SingleAppend], born_host: tuple[str, int]) -> list[PutResult]:
        """Append single messages, each to its own topic and queue, in the order given, as one write: the
        sends that one read of a connection brings (``handle_sends`` in the broker's send handler).

        Each message gets the result :meth:`append_one` would give it, refusals included, but the lock, the
        clock, the segment, each queue's entries and each queue's arrival are handled once for the whole run
        rather than once per message: :meth:`append_one`'s fixed cost was the largest part of a sync send at
        the broker. A run that would end the current segment is appended one message at a time instead.
        """
        results: list[PutResult | None] = [None] * len(messages)
        refusal = self._refusal(b"-")
        if refusal is not None:
            return [refusal] * len(messages)
        max_body = self.config.max_message_size
        accepted: list[tuple[int, bytes, bytes, int]] = []  # index, topic bytes, properties bytes, record size
        total = 0
        for index, (topic, _, body, properties, _, _, _, _) in enumerate(messages):
            topic_bytes = _topic_bytes(topic)
            if not topic_bytes or len(topic_bytes) > rec.MAX_TOPIC_BYTES:  # the store was checked just above
                results[index] = PutResult(PutStatus.MESSAGE_ILLEGAL, error=_TOPIC_LENGTH_ERROR)
                continue
            if len(body) > max_body:
                results[index] = _body_too_large(len(body), max_body)
                continue
            props = properties.encode()
            if len(props) > rec.MAX_PROPERTIES_BYTES:
                results[index] = _properties_too_large(len(props))
                continue
            size = 91 + len(body) + len(topic_bytes) + len(props)
            accepted.append((index, topic_bytes, props, size))
            total += size
        if accepted:
            try:
                with self._lock:
                    if not self.is_open:
                        closed = PutResult(PutStatus.SERVICE_NOT_AVAILABLE, error="the store is closed")
                        for index, _, _, _ in accepted:
                            results[index] = closed
                        accepted = []
                    elif self._append_singles_locked(messages, accepted, total, born_host, results):
                        accepted = []
            except (StoreFullError, OSError) as exc:
                failed = self._write_failed(exc)
                for index, _, _, _ in accepted:
                    results[index] = failed
                accepted = []
        for index, _, _, _ in accepted:  # the run would end the segment: the general path rolls it
            topic, queue_id, body, properties, flag, sys_flag, born_timestamp, reconsume_times = messages[index]
            results[index] = self.append_one(
                topic,
                queue_id,
                body,
                properties,
                flag=flag,
                sys_flag=sys_flag,
                born_timestamp=born_timestamp,
                born_host=born_host,
                reconsume_times=reconsume_times,
            )
        return results  # type: ignore[return-value]  # every slot was filled above

    def _append_singles_locked(
        self,
        messages: Sequence[SingleAppend],
        accepted: list[tuple[int, bytes, bytes, int]],
        total: int,
        born_host: tuple[str, int],
        results: list[PutResult | None],
    ) -> bool:
        """:meth:`append_singles`'s write, under the lock; False (nothing done) when the records would end the
        segment."""
        start = self.write_offset
        segment = self.commit_log.segments[-1] if self.commit_log.segments else None
        if segment is None or not segment.start <= start or start + total + BLANK_MIN > segment.end:
            return False
        # Each queue's offsets first: its disk blocks are reserved before the commit-log write, as a full disk
        # must fail the run before any record is written.
        runs: dict[tuple[str, int], _QueueRun] = {}
        queue_offsets: list[int] = []
        for index, _, _, _ in accepted:
            topic, queue_id = messages[index][0], messages[index][1]
            run = runs.get((topic, queue_id))
            if run is None:
                queue = self._queue(topic, queue_id)
                run = runs[(topic, queue_id)] = _QueueRun(queue, queue.max_offset)
            queue_offsets.append(run.first + run.count)
            run.count += 1
        for run in runs.values():
            run.queue.reserve(run.first, run.count)
        position = start - segment.start
        mapped = segment.map_with_room(position, total)
        target: bytearray | mmap.mmap = bytearray(total) if mapped is None else mapped
        at = 0 if mapped is None else position
        store_timestamp = self._clock_ms()
        born_address, born_port = _born_address(born_host[0]), born_host[1]
        store_ip, store_port = self._store_ip, self._store_port
        delay_levels = self.config.delay_levels_ms
        pending = self._pending_index if self.config.message_index_enable else None
        pending_mark = len(self._pending_index)
        offset = start
        for (index, topic_bytes, props, size), queue_offset in zip(accepted, queue_offsets, strict=True):
            topic, queue_id, body, properties, flag, sys_flag, born_timestamp, reconsume_times = messages[index]
            common = (  # _head_common's tuple, built here: one call and one clock read less per message
                sys_flag & ~_HOST_V6_FLAGS,
                born_timestamp,
                born_address,
                born_port,
                store_timestamp,
                store_ip,
                store_port,
                reconsume_times,
                0,
            )
            entry, keys, uniq = pack_one_into(
                target,
                at,
                offset,
                topic,
                topic_bytes,
                queue_id,
                queue_offset,
                (body, props, flag),
                properties,
                common,
                None,
                delay_levels,
            )
            runs[(topic, queue_id)].entries.append(entry)
            if (keys or uniq) and pending is not None:
                pending.append((_index_prefix_crc(topic_bytes), keys, uniq, offset, store_timestamp))
            results[index] = PutResult(
                PutStatus.PUT_OK, offset, queue_offset, 1, size, store_timestamp, offset + size, [offset]
            )
            at += size
            offset += size
        try:
            if isinstance(target, bytearray):
                segment.write(position, target)
            else:
                segment.wrote(position + total)
        except BaseException:
            del self._pending_index[pending_mark:]
            raise
        self.write_offset = offset
        for run in runs.values():
            run.queue.put(run.first, b"".join(run.entries))
        if len(self._pending_index) >= INDEX_BATCH:
            self._drain_index_locked()
        for (topic, queue_id), run in runs.items():
            for listener in self.arrival_listeners:
                listener(topic, queue_id, run.queue.max_offset)
        return True

    def append_batch(
        self,
        topic: str,
        queue_id: int,
        raw: bytes | memoryview,
        *,
        sys_flag: int = 0,
        born_timestamp: int = 0,
        born_host: tuple[str, int] = ("127.0.0.1", 0),
        reconsume_times: int = 0,
    ) -> PutResult:
        """Append the messages of a batch body (SEND_BATCH_MESSAGE's encoding,
        :data:`~tidemq.store.packing.BATCH_ENTRY_HEAD` entries) as consecutive records of one queue.

        The records are packed from the body's bytes (:func:`~tidemq.store.packing.pack_raw_batch`): a batch is
        where appends are meant to be cheapest, and decoding each message first cost as much as storing it. A
        malformed body is refused whole with MESSAGE_ILLEGAL.
        """
        topic_bytes = _topic_bytes(topic)
        refusal = self._refusal(topic_bytes)
        if refusal is not None:
            return refusal
        options = (sys_flag, born_timestamp, born_host, reconsume_times)
        if topic in (SCHEDULE_TOPIC, TIMER_TOPIC):  # their tag codes are read from decoded properties
            return self._append_split(topic, queue_id, raw, options)
        data = raw if isinstance(raw, bytes) else bytes(raw)
        born_address = _born_address(born_host[0])
        pending = self._pending_index
        try:
            with self._lock:
                if not self.is_open:
                    return PutResult(PutStatus.SERVICE_NOT_AVAILABLE, error="the store is closed")
                common = self._head_common(sys_flag, born_timestamp, born_address, born_host[1], reconsume_times, 0)
                start = self.write_offset
                segment = self.commit_log.segments[-1] if self.commit_log.segments else None
                room = segment.end - start - BLANK_MIN if segment is not None and segment.start <= start else -1
                queue = self._queue(topic, queue_id)
                queue_offset = queue.max_offset
                pending_mark = len(pending)
                try:
                    packed = pack_raw_batch(
                        data,
                        start,
                        room,
                        topic_bytes,
                        queue_id,
                        queue_offset,
                        common,
                        self.config.max_message_size,
                        pending if self.config.message_index_enable else None,
                        _index_prefix_crc(topic_bytes),
                    )
                except BatchFormatError as exc:
                    del pending[pending_mark:]
                    return PutResult(PutStatus.MESSAGE_ILLEGAL, error=str(exc))
                if packed is not None:
                    buffer, end, positions, entries = packed
                    self._write_and_dispatch(
                        start, buffer, end, queue, queue_offset, len(positions), entries, pending_mark
                    )
                    if len(pending) >= INDEX_BATCH:
                        self._drain_index_locked()
                    for listener in self.arrival_listeners:
                        listener(topic, queue_id, queue.max_offset)
                    return PutResult(
                        PutStatus.PUT_OK,
                        physical_offset=start,
                        queue_offset=queue_offset,
                        message_count=len(positions),
                        wrote_bytes=end - start,
                        store_timestamp=common[4],
                        end_offset=end,
                        physical_offsets=positions,
                    )
                del pending[pending_mark:]
        except (StoreFullError, OSError) as exc:
            return self._write_failed(exc)
        # The records would end the segment: the general path writes its end-of-file blank record first.
        return self._append_split(topic, queue_id, raw, options)

    def _append_split(
        self, topic: str, queue_id: int, raw: bytes | memoryview, options: tuple[int, int, tuple[str, int], int]
    ) -> PutResult:
        try:
            messages = split_batch(raw)
        except BatchFormatError as exc:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, error=str(exc))
        sys_flag, born_timestamp, born_host, reconsume_times = options
        return self.append_messages(
            topic,
            queue_id,
            messages,
            sys_flag=sys_flag,
            born_timestamp=born_timestamp,
            born_host=born_host,
            reconsume_times=reconsume_times,
        )

    def _head_common(
        self,
        sys_flag: int,
        born_timestamp: int,
        born_address: bytes,
        born_port: int,
        reconsume_times: int,
        prepared_transaction_offset: int,
    ) -> HeadCommon:
        """The head fields every record of one append shares; called under the lock, as it reads the clock."""
        return (
            sys_flag & ~_HOST_V6_FLAGS,
            born_timestamp,
            born_address,
            born_port,
            self._clock_ms(),
            self._store_ip,
            self._store_port,
            reconsume_times,
            prepared_transaction_offset,
        )

    def _refusal(self, topic_bytes: bytes) -> PutResult | None:
        """Why no append can be taken now or to this topic, or None."""
        if not self.is_writable or not self.is_open:
            reason = self.not_writable_reason or "the store is closed"
            return PutResult(PutStatus.SERVICE_NOT_AVAILABLE, error=reason)
        if not topic_bytes or len(topic_bytes) > rec.MAX_TOPIC_BYTES:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, error=_TOPIC_LENGTH_ERROR)
        return None

    def _write_failed(self, exc: StoreFullError | OSError) -> PutResult:
        """A full disk or a failed write turns the store read-only: later appends are refused, reads go on."""
        if isinstance(exc, StoreFullError):
            self.set_not_writable(str(exc))
        else:
            log.exception("commit-log write failed; the store turns read-only")
            self.set_not_writable(f"write failed: {exc}")
        return PutResult(PutStatus.SERVICE_NOT_AVAILABLE, error=str(exc))

    def _write_and_dispatch(
        self,
        start: int,
        buffer: bytes | bytearray,
        end: int,
        queue: ConsumeQueue,
        queue_offset: int,
        count: int,
        entries: bytes | bytearray,
        pending_mark: int,
    ) -> None:
        """Write records packed from ``start`` and publish their queue entries; on failure the index keys
        packing added from ``pending_mark`` on are dropped, as their records were never written."""
        try:
            queue.reserve(queue_offset, count)  # a full disk fails here, before the commit-log write
            self._write(start, buffer)
        except BaseException:
            del self._pending_index[pending_mark:]
            raise
        self.write_offset = end
        queue.put(queue_offset, entries)

    def _append_locked(
        self,
        topic: str,
        topic_bytes: bytes,
        queue_id: int,
        encoded: list[tuple[bytes, bytes, int]],
        total: int,
        messages: Sequence[MessageEntry],
        common: HeadCommon,
        tag_code_override: int | None,
    ) -> PutResult:
        start = self.write_offset
        queue = self._queue(topic, queue_id)
        queue_offset = queue.max_offset
        pending_mark = len(self._pending_index)
        buffer, end, positions, entries = pack_batch(
            start,
            self.config.mapped_file_size_commit_log,
            total,
            topic,
            topic_bytes,
            queue_id,
            queue_offset,
            encoded,
            [message[1] for message in messages],
            common,
            tag_code_override,
            self.config.delay_levels_ms,
            self._pending_index if self.config.message_index_enable else None,
            _index_prefix_crc(topic_bytes),
        )
        self._write_and_dispatch(start, buffer, end, queue, queue_offset, len(encoded), entries, pending_mark)
        if len(self._pending_index) >= INDEX_BATCH:
            self._drain_index_locked()
        for listener in self.arrival_listeners:
            listener(topic, queue_id, queue.max_offset)
        return PutResult(
            PutStatus.PUT_OK,
            physical_offset=positions[0],
            queue_offset=queue_offset,
            message_count=len(encoded),
            wrote_bytes=end - start,
            store_timestamp=common[4],
            end_offset=end,
            physical_offsets=positions,
        )

    def _append_one_locked(
        self,
        topic: str,
        topic_bytes: bytes,
        queue_id: int,
        message: tuple[bytes, bytes, int],
        properties: str,
        common: HeadCommon,
        tag_code_override: int | None,
    ) -> PutResult | None:
        """:meth:`_append_locked` for one message that fits the current segment (None when it would end the
        segment: the general path writes the blank end-of-file record)."""
        start = self.write_offset
        size = 91 + len(message[0]) + len(topic_bytes) + len(message[1])
        segment = self.commit_log.segments[-1] if self.commit_log.segments else None
        if segment is None or not segment.start <= start or start + size + BLANK_MIN > segment.end:
            return None
        queue = self._queue(topic, queue_id)
        queue_offset = queue.max_offset
        queue.reserve(queue_offset, 1)  # a full disk fails here, before the commit-log write
        position = start - segment.start
        mapped = segment.map_with_room(position, size)
        packing = (
            start,
            topic,
            topic_bytes,
            queue_id,
            queue_offset,
            message,
            properties,
            common,
            tag_code_override,
            self.config.delay_levels_ms,
        )
        if mapped is not None:
            entry, keys, uniq = pack_one_into(mapped, position, *packing)
            segment.wrote(position + size)
        else:
            buffer = bytearray(size)
            entry, keys, uniq = pack_one_into(buffer, 0, *packing)
            segment.write(position, buffer)
        end = start + size
        self.write_offset = end
        queue.put(queue_offset, entry)
        if (keys or uniq) and self.config.message_index_enable:
            pending = self._pending_index
            pending.append((_index_prefix_crc(topic_bytes), keys, uniq, start, common[4]))
            if len(pending) >= INDEX_BATCH:
                self._drain_index_locked()
        for listener in self.arrival_listeners:
            listener(topic, queue_id, queue_offset + 1)
        return PutResult(
            PutStatus.PUT_OK,
            physical_offset=start,
            queue_offset=queue_offset,
            message_count=1,
            wrote_bytes=size,
            store_timestamp=common[4],
            end_offset=end,
            physical_offsets=[start],
        )

    def drain_index(self) -> int:
        """Put the pending index keys into the index (before lookups and index-state reads); return the
        commit-log offset below which every record's keys are in it."""
        with self._lock:
            self._drain_index_locked()
            return self.write_offset

    def _drain_index_locked(self) -> None:
        pending, self._pending_index = self._pending_index, []
        if not pending:
            return
        index = self.index
        if isinstance(index, IndexClient):
            try:
                index.put_pending(pending)  # hashed in the worker
            except IndexWorkerError as exc:
                self._replace_index_worker(exc)  # re-indexes these too: their records are written
        else:
            index.put_hashed(hash_index_keys(pending))

    def query_index(self, key: str, max_count: int, begin_ms: int, end_ms: int) -> list[int]:
        """:meth:`IndexService.query` after the pending keys are in the index (a lost worker is replaced)."""
        self.drain_index()
        try:
            return self.index.query(key, max_count, begin_ms, end_ms)
        except IndexWorkerError as exc:
            with self._lock:
                self._replace_index_worker(exc)
            return self.index.query(key, max_count, begin_ms, end_ms)

    def _flush_index(self, *, is_locked: bool = False) -> None:
        """Sync the index; a lost index worker is replaced (under the store's lock) and the sync retried."""
        try:
            self.index.flush()
        except IndexWorkerError as exc:
            if is_locked:
                self._replace_index_worker(exc)
            else:
                with self._lock:
                    self._replace_index_worker(exc)
            self.index.flush()

    def _replace_index_worker(self, exc: IndexWorkerError) -> None:
        """Start a new index worker and give it again the keys of every record the lost one may not have
        synced: those from the last index sync on. Call under the store's lock."""
        index = self.index
        assert isinstance(index, IndexClient)
        log.error("index worker lost (%s): starting another and re-indexing from %d", exc, self._index_synced_offset)
        from tidemq.store.recovery import reindex  # recovery uses this class's parts; import late

        self._pending_index = []  # their records are below write_offset: reindex covers them
        index.restart()
        count = reindex(self, self._index_synced_offset, self.write_offset)
        log.warning("index worker replaced; %d records re-indexed", count)

    def _write(self, start: int, buffer: bytes | bytearray) -> None:
        view = memoryview(buffer)
        position = start
        while view:
            segment = self.commit_log.last_or_create(position)
            chunk = view[: segment.end - position]
            segment.write(position - segment.start, chunk)
            position += len(chunk)
            view = view[len(chunk) :]

    def set_not_writable(self, reason: str) -> None:
        if self.is_writable:
            log.error("store turns read-only: %s", reason)
        self.is_writable = False
        self.not_writable_reason = reason

    def set_writable(self) -> None:
        """Accept appends again (the cleaner calls this once disk usage is back under the limit)."""
        if not self.is_writable:
            log.warning("store writable again")
        self.is_writable = True
        self.not_writable_reason = ""

    # -- flushing --------------------------------------------------------------------------------------

    def _sync_commit_log(self) -> int:
        target = self.write_offset
        durable = self._flusher.durable_offset if self._flusher is not None else 0
        for segment in list(self.commit_log.segments):
            if segment.end > durable and segment.start < target and segment.fd >= 0:
                segment.sync()
        return target

    def _checkpoint(self) -> None:
        safe = self._sync_commit_log()
        for queue in list(self._queues.values()):
            queue.sync()
        now = time.monotonic()
        if now >= self._next_index_sync:
            indexed = self.drain_index()
            self._flush_index()
            self._index_synced_offset = indexed
            self._next_index_sync = now + INDEX_SYNC_INTERVAL_S
        safe = min(safe, self._index_synced_offset)
        Checkpoint(safe, self.write_offset, False, self._clock_ms()).save(self.config.store_path_root_dir)

    @property
    def durable_offset(self) -> int:
        return self._flusher.durable_offset if self._flusher is not None else 0

    # -- reads -----------------------------------------------------------------------------------------

    @property
    def min_physical_offset(self) -> int:
        return self.commit_log.min_offset

    def topics(self) -> list[str]:
        return sorted(self._queues_by_topic)

    def queue_ids(self, topic: str) -> list[int]:
        return sorted(self._queues_by_topic.get(topic, {}))

    def consume_queue(self, topic: str, queue_id: int) -> ConsumeQueue | None:
        return self._queues.get((topic, queue_id))

    def get_max_offset(self, topic: str, queue_id: int) -> int:
        queue = self._queues.get((topic, queue_id))
        return queue.max_offset if queue is not None else 0

    def get_min_offset(self, topic: str, queue_id: int) -> int:
        queue = self._queues.get((topic, queue_id))
        return queue.min_offset if queue is not None else 0

    def lock(self) -> threading.Lock:
        return self._lock

    def retire_segment(self, segment: SegmentFile) -> None:
        """Keep a deleted segment's descriptor open a while: a reader mid-pread must not hit a reused fd."""
        self._graveyard.append(segment)

    def close_retired(self) -> None:
        """Close descriptors retired at least one cleaner pass ago (readers have long moved on)."""
        for segment in self._graveyard_previous:
            segment.close()
        self._graveyard_previous, self._graveyard = self._graveyard, []

    def all_queues(self) -> list[ConsumeQueue]:
        return list(self._queues.values())

    def drop_queue(self, topic: str, queue_id: int) -> None:
        queue = self._queues.pop((topic, queue_id), None)
        self._queues_by_topic.get(topic, {}).pop(queue_id, None)
        if queue is not None:
            queue.close()

    def queue_for_recovery(self, topic: str, queue_id: int) -> ConsumeQueue:
        return self._queue(topic, queue_id)

    def store_root(self) -> Path:
        return self.config.store_path_root_dir

    @property
    def is_closing(self) -> threading.Event:
        return self._closing


# Bounded memos: a broker stores into few topics, from few client addresses, millions of times.


class _QueueRun:
    """The messages of one :meth:`MessageStore.append_singles` run that go to one queue."""

    __slots__ = ("count", "entries", "first", "queue")

    def __init__(self, queue: ConsumeQueue, first: int) -> None:
        self.queue = queue
        self.first = first
        """The queue offset of the run's first message in this queue."""
        self.count = 0
        self.entries: list[bytes] = []


@functools.lru_cache(maxsize=65536)
def _topic_bytes(topic: str) -> bytes:
    """A topic's UTF-8 bytes."""
    return topic.encode()


@functools.lru_cache(maxsize=65536)
def _born_address(ip: str) -> bytes:
    """The 4 address bytes of a born host."""
    return rec.ipv4_bytes(ip)


_index_prefix_crc = functools.lru_cache(maxsize=65536)(index_prefix_crc)


def _body_too_large(length: int, max_body: int) -> PutResult:
    return PutResult(PutStatus.MESSAGE_ILLEGAL, error=f"message body of {length} bytes is over {max_body}")


def _properties_too_large(length: int) -> PutResult:
    return PutResult(
        PutStatus.PROPERTIES_SIZE_EXCEEDED, error=f"properties of {length} bytes are over {rec.MAX_PROPERTIES_BYTES}"
    )


def _with_status(result: PutResult, status: PutStatus) -> PutResult:
    return PutResult(
        status,
        result.physical_offset,
        result.queue_offset,
        result.message_count,
        result.wrote_bytes,
        result.store_timestamp,
        result.end_offset,
        result.physical_offsets,
        result.error,
    )
