"""Recovery: clean restarts, torn tails, consume queues ahead of or behind the log, refused directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tidemq.errors import StoreCorruptionError, StoreFormatError
from tidemq.store import record as rec
from tidemq.store.checkpoint import CHECKPOINT_FILE, META_FILE, Checkpoint
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus

from .conftest import ConfigFactory
from .helpers import open_store, props


def bodies(store: MessageStore, topic: str, queue_id: int) -> list[bytes]:
    found: list[bytes] = []
    offset = 0
    while True:
        result = store.get_messages(topic, queue_id, offset, 32)
        if result.status is not GetStatus.FOUND:
            return found
        found.extend(r.body for r in rec.iter_records(result.body()))
        offset = result.next_begin_offset


def fill(store: MessageStore, count: int, queues: int = 2) -> dict[int, list[bytes]]:
    expected: dict[int, list[bytes]] = {q: [] for q in range(queues)}
    for i in range(count):
        body = b"msg-%05d-" % i + bytes(i % 200)
        assert store.put_message("T", i % queues, body, props(tags="A", keys=f"k{i}")).is_ok
        expected[i % queues].append(body)
    return expected


def crash(store: MessageStore) -> None:
    """Stop as kill -9 would: the page cache keeps what was written; nothing clean is recorded."""
    store.abandon()


def queue_file(config: StoreConfig, topic: str, queue_id: int) -> Path:
    return sorted((config.consume_queue_dir / topic / str(queue_id)).iterdir())[-1]


def test_crash_recovery_keeps_every_record_and_redispatches(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    expected = fill(store, 500)
    end = store.write_offset
    crash(store)
    with open_store(config) as store:
        assert store.recovery_report["crashed"] is True
        assert store.recovery_report["end"] == end
        assert store.recovery_report["torn_tail"] is False
        assert {q: bodies(store, "T", q) for q in expected} == expected
        assert len(store.query_by_key("T", "k499", 5)) == 1
        assert store.put_message("T", 0, b"next").queue_offset == len(expected[0])


def test_torn_tail_is_cut_and_earlier_records_survive(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    expected = fill(store, 50)
    end = store.write_offset
    crash(store)
    # Half a record at the end, as a write cut short by power loss would leave.
    whole = rec.encode_record(topic="T", queue_id=0, body=b"torn" * 50, queue_offset=25, physical_offset=end)
    segment = sorted(config.commit_log_dir.iterdir())[-1]
    with segment.open("r+b") as f:
        f.seek(end - int(segment.name))
        f.write(whole[: len(whole) // 2])
    with open_store(config) as store:
        assert store.recovery_report["torn_tail"] is True
        assert store.recovery_report["end"] == end
        assert {q: bodies(store, "T", q) for q in expected} == expected
        assert store.put_message("T", 0, b"after-torn").physical_offset == end
    with open_store(config) as store:  # and the cut is durable: a clean restart sees the new record
        assert bodies(store, "T", 0)[-1] == b"after-torn"


def test_bad_crc_in_the_tail_record_is_cut(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    fill(store, 10, queues=1)
    last = store.put_message("T", 0, b"last-one")
    crash(store)
    segment = sorted(config.commit_log_dir.iterdir())[-1]
    with segment.open("r+b") as f:
        f.seek(last.physical_offset + rec.HEAD_SIZE)  # flip a body byte
        f.write(b"X")
    with open_store(config) as store:
        assert store.recovery_report["torn_tail"] is True
        assert store.recovery_report["end"] == last.physical_offset
        assert store.get_max_offset("T", 0) == 10


def test_damage_with_valid_records_after_it_is_refused(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    first = store.put_message("T", 0, b"first")
    fill(store, 400, queues=1)  # spans several segments
    crash(store)
    (config.store_path_root_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # force a scan from the start
    segment = sorted(config.commit_log_dir.iterdir())[0]
    with segment.open("r+b") as f:
        f.seek(first.physical_offset + rec.HEAD_SIZE)
        f.write(b"Z")
    with pytest.raises(StoreCorruptionError) as caught:
        open_store(config)
    assert caught.value.offset == first.physical_offset


def test_consume_queue_ahead_of_the_commit_log_is_cut(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    fill(store, 20, queues=1)
    end = store.write_offset
    crash(store)
    # Entries pointing past the log's end (the log lost its tail, the queue did not).
    path = queue_file(config, "T", 0)
    with path.open("r+b") as f:
        f.seek(20 * 20)
        f.write(b"".join(rec_entry(end + i * 100, 100) for i in range(3)))
    with open_store(config) as store:
        assert store.recovery_report["queue_entries_cut"] == 3
        assert store.get_max_offset("T", 0) == 20
        assert store.put_message("T", 0, b"x").queue_offset == 20


def rec_entry(physical: int, size: int) -> bytes:
    from tidemq.store.consume_queue import ENTRY

    return ENTRY.pack(physical, size, 0)


def test_consume_queue_behind_the_commit_log_is_rebuilt(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    expected = fill(store, 300, queues=1)
    crash(store)
    # The queue's last segment lost its content (never flushed), and the checkpoint is older than it.
    Checkpoint(0, 0, False, 0).save(config.store_path_root_dir)
    path = queue_file(config, "T", 0)
    os.truncate(path, 0)
    os.truncate(path, config.mapped_file_size_consume_queue)
    with open_store(config) as store:
        assert bodies(store, "T", 0) == expected[0]


def test_missing_checkpoint_rebuilds_consume_queues_and_index(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    expected = fill(store, 200, queues=3)
    crash(store)
    (config.store_path_root_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    for queue_dir in (config.consume_queue_dir / "T").iterdir():
        for path in queue_dir.iterdir():
            path.unlink()
        queue_dir.rmdir()
    for path in config.index_dir.iterdir():
        path.unlink()
    with open_store(config) as store:
        assert store.recovery_report["redispatched"] == 200
        assert {q: bodies(store, "T", q) for q in expected} == expected
        assert len(store.query_by_key("T", "k150", 5)) == 1


def test_a_directory_of_another_program_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "foreign"
    root.mkdir()
    (root / "commitlog").mkdir()
    (root / "config").mkdir()
    with pytest.raises(StoreFormatError, match="not a tidemq store"):
        MessageStore(StoreConfig(root)).open()
    assert sorted(p.name for p in root.iterdir()) == ["commitlog", "config"], "nothing was written"


def test_a_newer_format_is_refused(small_config: ConfigFactory) -> None:
    config = small_config()
    with open_store(config):
        pass
    import struct
    import zlib

    payload = struct.pack(">8si", b"TIDEMQST", 99)
    (config.store_path_root_dir / META_FILE).write_bytes(payload + struct.pack(">I", zlib.crc32(payload)))
    with pytest.raises(StoreFormatError, match="newer"):
        MessageStore(config).open()


def test_a_damaged_marker_is_refused(small_config: ConfigFactory) -> None:
    config = small_config()
    with open_store(config):
        pass
    meta = config.store_path_root_dir / META_FILE
    data = bytearray(meta.read_bytes())
    data[-1] ^= 0xFF
    meta.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptionError):
        MessageStore(config).open()


def test_bytes_past_a_torn_record_never_come_back_as_records(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    fill(store, 5, queues=1)
    end = store.write_offset
    crash(store)
    # A torn record at `end`, then a well-formed stale record right where the next append will end.
    next_record = rec.encode_record(topic="T", queue_id=0, body=b"next", queue_offset=5, physical_offset=end)
    stale_at = end + len(next_record)
    stale = rec.encode_record(topic="T", queue_id=0, body=b"STALE", queue_offset=6, physical_offset=stale_at)
    segment = sorted(config.commit_log_dir.iterdir())[-1]
    with segment.open("r+b") as f:
        f.seek(end - int(segment.name))
        f.write(b"\x00\x00\x00\x50garbage")
        f.seek(stale_at - int(segment.name))
        f.write(stale)
    store = open_store(config)
    assert store.put_message("T", 0, b"next").physical_offset == end
    crash(store)
    with open_store(config) as store:
        assert bodies(store, "T", 0)[-1] == b"next"
        assert store.get_max_offset("T", 0) == 6


def test_delayed_entries_hold_their_delivery_time_and_recovery_rebuilds_it(small_config: ConfigFactory) -> None:
    from tidemq.store.consume_queue import ENTRY
    from tidemq.store.tag_codes import SCHEDULE_TOPIC

    config = small_config()
    store = open_store(config)
    results = [store.put_message(SCHEDULE_TOPIC, level - 1, b"later", f"DELAY\x01{level}\x02") for level in (1, 3, 18)]
    levels = (1, 3, 18)
    expected = {
        level: r.store_timestamp + config.delay_levels_ms[level - 1] for level, r in zip(levels, results, strict=True)
    }
    assert config.delay_levels_ms[2] == 10_000
    assert config.delay_levels_ms[17] == 2 * 3600 * 1000

    def codes(store: MessageStore) -> dict[int, int]:
        found = {}
        for level in (1, 3, 18):
            queue = store.consume_queue(SCHEDULE_TOPIC, level - 1)
            assert queue is not None
            found[level] = ENTRY.unpack(queue.read_entries(0, 1))[2]
        return found

    assert codes(store) == expected
    crash(store)
    (config.store_path_root_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    for queue_dir in (config.consume_queue_dir / SCHEDULE_TOPIC).iterdir():
        for path in queue_dir.iterdir():
            path.unlink()
    with open_store(config) as store:
        assert codes(store) == expected


def test_the_checkpoint_never_passes_the_synced_index(small_config: ConfigFactory) -> None:
    """The index is synced less often than the commit log (its random slot writes refault after every sync);
    the checkpoint's safe offset stays below records whose keys are not synced yet, so recovery re-indexes
    them."""
    config = small_config(flush_interval_commit_log_ms=20)
    store = open_store(config)
    store.put_message("T", 0, b"a", props(keys="before"))
    deadline = time.monotonic() + 5
    while store._index_synced_offset == 0 and time.monotonic() < deadline:  # the first checkpoint syncs it
        time.sleep(0.01)
    after = store.put_message("T", 0, b"b", props(keys="after"))
    time.sleep(0.3)  # several checkpoints, none of them due to sync the index again
    checkpoint = Checkpoint.load(config.store_path_root_dir)
    assert checkpoint is not None
    assert 0 < checkpoint.safe_offset <= after.physical_offset
    store.abandon()
    with open_store(config) as reopened:
        assert reopened.recovery_report["crashed"] is True
        assert [rec.decode_record(r).body for r in reopened.query_by_key("T", "after", 5)] == [b"b"]
        assert [rec.decode_record(r).body for r in reopened.query_by_key("T", "before", 5)] == [b"a"]
