"""RemotingChannel over a real loopback socket: many requests in flight, timeouts found by the sweep, a
channel that keeps working after one of its requests timed out, and a read that ends in a malformed frame."""

from __future__ import annotations

import asyncio
import time

import pytest

from tidemq.protocol.remoting import RemotingCommand, RemotingConnection, encode_bytes
from tidemq.transport.remoting import TIMEOUT_SWEEP_S, RemotingChannel, RemotingServer, connect, next_opaque

SILENT = 1
ECHO = 2
LATE = 3


def handler(
    channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand | asyncio.Task[RemotingCommand] | None:
    if request.code == SILENT:
        return None  # never answered
    if request.code == LATE:
        return asyncio.ensure_future(_late(request))
    return request.make_response(0, None, {"echo": request.ext_fields["n"]})


async def _late(request: RemotingCommand) -> RemotingCommand:
    await asyncio.sleep(0.4)
    return request.make_response(0, None, {"echo": "late"})


def command(code: int, n: int = 0) -> RemotingCommand:
    return RemotingCommand(code=code, opaque=next_opaque(), ext_fields={"n": str(n)})


async def test_hundreds_of_requests_in_flight_each_get_their_own_answer() -> None:
    async with RemotingServer(handler, host="127.0.0.1", port=0) as server:
        channel = await connect("127.0.0.1", server.port)
        try:
            answers = await asyncio.gather(*(channel.request(command(ECHO, n), 5.0) for n in range(500)))
            assert [a.ext_fields["echo"] for a in answers] == [str(n) for n in range(500)]
        finally:
            channel.close()


async def test_a_timed_out_request_fails_on_time_and_the_channel_keeps_working() -> None:
    async with RemotingServer(handler, host="127.0.0.1", port=0) as server:
        channel = await connect("127.0.0.1", server.port)
        try:
            started = time.monotonic()
            silent = asyncio.ensure_future(channel.request(command(SILENT), 0.2))
            late = asyncio.ensure_future(channel.request(command(LATE), 0.2))
            answered = await channel.request(command(ECHO, 7), 5.0)  # answered while the others wait
            assert answered.ext_fields["echo"] == "7"
            for pending in (silent, late):
                with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
                    await pending
            elapsed = time.monotonic() - started
            assert 0.2 <= elapsed < 0.2 + TIMEOUT_SWEEP_S + 0.15
            await asyncio.sleep(0.35)  # the late answer arrives and is dropped
            assert (await channel.request(command(ECHO, 8), 5.0)).ext_fields["echo"] == "8"
            assert not channel.is_closed
        finally:
            channel.close()


async def test_the_frames_before_a_malformed_one_in_the_same_read_are_answered_then_the_connection_closes() -> None:
    async with RemotingServer(handler, host="127.0.0.1", port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            requests = [command(ECHO, n) for n in range(3)]
            # One write, so the server reads the three requests and the bad length word together.
            writer.write(b"".join(encode_bytes(request) for request in requests) + b"\xff\xff\xff\xff garbage")
            await writer.drain()
            received = await asyncio.wait_for(reader.read(), 5.0)  # to end of file: the server closes
            codec = RemotingConnection()
            codec.receive_data(received)
            answers = list(codec.events())
            assert sorted((a.opaque, a.ext_fields["echo"]) for a in answers) == sorted(
                (r.opaque, str(n)) for n, r in enumerate(requests)
            )
        finally:
            writer.close()


async def test_a_failing_batch_handler_costs_the_requests_of_its_read_not_the_connection() -> None:
    calls: list[int] = []

    def batch_handler(channel: RemotingChannel, requests: list[RemotingCommand]) -> list[object]:
        calls.append(len(requests))
        if len(calls) == 1:
            raise ValueError("a bug in the batch handler")
        if len(calls) == 2:
            return []  # a bug of another kind: no result for the request
        return [handler(channel, request) for request in requests]

    async with RemotingServer(handler, host="127.0.0.1", port=0, batch_handler=batch_handler) as server:
        channel = await connect("127.0.0.1", server.port)
        try:
            first = await channel.request(command(ECHO, 1), 5.0)
            assert (first.code, first.remark) == (1, "ValueError: a bug in the batch handler")
            second = await channel.request(command(ECHO, 2), 5.0)
            assert (second.code, second.remark) == (1, "RuntimeError: the batch handler answered 0 of 1 requests")
            third = await channel.request(command(ECHO, 3), 5.0)
            assert (third.code, third.ext_fields["echo"]) == (0, "3")
            assert calls == [1, 1, 1]
        finally:
            channel.close()
