"""RemotingConnection: frames fed whole, byte by byte, in random splits; limits; EOF; failure is final."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import pytest

from tidemq.errors import LocalProtocolError, RemoteProtocolError
from tidemq.protocol.remoting import RemotingCommand, RemotingConnection, SerializeType, encode_bytes


def sample_commands() -> list[RemotingCommand]:
    return [
        RemotingCommand(
            code=10,
            language="CPP",
            version=63,
            opaque=1,
            remark="",
            ext_fields={"topic": "T_cap", "queueId": "0"},
            body="héllo-wörld-日本".encode(),
        ),
        RemotingCommand(code=0, opaque=1, flag=1, ext_fields={"msgId": "7F00", "queueOffset": "0"}),
        RemotingCommand(code=34, opaque=2, body=b"x" * 70_000),
        RemotingCommand(
            code=105, opaque=7, ext_fields={"topic": "TopicTest"}, serialize_type=SerializeType.ROCKETMQ, body=b"{}"
        ),
        RemotingCommand(code=40, opaque=900001, flag=2, ext_fields={"consumerGroup": "CG"}),
        RemotingCommand(code=19, opaque=3, flag=1, remark="no new message"),
    ]


COMMANDS = sample_commands()
STREAM = b"".join(map(encode_bytes, COMMANDS))


def feed(conn: RemotingConnection, chunks: Sequence[bytes | bytearray | memoryview]) -> list[RemotingCommand]:
    received: list[RemotingCommand] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        received.extend(conn.events())
    return received


def test_frames_fed_whole_one_chunk() -> None:
    conn = RemotingConnection()
    assert feed(conn, [STREAM]) == COMMANDS
    assert conn.buffered_size == 0


def test_each_frame_in_its_own_chunk() -> None:
    conn = RemotingConnection()
    assert feed(conn, [encode_bytes(cmd) for cmd in COMMANDS]) == COMMANDS


def test_frames_fed_byte_by_byte() -> None:
    stream = b"".join(map(encode_bytes, COMMANDS[:2] + COMMANDS[3:]))  # without the 70 KB body: keep it quick
    conn = RemotingConnection()
    received = feed(conn, [stream[i : i + 1] for i in range(len(stream))])
    assert received == COMMANDS[:2] + COMMANDS[3:]


@pytest.mark.parametrize("seed", range(20))
def test_frames_fed_in_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 40)))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    conn = RemotingConnection()
    assert feed(conn, chunks) == COMMANDS
    conn.receive_data(b"")
    assert list(conn.events()) == []


def test_many_frames_in_one_chunk() -> None:
    frames = [RemotingCommand(code=11, opaque=i, ext_fields={"queueOffset": str(i)}) for i in range(1000)]
    conn = RemotingConnection()
    assert feed(conn, [b"".join(map(encode_bytes, frames))]) == frames


def test_partial_frame_waits_for_the_rest() -> None:
    conn = RemotingConnection()
    raw = encode_bytes(COMMANDS[0])
    conn.receive_data(raw[:-1])
    assert list(conn.events()) == []
    assert conn.next_event() is None
    assert conn.buffered_size == len(raw) - 1
    conn.receive_data(raw[-1:])
    assert conn.next_event() == COMMANDS[0]
    assert conn.next_event() is None


def test_feeding_while_iterating_and_stopping_early() -> None:
    conn = RemotingConnection()
    conn.receive_data(encode_bytes(COMMANDS[0]) + encode_bytes(COMMANDS[1]))
    events = conn.events()
    assert next(events) == COMMANDS[0]
    conn.receive_data(encode_bytes(COMMANDS[4]))  # the buffer may move while the generator is suspended
    assert list(events) == [COMMANDS[1], COMMANDS[4]]
    conn.receive_data(encode_bytes(COMMANDS[5]))
    for cmd in conn.events():
        assert cmd == COMMANDS[5]
        break
    assert list(conn.events()) == []


def test_consumed_bytes_are_dropped() -> None:
    # White box: the receive buffer does not keep what was already parsed.
    conn = RemotingConnection()
    frame = encode_bytes(COMMANDS[1])
    for _ in range(500):
        conn.receive_data(frame + frame[:10])
        list(conn.events())
        conn.receive_data(frame[10:])
        list(conn.events())
    assert len(conn._buffer) <= 2 * len(frame)


def test_memoryview_and_bytearray_chunks() -> None:
    conn = RemotingConnection()
    chunks: list[bytes | bytearray | memoryview] = [memoryview(STREAM)[:100], bytearray(STREAM[100:])]
    assert feed(conn, chunks) == COMMANDS


# --- limits and garbage ---------------------------------------------------------------------------------------


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    cmd = RemotingCommand(code=1, body=b"b" * 1000)
    raw = encode_bytes(cmd)
    conn = RemotingConnection(max_frame=len(raw) - 4)
    assert feed(conn, [raw]) == [cmd]


def test_oversized_frame_is_refused_from_its_length_word_alone() -> None:
    conn = RemotingConnection(max_frame=1024)
    conn.receive_data(struct.pack(">i", 1025))
    with pytest.raises(RemoteProtocolError, match="frame length 1025 exceeds the limit of 1024 bytes"):
        list(conn.events())


def test_default_limit_is_16_mib() -> None:
    conn = RemotingConnection()
    conn.receive_data(struct.pack(">i", (16 << 20) + 1))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 16777216"):
        conn.next_event()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xff\xff\xff", "negative frame length -1"),
        (b"\x80\x00\x00\x00", "negative frame length -2147483648"),
        (b"\x00\x00\x00\x00", "frame length 0 is below the minimum of 4"),
        (b"\x00\x00\x00\x03", "frame length 3 is below the minimum"),
        (b"GET / HTTP/1.1\r\n\r\n", "exceeds the limit"),  # someone pointed a browser at the port
        (struct.pack(">iI", 10, 7) + b"{}{}{}", "header length 7 exceeds the frame length 10"),
        (struct.pack(">iI", 10, 3 << 24 | 6) + b"{}{}{}", "unknown serialize type 3"),
        (struct.pack(">iI", 10, 6) + b"{}{}{}", "bad JSON command header"),
    ],
)
def test_garbage_raises_remote_protocol_error(raw: bytes, message: str) -> None:
    conn = RemotingConnection()
    conn.receive_data(raw)
    with pytest.raises(RemoteProtocolError, match=message):
        list(conn.events())
    assert conn.is_failed


def test_good_frames_before_a_bad_one_are_delivered_first() -> None:
    conn = RemotingConnection()
    conn.receive_data(encode_bytes(COMMANDS[0]) + encode_bytes(COMMANDS[1]) + b"\xff\xff\xff\xff")
    received: list[RemotingCommand] = []
    with pytest.raises(RemoteProtocolError, match="negative"):
        received.extend(conn.events())
    assert received == COMMANDS[:2]


def test_after_an_error_the_connection_stays_failed() -> None:
    conn = RemotingConnection()
    conn.receive_data(b"\x00\x00\x00\x01")
    with pytest.raises(RemoteProtocolError, match="below the minimum"):
        conn.next_event()
    conn.receive_data(encode_bytes(COMMANDS[1]))  # dropped: the framing is lost
    assert conn.buffered_size == 0
    for _ in range(2):
        with pytest.raises(RemoteProtocolError, match="connection already failed: frame length 1 is below"):
            list(conn.events())
    assert conn.is_failed


def test_max_frame_must_allow_the_smallest_frame() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        RemotingConnection(max_frame=3)


# --- EOF ------------------------------------------------------------------------------------------------------


def test_clean_eof() -> None:
    conn = RemotingConnection()
    conn.receive_data(encode_bytes(COMMANDS[1]))
    conn.receive_data(b"")
    assert conn.is_eof
    assert list(conn.events()) == [COMMANDS[1]]
    assert list(conn.events()) == []
    assert not conn.is_failed


@pytest.mark.parametrize("cut", [1, 3, 4, 7, 8, 20, -1])
def test_eof_mid_frame(cut: int) -> None:
    conn = RemotingConnection()
    conn.receive_data(encode_bytes(COMMANDS[1]) + encode_bytes(COMMANDS[0])[:cut])
    conn.receive_data(b"")
    received: list[RemotingCommand] = []
    with pytest.raises(RemoteProtocolError, match="connection closed mid-frame"):
        received.extend(conn.events())
    assert received == [COMMANDS[1]]
    assert conn.is_failed


def test_data_after_eof_is_a_local_error() -> None:
    conn = RemotingConnection()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after EOF"):
        conn.receive_data(b"x")
