"""Arbitrary delivery times: the hop cascade never delivers early, is exact to the millisecond in the final
second, costs at most one copy per hop length, and resumes after a restart."""

from __future__ import annotations

from pathlib import Path

from tidemq.broker.timer import MAX_HOP, PRECISE_QUEUE, TimerService, hop_for
from tidemq.store import record as rec
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus
from tidemq.store.tag_codes import TIMER_TOPIC


def config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(
        tmp_path / "store",
        mapped_file_size_commit_log=1 << 20,
        mapped_file_size_consume_queue=20 * 1000,
        max_message_size=8192,
        max_hash_slot_num=256,
        max_index_num=4096,
    )


def test_hops_halve_the_remaining_wait() -> None:
    assert hop_for(999) == (PRECISE_QUEUE, 999)
    assert hop_for(1000) == (0, 1000)
    assert hop_for(1999) == (0, 1000)
    assert hop_for(2000) == (1, 2000)
    assert hop_for(3 * 24 * 3600 * 1000) == (17, 1000 << 17)
    assert hop_for(10 * 24 * 3600 * 1000) == (MAX_HOP, 1000 << MAX_HOP)
    remaining, hops = 3 * 24 * 3600 * 1000 - 1, 0
    while remaining >= 1000:
        _, length = hop_for(remaining)
        remaining -= length
        hops += 1
    assert hops <= MAX_HOP + 1


def schedule(store: MessageStore, service: TimerService, body: bytes, deliver_ms: int, now_ms: int) -> None:
    topic, queue_id, props = service.schedule({"KEYS": "k"}, deliver_ms, now_ms, "Real", 1)
    assert store.put_message(topic, queue_id, body, props).is_ok


def delivered(store: MessageStore) -> list[rec.StoredRecord]:
    result = store.get_messages("Real", 1, 0, 100)
    return list(rec.iter_records(result.body())) if result.status is GetStatus.FOUND else []


def test_messages_arrive_at_their_time_never_before(tmp_path: Path) -> None:
    with MessageStore(config(tmp_path)) as store:
        service = TimerService(store, tmp_path / "config")
        now = store.put_message("Warm", 0, b"x").store_timestamp
        deliveries = {b"in-0.5s": now + 500, b"in-7.3s": now + 7300, b"in-90s": now + 90_000}
        for body, at in deliveries.items():
            schedule(store, service, body, at, now)
        step = now
        seen: dict[bytes, int] = {}
        while step <= now + 91_000:
            service.advance(step)
            for record in delivered(store):
                seen.setdefault(record.body, step)
            step += 100
        assert set(seen) == set(deliveries)
        for body, at in deliveries.items():
            assert at <= seen[body] < at + 100, f"{body!r} due {at - now} ms, seen at {seen[body] - now} ms"
        records = delivered(store)
        assert all("TIMER_OUT_MS" not in r.properties and "REAL_TOPIC" not in r.properties for r in records)
        assert all(r.properties["KEYS"] == "k" for r in records)
        copies = sum(store.get_max_offset(TIMER_TOPIC, q) for q in store.queue_ids(TIMER_TOPIC))
        assert copies <= 3 * 8, "at most one copy per hop length"


def test_a_restart_resumes_the_wait(tmp_path: Path) -> None:
    with MessageStore(config(tmp_path)) as store:
        service = TimerService(store, tmp_path / "config")
        now = store.put_message("Warm", 0, b"x").store_timestamp
        schedule(store, service, b"later", now + 20_000, now)
        service.advance(now + 5_000)
        service.persist()
    with MessageStore(config(tmp_path)) as store:
        service = TimerService(store, tmp_path / "config")
        service.load()
        service.advance(now + 19_999)
        assert delivered(store) == []
        service.advance(now + 20_000)
        assert [r.body for r in delivered(store)] == [b"later"]
