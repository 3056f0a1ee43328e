"""Retention: delete old commit-log segments, then the consume-queue and index files they made useless.

RocketMQ's CleanCommitLogService rules: a segment (never the one being written) is deleted when it is older
than ``fileReservedTime`` hours (by its modification time) and the clock is at a ``deleteWhen`` hour, or at
once, oldest first and expired or not, while disk use is above ``diskMaxUsedSpaceRatio``. Above
``diskSpaceWarningLevelRatio`` appends are refused until the cleaner brings usage back down. Min offsets then
move forward; a read below them answers "offset too small", never an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tidemq.store.message_store import MessageStore

log = logging.getLogger(__name__)

MAX_SEGMENTS_PER_RUN: Final = 10
DISK_FULL_REASON: Final = "disk usage above diskSpaceWarningLevelRatio"


def disk_used_ratio_percent(store: MessageStore) -> float:
    usage = shutil.disk_usage(store.config.commit_log_dir)
    return 100.0 * usage.used / usage.total if usage.total else 0.0


def clean_once(store: MessageStore, *, now_s: float | None = None, used_percent: float | None = None) -> int:
    """One cleaner pass; returns how many commit-log segments were deleted.

    ``now_s`` and ``used_percent`` let tests drive the clock and the disk gauge.
    """
    config = store.config
    now_s = time.time() if now_s is None else now_s
    used = disk_used_ratio_percent(store) if used_percent is None else used_percent
    if used > config.disk_space_warning_level_ratio:
        store.set_not_writable(DISK_FULL_REASON)
    elif not store.is_writable and store.not_writable_reason == DISK_FULL_REASON:
        store.set_writable()
    is_delete_hour = time.localtime(now_s).tm_hour in config.delete_hours
    clean_immediately = used > config.disk_max_used_space_ratio
    reserved_s = config.file_reserved_time_h * 3600
    deleted = 0
    with store.lock():
        segments = store.commit_log.segments
        while deleted < MAX_SEGMENTS_PER_RUN and len(segments) > 1:
            oldest = segments[0]
            is_expired = os.fstat(oldest.fd).st_mtime + reserved_s <= now_s
            if not (clean_immediately or (is_delete_hour and is_expired)):
                break
            segments.pop(0)
            oldest.unlink()
            store.retire_segment(oldest)
            deleted += 1
            log.info("retention: deleted commit-log segment %s", oldest.path.name)
        if deleted:
            new_min = store.commit_log.min_offset
            for queue in store.all_queues():
                queue.delete_segments_below(new_min)
            store.index.delete_files_below(new_min)
    return deleted


def run_cleaner(store: MessageStore) -> None:
    """The ``tidemq-clean`` thread: a pass every cleanResourceInterval until the store closes."""
    interval_s = store.config.clean_resource_interval_ms / 1000
    closing = store.is_closing
    while not closing.wait(interval_s):
        try:
            clean_once(store)
            store.close_retired()
        except Exception:  # a failed pass must not stop future passes; the next one retries
            log.exception("retention pass failed")
