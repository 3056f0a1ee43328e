"""Requests that arrive in one read: the broker handles a run of sends in passes (check every send, append every
one, answer every one), and each request still gets its own answer and sees the effects of the ones before it.

Every test writes its frames with one ``write`` on a raw socket, so the broker reads them together.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from tidemq.protocol.remoting import RemotingCommand, RemotingConnection, RequestCode, ResponseCode, encode_bytes
from tidemq.store import record as rec
from tidemq.transport import next_opaque

from .conftest import RunningBroker
from .test_broker_remoting import send_fields


def request(code: int, fields: dict[str, str], body: bytes = b"") -> RemotingCommand:
    return RemotingCommand.request(code, fields, body, opaque=next_opaque())


async def one_read(port: int, requests: list[RemotingCommand]) -> list[RemotingCommand]:
    """Write ``requests`` at once; return the answers in the order of the requests."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(encode_bytes(r) for r in requests))
        await writer.drain()
        codec = RemotingConnection()
        answers: dict[int, RemotingCommand] = {}
        while len(answers) < len(requests):
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, f"the broker closed the connection after {len(answers)} of {len(requests)} answers"
            codec.receive_data(data)
            answers.update((a.opaque, a) for a in codec.events())
        return [answers[r.opaque] for r in requests]
    finally:
        writer.close()


async def test_a_read_of_sends_and_other_requests_answers_each_as_if_handled_one_at_a_time(
    running_broker: RunningBroker,
) -> None:
    missing_topic = send_fields("Fresh", 0)
    del missing_topic["topic"]
    requests = [
        request(RequestCode.SEND_MESSAGE, send_fields("Fresh", 0), b"a"),  # creates the topic
        request(RequestCode.SEND_MESSAGE, send_fields("Fresh", 0), b"b"),  # sees it, in the same run
        request(RequestCode.GET_MAX_OFFSET, {"topic": "Fresh", "queueId": "0"}),  # after a and b are stored
        request(RequestCode.SEND_MESSAGE, missing_topic, b"c"),
        request(RequestCode.SEND_MESSAGE, send_fields("bad topic!", 0), b"d"),
        request(RequestCode.SEND_MESSAGE, send_fields("Fresh", 0), b"e"),
        request(RequestCode.SEND_MESSAGE, send_fields("Fresh", 99), b"f"),
        request(RequestCode.SEND_MESSAGE, send_fields("Fresh", 1), b"g"),
    ]
    answers = await one_read(running_broker.port, requests)
    codes = [a.code for a in answers]
    assert codes == [
        ResponseCode.SUCCESS,
        ResponseCode.SUCCESS,
        ResponseCode.SUCCESS,
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SUCCESS,
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SUCCESS,
    ], [a.remark for a in answers]
    offsets = [(a.ext_fields.get("queueId"), a.ext_fields.get("queueOffset")) for a in answers]
    assert [offsets[i] for i in (0, 1, 5, 7)] == [("0", "0"), ("0", "1"), ("0", "2"), ("1", "0")]
    assert answers[2].ext_fields["offset"] == "2", "a request sees the sends before it in the read"
    assert "lacks the field topic" in (answers[3].remark or "")
    assert "bad topic!" in (answers[4].remark or "")
    assert "queueId[99] is illegal" in (answers[6].remark or "")
    stored = running_broker.broker.store.get_messages("Fresh", 0, 0, 32)
    assert [record.body for record in rec.iter_records(stored.body())] == [b"a", b"b", b"e"]


async def test_an_unexpected_failure_of_a_stores_call_fails_only_the_sends_it_held(
    running_broker: RunningBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run of single sends is one store call: a call that raises (a bug; refusals are results) fails the sends
    of that call. A batch send splits the run, and the sends on its other side are stored."""
    store = running_broker.broker.store
    real_append_singles = store.append_singles

    def append_singles(messages: list[Any], born_host: Any) -> Any:
        if any(topic == "Boom" for topic, *_ in messages):
            raise RuntimeError("the disk caught fire")
        return real_append_singles(messages, born_host)

    monkeypatch.setattr(store, "append_singles", append_singles)
    batch_fields = {**send_fields("Calm", 0), "batch": "true"}
    batch = struct.pack(">iiiii", 20 + 1 + 2, 0, 0, 0, 1) + b"B" + struct.pack(">h", 0)
    requests = [
        request(RequestCode.SEND_MESSAGE, send_fields("Calm", 0), b"1"),
        request(RequestCode.SEND_MESSAGE, send_fields("Boom", 0), b"2"),
        request(RequestCode.SEND_BATCH_MESSAGE, batch_fields, batch),
        request(RequestCode.SEND_MESSAGE, send_fields("Calm", 0), b"3"),
        request(RequestCode.SEND_MESSAGE, send_fields("Calm", 1), b"4"),
    ]
    answers = await one_read(running_broker.port, requests)
    assert [a.code for a in answers] == [
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SUCCESS,
        ResponseCode.SUCCESS,
        ResponseCode.SUCCESS,
    ], [a.remark for a in answers]
    assert answers[0].remark == answers[1].remark == "RuntimeError: the disk caught fire"
    assert [a.ext_fields.get("queueOffset") for a in answers[2:]] == ["0", "1", "0"]
    assert "handler for request code 10 failed" in caplog.text
    stored = store.get_messages("Calm", 0, 0, 32)
    assert [record.body for record in rec.iter_records(stored.body())] == [b"B", b"3"]
    again = await one_read(running_broker.port, [request(RequestCode.SEND_MESSAGE, send_fields("Calm", 0), b"5")])
    assert again[0].ext_fields["queueOffset"] == "2"
