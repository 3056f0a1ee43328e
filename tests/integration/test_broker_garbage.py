"""Garbage thrown at a live broker while a producer and a consumer keep working."""

from __future__ import annotations

import asyncio
import random
import struct

from tidemq.protocol.remoting import RequestCode, ResponseCode
from tidemq.store import record as rec

from .conftest import RunningBroker, call, open_client
from .test_broker_remoting import pull_fields, send_fields


async def throw_garbage(port: int, rng: random.Random, rounds: int) -> int:
    """Open connections and write malformed frames of many kinds; count the connections the broker closed."""
    closed = 0
    for i in range(rounds):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        kind = i % 5
        if kind == 0:
            payload = rng.randbytes(rng.randint(1, 300))  # noise
        elif kind == 1:
            payload = struct.pack(">i", 1 << 30) + b"x" * 20  # oversized frame
        elif kind == 2:
            payload = struct.pack(">ii", 12, 9999) + b"{junk}"  # header length past the frame
        elif kind == 3:
            header = b"{not json at all"
            payload = struct.pack(">ii", 4 + len(header), len(header)) + header
        else:
            header = b'{"code":10,"flag":0,"opaque":1,"extFields":{"topic":"T"}}'
            payload = struct.pack(">ii", 4 + len(header) + 5, len(header)) + header + b"body!"
        writer.write(payload)
        await writer.drain()
        if kind != 4:
            writer.write_eof()  # noise may look like the start of a long frame: EOF ends the wait for the rest
        try:
            data = await asyncio.wait_for(reader.read(65536), 5)
        except TimeoutError:
            data = b"timeout"
        if kind == 4:
            # A well-formed frame with missing fields gets an error *response*, not a dropped connection.
            assert data, "a valid frame with bad fields must be answered"
            assert data != b"timeout", "a valid frame with bad fields must be answered"
        elif data == b"":
            closed += 1
        writer.close()
    return closed


async def test_garbage_connections_do_not_disturb_a_producer_and_a_consumer(running_broker: RunningBroker) -> None:
    port = running_broker.port
    producer = await open_client(port)
    consumer = await open_client(port)
    sent: list[bytes] = []
    received: list[bytes] = []
    done = asyncio.Event()

    async def produce() -> None:
        for i in range(300):
            body = b"payload-%d" % i
            reply = await call(producer, RequestCode.SEND_MESSAGE, send_fields("Steady", 0), body)
            assert reply.code == ResponseCode.SUCCESS, reply.remark
            sent.append(body)
            await asyncio.sleep(0)
        done.set()

    async def consume() -> None:
        offset = 0
        while len(received) < 300:
            reply = await call(
                consumer, RequestCode.PULL_MESSAGE, pull_fields("Steady", 0, offset, sys_flag=6, suspend_ms=2000)
            )
            if reply.code == ResponseCode.SUCCESS:
                received.extend(r.body for r in rec.iter_records(bytes(reply.body)))
            offset = int(reply.ext_fields["nextBeginOffset"])

    closed = await asyncio.wait_for(asyncio.gather(produce(), consume(), throw_garbage(port, random.Random(7), 60)), 60)
    assert received == sent
    assert closed[2] >= 40, "malformed frames close their connection"
    producer.close()
    consumer.close()


async def test_a_malformed_batch_is_refused_and_the_connection_keeps_serving(running_broker: RunningBroker) -> None:
    channel = await open_client(running_broker.port)
    try:
        entry = struct.pack(">iiiii", 20 + 5 + 2 + 4, 0, 0, 0, 5) + b"hello" + struct.pack(">h", 4) + b"k\x01v\x02"
        bad_bodies = {
            entry[:-3]: "bad lengths",  # the last entry is cut short
            entry + entry[:10]: "cut short",
            entry[:25] + struct.pack(">h", 99) + entry[27:]: "bad lengths",  # properties length past the entry
            entry[:27] + b"k\x01\xff\x02": "not UTF-8",
        }
        for body, reason in bad_bodies.items():
            answer = await call(channel, RequestCode.SEND_BATCH_MESSAGE, send_fields("BatchGarbage", 0), body)
            assert answer.code == ResponseCode.MESSAGE_ILLEGAL, (reason, answer)
            assert answer.remark is not None
            assert reason in answer.remark
        good = await call(channel, RequestCode.SEND_BATCH_MESSAGE, send_fields("BatchGarbage", 0), entry + entry)
        assert good.code == ResponseCode.SUCCESS, good
        assert good.ext_fields["queueOffset"] == "0"  # nothing of the refused batches was stored
        assert len(good.ext_fields["msgId"].split(",")) == 2
    finally:
        channel.close()
