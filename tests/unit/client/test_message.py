"""Client-side message codecs: UNIQ_KEY layout and uniqueness, properties, batch bodies, pull bodies."""

from __future__ import annotations

import copy as copy_module
import dataclasses
import pickle
import re
import struct
import time
import zlib

import pytest

from tidemq.client._message import (
    Message,
    ReceivedMessage,
    UniqKeyGenerator,
    count_records,
    decode_messages,
    encode_batch,
    iter_bodies,
    message_properties,
    new_uniq_key,
)
from tidemq.errors import MessageIllegalError
from tidemq.store import record as rec
from tidemq.store.packing import split_batch as decode_batch

HEX32 = re.compile(r"^[0-9A-F]{32}$")


def test_uniq_key_layout_is_javas() -> None:
    generator = UniqKeyGenerator(bytes([10, 1, 2, 3]), 0x12345, 0xCAFEBABE)
    key = generator.next_key()
    assert HEX32.match(key)
    assert key[:8] == "0A010203", "IPv4 address"
    assert key[8:12] == "2345", "low 16 bits of the pid"
    assert key[12:20] == "CAFEBABE", "per-process random"
    assert key[28:] == "0001", "counter"
    since_month_start_ms = int(key[20:28], 16)
    assert 0 <= since_month_start_ms < 31 * 86_400_000
    local = time.localtime()
    month_start = time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    assert abs(month_start * 1000 + since_month_start_ms - time.time() * 1000) < 5_000
    assert generator.next_key()[28:] == "0002"


def test_uniq_keys_are_unique_and_share_the_process_prefix() -> None:
    keys = [new_uniq_key() for _ in range(200_000)]  # wraps the 16-bit counter three times
    assert len(set(keys)) == len(keys)
    assert all(HEX32.match(key) for key in keys[:1000])
    assert len({key[:20] for key in keys}) == 1


def test_generators_of_different_processes_differ() -> None:
    first = UniqKeyGenerator(bytes(4), 1, 1)
    second = UniqKeyGenerator(bytes(4), 1, 2)
    assert first.prefix != second.prefix
    with pytest.raises(ValueError):
        UniqKeyGenerator(bytes(16), 1, 1)


def test_message_properties() -> None:
    text = message_properties("U1", "TagA", ["k1", "k2"], {"color": "blue", "名前": "値"}, delay_level=3)
    assert rec.parse_properties(text) == {
        "UNIQ_KEY": "U1",
        "WAIT": "true",
        "TAGS": "TagA",
        "KEYS": "k1 k2",
        "DELAY": "3",
        "color": "blue",
        "名前": "値",
    }
    assert text.endswith("\x02")
    assert message_properties(None, None, "one key", None) == "WAIT\x01true\x02KEYS\x01one key\x02"


@pytest.mark.parametrize(
    ("tags", "properties"),
    [
        ("Tag\x01A", None),
        (None, {"TAGS": "x"}),
        (None, {"UNIQ_KEY": "x"}),
        (None, {"a": "b\x02c"}),
        (None, {"": "x"}),
        (None, {"a": ""}),
    ],
)
def test_bad_properties_are_refused(tags: str | None, properties: dict[str, str] | None) -> None:
    with pytest.raises(MessageIllegalError):
        message_properties("U", tags, None, properties)


def test_batch_body_round_trips_through_the_brokers_decoder() -> None:
    entries = [
        (b"first", message_properties("U1", "TagA", None, None), 0),
        ("héllo wörld".encode(), message_properties("U2", None, "k", {"p": "v"}), 7),
        (bytes(range(256)), message_properties("U3", None, None, None), 0),
    ]
    body = encode_batch(entries)
    assert decode_batch(body) == entries
    size = struct.unpack_from(">i", body)[0]
    assert size == 20 + len(b"first") + 2 + len(entries[0][1])
    assert struct.unpack_from(">ii", body, 4) == (0, 0), "MAGICCODE and BODYCRC are 0 in a batch entry"


def test_batch_entry_properties_are_bounded() -> None:
    with pytest.raises(MessageIllegalError):
        encode_batch([(b"x", "a\x01" + "v" * 40_000 + "\x02", 0)])


def test_message_defaults() -> None:
    message = Message(b"x")
    assert (message.tags, message.keys, message.properties, message.flag) == (None, None, None, 0)


def _records() -> bytes:
    compressed = zlib.compress(b"big body " * 100, 5)
    return b"".join(
        [
            rec.encode_record(
                topic="T",
                queue_id=1,
                body=b"plain",
                properties="UNIQ_KEY\x01ABC\x02TAGS\x01TagA\x02KEYS\x01a b\x02",
                queue_offset=5,
                physical_offset=100,
                store_host=("10.0.0.1", 10911),
            ),
            rec.encode_record(
                topic="T",
                queue_id=1,
                body=compressed,
                sys_flag=rec.SYSFLAG_COMPRESSED,
                queue_offset=6,
                physical_offset=300,
                store_host=("10.0.0.1", 10911),
            ),
        ]
    )


def test_pull_body_counting_and_decoding() -> None:
    raw = _records()
    assert count_records(raw) == 2
    assert [bytes(body)[:5] for body in iter_bodies(raw)] == [b"plain", zlib.compress(b"big body " * 100, 5)[:5]]
    first, second = decode_messages(raw)
    assert (first.topic, first.body, first.queue_offset, first.tags, first.keys) == (
        "T",
        b"plain",
        5,
        "TagA",
        ["a", "b"],
    )
    assert first.msg_id == "ABC"
    assert first.offset_msg_id == rec.offset_msg_id("10.0.0.1", 10911, 100)
    assert second.body == b"big body " * 100, "compressed bodies are inflated"
    assert second.msg_id == second.offset_msg_id, "no UNIQ_KEY: the offset id"
    with pytest.raises(ValueError):
        count_records(raw[:-1])


def test_pulled_messages_parse_their_properties_when_first_read_and_behave_as_received_messages() -> None:
    first, _ = decode_messages(_records())
    eager = ReceivedMessage(
        first.topic,
        first.body,
        first.queue_id,
        first.queue_offset,
        first.commitlog_offset,
        {"UNIQ_KEY": "ABC", "TAGS": "TagA", "KEYS": "a b"},
        first.born_timestamp,
        first.store_timestamp,
        first.born_host,
        first.store_host,
        first.reconsume_times,
        first.sys_flag,
        first.flag,
        first.store_size,
        first.broker_name,
    )
    assert isinstance(first, ReceivedMessage)
    assert first == eager, "equal to a ReceivedMessage with the same fields, both ways"
    assert eager == first
    assert first != dataclasses.replace(eager, body=b"other")
    assert repr(first) == repr(eager)
    copy = dataclasses.replace(first, reconsume_times=3)
    assert (copy.reconsume_times, copy.properties, copy.body) == (3, eager.properties, first.body)
    assert dataclasses.asdict(first) == dataclasses.asdict(eager)
    again = pickle.loads(pickle.dumps(decode_messages(_records())[0]))  # unparsed when pickled
    assert again == eager
    assert pickle.loads(pickle.dumps(first)) == eager, "parsed when pickled"
    fresh = decode_messages(_records())[0]
    assert copy_module.copy(fresh).properties == eager.properties, "copied unparsed"
    assert dataclasses.replace(decode_messages(_records())[0], flag=9).properties == eager.properties
    first.properties = {"k": "v"}  # a listener may replace the dict, as on any ReceivedMessage
    assert first.properties == {"k": "v"}


def test_pulled_messages_parse_properties_once_and_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse = rec.parse_properties

    def counting(text: str) -> dict[str, str]:
        calls.append(text)
        return parse(text)

    monkeypatch.setattr(rec, "parse_properties", counting)
    first, second = decode_messages(_records())
    assert (first.body, second.queue_offset) == (b"plain", 6)
    assert calls == [], "decoding a pull body parses no properties"
    assert first.msg_id == "ABC"
    assert first.tags == "TagA"
    assert len(calls) == 1, "parsed once, on first read"
