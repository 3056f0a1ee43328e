"""MessageStore: appends, reads, statuses, filters, lookups and bad input, on real files."""

from __future__ import annotations

import os

from tidemq.store import record as rec
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus, PutStatus

from .conftest import ConfigFactory
from .helpers import open_store, props


def records_of(store: MessageStore, topic: str, queue_id: int, offset: int = 0) -> list[rec.StoredRecord]:
    """Every record of a queue from ``offset``, pulling as a consumer does (a pull stops at segment ends)."""
    found: list[rec.StoredRecord] = []
    while True:
        result = store.get_messages(topic, queue_id, offset, 32)
        if result.status is not GetStatus.FOUND:
            return found
        found.extend(rec.iter_records(result.body()))
        offset = result.next_begin_offset


def test_put_then_get_returns_the_exact_record(small_config: ConfigFactory) -> None:
    with open_store(small_config(store_host=("10.1.2.3", 10911))) as store:
        body = "héllo-wörld-日本".encode()
        result = store.put_message(
            "TopicA",
            2,
            body,
            props(tags="TagA", keys="k1 k2", color="blue"),
            flag=7,
            born_timestamp=1700000000123,
            born_host=("192.168.1.9", 50000),
        )
        assert result.status is PutStatus.PUT_OK
        assert (result.queue_offset, result.physical_offset) == (0, 0)
        got = store.get_messages("TopicA", 2, 0, 32)
        assert got.status is GetStatus.FOUND
        assert (got.message_count, got.next_begin_offset, got.min_offset, got.max_offset) == (1, 1, 0, 1)
        [record] = list(rec.iter_records(got.body()))
        assert record.body == body
        assert record.topic == "TopicA"
        assert (record.queue_id, record.queue_offset, record.flag) == (2, 0, 7)
        assert record.properties == {"TAGS": "TagA", "KEYS": "k1 k2", "color": "blue"}
        assert record.born_host == ("192.168.1.9", 50000)
        assert record.store_host == ("10.1.2.3", 10911)
        assert record.born_timestamp == 1700000000123
        assert record.store_timestamp == result.store_timestamp
        assert record.is_body_crc_ok()
        assert record.total_size == 91 + len(body) + len("TopicA") + len(props(tags="TagA", keys="k1 k2", color="blue"))
        assert store.read_record(result.physical_offset) == got.body()


def test_queue_offsets_are_consecutive_per_queue_and_batches_are_contiguous(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        store.put_message("T", 0, b"a")
        store.put_message("T", 1, b"b")
        batch = store.put_messages("T", 0, [(b"c%d" % i, props(tags="X"), 0) for i in range(5)])
        assert batch.queue_offset == 1
        assert batch.message_count == 5
        assert len(batch.physical_offsets) == 5
        assert store.get_max_offset("T", 0) == 6
        assert store.get_max_offset("T", 1) == 1
        got = store.get_messages("T", 0, 1, 32)
        assert got.message_count == 5
        assert len(got.chunks) == 1, "adjacent records come back as one buffer"
        assert [r.body for r in rec.iter_records(got.body())] == [b"c%d" % i for i in range(5)]
        assert [r.queue_offset for r in rec.iter_records(got.body())] == [1, 2, 3, 4, 5]


def test_records_never_span_segments_and_blank_records_are_skipped(small_config: ConfigFactory) -> None:
    config = small_config()
    body = os.urandom(3000)
    with open_store(config) as store:
        for i in range(100):  # ~310 KB over 64 KB segments
            assert store.put_message("Roll", 0, body + bytes([i])).is_ok
        segments = sorted((config.commit_log_dir).iterdir())
        assert len(segments) >= 4
        assert all(len(p.name) == 20 and int(p.name) % config.mapped_file_size_commit_log == 0 for p in segments)
        bodies = [r.body for r in records_of(store, "Roll", 0)]
        assert bodies == [body + bytes([i]) for i in range(100)]
        for physical in store.put_messages("Roll", 0, [(body, "", 0)] * 30).physical_offsets:
            assert (
                physical // config.mapped_file_size_commit_log
                == (physical + 3000) // config.mapped_file_size_commit_log
            )


def test_get_statuses_follow_rocketmq(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        missing = store.get_messages("Nope", 0, 0, 32)
        assert missing.status is GetStatus.NO_MATCHED_LOGIC_QUEUE
        store.put_messages("T", 0, [(b"x", "", 0)] * 3)
        assert store.get_messages("T", 0, 3, 32).status is GetStatus.OFFSET_OVERFLOW_ONE
        assert store.get_messages("T", 0, 3, 32).next_begin_offset == 3
        badly = store.get_messages("T", 0, 10, 32)
        assert badly.status is GetStatus.OFFSET_OVERFLOW_BADLY
        assert badly.next_begin_offset == 3  # RocketMQ 5 corrects to the max offset
        partial = store.get_messages("T", 0, 1, 1)
        assert (partial.status, partial.message_count, partial.next_begin_offset) == (GetStatus.FOUND, 1, 2)


def test_tag_hash_filter_and_exact_filter(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        for i, tag in enumerate(["TagA", "TagB", "TagC", None, "TagA"]):
            store.put_message("T", 0, b"m%d" % i, props(tags=tag) if tag else "")
        codes = frozenset({rec.java_string_hash("TagA"), rec.java_string_hash("TagC")})
        got = store.get_messages("T", 0, 0, 32, tag_codes=codes)
        assert [r.body for r in rec.iter_records(got.body())] == [b"m0", b"m2", b"m4"]
        assert got.next_begin_offset == 5
        only_b = store.get_messages("T", 0, 0, 32, tag_codes=frozenset({rec.java_string_hash("TagB")}))
        assert [r.body for r in rec.iter_records(only_b.body())] == [b"m1"]

        def exact(view: memoryview) -> bool:
            return rec.decode_record(view).tags == "TagC"

        exact_c = store.get_messages("T", 0, 0, 32, tag_codes=codes, record_filter=exact)
        assert [r.body for r in rec.iter_records(exact_c.body())] == [b"m2"]
        none = store.get_messages("T", 0, 0, 32, tag_codes=frozenset({123}))
        assert (none.status, none.next_begin_offset) == (GetStatus.NO_MATCHED_MESSAGE, 5)


def test_max_bytes_limits_a_pull_but_always_returns_one(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        store.put_messages("T", 0, [(bytes(1000), "", 0)] * 10)
        got = store.get_messages("T", 0, 0, 32, max_bytes=2500)
        assert got.message_count == 2
        one = store.get_messages("T", 0, 0, 32, max_bytes=10)
        assert one.message_count == 1


def test_offset_by_time_and_earliest_store_time(small_config: ConfigFactory) -> None:
    now = [1_000_000]
    config = small_config()
    store = MessageStore(config, clock_ms=lambda: now[0]).open()
    try:
        for i in range(10):
            now[0] = 1_000_000 + i * 1000
            store.put_message("T", 0, b"%d" % i)
        assert store.get_earliest_store_time("T", 0) == 1_000_000
        assert store.get_offset_by_time("T", 0, 1_003_000) == 3
        assert store.get_offset_by_time("T", 0, 1_003_500) == 4
        assert store.get_offset_by_time("T", 0, 1_003_500, upper=True) == 3
        assert store.get_offset_by_time("T", 0, 0) == 0
        assert store.get_offset_by_time("T", 0, 9_999_999) == 10
    finally:
        store.close()


def test_query_by_key_and_unique_key_and_msg_id(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        store.put_message("T", 0, b"one", props(keys="order-1 cust-9", uniq="AA01"))
        second = store.put_message("T", 1, b"two", props(keys="order-2", uniq="AA02"))
        store.put_message("Other", 0, b"three", props(keys="order-1"))
        assert [rec.decode_record(r).body for r in store.query_by_key("T", "order-1", 10)] == [b"one"]
        assert [rec.decode_record(r).body for r in store.query_by_key("T", "cust-9", 10)] == [b"one"]
        assert [rec.decode_record(r).body for r in store.query_by_key("T", "AA02", 10)] == [b"two"]
        assert store.query_by_key("T", "nope", 10) == []
        msg_id = rec.offset_msg_id("127.0.0.1", 10911, second.physical_offset)
        _, _, physical = rec.decode_offset_msg_id(msg_id)
        data = store.read_record(physical)
        assert data is not None
        assert rec.decode_record(data).body == b"two"
        assert store.read_record(physical + 1) is None
        assert store.read_record(10**12) is None


def test_bad_input_is_refused_with_a_status_and_the_store_keeps_working(small_config: ConfigFactory) -> None:
    with open_store(small_config()) as store:
        too_big = store.put_message("T", 0, bytes(16 * 1024 + 1))
        assert too_big.status is PutStatus.MESSAGE_ILLEGAL
        assert "over" in too_big.error
        long_props = store.put_message("T", 0, b"x", "k\x01" + "v" * 40000 + "\x02")
        assert long_props.status is PutStatus.PROPERTIES_SIZE_EXCEEDED
        long_topic = store.put_message("T" * 128, 0, b"x")
        assert long_topic.status is PutStatus.MESSAGE_ILLEGAL
        assert store.put_messages("T", 0, []).status is PutStatus.MESSAGE_ILLEGAL
        assert store.put_message("T", 0, b"fine").is_ok
        assert store.get_max_offset("T", 0) == 1


def test_reopen_after_clean_close_keeps_everything(small_config: ConfigFactory) -> None:
    config = small_config()
    with open_store(config) as store:
        for i in range(300):
            store.put_message(f"T{i % 3}", i % 2, b"body-%d" % i, props(tags="A", keys=f"k{i}"))
    with open_store(config) as store:
        assert store.recovery_report["crashed"] is False, store.recovery_report
        assert store.recovery_report["redispatched"] == 0
        assert store.topics() == ["T0", "T1", "T2"]
        assert sum(store.get_max_offset(f"T{t}", q) for t in range(3) for q in range(2)) == 300
        assert len(store.query_by_key("T1", "k4", 10)) == 1
        result = store.put_message("T0", 0, b"after")
        assert result.queue_offset == store.get_max_offset("T0", 0) - 1
        assert records_of(store, "T0", 0)[-1].body == b"after"
