"""MessageStore.append_batch: records packed straight from a batch body equal those of the general path;
malformed bodies are refused whole, leave nothing behind, and never raise."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidemq.store import record as rec
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.packing import split_batch
from tidemq.store.results import GetStatus, PutStatus

from .conftest import ConfigFactory
from .helpers import props

NOW = 1_700_000_000_000

ENTRIES = [
    (b"first body", props(tags="TagA", keys="order-1 cust-9", uniq="U01"), 0),
    (bytes(range(256)), props(tags="TagB", uniq="U02", color="blue"), 7),
    (b"", props(keys="order-2"), 1),
    ("日本".encode(), props(tags="标签", uniq="U04", note="é"), 0),
    (b"no properties", "", 0),
]


def encode_batch(entries: list[tuple[bytes, bytes, int]]) -> bytes:
    """A batch body as the official clients encode it (MessageDecoder.encodeMessage per message); properties
    as raw bytes so that a test can send any."""
    out = b""
    for body, properties, flag in entries:
        size = 20 + len(body) + 2 + len(properties)
        out += struct.pack(">iiiii", size, 0, 0, flag, len(body)) + body + struct.pack(">h", len(properties))
        out += properties
    return out


def fixed_clock_store(config: StoreConfig) -> MessageStore:
    return MessageStore(config, clock_ms=lambda: NOW).open()


def commit_log_bytes(store: MessageStore, start: int, end: int) -> bytes:
    out = b""
    while start < end:
        record = store.read_record(start)
        assert record is not None
        out += record
        start += len(record)
    return out


def test_records_from_a_batch_body_equal_the_general_paths(small_config: ConfigFactory, tmp_path: Path) -> None:
    body = encode_batch([(b, p.encode(), f) for b, p, f in ENTRIES])
    fast_config = small_config()
    slow_config = dataclasses.replace(fast_config, store_path_root_dir=tmp_path / "slow")
    options = {"sys_flag": 0, "born_timestamp": NOW - 5, "born_host": ("10.0.0.7", 40001), "reconsume_times": 0}
    with fixed_clock_store(fast_config) as fast, fixed_clock_store(slow_config) as slow:
        fast.put_message("T", 3, b"before")
        slow.put_message("T", 3, b"before")
        batched = fast.append_batch("T", 3, body, **options)  # type: ignore[arg-type]
        general = slow.append_messages("T", 3, split_batch(body), **options)  # type: ignore[arg-type]
        assert batched.status is PutStatus.PUT_OK, batched.error
        assert (batched.queue_offset, batched.message_count) == (1, len(ENTRIES))
        assert batched.physical_offsets == general.physical_offsets
        assert batched.end_offset == general.end_offset
        assert commit_log_bytes(fast, batched.physical_offset, batched.end_offset) == commit_log_bytes(
            slow, general.physical_offset, general.end_offset
        )
        fast_result = fast.get_messages("T", 3, 0, 32)
        assert fast_result.body() == slow.get_messages("T", 3, 0, 32).body()
        assert [r.body for r in rec.iter_records(fast_result.body())] == [b"before"] + [e[0] for e in ENTRIES]
        assert all(r.is_body_crc_ok() for r in rec.iter_records(fast_result.body()))
        # the tag hash in the consume queue lets a tag filter find the records
        tagged = fast.get_messages("T", 3, 0, 32, tag_codes=frozenset({rec.java_string_hash("标签")}))
        assert [r.body for r in rec.iter_records(tagged.body())] == ["日本".encode()]
        for key, bodies in {"order-1": [b"first body"], "cust-9": [b"first body"], "U02": [bytes(range(256))]}.items():
            assert [rec.decode_record(r).body for r in fast.query_by_key("T", key, 10)] == bodies


def test_a_batch_that_would_end_the_segment_rolls_over_like_any_append(small_config: ConfigFactory) -> None:
    with fixed_clock_store(small_config(mapped_file_size_commit_log=4096, max_message_size=1024)) as store:
        body = encode_batch([(b"x" * 200, props(keys=f"k{i}").encode(), 0) for i in range(12)])  # ~3.6 KB
        results = [store.append_batch("T", 0, body) for _ in range(5)]
        assert all(r.status is PutStatus.PUT_OK for r in results), [r.error for r in results]
        assert store.get_max_offset("T", 0) == 60
        for result in results:
            for physical in result.physical_offsets:
                record = store.read_record(physical)
                assert record is not None
                assert physical // 4096 == (physical + len(record) - 1) // 4096  # no record spans two segments
        assert len(store.query_by_key("T", "k11", 10)) == 5


def test_malformed_batches_are_refused_whole_and_leave_nothing_behind(small_config: ConfigFactory) -> None:
    good = encode_batch([(b, p.encode(), f) for b, p, f in ENTRIES])
    second_entry_at = struct.unpack_from(">i", good, 0)[0]
    bad_props_length = bytearray(good)
    struct.pack_into(">h", bad_props_length, second_entry_at - 2 - len(ENTRIES[0][1].encode()), 1000)
    not_utf8 = encode_batch([(b"a", props(uniq="U9").encode(), 0), (b"b", b"KEYS\x01\xff\xfe\x02", 0)])
    cases = {
        b"": "empty",
        good[:-3]: "bad lengths",
        good[:10]: "cut short",
        bytes(bad_props_length): "bad lengths",
        not_utf8: "not UTF-8",
        encode_batch([(bytes(16 * 1024 + 1), b"", 0)]): "over",
    }
    with fixed_clock_store(small_config()) as store:
        for body, reason in cases.items():
            result = store.append_batch("T", 0, body)
            assert result.status is PutStatus.MESSAGE_ILLEGAL, reason
            assert reason in result.error
        assert store.get_max_offset("T", 0) == 0
        assert store.query_by_key("T", "U9", 10) == []
        assert store.append_batch("T", 0, good).status is PutStatus.PUT_OK
        assert store.get_max_offset("T", 0) == len(ENTRIES)
        assert store.append_batch("T" * 128, 0, good).status is PutStatus.MESSAGE_ILLEGAL


def _flip(body: bytes, position: int, value: int) -> bytes:
    """``body`` with one byte replaced: lengths and heads go wrong in every way a bad client can send."""
    at = position % len(body)
    return body[:at] + bytes((value,)) + body[at + 1 :]


_ENTRY_LISTS = st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=40), st.integers(0, 9)), max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        _ENTRY_LISTS.map(encode_batch),
        st.tuples(_ENTRY_LISTS.filter(bool), st.integers(0, 10_000), st.integers(0, 255)).map(
            lambda case: _flip(encode_batch(case[0]), case[1], case[2])
        ),
    )
)
def test_fuzzed_batch_bodies_are_stored_or_refused_never_raise(small_config: ConfigFactory, body: bytes) -> None:
    # The index in-process: this fuzzes packing, and 300 stores each starting an index worker cost 20 s.
    config = small_config(mapped_file_size_commit_log=1 << 20, index_worker_enable=False)
    with fixed_clock_store(config) as store:
        before = store.get_max_offset("F", 0)
        result = store.append_batch("F", 0, body)
        assert result.status in (PutStatus.PUT_OK, PutStatus.MESSAGE_ILLEGAL)
        after = store.get_max_offset("F", 0)
        if result.status is PutStatus.PUT_OK:
            assert after == before + result.message_count
            records: list[rec.StoredRecord] = []
            while len(records) < result.message_count:  # a pull stops at the end of a commit-log segment
                pulled = store.get_messages("F", 0, before + len(records), 64)
                assert pulled.status is GetStatus.FOUND
                records += rec.iter_records(pulled.body())
            assert [(r.body, r.flag) for r in records] == [(b, f) for b, _, f in split_batch(body)]
        else:
            assert after == before
