"""Consume queues: the per-(topic, queue id) index into the commit log.

Each entry is 20 bytes, big-endian (RocketMQ's ConsumeQueue unit):

======  ====  =================================================================
offset  size  field
======  ====  =================================================================
0       8     commit-log physical offset of the record
8       4     record size (TOTALSIZE)
12      8     tag hash code, sign-extended (SCHEDULE_TOPIC_XXXX: delivery time)
======  ====  =================================================================

The logical (queue) offset of an entry is its index: entry n lives at global byte n * 20, in segment files of
``mapped_file_size_consume_queue`` bytes under ``consumequeue/<topic>/<queue id>/``, named by the 20-digit
byte offset they start at. Consume queues are derived data: recovery rebuilds them from the commit log.

Thread model: one writer (the store's append path, under the store lock); readers on any thread read entries
below ``max_offset``, which is published only after the entry bytes are written.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

from tidemq.store.config import CONSUME_QUEUE_ENTRY_SIZE
from tidemq.store.segment_file import SegmentFile, SegmentQueue

ENTRY: Final = struct.Struct(">qiq")
ENTRY_SIZE: Final = CONSUME_QUEUE_ENTRY_SIZE
assert ENTRY.size == ENTRY_SIZE


class ConsumeQueue:
    """One queue's entries. ``min_offset`` <= valid logical offsets < ``max_offset``."""

    def __init__(self, topic: str, queue_id: int, directory: Path, segment_size: int) -> None:
        self.topic = topic
        self.queue_id = queue_id
        self.files = SegmentQueue(directory, segment_size, map_writes=True, small_writes=True)
        self.max_offset = 0
        self.min_offset = 0
        self.is_dirty = False
        self.reserved_end = 0  # global byte position below which the current segment has disk blocks

    # -- loading and recovery ---------------------------------------------------------------------------

    def load(self) -> None:
        """Open existing segments and find the end: the first all-zero entry after the last segment start."""
        self.files.load()
        self.min_offset = self.files.min_offset // ENTRY_SIZE
        self.max_offset = self.min_offset
        for segment in reversed(self.files.segments):
            count = _count_entries(segment)
            if count:
                self.max_offset = (segment.start + count * ENTRY_SIZE) // ENTRY_SIZE
                break

    def last_entry(self) -> tuple[int, int, int] | None:
        if self.max_offset <= self.min_offset:
            return None
        return self.entry_at(self.max_offset - 1)

    def entry_at(self, queue_offset: int) -> tuple[int, int, int] | None:
        data = self.files.read(queue_offset * ENTRY_SIZE, ENTRY_SIZE)
        if len(data) < ENTRY_SIZE:
            return None
        entry: tuple[int, int, int] = ENTRY.unpack(data)
        return entry

    def truncate_to(self, queue_offset: int) -> None:
        """Forget entries at or after ``queue_offset`` (recovery: the commit log ended before them)."""
        if queue_offset >= self.max_offset:
            return
        queue_offset = max(queue_offset, self.min_offset)
        self.files.truncate_from(queue_offset * ENTRY_SIZE)
        self.reserved_end = 0
        self.max_offset = queue_offset
        if not self.files.segments:
            self.min_offset = queue_offset

    def first_offset_at_or_above(self, physical_offset: int) -> int:
        """Binary search: the first queue offset whose entry points at or beyond ``physical_offset``."""
        low, high = self.min_offset, self.max_offset
        while low < high:
            middle = (low + high) // 2
            entry = self.entry_at(middle)
            if entry is None or entry[0] >= physical_offset:
                high = middle
            else:
                low = middle + 1
        return low

    # -- writing ---------------------------------------------------------------------------------------

    def reserve(self, queue_offset: int, count: int) -> None:
        """Reserve disk blocks for ``count`` entries from ``queue_offset``, called before the commit-log write.

        Raises:
            StoreFullError: the disk has no room; nothing was written.
        """
        position, end = queue_offset * ENTRY_SIZE, (queue_offset + count) * ENTRY_SIZE
        if end <= self.reserved_end:
            return  # the common case: one comparison per append
        while position < end:
            segment = self.files.segment_for(position) or self.files.last_or_create(position)
            segment_end = min(end, segment.end)
            segment.reserve(segment_end - segment.start)
            position = segment_end
            self.reserved_end = segment.start + segment.allocated

    def put(self, queue_offset: int, entries: bytes | bytearray | memoryview) -> None:
        """Write packed entries starting at ``queue_offset`` (normally == max_offset), rolling segments."""
        position = queue_offset * ENTRY_SIZE
        segments = self.files.segments
        last = segments[-1] if segments else None
        if last is not None and last.start <= position and position + len(entries) <= last.end:
            last.write(position - last.start, entries)  # the common case: all of it in the last segment
            position += len(entries)
        else:
            view = memoryview(entries)
            while view:
                segment = self.files.segment_for(position) or self.files.last_or_create(position)
                chunk = view[: segment.end - position]
                segment.write(position - segment.start, chunk)
                position += len(chunk)
                view = view[len(chunk) :]
        end = position // ENTRY_SIZE
        if end > self.max_offset:
            self.max_offset = end
        if self.files.segments[0].start > self.min_offset * ENTRY_SIZE:
            self.min_offset = self.files.segments[0].start // ENTRY_SIZE
        self.is_dirty = True

    # -- reading ---------------------------------------------------------------------------------------

    def read_entries(self, queue_offset: int, count: int) -> bytes:
        """Up to ``count`` packed entries from ``queue_offset`` (fewer at a segment end or the queue end)."""
        count = min(count, self.max_offset - queue_offset)
        if count <= 0:
            return b""
        return self.files.read(queue_offset * ENTRY_SIZE, count * ENTRY_SIZE)

    # -- maintenance -----------------------------------------------------------------------------------

    def delete_segments_below(self, physical_offset: int) -> int:
        """Retention: delete whole segments whose last entry points below ``physical_offset``."""
        deleted = 0
        while len(self.files.segments) > 1:
            first = self.files.segments[0]
            last = first.read(first.size - ENTRY_SIZE, ENTRY_SIZE)
            if len(last) < ENTRY_SIZE or ENTRY.unpack(last)[0] >= physical_offset:
                break
            self.files.delete_first()
            deleted += 1
        if deleted:
            self.min_offset = self.files.segments[0].start // ENTRY_SIZE
        self.correct_min_offset(physical_offset)
        return deleted

    def correct_min_offset(self, commit_log_min_offset: int) -> None:
        """Move ``min_offset`` past entries whose records were deleted from the commit log."""
        if self.max_offset > self.min_offset:
            entry = self.entry_at(self.min_offset)
            if entry is not None and entry[0] < commit_log_min_offset:
                self.min_offset = self.first_offset_at_or_above(commit_log_min_offset)

    def sync(self) -> None:
        if self.is_dirty:
            self.is_dirty = False
            self.files.sync()

    def close(self) -> None:
        self.files.close()


def _count_entries(segment: SegmentFile) -> int:
    """Entries written in a segment: contiguous from its start, ended by an all-zero slot.

    Entries are never all-zero (their size is positive), so a binary search of ~20 small reads finds the end
    without reading the whole 6 MB segment; a thousand queues open fast.
    """
    low, high = 0, segment.size // ENTRY_SIZE
    zero = bytes(ENTRY_SIZE)
    while low < high:
        middle = (low + high) // 2
        if segment.read(middle * ENTRY_SIZE, ENTRY_SIZE) == zero:
            high = middle
        else:
            low = middle + 1
    return low
