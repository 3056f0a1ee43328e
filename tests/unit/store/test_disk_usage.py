"""Disk blocks are reserved just ahead of writes, not for whole 1 GiB segments and 420 MB index files.

Why it matters: every ``tidemq dev`` and every embedded test broker starts a store with RocketMQ's default
geometry; reserving it whole cost ~1.5 GB of real disk per start, which filled CI's disk part-way through the
suite (sends then failed with "disk full"). A full disk must still fail *before* a write, never half-way.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tidemq.errors import StoreFullError
from tidemq.store import index as index_module
from tidemq.store import segment_file
from tidemq.store.config import StoreConfig
from tidemq.store.index import IndexService
from tidemq.store.message_store import MessageStore
from tidemq.store.results import PutStatus

T0 = 1_700_000_000_000
MIB = 1 << 20


def disk_bytes(root: Path) -> int:
    """Bytes of disk blocks actually allocated under ``root`` (not the files' logical sizes)."""
    return sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())


def test_a_fresh_store_with_default_geometry_costs_megabytes_not_gigabytes(tmp_path: Path) -> None:
    with MessageStore(StoreConfig(tmp_path / "store")) as store:
        for i in range(100):
            assert store.put_message("T", i % 4, b"body %d" % i, f"KEYS\x01k{i}\x02").is_ok
        segment = next((tmp_path / "store" / "commitlog").iterdir())
        assert segment.stat().st_size == 1 << 30  # logical size as RocketMQ's, so offsets inside stay valid
        used = disk_bytes(tmp_path / "store")
    assert used < 100 * MIB, f"a store with 100 small messages holds {used / MIB:.0f} MiB of disk"
    with MessageStore(StoreConfig(tmp_path / "store")) as store:
        got = store.get_messages("T", 1, 0, 32)
        assert got.message_count == 25


def test_commit_log_blocks_are_reserved_ahead_of_the_write_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_file, "ALLOCATE_AHEAD", 256 * 1024)
    config = StoreConfig(tmp_path / "store", mapped_file_size_commit_log=64 * MIB, message_index_enable=False)
    with MessageStore(config) as store:
        assert store.put_message("T", 0, bytes(1000)).is_ok
        segment = store.commit_log.segments[0]
        assert segment.allocated == 256 * 1024 + 1
        for _ in range(300):
            assert store.put_message("T", 0, bytes(1000)).is_ok
        assert store.write_offset <= segment.allocated <= store.write_offset + 256 * 1024
        assert os.fstat(segment.fd).st_blocks * 512 >= store.write_offset


def test_a_full_disk_when_extending_refuses_the_append_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_file, "ALLOCATE_AHEAD", 64 * 1024)
    config = StoreConfig(tmp_path / "store", mapped_file_size_commit_log=16 * MIB, message_index_enable=False)
    with MessageStore(config) as store:
        stored = 0
        while store.write_offset < 60 * 1024:
            assert store.put_message("T", 0, bytes(1000)).is_ok
            stored += 1
        before = store.write_offset
        real = os.posix_fallocate

        def no_space(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", no_space)
        result = store.put_message("T", 0, bytes(8000))
        assert result.status is PutStatus.SERVICE_NOT_AVAILABLE
        assert "disk" in result.error
        assert store.write_offset == before
        monkeypatch.setattr(os, "posix_fallocate", real)
        assert store.get_messages("T", 0, 0, 1000).message_count == stored
        assert store.put_message("T", 0, bytes(8000)).status is PutStatus.SERVICE_NOT_AVAILABLE  # read-only now


def test_index_entries_are_reserved_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "ENTRY_CHUNK_BYTES", 20 * 10)  # ten entries at a time
    with IndexService(tmp_path, max_hash_slots=8, max_entries=1000) as index:
        assert index.put_many((f"k{i % 5}", i * 100, T0 + i) for i in range(95)) == 95
        newest = index._files[-1]
        assert 95 <= newest.allocated_entries <= 105
        assert index.query("k3", 100, 0, 2**62) == [i * 100 for i in reversed(range(95)) if i % 5 == 3]


def test_index_full_disk_when_extending_raises_and_keeps_what_was_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "ENTRY_CHUNK_BYTES", 20 * 10)
    with IndexService(tmp_path, max_hash_slots=8, max_entries=1000) as index:
        assert index.put_many((f"k{i}", i, T0) for i in range(5)) == 5
        allocated = index._files[-1].allocated_entries

        def no_space(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", no_space)
        with pytest.raises(StoreFullError, match="no space"):
            index.put_many((f"k{i}", i, T0) for i in range(5, 50))
        assert index._files[-1].entries_used == allocated
        assert index.query("k3", 10, 0, 2**62) == [3]


def test_a_full_disk_for_a_consume_queue_refuses_the_append_before_the_commit_log_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_file, "SMALL_ALLOCATE_AHEAD", 20 * 8)  # eight entries at a time
    with MessageStore(StoreConfig(tmp_path / "store", message_index_enable=False)) as store:
        for _ in range(8):
            assert store.put_message("T", 0, b"x").is_ok
        before = store.write_offset

        def no_space(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", no_space)
        result = store.put_messages("T", 0, [(b"y", "", 0)] * 10)
        assert result.status is PutStatus.SERVICE_NOT_AVAILABLE
        assert store.write_offset == before  # nothing in the commit log without its queue entries
        assert store.get_messages("T", 0, 0, 100).message_count == 8
