"""The read side of :class:`~tidemq.store.message_store.MessageStore`: pulls, single records, offsets by time
and lookups by key.

Reads take no lock: they ``pread`` below the published queue ends, so a pull never waits for an append. A
mixin rather than a separate object, so that the store keeps one API and these methods one set of state.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Final

from tidemq.store import record as rec
from tidemq.store.consume_queue import ENTRY, ENTRY_SIZE, ConsumeQueue
from tidemq.store.results import GetResult, GetStatus
from tidemq.store.segment_file import SegmentQueue

MAX_SCAN_ENTRIES: Final = 16_000
"""Consume-queue entries a filtered pull may scan before answering (RocketMQ maxFilterMessageCount)."""
DEFAULT_MAX_PULL_BYTES: Final = 256 * 1024 * 1024

RecordFilter = Callable[[memoryview], bool]
"""An exact check on a raw record (real tag string, SQL92), run after the consume queue's tag hash."""


class StoreReads:
    """Reads of a :class:`~tidemq.store.message_store.MessageStore`, which provides the state below."""

    commit_log: SegmentQueue
    write_offset: int
    _queues: dict[tuple[str, int], ConsumeQueue]
    query_index: Callable[[str, int, int, int], list[int]]

    def get_messages(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_count: int,
        *,
        max_bytes: int = DEFAULT_MAX_PULL_BYTES,
        tag_codes: frozenset[int] | None = None,
        record_filter: RecordFilter | None = None,
    ) -> GetResult:
        """Read up to ``max_count`` records of a queue from ``offset`` (RocketMQ getMessage).

        Args:
            tag_codes: accept only entries whose tag hash is in the set (None: every tag).
            record_filter: an exact check on the raw record (real tag string, SQL92), run after the hash.
        """
        queue = self._queues.get((topic, queue_id))
        if queue is None:
            return GetResult(GetStatus.NO_MATCHED_LOGIC_QUEUE, 0, 0, 0)
        min_offset, max_offset = queue.min_offset, queue.max_offset
        if max_offset == 0:
            return GetResult(GetStatus.NO_MESSAGE_IN_QUEUE, 0, min_offset, max_offset)
        if offset < min_offset:
            return GetResult(GetStatus.OFFSET_TOO_SMALL, min_offset, min_offset, max_offset)
        if offset == max_offset:
            return GetResult(GetStatus.OFFSET_OVERFLOW_ONE, offset, min_offset, max_offset)
        if offset > max_offset:
            # RocketMQ 5 (and Apache 5.5 live) corrects to the max offset; 4.x answered the min when it was 0.
            return GetResult(GetStatus.OFFSET_OVERFLOW_BADLY, max_offset, min_offset, max_offset)
        is_filtered = tag_codes is not None or record_filter is not None
        scan = MAX_SCAN_ENTRIES if is_filtered else max_count
        raw = queue.read_entries(offset, max(scan, max_count))
        wanted: list[tuple[int, int]] = []
        scanned = 0
        byte_total = 0
        commit_log_min = self.commit_log.min_offset
        for physical, size, tag_code in ENTRY.iter_unpack(raw):
            if len(wanted) >= max_count or (wanted and byte_total + size > max_bytes):
                break
            scanned += 1
            if physical < commit_log_min or (tag_codes is not None and tag_code not in tag_codes):
                continue
            wanted.append((physical, size))
            byte_total += size
        result = GetResult(GetStatus.NO_MATCHED_MESSAGE, offset + scanned, min_offset, max_offset)
        if not wanted:
            if scanned and all(p < commit_log_min for p, _, _ in ENTRY.iter_unpack(raw[: scanned * ENTRY_SIZE])):
                result.status = GetStatus.OFFSET_FOUND_NULL
            return result
        spans: list[list[object]] = []  # [buffer, start, end] of runs of adjacent accepted records
        for data, at, size in self._read_records(wanted):
            if record_filter is not None and not record_filter(data[at : at + size]):
                continue
            result.message_count += 1
            result.total_bytes += size
            if spans and spans[-1][0] is data and spans[-1][2] == at:
                spans[-1][2] = at + size
            else:
                spans.append([data, at, at + size])
        if result.message_count:
            result.status = GetStatus.FOUND
            result.chunks = [buf[start:end] for buf, start, end in spans]  # type: ignore[index]
        return result

    def _read_records(self, wanted: list[tuple[int, int]]) -> Iterable[tuple[memoryview, int, int]]:
        """Read records with as few preads as possible: neighbours in one segment share one read.

        Yields (buffer, start, size) per record.
        """
        i = 0
        count = len(wanted)
        while i < count:
            first, size = wanted[i]
            segment = self.commit_log.segment_for(first)
            if segment is None:
                i += 1
                continue
            span_end = first + size
            j = i + 1
            # Extend the read while the next record is in this segment and the gap is small.
            while j < count:
                physical, next_size = wanted[j]
                if physical + next_size > segment.end or physical - span_end > 4096:
                    break
                span_end = physical + next_size
                j += 1
            try:
                data = memoryview(segment.read(first - segment.start, span_end - first))
            except OSError:
                i = j
                continue
            for physical, size in wanted[i:j]:
                at = physical - first
                if at + size <= len(data):
                    yield data, at, size
            i = j

    def read_record(self, physical_offset: int) -> bytes | None:
        """The whole record at ``physical_offset`` or None (VIEW_MESSAGE_BY_ID)."""
        if physical_offset < self.commit_log.min_offset or physical_offset >= self.write_offset:
            return None
        head = self.commit_log.read(physical_offset, 8)
        if len(head) < 8:
            return None
        size, magic = rec.TOTAL_AND_MAGIC.unpack(head)
        if magic not in (rec.MAGIC_V1, rec.MAGIC_V2) or size < rec.MIN_RECORD_SIZE:
            return None
        data = self.commit_log.read(physical_offset, size)
        return data if len(data) == size else None

    def get_offset_by_time(self, topic: str, queue_id: int, timestamp_ms: int, *, upper: bool = False) -> int:
        """The queue offset of the first message stored at or after ``timestamp_ms`` (``upper``: the last
        one stored at or before it). Returns max offset when every message is older, min when all are newer.
        """
        queue = self._queues.get((topic, queue_id))
        if queue is None:
            return 0
        low, high = queue.min_offset, queue.max_offset
        if low >= high:
            return low
        # Invariant for lower bound: answer in [low, high]; store times grow with the queue offset.
        while low < high:
            middle = (low + high) // 2
            stamp = self._store_time_of(queue, middle)
            if stamp is None or (stamp < timestamp_ms if not upper else stamp <= timestamp_ms):
                low = middle + 1
            else:
                high = middle
        if upper:
            return max(queue.min_offset, low - 1)
        return low

    def _store_time_of(self, queue: ConsumeQueue, queue_offset: int) -> int | None:
        entry = queue.entry_at(queue_offset)
        if entry is None or entry[0] < self.commit_log.min_offset:
            return None
        data = self.commit_log.read(entry[0] + rec.OFFSET_STORE_TIMESTAMP, 8)
        return struct.unpack(">q", data)[0] if len(data) == 8 else None

    def get_earliest_store_time(self, topic: str, queue_id: int) -> int:
        queue = self._queues.get((topic, queue_id))
        if queue is None or queue.max_offset <= queue.min_offset:
            return -1
        stamp = self._store_time_of(queue, queue.min_offset)
        return -1 if stamp is None else stamp

    def query_by_key(self, topic: str, key: str, max_count: int, begin_ms: int = 0, end_ms: int = 2**62) -> list[bytes]:
        """Records of ``topic`` whose KEYS (or UNIQ_KEY) contain ``key``, stored within [begin, end]."""
        found: list[bytes] = []
        for physical in self.query_index(f"{topic}#{key}", max_count * 2, begin_ms, end_ms):
            data = self.read_record(physical)
            if data is None:
                continue
            decoded = rec.decode_record(data)
            if decoded.topic == topic and (key in decoded.keys or decoded.properties.get("UNIQ_KEY") == key):
                found.append(data)
                if len(found) >= max_count:
                    break
        return found

    # -- maintenance (retention and recovery call these under the lock) --------------------------------
