"""Outcomes of store calls: status enums and small result records (no exceptions on hot paths)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class PutStatus(enum.Enum):
    """RocketMQ's PutMessageStatus, the subset a single-node store produces."""

    PUT_OK = "PUT_OK"
    FLUSH_DISK_TIMEOUT = "FLUSH_DISK_TIMEOUT"
    """Stored, but SYNC_FLUSH did not confirm the fsync in syncFlushTimeout."""
    SERVICE_NOT_AVAILABLE = "SERVICE_NOT_AVAILABLE"
    """The store is closed or read-only (disk above diskSpaceWarningLevelRatio, or a write failed)."""
    MESSAGE_ILLEGAL = "MESSAGE_ILLEGAL"
    PROPERTIES_SIZE_EXCEEDED = "PROPERTIES_SIZE_EXCEEDED"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"


@dataclass(slots=True)
class PutResult:
    """Where a put landed. For a batch, offsets are those of the first message.

    Treat it as read-only once returned. It is not ``frozen``: a frozen dataclass sets each field through
    ``object.__setattr__``, which made building one (once per single send) cost 1.25 µs instead of 0.45 µs.

    Attributes:
        physical_offsets: commit-log offset of each stored record (the broker derives msg ids from them).
        end_offset: commit-log offset just past the last record (what SYNC_FLUSH waits for).
    """

    status: PutStatus
    physical_offset: int = -1
    queue_offset: int = -1
    message_count: int = 0
    wrote_bytes: int = 0
    store_timestamp: int = 0
    end_offset: int = 0
    physical_offsets: list[int] = field(default_factory=list)
    error: str = ""

    @property
    def is_ok(self) -> bool:
        return self.status is PutStatus.PUT_OK


class GetStatus(enum.Enum):
    """RocketMQ's GetMessageStatus."""

    FOUND = "FOUND"
    NO_MATCHED_MESSAGE = "NO_MATCHED_MESSAGE"
    MESSAGE_WAS_REMOVING = "MESSAGE_WAS_REMOVING"
    OFFSET_FOUND_NULL = "OFFSET_FOUND_NULL"
    OFFSET_OVERFLOW_BADLY = "OFFSET_OVERFLOW_BADLY"
    OFFSET_OVERFLOW_ONE = "OFFSET_OVERFLOW_ONE"
    OFFSET_TOO_SMALL = "OFFSET_TOO_SMALL"
    NO_MATCHED_LOGIC_QUEUE = "NO_MATCHED_LOGIC_QUEUE"
    NO_MESSAGE_IN_QUEUE = "NO_MESSAGE_IN_QUEUE"


@dataclass(slots=True)
class GetResult:
    """Raw records for a pull: ``chunks`` concatenated are the records in queue order.

    Chunks are memoryview slices of the bytes read from disk; contiguous records share one chunk, so a pull
    of 32 adjacent messages is one read and one buffer to write to the socket.
    """

    status: GetStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    chunks: list[memoryview] = field(default_factory=list)
    message_count: int = 0
    total_bytes: int = 0

    def body(self) -> bytes:
        """The records as one bytes object (tests and small replies)."""
        return b"".join(self.chunks)
