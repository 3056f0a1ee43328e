"""Transactional messages: half messages, commit/rollback, and the check-back of unresolved halves.

RocketMQ's design (TransactionalMessageServiceImpl), kept on disk so it survives restarts:

* A prepared send is stored in ``RMQ_SYS_TRANS_HALF_TOPIC`` queue 0 with REAL_TOPIC / REAL_QID set: it is
  invisible to consumers of the real topic.
* END_TRANSACTION commit copies the half message to its real topic (PREPARED_TRANSACTION_OFFSET = the half's
  commit-log offset; REAL_TOPIC / REAL_QID dropped, the other properties kept, TRAN_MSG included, as Apache
  does); commit and rollback both append an "op" record to ``RMQ_SYS_TRANS_OP_HALF_TOPIC`` whose body is the
  half's queue offset. A half with an op record is resolved.
* The check service walks the half queue from its progress offset. An unresolved half older than
  ``transactionTimeOut`` gets CHECK_TRANSACTION_STATE sent to a producer of its group, and is re-appended with
  TRANSACTION_CHECK_TIMES + 1 so the walk can move on; past ``transactionCheckMax`` checks it is discarded
  into ``TRANS_CHECK_MAX_TIME_TOPIC``. The progress offset persists in ``config/transactionOffset.json``.

State owned by the event loop: the set of resolved half offsets (the last RESOLVED_WINDOW below the progress
offset and all above it), rebuilt from the op queue at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tidemq.broker.persistence import load_json, save_json
from tidemq.store import record as rec
from tidemq.store.consume_queue import ENTRY
from tidemq.store.message_store import MessageStore
from tidemq.store.results import PutResult, PutStatus

log = logging.getLogger(__name__)

HALF_TOPIC: Final = "RMQ_SYS_TRANS_HALF_TOPIC"
OP_HALF_TOPIC: Final = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
CHECK_MAX_TOPIC: Final = "TRANS_CHECK_MAX_TIME_TOPIC"
PROPERTY_TRANSACTION_PREPARED: Final = "TRAN_MSG"
PROPERTY_PRODUCER_GROUP: Final = "PGROUP"
PROPERTY_CHECK_TIMES: Final = "TRANSACTION_CHECK_TIMES"
PROPERTY_PREPARED_QUEUE_OFFSET: Final = "TRAN_PREPARED_QUEUE_OFFSET"
PROPERTY_REAL_TOPIC: Final = "REAL_TOPIC"
PROPERTY_REAL_QUEUE_ID: Final = "REAL_QID"
PROPERTY_UNIQ_KEY: Final = "UNIQ_KEY"
OP_TAG: Final = "d"
COMMIT: Final = rec.SYSFLAG_TRANSACTION_COMMIT
ROLLBACK: Final = rec.SYSFLAG_TRANSACTION_ROLLBACK
SCAN_BATCH: Final = 256
RESOLVED_WINDOW: Final = 100_000
"""Resolved half offsets remembered below the progress offset, so a late END_TRANSACTION for a half already
resolved (or discarded) is refused rather than committed twice."""


@dataclass(frozen=True, slots=True)
class TransactionSettings:
    check_interval_s: float = 60.0
    timeout_ms: int = 6000
    check_max: int = 15


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """What the check-back needs: sent to one producer channel of ``group``."""

    group: str
    half_queue_offset: int
    half_physical_offset: int
    msg_id: str
    transaction_id: str
    offset_msg_id: str
    topic: str
    record: bytes


Checker = Callable[[CheckRequest], bool]
"""Sends the check to a live producer of the group; False when none is connected."""


def half_properties(properties: str, topic: str, queue_id: int) -> str:
    """Properties of the half record: the real destination kept aside (send path)."""
    pairs = rec.parse_properties(properties)
    pairs[PROPERTY_REAL_TOPIC] = topic
    pairs[PROPERTY_REAL_QUEUE_ID] = str(queue_id)
    return rec.encode_properties(pairs)


class TransactionService:
    def __init__(self, store: MessageStore, config_dir: Path, settings: TransactionSettings, checker: Checker) -> None:
        self._store = store
        self._path = config_dir / "transactionOffset.json"
        self.settings = settings
        self._checker = checker
        self.progress = 0
        self._op_progress = 0
        self._resolved: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self.checks_sent = 0
        self.discarded = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    def load(self) -> None:
        data = load_json(self._path) or {}
        self.progress = int(data.get("halfOffset", 0))
        self._op_progress = self._store.get_min_offset(OP_HALF_TOPIC, 0)
        self._read_ops()

    def persist(self) -> None:
        save_json(self._path, {"halfOffset": self.progress})

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.persist()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval_s)
            try:
                self.check(int(time.time() * 1000))
            except Exception:  # a failed pass is retried at the next interval; nothing is lost
                log.exception("transaction check pass failed")

    # -- END_TRANSACTION -------------------------------------------------------------------------------

    def end(self, half_physical_offset: int, half_queue_offset: int, commit_or_rollback: int) -> PutResult | str:
        """Commit or roll back a half message; returns the commit's put result, or an error text."""
        data = self._store.read_record(half_physical_offset)
        if data is None:
            return f"find prepared transaction message failed: no record at {half_physical_offset}"
        half = rec.decode_record(data)
        if half.topic != HALF_TOPIC or half.queue_offset != half_queue_offset:
            return f"the record at {half_physical_offset} is not the half message {half_queue_offset}"
        if half_queue_offset in self._resolved:
            return "the transaction was already committed or rolled back"
        result: PutResult | None = None
        if commit_or_rollback == COMMIT:
            properties = dict(half.properties)
            real_topic = properties.pop(PROPERTY_REAL_TOPIC, "")
            real_queue = int(properties.pop(PROPERTY_REAL_QUEUE_ID, "0") or 0)
            # TRAN_MSG, PGROUP and TRANSACTION_CHECK_TIMES stay, as in what Apache's broker commits (consumers see
            # them; the Java client clears TRAN_MSG itself before it re-sends a consumed message).
            if not real_topic:
                return f"the half message at {half_physical_offset} has no REAL_TOPIC"
            result = self._store.append_messages(
                real_topic,
                real_queue,
                [(half.body, rec.encode_properties(properties), half.flag)],
                sys_flag=(half.sys_flag & ~rec.SYSFLAG_TRANSACTION_MASK) | COMMIT,
                born_timestamp=half.born_timestamp,
                born_host=half.born_host,
                reconsume_times=half.reconsume_times,
                prepared_transaction_offset=half_physical_offset,
            )
            if not result.is_ok:
                return result.error or result.status.value
        self._write_op(half_queue_offset)
        return result if result is not None else PutResult(PutStatus.PUT_OK)

    def _write_op(self, half_queue_offset: int) -> None:
        op = self._store.append_messages(
            OP_HALF_TOPIC, 0, [(str(half_queue_offset).encode(), f"TAGS\x01{OP_TAG}\x02", 0)]
        )
        if not op.is_ok:
            raise RuntimeError(f"cannot record the end of transaction {half_queue_offset}: {op.error}")
        self._resolved.add(half_queue_offset)

    def _read_ops(self) -> None:
        """Learn resolved halves from op records appended since the last read."""
        store = self._store
        while True:
            result = store.get_messages(OP_HALF_TOPIC, 0, self._op_progress, 1024)
            if not result.message_count:
                break
            for record in rec.iter_records(result.body()):
                try:
                    self._resolved.add(int(record.body))
                except ValueError:
                    log.warning("op record at %d has a bad body", record.physical_offset)
            self._op_progress = result.next_begin_offset

    # -- check-back ------------------------------------------------------------------------------------

    def check(self, now_ms: int) -> None:
        """One pass over the half queue: skip resolved halves, check or discard timed-out ones."""
        store = self._store
        self._read_ops()
        queue = store.consume_queue(HALF_TOPIC, 0)
        if queue is None:
            return
        offset = max(self.progress, queue.min_offset)
        end = queue.max_offset  # halves re-appended during this pass wait for the next one
        timeout_ms = self.settings.timeout_ms
        while offset < end:
            raw = queue.read_entries(offset, min(SCAN_BATCH, end - offset))
            if not raw:
                break
            for physical, _size, _tag in ENTRY.iter_unpack(raw):
                if offset not in self._resolved:
                    data = store.read_record(physical) if physical >= store.min_physical_offset else None
                    if data is not None:
                        half = rec.decode_record(data)
                        if now_ms - half.store_timestamp < timeout_ms:
                            self._advance(offset)
                            return  # halves are in store-time order: the rest are younger
                        self._check_one(half, offset)
                offset += 1
                self._advance(offset)
        if len(self._resolved) > 2 * RESOLVED_WINDOW:
            floor = self.progress - RESOLVED_WINDOW
            self._resolved = {o for o in self._resolved if o >= floor}

    def _advance(self, offset: int) -> None:
        if offset > self.progress:
            self.progress = offset

    def _check_body(self, physical_offset: int) -> bytes:
        """The half record as the producer is shown it: in its real topic and queue (Java's sendCheckMessage sets
        them from REAL_TOPIC / REAL_QID before encoding), so ``checkLocalTransaction`` sees the topic it sent to."""
        data = self._store.read_record(physical_offset)
        if data is None:
            return b""
        half = rec.decode_record(data)
        try:
            real_queue = int(half.properties.get(PROPERTY_REAL_QUEUE_ID, "") or half.queue_id)
        except ValueError:
            real_queue = half.queue_id
        return rec.encode_record(
            topic=half.properties.get(PROPERTY_REAL_TOPIC) or half.topic,
            queue_id=real_queue,
            body=half.body,
            properties=rec.encode_properties(half.properties),
            queue_offset=half.queue_offset,
            physical_offset=half.physical_offset,
            flag=half.flag,
            sys_flag=half.sys_flag,
            born_timestamp=half.born_timestamp,
            born_host=half.born_host,
            store_timestamp=half.store_timestamp,
            store_host=half.store_host,
            reconsume_times=half.reconsume_times,
            prepared_transaction_offset=half.prepared_transaction_offset,
        )

    def _check_one(self, half: rec.StoredRecord, offset: int) -> None:
        properties = dict(half.properties)
        times = int(properties.get(PROPERTY_CHECK_TIMES, "0") or 0)
        if times >= self.settings.check_max:
            self._store.append_messages(
                CHECK_MAX_TOPIC,
                0,
                [(half.body, rec.encode_properties(properties), half.flag)],
                sys_flag=half.sys_flag,
                born_timestamp=half.born_timestamp,
                born_host=half.born_host,
            )
            self._write_op(offset)
            self.discarded += 1
            log.warning("transaction half %d discarded after %d checks", offset, times)
            return
        # Re-append the half (check times + 1) so it is checked again later, then resolve this copy.
        properties[PROPERTY_CHECK_TIMES] = str(times + 1)
        properties.setdefault(PROPERTY_PREPARED_QUEUE_OFFSET, str(offset))
        again = self._store.append_messages(
            HALF_TOPIC,
            0,
            [(half.body, rec.encode_properties(properties), half.flag)],
            sys_flag=half.sys_flag,
            born_timestamp=half.born_timestamp,
            born_host=half.born_host,
        )
        if not again.is_ok:
            raise RuntimeError(f"cannot put back half message {offset}: {again.error}")
        self._write_op(offset)
        copy = self._check_body(again.physical_offset)
        group = properties.get(PROPERTY_PRODUCER_GROUP, "")
        request = CheckRequest(
            group=group,
            half_queue_offset=again.queue_offset,
            half_physical_offset=again.physical_offset,
            msg_id=properties.get(PROPERTY_UNIQ_KEY, ""),
            transaction_id=properties.get("__transactionId__") or properties.get(PROPERTY_UNIQ_KEY, ""),
            offset_msg_id=rec.offset_msg_id(half.store_host[0], half.store_host[1], again.physical_offset),
            topic=properties.get(PROPERTY_REAL_TOPIC, ""),
            record=copy,
        )
        if self._checker(request):
            self.checks_sent += 1
        else:
            log.info("no producer of group %s online to check transaction half %d", group, again.queue_offset)
