"""Requests the broker forwards to consumers (running info, consume directly) and the ones it sends them itself
(offset reset, consumer status), with our PushConsumer and Admin against a real ``tidemq dev`` subprocess; the
timeout and malformed-answer cases use an in-process broker and a raw client that misbehaves on purpose.

Admin-side requests go out on an asyncio connection (not the blocking ``remoting_call``): the consumer that must
answer runs on the test's own event loop.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.integration.conftest import RunningBroker, call
from tests.server_process import ServerProcess, committed_offset, start_server
from tidemq.client import (
    Admin,
    ConsumeFromWhere,
    ConsumeResult,
    ConsumerTimings,
    LitePullConsumer,
    MessageQueue,
    Producer,
    PushConsumer,
    ReceivedMessage,
)
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, dumps_compact, loads_lenient
from tidemq.transport import RemotingChannel, connect

pytestmark = pytest.mark.timeout(60)

FAST = ConsumerTimings(pull_suspend_s=2.0, persist_interval_s=1.0, shutdown_timeout_s=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("b2c") / "data")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def admin_channel(server: ServerProcess) -> AsyncIterator[RemotingChannel]:
    host, _, port = server.broker_addr.rpartition(":")
    channel = await connect(host, int(port))
    try:
        yield channel
    finally:
        channel.close()


async def wait_for(probe: Callable[[], object], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(0.02)


class Inbox:
    """A listener recording bodies; raises on a body that starts with ``boom``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, message: ReceivedMessage) -> ConsumeResult:
        self.bodies.append(message.body)
        if message.body.startswith(b"boom"):
            raise RuntimeError("listener refuses " + message.body.decode())
        if message.body.startswith(b"later"):
            return ConsumeResult.RECONSUME_LATER
        return ConsumeResult.CONSUME_SUCCESS


async def started_consumer(server: ServerProcess, group: str, topic: str, inbox: Inbox) -> PushConsumer:
    consumer = PushConsumer(group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, "*", inbox)
    await consumer.start()
    return consumer


def by_queue(table: dict[object, object]) -> dict[tuple[str, int], object]:
    found = {}
    for key, value in table.items():
        fields = dict(key)  # type: ignore[call-overload]
        found[(str(fields["topic"]), int(fields["queueId"]))] = value
    return found


async def test_running_info_and_consumer_status_come_from_the_client(
    server: ServerProcess, admin_channel: RemotingChannel
) -> None:
    topic, group = "B2C_info", "CG_b2c_info"
    async with Admin(server.namesrv_addr) as admin:
        await admin.create_topic(topic, 2)
    inbox = Inbox()
    async with Producer("PG_b2c_info", server.namesrv_addr) as producer:
        for i in range(4):
            await producer.send(topic, f"m{i}", queue_id=i % 2)
    consumer = await started_consumer(server, group, topic, inbox)
    try:
        await wait_for(lambda: len(inbox.bodies) == 4, "4 messages consumed")
        await wait_for(lambda: len(consumer.assigned_queues()) == 3, "2 queues + the retry queue held")
        response = await call(
            admin_channel,
            RequestCode.GET_CONSUMER_RUNNING_INFO,
            {"consumerGroup": group, "clientId": consumer.client_id, "jstackEnable": "true"},
        )
        assert response.code == ResponseCode.SUCCESS, response.remark
        info = loads_lenient(response.body)
        properties = info["properties"]
        assert properties["PROP_CONSUME_TYPE"] == "CONSUME_PASSIVELY"
        assert properties["PROP_CONSUMEORDERLY"] == "false"
        assert properties["PROP_NAMESERVER_ADDR"] == server.namesrv_addr
        assert properties["PROP_CLIENT_VERSION"] == "V4_9_3"
        assert int(properties["PROP_CONSUMER_START_TIMESTAMP"]) > 0
        assert int(properties["PROP_THREADPOOL_CORE_SIZE"]) == consumer.consume_concurrency
        assert {s["topic"] for s in info["subscriptionSet"]} == {topic, f"%RETRY%{group}"}
        queues = by_queue(info["mqTable"])
        assert set(queues) == {(topic, 0), (topic, 1), (f"%RETRY%{group}", 0)}
        for queue_id in (0, 1):
            row = queues[(topic, queue_id)]
            assert isinstance(row, dict)
            assert row["commitOffset"] == 2
            assert row["cachedMsgCount"] == 0
            assert row["lastPullTimestamp"] > 0
            assert row["lastConsumeTimestamp"] > 0
        assert "MainThread" in info["jstack"]

        status = await call(
            admin_channel, RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, {"topic": topic, "group": group}
        )
        assert status.code == ResponseCode.SUCCESS, status.remark
        table = loads_lenient(status.body)["consumerTable"]
        assert by_queue(table[consumer.client_id]) == {(topic, 0): 2, (topic, 1): 2}
    finally:
        await consumer.close()


async def test_consume_directly_runs_the_listener(server: ServerProcess, admin_channel: RemotingChannel) -> None:
    topic, group = "B2C_direct", "CG_b2c_direct"
    inbox = Inbox()
    async with Producer("PG_b2c_direct", server.namesrv_addr) as producer:
        await producer.send(topic, b"warm-up")
        consumer = await started_consumer(server, group, topic, inbox)
        try:
            await wait_for(lambda: inbox.bodies == [b"warm-up"], "the warm-up message consumed")
            results = {}
            for body in (b"direct-1", b"boom-2", b"later-3"):
                sent = await producer.send(topic, body)
                await wait_for(functools.partial(inbox.bodies.__contains__, body), f"{body!r} consumed normally")
                fields = {"consumerGroup": group, "clientId": consumer.client_id, "msgId": sent.offset_msg_id}
                response = await call(admin_channel, RequestCode.CONSUME_MESSAGE_DIRECTLY, fields)
                assert response.code == ResponseCode.SUCCESS, response.remark
                results[body] = loads_lenient(response.body)
            assert inbox.bodies.count(b"direct-1") == 2  # once pulled, once directly
            assert results[b"direct-1"]["consumeResult"] == "CR_SUCCESS"
            assert results[b"direct-1"]["order"] is False
            assert results[b"direct-1"]["autoCommit"] is True
            assert results[b"direct-1"]["spentTimeMills"] >= 0
            assert results[b"boom-2"]["consumeResult"] == "CR_THROW_EXCEPTION"
            assert "listener refuses boom-2" in results[b"boom-2"]["remark"]
            assert results[b"later-3"]["consumeResult"] == "CR_LATER"

            bad = await call(
                admin_channel,
                RequestCode.CONSUME_MESSAGE_DIRECTLY,
                {"consumerGroup": group, "clientId": consumer.client_id, "msgId": "not-an-id"},
            )
            assert bad.code == ResponseCode.SYSTEM_ERROR
            assert "not an offset message id" in (bad.remark or "")
        finally:
            await consumer.close()


async def test_unknown_or_missing_client_is_a_clear_error(
    server: ServerProcess, admin_channel: RemotingChannel
) -> None:
    response = await call(
        admin_channel, RequestCode.GET_CONSUMER_RUNNING_INFO, {"consumerGroup": "CG_nobody", "clientId": "1.2.3.4@x"}
    )
    assert (response.code, response.remark) == (
        ResponseCode.SYSTEM_ERROR,
        "The Consumer <CG_nobody> <1.2.3.4@x> not online",
    )
    response = await call(admin_channel, RequestCode.GET_CONSUMER_RUNNING_INFO, {"consumerGroup": "CG_nobody"})
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert "clientId" in (response.remark or "")
    response = await call(
        admin_channel,
        RequestCode.INVOKE_BROKER_TO_RESET_OFFSET,
        {"topic": "NoSuchTopic", "group": "G", "timestamp": "0"},
    )
    assert response.code == ResponseCode.TOPIC_NOT_EXIST
    response = await call(
        admin_channel, RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, {"topic": "T", "group": "CG_nobody"}
    )
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert "No Any Consumer online" in (response.remark or "")
    # the connection is still fine
    assert (await call(admin_channel, RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "CG_nobody"})).code in (
        ResponseCode.SUCCESS,
        ResponseCode.SYSTEM_ERROR,
    )


async def test_reset_by_timestamp_moves_a_live_consumer_back(server: ServerProcess) -> None:
    topic, group = "B2C_reset", "CG_b2c_reset"
    async with Admin(server.namesrv_addr) as admin:
        await admin.create_topic(topic, 2)
        inbox = Inbox()
        async with Producer("PG_b2c_reset", server.namesrv_addr) as producer:
            for i in range(4):
                await producer.send(topic, f"old-{i}", queue_id=i % 2)
            await asyncio.sleep(0.01)
            boundary_ms = time.time_ns() // 1_000_000
            await asyncio.sleep(0.01)
            new = [f"new-{i}".encode() for i in range(4)]
            for i, body in enumerate(new):
                await producer.send(topic, body, queue_id=i % 2)
        consumer = await started_consumer(server, group, topic, inbox)
        try:
            await wait_for(lambda: len(inbox.bodies) == 8, "8 messages consumed")
            await wait_for(
                lambda: [committed_offset(server.broker_addr, group, topic, q) for q in (0, 1)] == [4, 4],
                "offsets committed",
            )
            inbox.bodies.clear()
            table = await admin.reset_offset_by_timestamp(group, topic, boundary_ms)
            assert table == {MessageQueue(topic, "broker-a", 0): 2, MessageQueue(topic, "broker-a", 1): 2}
            started = time.monotonic()
            await wait_for(lambda: len(inbox.bodies) >= 4, "the new messages consumed again", timeout_s=10)
            assert time.monotonic() - started < 5  # promptly: no restart, no 10 s pause
            await asyncio.sleep(0.3)  # nothing else comes
            assert sorted(inbox.bodies) == sorted(new)
        finally:
            await consumer.close()
        assert [committed_offset(server.broker_addr, group, topic, q) for q in (0, 1)] == [4, 4]

        # With the group offline the broker still resets and commits (no fallback needed), persisted for later.
        table = await admin.reset_offset_by_timestamp(group, topic, boundary_ms)
        assert set(table.values()) == {2}
        assert [committed_offset(server.broker_addr, group, topic, q) for q in (0, 1)] == [2, 2]
        inbox = Inbox()
        consumer = await started_consumer(server, group, topic, inbox)
        try:
            await wait_for(lambda: len(inbox.bodies) == 4, "the new messages after a restart")
            await asyncio.sleep(0.3)
            assert sorted(inbox.bodies) == sorted(new)
        finally:
            await consumer.close()


async def test_reset_without_force_only_moves_offsets_back(
    server: ServerProcess, admin_channel: RemotingChannel
) -> None:
    """isForce=false (Apache 4.x ``Broker2Client.resetOffset``): a later timestamp leaves the offset where it is."""
    topic, group = "B2C_force", "CG_b2c_force"
    async with Admin(server.namesrv_addr) as admin:
        await admin.create_topic(topic, 1)
    async with Producer("PG_b2c_force", server.namesrv_addr) as producer:
        for i in range(4):
            await producer.send(topic, f"m{i}")
    commit = {"consumerGroup": group, "topic": topic, "queueId": "0", "commitOffset": "2"}
    assert (await call(admin_channel, RequestCode.UPDATE_CONSUMER_OFFSET, commit)).code == ResponseCode.SUCCESS
    future_ms = str(time.time_ns() // 1_000_000 + 3_600_000)  # after every message: the max offset, 4

    async def reset(timestamp: str, is_force: str) -> int:
        fields = {"topic": topic, "group": group, "timestamp": timestamp, "isForce": is_force}
        response = await call(admin_channel, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, fields)
        assert response.code == ResponseCode.SUCCESS, response.remark
        [offset] = by_queue(loads_lenient(response.body)["offsetTable"]).values()
        assert isinstance(offset, int)
        assert committed_offset(server.broker_addr, group, topic, 0) == offset
        return offset

    assert await reset(future_ms, "false") == 2  # would move forward: kept
    assert await reset("0", "false") == 0  # back: moved
    assert await reset(future_ms, "true") == 4  # forced: moved forward
    assert await reset("-1", "false") == 4  # -1 is the max offset


async def test_reset_by_timestamp_seeks_a_lite_pull_consumer(server: ServerProcess) -> None:
    topic, group = "B2C_lite", "CG_b2c_lite"
    async with Admin(server.namesrv_addr) as admin:
        await admin.create_topic(topic, 1)
        async with Producer("PG_b2c_lite", server.namesrv_addr) as producer:
            await producer.send(topic, b"old")
            await asyncio.sleep(0.01)
            boundary_ms = time.time_ns() // 1_000_000
            await asyncio.sleep(0.01)
            await producer.send(topic, b"new")
        consumer = LitePullConsumer(
            group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
        )
        consumer.subscribe(topic)
        async with consumer:
            got: list[bytes] = []
            while len(got) < 2:
                got += [m.body for m in await consumer.poll(5)]
            assert got == [b"old", b"new"]
            await consumer.commit()
            await admin.reset_offset_by_timestamp(group, topic, boundary_ms)
            again: list[bytes] = []
            deadline = time.monotonic() + 10
            while not again and time.monotonic() < deadline:
                again += [m.body for m in await consumer.poll(1)]
            assert again == [b"new"]


# -- a client that never answers, or answers garbage (in-process broker) ----------------------------------------


def heartbeat(client_id: str, group: str, topic: str) -> bytes:
    return dumps_compact(
        {
            "clientID": client_id,
            "producerDataSet": [],
            "consumerDataSet": [
                {
                    "groupName": group,
                    "consumeType": "CONSUME_PASSIVELY",
                    "messageModel": "CLUSTERING",
                    "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
                    "subscriptionDataSet": [{"topic": topic, "subString": "*", "subVersion": 1}],
                    "unitMode": False,
                }
            ],
        }
    )


def misbehaving(channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand | None:
    """Never answers 307; answers 221 with a body that is not JSON."""
    if request.code == RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT:
        return request.make_response(ResponseCode.SUCCESS, None, None, b"{not json")
    return None


async def test_silent_client_gets_a_timeout_without_holding_up_other_traffic(running_broker: RunningBroker) -> None:
    running_broker.gateway.client_call_timeout_s = 1.0
    group, client_id = "CG_silent", "127.0.0.1@silent"
    silent = await connect("127.0.0.1", running_broker.port, misbehaving)
    admin = await connect("127.0.0.1", running_broker.port)
    try:
        assert (await call(silent, RequestCode.HEART_BEAT, body=heartbeat(client_id, group, "T"))).code == 0
        started = time.monotonic()
        pending = asyncio.ensure_future(
            call(admin, RequestCode.GET_CONSUMER_RUNNING_INFO, {"consumerGroup": group, "clientId": client_id})
        )
        # Meanwhile both connections are served at once.
        others = await asyncio.gather(
            call(admin, RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group}),
            call(silent, RequestCode.HEART_BEAT, body=heartbeat(client_id, group, "T")),
        )
        assert [r.code for r in others] == [0, 0]
        assert time.monotonic() - started < 0.5
        response = await pending
        assert response.code == ResponseCode.CONSUME_MSG_TIMEOUT
        assert f"consumer <{group}> <{client_id}> Timeout" in (response.remark or "")
        assert 0.9 < time.monotonic() - started < 3

        status = await call(admin, RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, {"topic": "T", "group": group})
        assert status.code == ResponseCode.SUCCESS
        assert loads_lenient(status.body) == {"consumerTable": {}}  # the garbage answer is left out
        assert not silent.is_closed
        assert not admin.is_closed
    finally:
        silent.close()
        admin.close()
