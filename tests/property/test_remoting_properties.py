"""Hypothesis: encode/decode round trips, the stream parser never raises anything but RemoteProtocolError."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tidemq.errors import RemoteProtocolError
from tidemq.protocol.remoting import (
    LanguageCode,
    ObjectKey,
    RemotingCommand,
    RemotingConnection,
    SerializeType,
    decode_frame,
    dumps_compact,
    encode,
    encode_bytes,
    loads_lenient,
)

# The machine running CI is shared; timing is not what these tests are about.
SETTINGS = settings(deadline=None, max_examples=300)

INT32 = st.integers(-(2**31), 2**31 - 1)
SHORT = st.integers(-(2**15), 2**15 - 1)
LANGUAGES = st.sampled_from([member.name for member in LanguageCode])
BODIES: st.SearchStrategy[bytes | memoryview] = st.binary(max_size=300) | st.binary(max_size=300).map(
    lambda data: memoryview(data)
)


@st.composite
def commands(draw: st.DrawFn, serialize_type: SerializeType | None = None) -> RemotingCommand:
    serialize_type = serialize_type if serialize_type is not None else draw(st.sampled_from(SerializeType))
    if serialize_type is SerializeType.ROCKETMQ:
        # Fields are shorts there, and a zero-length remark reads back as null (spec 1.4).
        code, version, language = draw(SHORT), draw(SHORT), draw(LANGUAGES)
        remark = draw(st.none() | st.text(min_size=1))
    else:
        code, version, language = draw(INT32), draw(INT32), draw(LANGUAGES | st.text())
        remark = draw(st.none() | st.text())
    return RemotingCommand(
        code=code,
        language=language,
        version=version,
        opaque=draw(INT32),
        flag=draw(INT32),
        remark=remark,
        ext_fields=draw(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8)),
        body=draw(BODIES),
        serialize_type=serialize_type,
    )


@SETTINGS
@given(commands(SerializeType.JSON))
def test_json_commands_round_trip(cmd: RemotingCommand) -> None:
    assert decode_frame(encode_bytes(cmd)) == cmd


@SETTINGS
@given(commands(SerializeType.ROCKETMQ))
def test_binary_commands_round_trip(cmd: RemotingCommand) -> None:
    assert decode_frame(encode_bytes(cmd)) == cmd


@SETTINGS
@given(st.lists(commands(), max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_of_a_stream_gives_the_same_commands(cmds: list[RemotingCommand], cuts: list[int]) -> None:
    stream = b"".join(b"".join(encode(cmd)) for cmd in cmds)
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    conn = RemotingConnection()
    received: list[RemotingCommand] = []
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        if end > start:  # an empty chunk would mean EOF
            conn.receive_data(stream[start:end])
            received.extend(conn.events())
    conn.receive_data(b"")
    received.extend(conn.events())
    assert received == cmds


def _feed_all(chunks: list[bytes], max_frame: int) -> None:
    conn = RemotingConnection(max_frame=max_frame)
    try:
        for chunk in [*chunks, b""]:
            conn.receive_data(chunk)
            for cmd in conn.events():
                assert isinstance(cmd, RemotingCommand)
    except RemoteProtocolError:
        assert conn.is_failed


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8), st.integers(4, 1 << 20))
def test_random_bytes_raise_only_remote_protocol_error(chunks: list[bytes], max_frame: int) -> None:
    _feed_all(chunks, max_frame)


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A correct length word around a random payload, so the header decoders see the garbage."""
    type_byte = draw(st.sampled_from([0, 1]) | st.integers(0, 255))
    header = draw(
        st.binary(max_size=80)
        | st.builds(
            lambda fixed, rest: fixed + rest,
            st.builds(struct.pack, st.just(">hbhiii"), SHORT, st.integers(-128, 127), SHORT, INT32, INT32, INT32),
            st.binary(max_size=40),
        )
        | st.text(max_size=40).map(lambda text: text.encode())
        | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) | st.none()).map(
            lambda obj: json.dumps(obj).encode()
        )
    )
    header_length = draw(st.just(len(header)) | st.integers(0, 0xFFFFFF))
    body = draw(st.binary(max_size=20))
    payload = struct.pack(">I", type_byte << 24 | header_length) + header + body
    return struct.pack(">i", len(payload)) + payload


@SETTINGS
@given(st.lists(framed_garbage(), min_size=1, max_size=4), st.integers(1, 7))
def test_framed_garbage_raises_only_remote_protocol_error(frames: list[bytes], step: int) -> None:
    stream = b"".join(frames)
    _feed_all([stream[i : i + step] for i in range(0, len(stream), step)], 1 << 20)


# --- bodies ---------------------------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@SETTINGS
@given(JSON_VALUES)
def test_loads_lenient_round_trips_dumps_compact(value: Any) -> None:
    assert loads_lenient(dumps_compact(value)) == value
    assert dumps_compact(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def fastjson_text(value: Any) -> str:
    """Write ``value`` as fastjson would: int keys unquoted, ObjectKey keys as objects, and random spacing."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{fastjson_key(key)} : {fastjson_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[ " + " ,\n".join(map(fastjson_text, value)) + "]"
    return json.dumps(value, ensure_ascii=False)


def fastjson_key(key: Any) -> str:
    if isinstance(key, ObjectKey):
        return fastjson_text({name: item for name, item in key})
    if isinstance(key, int):
        return str(key)
    return json.dumps(key)


OBJECT_KEYS = st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4).map(
    lambda fields: ObjectKey.from_items(fields.items())
)
LENIENT_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers() | OBJECT_KEYS, children, max_size=4)
    ),
    max_leaves=25,
)


@SETTINGS
@given(LENIENT_VALUES)
def test_loads_lenient_reads_fastjson_forms(value: Any) -> None:
    assert loads_lenient(fastjson_text(value)) == value


@SETTINGS
@given(
    st.recursive(
        SCALARS,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(OBJECT_KEYS, children, max_size=4),
        max_leaves=20,
    )
)
def test_object_key_maps_round_trip_through_dumps_compact(value: Any) -> None:
    assert loads_lenient(dumps_compact(value)) == value


@SETTINGS
@given(st.text(alphabet='{}[]:,"0123456789-.eEtrufalsn \n\\ab', max_size=60) | st.binary(max_size=40))
def test_loads_lenient_on_garbage_raises_only_remote_protocol_error(data: str | bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        loads_lenient(data)
