"""Offline checks of a store directory, for ``tidemq store verify`` and ``tidemq store dump``.

Read-only: nothing here writes, so an operator can run it on a stopped broker's directory (or a copy)
without changing what recovery will see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tidemq.store import record as rec
from tidemq.store.checkpoint import ensure_store_marker_readonly
from tidemq.store.config import StoreConfig
from tidemq.store.consume_queue import ENTRY, ENTRY_SIZE, ConsumeQueue
from tidemq.store.recovery import ScanOutcome, scan_records
from tidemq.store.segment_file import SegmentQueue


@dataclass(slots=True)
class VerifyReport:
    """What ``verify`` found. ``problems`` empty means the store is sound."""

    records: int = 0
    bytes: int = 0
    commit_log_min: int = 0
    commit_log_end: int = 0
    queues: int = 0
    queue_entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        return not self.problems


def _open_log(config: StoreConfig) -> SegmentQueue:
    files = SegmentQueue(config.commit_log_dir, config.mapped_file_size_commit_log)
    if config.commit_log_dir.exists():
        files.directory = config.commit_log_dir
        names = sorted(p for p in config.commit_log_dir.iterdir() if p.name.isdigit() and len(p.name) == 20)
        from tidemq.store.segment_file import SegmentFile

        files.segments = [SegmentFile.open_existing(p, config.mapped_file_size_commit_log) for p in names]
    return files


def _queues(config: StoreConfig) -> Iterator[ConsumeQueue]:
    base = config.consume_queue_dir
    if not base.exists():
        return
    for topic_dir in sorted(base.iterdir()):
        for queue_dir in sorted(topic_dir.iterdir()) if topic_dir.is_dir() else []:
            if queue_dir.name.isdigit():
                queue = ConsumeQueue(
                    topic_dir.name, int(queue_dir.name), queue_dir, config.mapped_file_size_consume_queue
                )
                queue.load()
                yield queue


def verify_store(config: StoreConfig) -> VerifyReport:
    """Check every record (magic, size, CRC, offset) and every consume-queue entry against its record."""
    ensure_store_marker_readonly(config.store_path_root_dir)
    report = VerifyReport()
    log_files = _open_log(config)
    try:
        report.commit_log_min = log_files.min_offset
        outcome = ScanOutcome()
        for scanned in scan_records(log_files, log_files.min_offset, outcome):
            report.records += 1
            report.bytes += scanned.size
        report.commit_log_end = outcome.end
        if outcome.problem:
            report.problems.append(f"commit log: {outcome.problem} at offset {outcome.end}")
        for queue in _queues(config):
            report.queues += 1
            _check_queue(queue, log_files, report)
            queue.close()
    finally:
        log_files.close()
    return report


def _check_queue(queue: ConsumeQueue, log_files: SegmentQueue, report: VerifyReport) -> None:
    name = f"{queue.topic}/{queue.queue_id}"
    offset = queue.min_offset
    while offset < queue.max_offset:
        raw = queue.read_entries(offset, 4096)
        if not raw:
            report.problems.append(f"consume queue {name}: entries missing at {offset}")
            return
        for physical, size, _ in ENTRY.iter_unpack(raw):
            report.queue_entries += 1
            if physical >= log_files.min_offset:
                problem = _check_entry(log_files, physical, size, queue, offset, report.commit_log_end)
                if problem:
                    report.problems.append(f"consume queue {name} offset {offset}: {problem}")
                    if len(report.problems) > 100:
                        return
            offset += 1
        if len(raw) < ENTRY_SIZE:
            return


def _check_entry(
    log_files: SegmentQueue, physical: int, size: int, queue: ConsumeQueue, queue_offset: int, end: int
) -> str:
    if physical + size > end:
        return f"points at {physical}, past the commit log's end {end}"
    data = log_files.read(physical, size)
    try:
        record = rec.decode_record(data)
    except ValueError as exc:
        return f"points at {physical}, which is not a record ({exc})"
    if (record.topic, record.queue_id, record.queue_offset) != (queue.topic, queue.queue_id, queue_offset):
        return f"points at {physical}, a record of {record.topic}/{record.queue_id} offset {record.queue_offset}"
    return ""


def dump_queue(config: StoreConfig, topic: str, queue_id: int, from_offset: int, count: int) -> Iterator[str]:
    """Readable lines for ``count`` records of one queue from ``from_offset``."""
    ensure_store_marker_readonly(config.store_path_root_dir)
    log_files = _open_log(config)
    directory = config.consume_queue_dir / topic / str(queue_id)
    if not directory.exists():
        yield f"no consume queue {topic}/{queue_id} in {config.store_path_root_dir}"
        return
    queue = ConsumeQueue(topic, queue_id, directory, config.mapped_file_size_consume_queue)
    queue.load()
    try:
        yield f"queue {topic}/{queue_id}: offsets {queue.min_offset}..{queue.max_offset - 1}"
        raw = queue.read_entries(max(from_offset, queue.min_offset), count)
        offset = max(from_offset, queue.min_offset)
        for physical, size, tag_code in ENTRY.iter_unpack(raw):
            data = log_files.read(physical, size)
            try:
                record = rec.decode_record(data)
            except ValueError as exc:
                yield f"offset={offset} physical={physical} size={size} UNREADABLE: {exc}"
            else:
                yield _describe(offset, record, tag_code)
            offset += 1
    finally:
        queue.close()
        log_files.close()


def _describe(offset: int, record: rec.StoredRecord, tag_code: int) -> str:
    body = record.body[:64]
    shown = body.decode("utf-8", "replace") if body.isascii() or _is_utf8(body) else body.hex()
    properties = " ".join(f"{k}={v}" for k, v in sorted(record.properties.items()))
    crc = "ok" if record.is_body_crc_ok() else "BAD"
    return (
        f"offset={offset} physical={record.physical_offset} size={record.total_size} msgId={record.msg_id} "
        f"storeTime={record.store_timestamp} tagCode={tag_code} crc={crc} reconsume={record.reconsume_times} "
        f"flag={record.flag} sysFlag={record.sys_flag} properties[{properties}] body({len(record.body)})={shown!r}"
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def default_config(directory: Path) -> StoreConfig:
    """Geometry of a store directory for offline tools: read the segment sizes from the files themselves."""
    commit_log_size = _segment_size(directory / "commitlog") or StoreConfig(directory).mapped_file_size_commit_log
    queue_size = 300_000 * ENTRY_SIZE
    base = directory / "consumequeue"
    if base.exists():
        for queue_dir in base.glob("*/*"):
            found = _segment_size(queue_dir)
            if found:
                queue_size = found
                break
    return StoreConfig(
        directory,
        mapped_file_size_commit_log=commit_log_size,
        mapped_file_size_consume_queue=queue_size,
        max_message_size=min(4 << 20, commit_log_size - 1024),
    )


def _segment_size(directory: Path) -> int:
    if not directory.exists():
        return 0
    for path in sorted(directory.iterdir()):
        if path.name.isdigit() and len(path.name) == 20:
            return path.stat().st_size
    return 0
