"""Recovery at open: find the commit log's true end, cut a torn tail, bring consume queues and index in line.

After a clean stop (no ``abort`` file, clean checkpoint) the commit log ends where the checkpoint says and
nothing is scanned. After a crash, records are verified (magic, size, CRC, physical offset) from the
checkpoint's ``safe_offset`` — below it everything, consume queues and index included, was fsynced — and
re-dispatched into the consume queues and index. The first invalid record ends the log: a torn tail is zeroed;
damage followed by further valid data is refused (``StoreCorruptionError``) rather than silently dropping
acknowledged records. Consume-queue entries past the end are cut; a consume queue found behind the records
being re-dispatched is rebuilt from the whole commit log. Without a checkpoint the whole log is re-dispatched.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tidemq.errors import StoreCorruptionError
from tidemq.store import record as rec
from tidemq.store.checkpoint import ABORT_FILE, Checkpoint
from tidemq.store.consume_queue import ENTRY, ENTRY_SIZE
from tidemq.store.packing import collect_index_keys
from tidemq.store.segment_file import SegmentQueue
from tidemq.store.tag_codes import tag_code_of

if TYPE_CHECKING:
    from tidemq.store.message_store import MessageStore

log = logging.getLogger(__name__)

READ_CHUNK: Final = 8 << 20


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """What dispatch needs of one verified record."""

    physical_offset: int
    size: int
    queue_id: int
    queue_offset: int
    store_timestamp: int
    topic: str
    properties: str


@dataclass(slots=True)
class ScanOutcome:
    end: int = 0
    problem: str = ""
    """Empty when the log ended cleanly (zeros); otherwise why the record at ``end`` was refused."""


def scan_records(
    log_files: SegmentQueue, start: int, outcome: ScanOutcome, *, check_crc: bool = True
) -> Iterator[ScannedRecord]:
    """Yield verified records from ``start``; ``outcome.end`` is where valid data stops."""
    outcome.end = start
    segments = [s for s in log_files.segments if s.end > start]
    for number, segment in enumerate(segments):
        position = max(start, segment.start)
        buffer = b""
        buffer_start = position
        while position < segment.end:
            if segment.end - position < 8:
                break
            if position + rec.MIN_RECORD_SIZE > buffer_start + len(buffer):
                buffer_start = position
                buffer = segment.read(position - segment.start, min(READ_CHUNK, segment.end - position))
            at = position - buffer_start
            size, magic = rec.TOTAL_AND_MAGIC.unpack_from(buffer, at)
            if magic == rec.BLANK_MAGIC:
                if position + size != segment.end:
                    outcome.problem = f"blank record of size {size} does not end its segment"
                    return
                position = segment.end
                break
            if size == 0 and magic == 0:
                outcome.end = position
                outcome.problem = ""
                if number + 1 < len(segments) and _has_data(segments[number + 1]):
                    outcome.problem = "zeros inside the log, with records in a later segment"
                return
            if magic not in (rec.MAGIC_V1, rec.MAGIC_V2) or size < rec.MIN_RECORD_SIZE:
                outcome.problem = f"bad magic {magic & 0xFFFFFFFF:#010x} or size {size}"
                return
            if position + size + 8 > segment.end + 8 or position + size > segment.end:
                outcome.problem = f"record of size {size} runs past its segment"
                return
            if at + size > len(buffer):
                buffer_start = position
                buffer = segment.read(position - segment.start, max(size, min(READ_CHUNK, segment.end - position)))
                at = 0
                if len(buffer) < size:
                    outcome.problem = "record cut short"
                    return
            scanned = _parse(buffer, at, size, position, check_crc)
            if isinstance(scanned, str):
                outcome.problem = scanned
                return
            yield scanned
            position += size
            outcome.end = position
        outcome.end = max(outcome.end, position)
    outcome.problem = ""


def _parse(buffer: bytes, at: int, size: int, position: int, check_crc: bool) -> ScannedRecord | str:
    fields = rec.HEAD.unpack_from(buffer, at)
    magic, crc, queue_id, queue_offset, physical, body_length = (
        fields[1],
        fields[2],
        fields[3],
        fields[5],
        fields[6],
        fields[16],
    )
    if physical != position:
        return f"record says it is at {physical}"
    if body_length < 0 or body_length > size - rec.MIN_RECORD_SIZE:
        return f"bad body length {body_length}"
    body_start = at + rec.HEAD_SIZE
    p = body_start + body_length
    if magic == rec.MAGIC_V1:
        topic_length = buffer[p]
        p += 1
    else:
        topic_length = int.from_bytes(buffer[p : p + 2], "big")
        p += 2
    topic_bytes = buffer[p : p + topic_length]
    p += topic_length
    properties_length = int.from_bytes(buffer[p : p + 2], "big", signed=True)
    p += 2
    if properties_length < 0 or p + properties_length != at + size:
        return "record lengths do not add up"
    if check_crc and zlib.crc32(buffer[body_start : body_start + body_length]) & 0x7FFFFFFF != crc:
        return "body CRC mismatch"
    try:
        topic = topic_bytes.decode()
        properties = buffer[p : p + properties_length].decode()
    except UnicodeDecodeError:
        return "topic or properties are not UTF-8"
    return ScannedRecord(position, size, queue_id, queue_offset, fields[11], topic, properties)


def _has_data(segment: object) -> bool:
    from tidemq.store.segment_file import SegmentFile

    assert isinstance(segment, SegmentFile)
    head = segment.read(0, 8)
    return len(head) == 8 and head != bytes(8)


def recover(store: MessageStore) -> dict[str, int | bool]:
    """Bring the store to a consistent state; return what was done (for logs and tests)."""
    root = store.store_root()
    checkpoint = Checkpoint.load(root)
    log_files = store.commit_log
    is_new = checkpoint is None and not log_files.segments and not (root / ABORT_FILE).exists()
    crashed = not is_new and ((root / ABORT_FILE).exists() or checkpoint is None or not checkpoint.is_clean)
    first = log_files.min_offset
    last_end = log_files.segments[-1].end if log_files.segments else 0
    if not crashed and checkpoint is not None and first <= checkpoint.commit_log_end <= last_end:
        start, dispatch = checkpoint.commit_log_end, False
    elif checkpoint is not None and first <= checkpoint.safe_offset <= last_end:
        start, dispatch = checkpoint.safe_offset, True
    else:
        start, dispatch = first, True
    outcome = ScanOutcome()
    redispatched = 0
    behind: set[tuple[str, int]] = set()
    index_limit = store.index.max_physical_offset if dispatch else 0
    pending_index: list[tuple[int, int, int]] = []
    for scanned in scan_records(log_files, start, outcome):
        if not dispatch:
            break  # after a clean stop a record past the checkpoint means the checkpoint lies: rescan
        if _dispatch(store, scanned, behind):
            redispatched += 1
        if scanned.physical_offset >= index_limit:
            _index_keys(store, scanned, pending_index)
            if len(pending_index) > 10_000:
                store.index.put_hashed(pending_index)
                pending_index.clear()
    if not dispatch and outcome.end != start:
        log.warning("records found past the clean checkpoint at %d; recovering as after a crash", start)
        return _recover_from(store, first)
    if pending_index:
        store.index.put_hashed(pending_index)
    end = outcome.end
    torn = bool(outcome.problem)
    if torn:
        if _valid_data_after(log_files, end):
            raise StoreCorruptionError(f"commit log damaged ({outcome.problem}) with valid records after it", end)
        log.warning("commit log: truncating a torn tail at %d (%s)", end, outcome.problem)
    log_files.truncate_from(end)
    store.write_offset = end
    for topic, queue_id in sorted(behind):
        _rebuild_queue(store, topic, queue_id, end)
    cut = _cut_queues_past(store, end)
    store.index.truncate_above(end)
    for queue in store.all_queues():
        queue.correct_min_offset(log_files.min_offset)
    report: dict[str, int | bool] = {
        "crashed": crashed,
        "scan_start": start,
        "end": end,
        "torn_tail": torn,
        "redispatched": redispatched,
        "queues_rebuilt": len(behind),
        "queue_entries_cut": cut,
    }
    if crashed:
        log.info("store recovered after an unclean stop: %s", report)
    return report


def _recover_from(store: MessageStore, first: int) -> dict[str, int | bool]:
    (store.store_root() / ABORT_FILE).touch()
    Checkpoint(first, 0, False, 0).save(store.store_root())
    return recover(store)


def _dispatch(store: MessageStore, scanned: ScannedRecord, behind: set[tuple[str, int]]) -> bool:
    key = (scanned.topic, scanned.queue_id)
    if key in behind:
        return False
    queue = store.queue_for_recovery(scanned.topic, scanned.queue_id)
    if scanned.queue_offset > queue.max_offset:
        # Entries missing before this one: the queue lost more than the unflushed tail; rebuild it whole.
        behind.add(key)
        return False
    tag_code = tag_code_of(scanned.topic, scanned.properties, scanned.store_timestamp, store.config.delay_levels_ms)
    queue.put(scanned.queue_offset, ENTRY.pack(scanned.physical_offset, scanned.size, tag_code))
    return True


def reindex(store: MessageStore, start: int, end: int) -> int:
    """Put the index keys of the records in [start, end) into the index again (after an index worker was lost
    with keys it had not synced); return how many records were scanned. Call under the store's lock."""
    pending: list[tuple[int, int, int]] = []
    scanned_count = 0
    for scanned in scan_records(store.commit_log, start, ScanOutcome()):
        if scanned.physical_offset >= end:
            break
        scanned_count += 1
        _index_keys(store, scanned, pending)
        if len(pending) > 10_000:
            store.index.put_hashed(pending)
            pending = []
    if pending:
        store.index.put_hashed(pending)
    return scanned_count


def _index_keys(store: MessageStore, scanned: ScannedRecord, out: list[tuple[int, int, int]]) -> None:
    if not store.config.message_index_enable:
        return
    collect_index_keys(out, scanned.topic, scanned.properties, scanned.physical_offset, scanned.store_timestamp)


def _valid_data_after(log_files: SegmentQueue, end: int) -> bool:
    """Is there a valid record in a segment after the one holding ``end``?"""
    for segment in log_files.segments:
        if segment.start > end and _has_data(segment):
            outcome = ScanOutcome()
            for _ in scan_records(log_files, segment.start, outcome):
                return True
    return False


def _rebuild_queue(store: MessageStore, topic: str, queue_id: int, end: int) -> None:
    log.warning("consume queue %s/%d is behind the commit log; rebuilding it", topic, queue_id)
    queue = store.queue_for_recovery(topic, queue_id)
    queue.truncate_to(queue.min_offset)
    outcome = ScanOutcome()
    for scanned in scan_records(store.commit_log, store.commit_log.min_offset, outcome, check_crc=False):
        if scanned.physical_offset >= end:
            break
        if scanned.topic == topic and scanned.queue_id == queue_id:
            tag_code = tag_code_of(topic, scanned.properties, scanned.store_timestamp, store.config.delay_levels_ms)
            queue.put(scanned.queue_offset, ENTRY.pack(scanned.physical_offset, scanned.size, tag_code))


def _cut_queues_past(store: MessageStore, end: int) -> int:
    """Cut consume-queue entries that point at or past the commit log's end; return how many."""
    cut = 0
    for queue in store.all_queues():
        last = queue.last_entry()
        if last is not None and last[0] + last[1] > end:
            keep = queue.first_offset_at_or_above(end)
            cut += queue.max_offset - keep
            queue.truncate_to(keep)
    return cut


__all__ = ["ENTRY_SIZE", "ScanOutcome", "ScannedRecord", "recover", "scan_records"]
