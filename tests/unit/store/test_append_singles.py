"""MessageStore.append_singles: a run of single messages to several queues, appended as one write, leaves the
store exactly as appending them one at a time would (records, queue entries, index keys, results), refuses what
append_one refuses message by message, and rolls segments as the general path does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidemq.store import record as rec
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore, SingleAppend
from tidemq.store.results import PutResult, PutStatus
from tidemq.store.segment_file import SegmentFile
from tidemq.store.tag_codes import SCHEDULE_TOPIC

from .conftest import ConfigFactory
from .helpers import props

NOW = 1_700_000_000_000
BORN = ("10.1.2.3", 45678)


def message(topic: str, queue_id: int, body: bytes, properties: str = "", **options: int) -> SingleAppend:
    return (
        topic,
        queue_id,
        body,
        properties,
        options.get("flag", 0),
        options.get("sys_flag", 0),
        options.get("born_timestamp", NOW - 5),
        options.get("reconsume_times", 0),
    )


def fixed_clock_store(config: StoreConfig) -> MessageStore:
    return MessageStore(config, clock_ms=lambda: NOW).open()


def one_at_a_time(store: MessageStore, messages: list[SingleAppend]) -> list[PutResult]:
    return [
        store.append_one(
            topic,
            queue_id,
            body,
            properties,
            flag=flag,
            sys_flag=sys_flag,
            born_timestamp=born_timestamp,
            born_host=BORN,
            reconsume_times=reconsume_times,
        )
        for topic, queue_id, body, properties, flag, sys_flag, born_timestamp, reconsume_times in messages
    ]


def state(store: MessageStore) -> tuple[bytes, dict[tuple[str, int], bytes]]:
    """The commit log's records and every queue's entries."""
    records = b""
    offset = store.commit_log.min_offset
    while offset < store.write_offset:
        record = store.read_record(offset)
        if record is None:  # the blank end of a segment: the next record starts the next segment
            offset = (offset // store.config.mapped_file_size_commit_log + 1) * store.config.mapped_file_size_commit_log
            continue
        records += record
        offset += len(record)
    entries = {
        (queue.topic, queue.queue_id): queue.read_entries(queue.min_offset, queue.max_offset - queue.min_offset)
        for queue in store.all_queues()
    }
    return records, entries


def summary(result: PutResult) -> tuple[object, ...]:
    return (result.status, result.physical_offset, result.queue_offset, result.end_offset, result.physical_offsets)


MESSAGES = [
    message("Orders", 0, b"first", props(tags="TagA", keys="order-1 cust-9", uniq="U01")),
    message("Orders", 1, bytes(range(256)), props(tags="TagB", uniq="U02", color="blue"), flag=7),
    message("Audit", 0, b"", props(keys="order-2"), reconsume_times=3),
    message("Orders", 0, "日本".encode(), props(tags="标签", uniq="U04", note="é"), sys_flag=rec.SYSFLAG_BORNHOST_V6),
    message(SCHEDULE_TOPIC, 2, b"later", props(uniq="U05", DELAY="3", REAL_TOPIC="Orders", REAL_QID="0")),
    message("Orders", 0, b"no properties"),
]


@pytest.mark.parametrize("mapped", [True, False], ids=["packed into the mapping", "written from a buffer"])
def test_a_run_leaves_the_store_as_appending_one_at_a_time_does(
    small_config: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    if not mapped:
        monkeypatch.setattr(SegmentFile, "map_with_room", lambda self, position, length: None)
    with fixed_clock_store(small_config()) as expected_store:
        expected = one_at_a_time(expected_store, MESSAGES)
        expected_state = state(expected_store)
        expected_keys = expected_store.query_index("Orders#order-1", 8, 0, NOW + 1)
    with fixed_clock_store(dataclasses.replace(small_config(), store_path_root_dir=tmp_path / "run")) as store:
        results = store.append_singles(MESSAGES, BORN)
        assert [summary(r) for r in results] == [summary(r) for r in expected]
        assert all(r.status is PutStatus.PUT_OK and r.message_count == 1 for r in results)
        assert state(store) == expected_state
        assert store.query_index("Orders#order-1", 8, 0, NOW + 1) == expected_keys == [results[0].physical_offset]
        assert store.query_index("Orders#U04", 8, 0, NOW + 1) == [results[3].physical_offset]
        stored = store.get_messages("Orders", 0, 0, 32)
        bodies = [r.body for r in rec.iter_records(stored.body())]
        assert bodies == [b"first", "日本".encode(), b"no properties"]


def test_refusals_are_per_message_and_the_rest_are_stored(small_config: ConfigFactory) -> None:
    with fixed_clock_store(small_config(max_message_size=100)) as store:
        run = [
            message("Orders", 0, b"a"),
            message("Orders", 0, b"x" * 101),
            message("", 0, b"no topic"),
            message("Orders", 0, b"b", "k\x01" + "v" * 40_000 + "\x02"),
            message("T" * 128, 0, b"long topic"),
            message("Orders", 0, b"c"),
        ]
        results = store.append_singles(run, BORN)
        assert [r.status for r in results] == [
            PutStatus.PUT_OK,
            PutStatus.MESSAGE_ILLEGAL,
            PutStatus.MESSAGE_ILLEGAL,
            PutStatus.PROPERTIES_SIZE_EXCEEDED,
            PutStatus.MESSAGE_ILLEGAL,
            PutStatus.PUT_OK,
        ]
        assert "over 100" in results[1].error
        assert [results[0].queue_offset, results[5].queue_offset] == [0, 1]
        stored = store.get_messages("Orders", 0, 0, 32)
        assert [r.body for r in rec.iter_records(stored.body())] == [b"a", b"c"]


def test_a_store_that_is_not_writable_refuses_the_whole_run(small_config: ConfigFactory) -> None:
    with fixed_clock_store(small_config()) as store:
        store.set_not_writable("disk above the warning ratio")
        results = store.append_singles([message("Orders", 0, b"a"), message("Orders", 1, b"b")], BORN)
        assert [r.status for r in results] == [PutStatus.SERVICE_NOT_AVAILABLE] * 2
        assert results[0].error == "disk above the warning ratio"
        assert store.get_max_offset("Orders", 0) == 0


def test_a_failed_write_refuses_the_run_and_leaves_nothing(
    small_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fixed_clock_store(small_config()) as store:
        store.append_one("Orders", 0, b"before")

        def no_room(self: SegmentFile, position: int, data: object) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(SegmentFile, "map_with_room", lambda self, position, length: None)
        monkeypatch.setattr(SegmentFile, "write", no_room)
        end = store.write_offset
        results = store.append_singles([message("Orders", 0, b"a", props(keys="k1")), message("Audit", 0, b"b")], BORN)
        assert [r.status for r in results] == [PutStatus.SERVICE_NOT_AVAILABLE] * 2
        assert store.write_offset == end
        assert store.get_max_offset("Orders", 0) == 1
        assert store.get_max_offset("Audit", 0) == 0
        assert not store.is_writable, "a failed write turns the store read-only, as append_one does"
        monkeypatch.undo()
        assert store.query_index("Orders#k1", 8, 0, NOW + 1) == []


def test_arrivals_are_announced_once_per_queue_with_its_new_end(small_config: ConfigFactory) -> None:
    with fixed_clock_store(small_config()) as store:
        heard: list[tuple[str, int, int]] = []
        store.arrival_listeners.append(lambda topic, queue_id, end: heard.append((topic, queue_id, end)))
        store.append_one("Orders", 1, b"earlier")
        heard.clear()
        store.append_singles([message("Orders", 1, b"a"), message("Audit", 0, b"b"), message("Orders", 1, b"c")], BORN)
        assert sorted(heard) == [("Audit", 0, 1), ("Orders", 1, 3)]


_topics = st.sampled_from(["Orders", "Audit", "%RETRY%group", SCHEDULE_TOPIC])
_properties = st.builds(
    props,
    tags=st.none() | st.sampled_from(["TagA", "TagB", "标签"]),
    keys=st.none() | st.text(alphabet="abc ", min_size=1, max_size=12),
    uniq=st.none() | st.text(alphabet="0123456789ABCDEF", min_size=4, max_size=8),
)
_messages = st.lists(
    st.builds(
        message,
        _topics,
        st.integers(0, 2),
        st.binary(max_size=3000),
        _properties,
        flag=st.integers(0, 255),
        reconsume_times=st.integers(0, 16),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(_messages, min_size=1, max_size=4))
def test_any_runs_equal_appending_one_at_a_time(
    small_config: ConfigFactory, tmp_path: Path, runs: list[list[SingleAppend]]
) -> None:
    """Runs of up to 40 messages of up to 3 KB, in 64 KiB segments: many runs end a segment, which the store
    appends one message at a time."""
    example = tmp_path / f"example-{len(list(tmp_path.iterdir()))}"
    with fixed_clock_store(dataclasses.replace(small_config(), store_path_root_dir=example / "one")) as expected_store:
        expected = [one_at_a_time(expected_store, run) for run in runs]
        expected_state = state(expected_store)
    with fixed_clock_store(dataclasses.replace(small_config(), store_path_root_dir=example / "run")) as store:
        results = [store.append_singles(run, BORN) for run in runs]
        assert [[summary(r) for r in run] for run in results] == [[summary(r) for r in run] for run in expected]
        assert state(store) == expected_state
