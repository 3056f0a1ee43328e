"""Flush policies (group commit), retention, and a real full disk."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidemq.store import record as rec
from tidemq.store.config import FlushDiskType, StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus, PutStatus
from tidemq.store.retention import clean_once

from .conftest import ConfigFactory
from .helpers import open_store


def test_sync_flush_acknowledges_after_fsync_and_groups_commits(small_config: ConfigFactory) -> None:
    config = small_config(flush_disk_type=FlushDiskType.SYNC_FLUSH, mapped_file_size_commit_log=1 << 20)
    with open_store(config) as store:
        threads = 32
        per_thread = 40
        results: list[PutStatus] = []
        ends: list[int] = []
        lock = threading.Lock()

        def appender(n: int) -> None:
            for i in range(per_thread):
                result = store.put_message("Sync", n % 4, b"%d-%d" % (n, i))
                with lock:
                    results.append(result.status)
                    ends.append(result.end_offset)
                    # Acknowledged means durable: the flusher has fsynced at least this far.
                    assert store.durable_offset >= result.end_offset

        workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert results == [PutStatus.PUT_OK] * (threads * per_thread)
        fsyncs = store._flusher.fsync_count if store._flusher else 0
        assert 0 < fsyncs < threads * per_thread / 2, f"{fsyncs} fsyncs for {threads * per_thread} appends"


def test_sync_flush_timeout_answers_flush_disk_timeout(small_config: ConfigFactory) -> None:
    config = small_config(flush_disk_type=FlushDiskType.SYNC_FLUSH, sync_flush_timeout_ms=50)
    with open_store(config) as store:
        release = threading.Event()
        original = store._sync_commit_log

        def slow_disk() -> int:
            release.wait(5)
            return original()

        store._flusher._sync_commit_log = slow_disk  # type: ignore[union-attr]
        result = store.put_message("T", 0, b"slow")
        release.set()
        assert result.status is PutStatus.FLUSH_DISK_TIMEOUT
        assert store.get_messages("T", 0, 0, 1).message_count == 1, "stored even though not confirmed"


def test_a_failing_durable_listener_stops_neither_group_commit_nor_the_final_checkpoint(
    small_config: ConfigFactory,
) -> None:
    """A listener that raises (the broker's, once its event loop is closed) is the listener's problem: appends
    are still acknowledged and closing still checkpoints everything written."""
    from tidemq.store.checkpoint import Checkpoint

    config = small_config(flush_disk_type=FlushDiskType.SYNC_FLUSH, flush_interval_commit_log_ms=60_000)
    store = MessageStore(config).open()
    heard: list[int] = []

    def broken(durable: int) -> None:
        raise RuntimeError("Event loop is closed")

    store.add_durable_listener(broken)
    store.add_durable_listener(heard.append)
    results = [store.put_message("T", 0, b"m%d" % i).status for i in range(5)]
    end = store.write_offset
    store.close()
    assert results == [PutStatus.PUT_OK] * 5
    assert heard, "the listener after the broken one still hears the fsyncs"
    assert heard[-1] == end
    checkpoint = Checkpoint.load(config.store_path_root_dir)
    assert checkpoint is not None
    assert checkpoint.safe_offset == end


def test_async_flush_writes_a_checkpoint_periodically(small_config: ConfigFactory) -> None:
    config = small_config(flush_interval_commit_log_ms=20)
    with open_store(config) as store:
        store.put_message("T", 0, b"x")
        from tidemq.store.checkpoint import Checkpoint

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            checkpoint = Checkpoint.load(config.store_path_root_dir)
            if checkpoint is not None and checkpoint.safe_offset >= store.write_offset:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the flusher never checkpointed the append")


def age(path: Path, hours: float) -> None:
    old = time.time() - hours * 3600
    os.utime(path, (old, old))


def test_retention_deletes_expired_segments_and_moves_min_offsets(small_config: ConfigFactory) -> None:
    config = small_config(file_reserved_time_h=30, delete_when="04")
    with open_store(config) as store:
        for i in range(200):
            store.put_message("T", 0, bytes(1000) + b"%d" % i)
        segments = sorted(config.commit_log_dir.iterdir())
        assert len(segments) >= 3
        for path in segments[:2]:
            age(path, 60)
        # The next 04:30 local time: within 24 h, so fresh segments (< 30 h old) are not expired then.
        now = time.time()
        at_4am = time.mktime((*time.localtime(now)[:3], 4, 30, 0, 0, 0, -1))
        if at_4am < now:
            at_4am += 24 * 3600
        not_4am = at_4am + 3 * 3600
        assert clean_once(store, now_s=not_4am, used_percent=10) == 0, "expired but not at deleteWhen"
        assert clean_once(store, now_s=at_4am, used_percent=10) == 2
        assert store.min_physical_offset == int(segments[2].name)
        min_offset = store.get_min_offset("T", 0)
        assert min_offset > 0
        too_small = store.get_messages("T", 0, 0, 32)
        assert (too_small.status, too_small.next_begin_offset) == (GetStatus.OFFSET_TOO_SMALL, min_offset)
        first = store.get_messages("T", 0, min_offset, 1)
        assert first.status is GetStatus.FOUND
        assert next(rec.iter_records(first.body())).physical_offset >= store.min_physical_offset
        assert store.get_offset_by_time("T", 0, 0) == min_offset
    with open_store(config) as store:  # the moved minimum survives a restart
        assert store.get_min_offset("T", 0) == min_offset


def test_disk_above_max_used_ratio_deletes_oldest_even_if_not_expired(small_config: ConfigFactory) -> None:
    config = small_config(disk_max_used_space_ratio=75)
    with open_store(config) as store:
        for _ in range(200):
            store.put_message("T", 0, bytes(1000))
        before = len(store.commit_log.segments)
        assert clean_once(store, used_percent=80) >= 1
        assert len(store.commit_log.segments) < before
        assert store.commit_log.segments, "the segment being written is never deleted"


def test_disk_above_warning_level_refuses_appends_until_it_drops(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        store.put_message("T", 0, b"before")
        clean_once(store, used_percent=95)
        refused = store.put_message("T", 0, b"refused")
        assert refused.status is PutStatus.SERVICE_NOT_AVAILABLE
        assert "diskSpaceWarningLevelRatio" in refused.error
        assert store.get_messages("T", 0, 0, 32).message_count == 1, "still readable"
        clean_once(store, used_percent=50)
        assert store.put_message("T", 0, b"after").is_ok


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem (tmpfs), so the disk really fills up."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"this test needs root to mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_turns_appends_into_a_clear_error_and_reads_go_on(tiny_disk: Path) -> None:
    config = StoreConfig(
        tiny_disk / "store",
        mapped_file_size_commit_log=64 * 1024,
        mapped_file_size_consume_queue=20 * 64,
        max_message_size=8 * 1024,
        max_hash_slot_num=64,
        max_index_num=256,
    )
    with MessageStore(config) as store:
        statuses: list[PutStatus] = []
        for i in range(200):
            result = store.put_message("T", 0, bytes(4000) + b"%d" % i)
            statuses.append(result.status)
            if not result.is_ok:
                assert result.status is PutStatus.SERVICE_NOT_AVAILABLE
                assert "disk" in result.error
                break
        else:
            pytest.fail("the 256 KiB disk never filled")
        stored = statuses.count(PutStatus.PUT_OK)
        assert stored > 10
        got = store.get_messages("T", 0, 0, 32)
        assert got.status is GetStatus.FOUND
        assert store.get_max_offset("T", 0) == stored
    with MessageStore(config) as store:  # everything acknowledged before the disk filled is still there
        assert store.get_max_offset("T", 0) == stored
