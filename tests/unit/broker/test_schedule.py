"""Delayed delivery by level: never early, in order, exactly where REAL_TOPIC/REAL_QID say, across restarts."""

from __future__ import annotations

from pathlib import Path

from tidemq.broker.schedule import ScheduleService
from tidemq.store import record as rec
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus
from tidemq.store.tag_codes import SCHEDULE_TOPIC


def config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(
        tmp_path / "store",
        mapped_file_size_commit_log=256 * 1024,
        mapped_file_size_consume_queue=20 * 100,
        max_message_size=8192,
        max_hash_slot_num=256,
        max_index_num=2048,
    )


def schedule(store: MessageStore, level: int, body: bytes, real_topic: str = "Real", real_queue: int = 2) -> int:
    props = f"DELAY\x01{level}\x02REAL_TOPIC\x01{real_topic}\x02REAL_QID\x01{real_queue}\x02KEYS\x01k\x02"
    result = store.put_message(SCHEDULE_TOPIC, level - 1, body, props, flag=3, reconsume_times=1)
    assert result.is_ok
    return result.store_timestamp


def delivered(store: MessageStore, topic: str = "Real", queue_id: int = 2) -> list[rec.StoredRecord]:
    result = store.get_messages(topic, queue_id, 0, 100)
    return list(rec.iter_records(result.body())) if result.status is GetStatus.FOUND else []


def test_messages_are_delivered_when_due_and_never_before(tmp_path: Path) -> None:
    with MessageStore(config(tmp_path)) as store:
        service = ScheduleService(store, tmp_path / "config")
        ten_at = schedule(store, 3, b"ten-seconds")  # level 3 = 10 s
        one_at = schedule(store, 1, b"one-second")
        assert service.deliver_due(one_at + 999) == one_at + 1000
        assert delivered(store) == []
        assert service.deliver_due(one_at + 1000) == ten_at + 10_000
        assert [r.body for r in delivered(store)] == [b"one-second"]
        assert service.deliver_due(ten_at + 9_999) == ten_at + 10_000
        assert service.deliver_due(ten_at + 10_000) is None
        records = delivered(store)
        assert [r.body for r in records] == [b"one-second", b"ten-seconds"]
        assert records[0].properties["DELAY"] == "1", "kept, as Apache's broker stores it"
        assert records[0].properties["KEYS"] == "k"
        assert (records[0].flag, records[0].reconsume_times) == (3, 1)
        assert service.delivered == 2


def test_delivery_resumes_after_a_restart_without_duplicates(tmp_path: Path) -> None:
    with MessageStore(config(tmp_path)) as store:
        service = ScheduleService(store, tmp_path / "config")
        stored_at = schedule(store, 1, b"a")
        schedule(store, 1, b"b")
        service.deliver_due(stored_at + 1000 + 10_000)
        service.persist()
        later = schedule(store, 2, b"c")  # level 2 = 5 s
    with MessageStore(config(tmp_path)) as store:
        service = ScheduleService(store, tmp_path / "config")
        service.load()
        assert service.deliver_due(later + 4_999) == later + 5000
        service.deliver_due(later + 5000)
        assert [r.body for r in delivered(store)] == [b"a", b"b", b"c"]
