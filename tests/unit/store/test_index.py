"""IndexService on tmp_path: puts and queries, rollover, reopen, damaged and foreign files, recovery, retention."""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidemq.errors import StoreClosedError, StoreCorruptionError, StoreError, StoreFormatError, StoreFullError
from tidemq.store import index as index_module
from tidemq.store.index import FORMAT_VERSION, HEADER_SIZE, MAGIC, IndexService, key_hash

T0 = 1_700_000_000_000  # a whole second, so second-precision times are exact in these tests
ALL_TIME = (0, 2**62)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexService]:
    with IndexService(tmp_path / "index", max_hash_slots=64, max_entries=1024) as service:
        yield service


def query_all(index: IndexService, key: str, max_count: int = 100) -> list[int]:
    return index.query(key, max_count, *ALL_TIME)


def test_put_and_query_newest_first(index: IndexService) -> None:
    index.put("a", 100, T0)
    index.put("b", 200, T0)
    index.put("a", 300, T0 + 1000)
    assert query_all(index, "a") == [300, 100]
    assert query_all(index, "b") == [200]
    assert query_all(index, "missing") == []


def test_several_keys_of_one_message(index: IndexService) -> None:
    assert index.put_many([("topic#k1", 100, T0), ("topic#k2", 100, T0), ("topic#k1", 100, T0)]) == 3
    assert query_all(index, "topic#k1") == [100]  # the duplicate entry is deduplicated
    assert query_all(index, "topic#k2") == [100]
    assert index.max_physical_offset == 100


def test_time_range_filters_by_second(index: IndexService) -> None:
    index.put_many([("k", offset, T0 + offset * 10) for offset in range(0, 1000, 100)])  # 0, 1000, ... 9000 ms
    assert index.query("k", 100, T0 + 3000, T0 + 5000) == [500, 400, 300]
    assert index.query("k", 100, T0 + 20_000, T0 + 30_000) == []
    assert index.query("k", 100, T0 - 10_000, T0 - 1) == []
    assert index.query("k", 100, T0 + 5000, T0 + 3000) == []  # an empty range


def test_time_precision_is_one_second_without_misses(index: IndexService) -> None:
    index.put("k", 0, T0)
    index.put("k", 10, T0 + 1500)  # recorded in the second [T0 + 1000, T0 + 1999]
    index.put("k", 20, T0 + 5000)
    assert index.query("k", 10, T0 + 1200, T0 + 1300) == [10]  # never missed...
    assert index.query("k", 10, T0 + 1999, T0 + 4999) == [10]  # ...but up to 999 ms outside the range
    assert index.query("k", 10, T0 + 2000, T0 + 4999) == []


def test_clock_stepping_back_keeps_the_entry_findable(index: IndexService) -> None:
    index.put("k", 0, T0 + 5000)
    index.put("k", 10, T0 + 2000)  # recorded at the file's latest second instead
    index.put("k", 20, T0 + 9000)
    assert query_all(index, "k") == [20, 10, 0]
    assert index.query("k", 10, T0 + 5000, T0 + 5999) == [10, 0]


def test_max_count(index: IndexService) -> None:
    index.put_many([("k", offset, T0) for offset in range(50)])
    assert index.query("k", 3, *ALL_TIME) == [49, 48, 47]
    assert index.query("k", 0, *ALL_TIME) == []
    assert len(index.query("k", 1000, *ALL_TIME)) == 50


def test_lower_offsets_are_skipped_as_already_indexed(index: IndexService) -> None:
    assert index.put_many([("k", 100, T0), ("k", 50, T0), ("k", 100, T0), ("k", 150, T0)]) == 3
    index.put("k", 120, T0)
    assert query_all(index, "k") == [150, 100]


def test_slot_collisions(tmp_path: Path) -> None:
    keys = [f"key-{i}" for i in range(40)]
    with IndexService(tmp_path, max_hash_slots=4, max_entries=1024) as index:
        index.put_many([(key, i * 10, T0 + i) for i, key in enumerate(keys)])
        for i, key in enumerate(keys):
            assert query_all(index, key) == [i * 10]


def test_hash_collisions_are_returned_for_the_caller_to_check(tmp_path: Path) -> None:
    first, second = _colliding_keys()
    assert key_hash(first) == key_hash(second)
    with IndexService(tmp_path, max_hash_slots=4, max_entries=64) as index:
        index.put(first, 10, T0)
        index.put(second, 20, T0)
        index.put("other", 30, T0)
        assert query_all(index, first) == [20, 10]
        assert query_all(index, second) == [20, 10]


def _colliding_keys() -> tuple[str, str]:
    """Two keys with the same 31-bit hash: by the birthday bound, one in ~55,000 pseudo-random keys.

    (Keys like ``key-<n>`` never collide: CRC-32 detects every difference of 32 bits or fewer.)
    """
    seen: dict[int, str] = {}
    for i in range(1_000_000):
        key = hashlib.sha256(str(i).encode()).hexdigest()[:12]
        other = seen.setdefault(key_hash(key), key)
        if other != key:
            return other, key
    raise AssertionError("no collision found")


def test_key_hash_is_stable_crc32() -> None:
    assert key_hash("TopicTest#order-1") == zlib.crc32(b"TopicTest#order-1") & 0x7FFFFFFF
    assert key_hash("é") == zlib.crc32("é".encode()) & 0x7FFFFFFF


def test_rollover_to_new_files(tmp_path: Path) -> None:
    with IndexService(tmp_path, max_hash_slots=8, max_entries=5) as index:  # 4 usable entries per file
        index.put_many([(f"k{i % 3}", i * 100, T0 + i * 1000) for i in range(10)])
        index.put("k0", 1000, T0 + 10_000)
        assert [p.name for p in index.file_paths] == [f"{o:020d}" for o in (0, 400, 800)]
        assert query_all(index, "k0") == [1000, 900, 600, 300, 0]
        assert index.query("k1", 100, T0 + 4000, T0 + 7000) == [700, 400]
        assert index.query("k0", 2, *ALL_TIME) == [1000, 900]
        assert index.last_update_physical_offset == 1000
        assert index.last_update_timestamp == T0 + 10_000


def test_one_message_filling_files_gets_distinct_names(tmp_path: Path) -> None:
    with IndexService(tmp_path, max_hash_slots=8, max_entries=3) as index:
        index.put_many([(f"k{i}", 500, T0) for i in range(5)])
        assert [p.name for p in index.file_paths] == [f"{o:020d}" for o in (500, 501, 502)]
        assert query_all(index, "k4") == [500]


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    items = [(f"k{i % 7}", i * 10, T0 + i * 300) for i in range(100)]
    with IndexService(tmp_path, max_hash_slots=16, max_entries=32) as index:
        index.put_many(items)
        expected = {f"k{k}": query_all(index, f"k{k}") for k in range(7)}
        files = index.file_paths
    with IndexService(tmp_path, max_hash_slots=16, max_entries=32) as index:
        assert index.file_paths == files
        assert {f"k{k}": query_all(index, f"k{k}") for k in range(7)} == expected
        assert index.max_physical_offset == 990
        assert index.last_update_timestamp == T0 + 99 * 300
        index.put("k0", 1000, T0 + 99 * 300)
        assert query_all(index, "k0")[:2] == [1000, 980]


def test_reopen_with_other_geometry_reads_the_existing_files(tmp_path: Path) -> None:
    with IndexService(tmp_path, max_hash_slots=16, max_entries=32) as index:
        index.put_many([("k", i, T0) for i in range(10)])
    with IndexService(tmp_path, max_hash_slots=3, max_entries=8) as index:
        index.put_many([("k", i, T0) for i in range(10, 40)])
        assert query_all(index, "k") == list(range(39, -1, -1))


def test_unflushed_puts_after_a_crash_are_rolled_back(tmp_path: Path) -> None:
    index = IndexService(tmp_path, max_hash_slots=4, max_entries=64)
    index.open()
    index.put_many([(f"k{i}", i, T0) for i in range(10)])
    index.flush()
    index.put_many([(f"k{i}", i, T0) for i in range(10, 20)])
    _crash(index)  # the page cache keeps the unflushed entries, the header still counts 10
    with IndexService(tmp_path, max_hash_slots=4, max_entries=64) as reopened:
        assert reopened.max_physical_offset == 9  # replay resumes here
        assert query_all(reopened, "k3") == [3]
        assert query_all(reopened, "k15") == []
        reopened.put_many([(f"k{i}", i, T0) for i in range(9, 20)])
        assert query_all(reopened, "k15") == [15]
        assert query_all(reopened, "k9") == [9]


def test_crash_repair_rebuilds_slots_when_chains_are_lost(tmp_path: Path) -> None:
    index = IndexService(tmp_path, max_hash_slots=4, max_entries=64)
    index.open()
    index.put_many([(f"k{i}", i, T0) for i in range(10)])
    index.flush()
    index.put_many([(f"k{i}", i, T0) for i in range(10, 20)])
    path = index.file_paths[0]
    _crash(index)
    with path.open("r+b") as fh:  # as after a power loss: slots reached the disk, new entries did not
        entry_base = HEADER_SIZE + 4 * 4
        fh.seek(entry_base + 11 * 20)
        fh.write(bytes(10 * 20))
    with IndexService(tmp_path) as reopened:
        assert [query_all(reopened, f"k{i}") for i in range(20)] == [[i] for i in range(10)] + [[]] * 10


def _crash(index: IndexService) -> None:
    """Drop the service as a killed process would: unmap without flushing the header."""
    for index_file in index._files:
        index_file.mm.close()
    index._files.clear()
    index._is_open = False
    index._unlock()  # the kernel drops a dead process's locks


def _write_byte(path: Path, position: int, value: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(position)
        fh.write(bytes([value]))


def _one_file(tmp_path: Path) -> Path:
    with IndexService(tmp_path, max_hash_slots=4, max_entries=8) as index:
        index.put("k", 0, T0)
        return index.file_paths[0]


def test_corrupted_header_byte_is_refused(tmp_path: Path) -> None:
    path = _one_file(tmp_path)
    _write_byte(path, 16, 7)  # entries_used
    with pytest.raises(StoreCorruptionError) as caught, IndexService(tmp_path):
        pass
    assert caught.value.offset == 60


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _one_file(tmp_path)
    os.truncate(path, path.stat().st_size - 20)
    with pytest.raises(StoreCorruptionError), IndexService(tmp_path):
        pass


@pytest.mark.parametrize("content", [os.urandom(4096), b"RIFF" + bytes(200), b"", b"TQ"])
def test_foreign_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / f"{0:020d}").write_bytes(content)
    with pytest.raises(StoreFormatError), IndexService(tmp_path):
        pass


def test_newer_version_is_refused(tmp_path: Path) -> None:
    path = _one_file(tmp_path)
    with path.open("r+b") as fh:
        header = bytearray(fh.read(HEADER_SIZE))
        struct.pack_into("<H", header, 4, FORMAT_VERSION + 1)
        struct.pack_into("<I", header, 60, zlib.crc32(header[:60]))
        fh.seek(0)
        fh.write(header)
    with pytest.raises(StoreFormatError, match="version"), IndexService(tmp_path):
        pass


def test_other_files_in_the_directory_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not an index file")
    (tmp_path / f"{5:020d}.tmp").write_bytes(b"half-created")
    with IndexService(tmp_path) as index:
        assert index.file_paths == []
    assert (tmp_path / "README").exists()
    assert not (tmp_path / f"{5:020d}.tmp").exists()


def test_file_header_layout(tmp_path: Path) -> None:
    path = _one_file(tmp_path)
    raw = path.read_bytes()
    magic, version, flags, slots, entries, used = struct.unpack_from("<4sHHIII", raw)
    assert (magic, version, flags, slots, entries, used) == (MAGIC, FORMAT_VERSION, 0, 4, 8, 1)
    assert struct.unpack_from("<qqqq", raw, 24) == (T0, T0, 0, 0)
    assert struct.unpack_from("<I", raw, 60)[0] == zlib.crc32(raw[:60])
    assert len(raw) == HEADER_SIZE + 4 * 4 + 8 * 20
    slot = key_hash("k") % 4
    assert struct.unpack_from("<i", raw, HEADER_SIZE + slot * 4)[0] == 1
    assert struct.unpack_from("<iqii", raw, HEADER_SIZE + 16 + 20) == (key_hash("k"), 0, 0, 0)


def test_truncate_above(tmp_path: Path) -> None:
    with IndexService(tmp_path, max_hash_slots=4, max_entries=5) as index:
        index.put_many([(f"k{i % 3}", i * 100, T0 + i * 1000) for i in range(10)])  # files at 0, 400, 800
        index.truncate_above(500)
        assert [p.name for p in index.file_paths] == [f"{o:020d}" for o in (0, 400)]
        assert index.max_physical_offset == 400
        assert query_all(index, "k0") == [300, 0]
        assert query_all(index, "k1") == [400, 100]
        assert query_all(index, "k2") == [200]
        index.put_many([(f"k{i % 3}", i * 100 + 50, T0 + i * 1000) for i in range(5, 8)])  # replay
        assert query_all(index, "k2") == [550, 200]
        assert query_all(index, "k1") == [750, 400, 100]
        assert query_all(index, "k0") == [650, 300, 0]
    with IndexService(tmp_path) as index:
        assert query_all(index, "k1") == [750, 400, 100]
        index.truncate_above(0)
        assert index.file_paths == []
        assert index.max_physical_offset == -1
        assert query_all(index, "k1") == []


def test_truncate_above_is_exact_within_an_offset(tmp_path: Path) -> None:
    with IndexService(tmp_path, max_hash_slots=2, max_entries=100) as index:
        index.put_many([("a", 10, T0), ("b", 10, T0), ("a", 20, T0), ("b", 20, T0), ("c", 30, T0)])
        index.truncate_above(20)
        assert query_all(index, "a") == [10]
        assert query_all(index, "b") == [10]
        assert query_all(index, "c") == []
        index.truncate_above(1000)  # nothing to do
        assert query_all(index, "a") == [10]


def test_delete_files_below(tmp_path: Path) -> None:
    with IndexService(tmp_path, max_hash_slots=4, max_entries=5) as index:
        index.put_many([("k", i * 100, T0 + i * 1000) for i in range(10)])  # files end at 300, 700, 900
        assert index.delete_files_below(300) == 0
        assert index.delete_files_below(701) == 2
        assert [p.name for p in index.file_paths] == [f"{800:020d}"]
        assert query_all(index, "k") == [900, 800]
        assert index.delete_files_below(10_000) == 1
        assert index.file_paths == []
        assert query_all(index, "k") == []
        index.put("k", 1000, T0 + 10_000)
        assert query_all(index, "k") == [1000]


def test_closed_service_refuses_calls(tmp_path: Path) -> None:
    index = IndexService(tmp_path)
    with pytest.raises(StoreClosedError):
        index.put("k", 0, T0)
    index.open()
    index.close()
    index.close()
    with pytest.raises(StoreClosedError):
        index.query("k", 1, *ALL_TIME)


def test_disk_full_at_creation_raises_store_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with IndexService(tmp_path, max_hash_slots=4, max_entries=8) as index:
        with pytest.raises(StoreFullError):
            index.put("k", 0, T0)
        assert index.file_paths == []
        assert [p.name for p in tmp_path.iterdir()] == [index_module.LOCK_FILE]  # no half-made index file
        assert query_all(index, "k") == []


def test_bad_geometry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        IndexService(tmp_path, max_entries=1)
    with pytest.raises(ValueError, match="max_hash_slots"):
        IndexService(tmp_path, max_hash_slots=0)


def test_written_entry_pages_are_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "ADVISE_EVERY_ENTRIES", 1000)
    released: list[tuple[int, int]] = []
    real_release = index_module._IndexFile.release_pages

    def spy(self: index_module._IndexFile, start: int, end: int) -> None:
        released.append((start, end))
        real_release(self, start, end)

    monkeypatch.setattr(index_module._IndexFile, "release_pages", spy)
    with IndexService(tmp_path, max_hash_slots=16, max_entries=10_000) as index:
        index.put_many([("k", i, T0) for i in range(5000)])
        assert len(released) == 5  # every 1000 entries
        assert all(end <= HEADER_SIZE + 16 * 4 + 5001 * 20 for _, end in released)
        assert query_all(index, "k", 3) == [4999, 4998, 4997]  # the data is still there


def test_a_flush_that_raced_puts_leaves_a_header_covering_only_what_it_synced(tmp_path: Path) -> None:
    index = IndexService(tmp_path / "index", max_hash_slots=4, max_entries=100)
    index.open()
    index.put_many([(f"k{i}", i * 10, T0) for i in range(5)])
    index_file = index._files[-1]
    synced = index_file.header_fields()  # what a flush snapshots before its sync
    index.put_many([(f"k{i}", i * 10, T0) for i in range(5, 8)])  # indexed while the sync runs
    index_file.record_durable(synced)
    assert index_file.is_dirty  # the later entries still wait for the next flush
    _crash(index)
    with IndexService(tmp_path / "index", max_hash_slots=4, max_entries=100) as reopened:
        assert reopened.max_physical_offset == 40  # recovery re-indexes the commit log from here
        assert [query_all(reopened, f"k{i}") for i in range(8)] == [[i * 10] for i in range(5)] + [[]] * 3


def test_puts_go_on_while_a_flush_waits_for_the_disk(index: IndexService, monkeypatch: pytest.MonkeyPatch) -> None:
    index.put_many([(f"k{i}", i, T0) for i in range(10)])
    in_sync, release = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        in_sync.set()
        assert release.wait(10), "the test never released the sync"
        real_fdatasync(fd)

    monkeypatch.setattr(index_module.os, "fdatasync", slow_fdatasync)
    flusher = threading.Thread(target=index.flush)
    flusher.start()
    try:
        assert in_sync.wait(5)
        index.put("during", 100, T0)  # would deadlock here if the flush held the index lock over its sync
        assert query_all(index, "during") == [100]
    finally:
        release.set()
        flusher.join(10)
    assert not flusher.is_alive()
    monkeypatch.setattr(index_module.os, "fdatasync", real_fdatasync)
    index.flush()
    assert not index._files[-1].is_dirty


def test_a_file_sealed_during_a_flush_keeps_its_clean_header(tmp_path: Path) -> None:
    index = IndexService(tmp_path / "index", max_hash_slots=4, max_entries=100)
    index.open()
    index.put_many([(f"k{i}", i * 10, T0) for i in range(5)])
    index_file = index._files[-1]
    synced = index_file.header_fields()
    index.put_many([(f"k{i}", i * 10, T0) for i in range(5, 8)])
    index_file.flush()  # what sealing a full file does, while the service's flush was syncing
    index_file.record_durable(synced)
    assert not index_file.is_dirty
    _crash(index)
    with IndexService(tmp_path / "index", max_hash_slots=4, max_entries=100) as reopened:
        assert [query_all(reopened, f"k{i}") for i in range(8)] == [[i * 10] for i in range(8)]


def test_a_second_writer_waits_for_the_first_then_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers would corrupt the files: the second opener waits for the lock (a killed broker's worker
    finishing), and is refused with a clear error if the first one stays."""
    monkeypatch.setattr(index_module, "LOCK_WAIT_S", 0.3)
    with IndexService(tmp_path, max_hash_slots=4, max_entries=64) as first:
        first.put("k", 1, T0)
        second = IndexService(tmp_path, max_hash_slots=4, max_entries=64)
        with pytest.raises(StoreError, match="in use by another process"):
            second.open()
    with IndexService(tmp_path, max_hash_slots=4, max_entries=64) as third:  # released by close
        assert query_all(third, "k") == [1]


def test_the_struct_slot_path_writes_the_same_files_as_the_native_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big-endian hosts read the little-endian slot table through struct calls: same bytes on disk."""
    items = [(f"k{i % 13}", i * 10, T0 + i * 300) for i in range(200)]
    contents = []
    for native, name in ((True, "native"), (False, "packed")):
        monkeypatch.setattr(index_module, "_NATIVE_SLOTS", native)
        with IndexService(tmp_path / name, max_hash_slots=16, max_entries=512) as index:
            index.put_many(items)
            assert query_all(index, "k3")[:2] == [1980, 1850]
            paths = index.file_paths
        contents.append([path.read_bytes() for path in paths])
    assert contents[0] == contents[1]
