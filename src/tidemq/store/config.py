"""StoreConfig: every knob of the message store, with RocketMQ's key names and defaults.

Loaded once at the edge (broker.conf, flags) and passed down; library code never reads the environment.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tidemq.errors import ConfigError


class FlushDiskType(enum.Enum):
    """When an append counts as stored (MessageStoreConfig.flushDiskType)."""

    ASYNC_FLUSH = "ASYNC_FLUSH"
    """Acknowledged once in the page cache; a flusher thread fsyncs every flushIntervalCommitLog ms."""
    SYNC_FLUSH = "SYNC_FLUSH"
    """Acknowledged only after fsync; concurrent appends share one fsync (group commit)."""


GIB: Final = 1 << 30
CONSUME_QUEUE_ENTRY_SIZE: Final = 20


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Configuration of one message store. Field names are RocketMQ's keys in snake_case.

    Attributes:
        store_path_root_dir: root of the store (``storePathRootDir``); holds consumequeue/, index/, checkpoint.
        store_path_commit_log: commit-log directory (``storePathCommitLog``), default ``<root>/commitlog``.
        mapped_file_size_commit_log: commit-log segment size in bytes (``mappedFileSizeCommitLog``, 1 GiB).
        mapped_file_size_consume_queue: consume-queue segment size (``mappedFileSizeConsumeQueue``,
            300,000 entries of 20 bytes, as RocketMQ).
        flush_disk_type: ``ASYNC_FLUSH`` or ``SYNC_FLUSH`` (``flushDiskType``).
        flush_interval_commit_log_ms: ASYNC_FLUSH flush period (``flushIntervalCommitLog``, 500 ms).
        sync_flush_timeout_ms: how long a SYNC_FLUSH append waits for its fsync (``syncFlushTimeout``, 5 s)
            before it is answered FLUSH_DISK_TIMEOUT (stored, not yet known durable).
        max_message_size: largest body accepted (``maxMessageSize``, 4 MiB).
        file_reserved_time_h: hours a commit-log segment is kept (``fileReservedTime``, 72).
        delete_when: hours of the day ("04", or "04;16") when expired segments are deleted (``deleteWhen``).
        disk_max_used_space_ratio: percent of disk use above which expired-or-not segments are deleted oldest
            first (``diskMaxUsedSpaceRatio``, 75).
        disk_space_warning_level_ratio: percent of disk use above which appends are refused
            (``diskSpaceWarningLevelRatio``, 90).
        max_hash_slot_num / max_index_num: index file geometry (``maxHashSlotNum`` 5,000,000,
            ``maxIndexNum`` 20,000,000).
        message_index_enable: build the key index (``messageIndexEnable``).
        index_worker_enable: build it in a child process (``indexWorkerEnable``, tidemq's own key, on by
            default): the appender then only hands the keys over, and the index uses another core. Off, the
            index is built on the appending thread, and the store starts no process.
        store_host: the broker address written into every record's STOREHOST (ip, listen port).
        message_delay_level: the delay of each level (``messageDelayLevel``); SCHEDULE_TOPIC_XXXX entries
            hold store time + that delay as their tag code.
    """

    store_path_root_dir: Path
    store_path_commit_log: Path | None = None
    mapped_file_size_commit_log: int = GIB
    mapped_file_size_consume_queue: int = 300_000 * CONSUME_QUEUE_ENTRY_SIZE
    flush_disk_type: FlushDiskType = FlushDiskType.ASYNC_FLUSH
    flush_interval_commit_log_ms: int = 500
    sync_flush_timeout_ms: int = 5000
    max_message_size: int = 4 * 1024 * 1024
    file_reserved_time_h: float = 72
    delete_when: str = "04"
    disk_max_used_space_ratio: int = 75
    disk_space_warning_level_ratio: int = 90
    max_hash_slot_num: int = 5_000_000
    max_index_num: int = 20_000_000
    message_index_enable: bool = True
    index_worker_enable: bool = True
    store_host: tuple[str, int] = ("127.0.0.1", 10911)
    clean_resource_interval_ms: int = 10_000
    message_delay_level: str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
    delete_hours: tuple[int, ...] = field(init=False, default=())
    delay_levels_ms: tuple[int, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if self.mapped_file_size_commit_log < 4096:
            raise ConfigError("mappedFileSizeCommitLog must be at least 4096 bytes")
        if self.mapped_file_size_consume_queue % CONSUME_QUEUE_ENTRY_SIZE or self.mapped_file_size_consume_queue < 20:
            raise ConfigError("mappedFileSizeConsumeQueue must be a positive multiple of 20")
        if self.max_message_size <= 0 or self.max_message_size > self.mapped_file_size_commit_log - 1024:
            raise ConfigError("maxMessageSize must be positive and fit in one commit-log segment")
        if not 10 <= self.disk_max_used_space_ratio <= 95:
            raise ConfigError("diskMaxUsedSpaceRatio must be between 10 and 95")
        if self.flush_interval_commit_log_ms <= 0 or self.sync_flush_timeout_ms <= 0:
            raise ConfigError("flush intervals and timeouts must be positive")
        try:
            hours = tuple(int(h) for h in self.delete_when.split(";") if h.strip())
        except ValueError:
            raise ConfigError(f"deleteWhen must be hours separated by ';', got {self.delete_when!r}") from None
        if any(not 0 <= h <= 23 for h in hours):
            raise ConfigError(f"deleteWhen hours must be 0..23, got {self.delete_when!r}")
        object.__setattr__(self, "delete_hours", hours)
        from tidemq.store.tag_codes import parse_delay_levels

        object.__setattr__(self, "delay_levels_ms", parse_delay_levels(self.message_delay_level))

    @property
    def commit_log_dir(self) -> Path:
        return self.store_path_commit_log or self.store_path_root_dir / "commitlog"

    @property
    def consume_queue_dir(self) -> Path:
        return self.store_path_root_dir / "consumequeue"

    @property
    def index_dir(self) -> Path:
        return self.store_path_root_dir / "index"
