"""The client SDK against a real ``tidemq dev`` subprocess, and against in-process fakes for failure cases.

The client is asyncio and the server a subprocess, so no event loops are shared. Fakes (a RemotingServer acting
as name server and broker) make timeouts, retryable codes and heartbeat bodies deterministic.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, consumer_ids, free_port, start_server
from tidemq.client import (
    BrokerError,
    ClientConfig,
    ClientStateError,
    ConnectionFailedError,
    Message,
    MessageQueue,
    NoRouteError,
    Producer,
    ProducerConfig,
    PullClient,
    PullStatus,
    ReceivedMessage,
    RequestTimeoutError,
    SendResult,
    SendStatus,
    TransactionState,
)
from tidemq.client._routes import java_string_hash
from tidemq.errors import IllegalNameError, MessageIllegalError
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, loads_lenient
from tidemq.store import record as rec
from tidemq.transport import RemotingChannel, RemotingServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("client") / "data")
    try:
        yield process
    finally:
        process.stop()


async def pull_all(client: PullClient, queue: MessageQueue, offset: int = 0) -> list[rec.StoredRecord]:
    result = await client.pull(queue, offset, max_count=1024)
    assert result.status is PullStatus.FOUND, result
    return list(rec.iter_records(result.raw))


# --- against the real server ------------------------------------------------------------------------------------


async def test_send_and_pull_round_trip(server: ServerProcess) -> None:
    body = "héllo wörld 日本 ✓"
    async with Producer("PG_round", server.namesrv_addr) as producer:
        result = await producer.send(
            "ClientRoundTrip", body, tags="TagA", keys=["order-1", "ключ"], properties={"color": "blue", "名": "値"}
        )
    assert result.status is SendStatus.SEND_OK
    assert len(result.msg_id) == 32
    assert result.broker_name == "broker-a"
    assert rec.decode_offset_msg_id(result.offset_msg_id)[1] == server.broker_port
    async with PullClient("CG_round", server.namesrv_addr) as client:
        queues = await client.queues("ClientRoundTrip")
        assert [q.queue_id for q in queues] == [0, 1, 2, 3]
        queue = MessageQueue("ClientRoundTrip", result.broker_name, result.queue_id)
        pulled = await client.pull(queue, result.queue_offset)
        assert pulled.status is PullStatus.FOUND
        assert pulled.message_count == 1
        [message] = pulled.messages
        assert message.body == body.encode()
        assert message.tags == "TagA"
        assert message.keys == ["order-1", "ключ"]
        assert message.properties["color"] == "blue"
        assert message.properties["名"] == "値"
        assert message.msg_id == result.msg_id
        assert message.offset_msg_id == result.offset_msg_id
        assert (message.queue_id, message.queue_offset) == (result.queue_id, result.queue_offset)
        assert pulled.next_begin_offset == result.queue_offset + 1
        filtered = await client.pull(queue, result.queue_offset, expression="TagB")
        assert filtered.status is PullStatus.NO_MATCHED_MSG
        none = await client.pull(queue, result.queue_offset + 1)
        assert none.status is PullStatus.NO_NEW_MSG
        assert none.raw == b""
        assert none.messages == []


async def test_large_bodies_are_compressed_and_come_back_whole(server: ServerProcess) -> None:
    body = b"compressible " * 2000
    async with Producer("PG_big", server.namesrv_addr) as producer:
        result = await producer.send("ClientBig", body)
    async with PullClient("CG_big", server.namesrv_addr) as client:
        pulled = await client.pull(MessageQueue("ClientBig", result.broker_name, result.queue_id), result.queue_offset)
        [message] = pulled.messages
        assert message.sys_flag & rec.SYSFLAG_COMPRESSED
        assert message.body == body
        assert len(bytes(next(pulled.bodies()))) < len(body) // 10


async def test_batch_goes_to_one_queue_with_consecutive_offsets(server: ServerProcess) -> None:
    messages = [Message(f"batch-{i}".encode(), tags="TagB", keys=f"key-{i}") for i in range(5)]
    async with Producer("PG_batch", server.namesrv_addr) as producer:
        result = await producer.send_batch("ClientBatch", [*messages, b"plain"])
        second = await producer.send_batch("ClientBatch", [b"x", b"y"], queue_id=result.queue_id)
    ids = result.msg_id.split(",")
    assert len(ids) == 6
    assert len(set(ids)) == 6
    assert len(result.offset_msg_id.split(",")) == 6
    assert second.queue_id == result.queue_id
    assert second.queue_offset == result.queue_offset + 6
    async with PullClient("CG_batch", server.namesrv_addr) as client:
        queue = MessageQueue("ClientBatch", result.broker_name, result.queue_id)
        records = await pull_all(client, queue, result.queue_offset)
    assert [r.body for r in records] == [*(m.body for m in messages), b"plain", b"x", b"y"]
    assert [r.queue_offset for r in records] == list(range(result.queue_offset, result.queue_offset + 8))
    assert [r.properties["UNIQ_KEY"] for r in records[:6]] == ids
    assert records[2].properties["KEYS"] == "key-2"
    assert records[0].tags == "TagB"


async def test_oneway_sends_arrive(server: ServerProcess) -> None:
    async with Producer("PG_oneway", server.namesrv_addr) as producer:
        for i in range(20):
            await producer.send_oneway("ClientOneway", f"one-{i}".encode(), queue_id=0)
        last = await producer.send("ClientOneway", b"sync", queue_id=0)
    assert last.queue_offset == 20, "the oneway sends before it on the same connection were stored first"
    async with PullClient("CG_oneway", server.namesrv_addr) as client:
        records = await pull_all(client, MessageQueue("ClientOneway", "broker-a", 0))
    assert [r.body for r in records] == [f"one-{i}".encode() for i in range(20)] + [b"sync"]


async def test_send_orderly_puts_one_key_on_one_queue_in_order(server: ServerProcess) -> None:
    # Java's String.hashCode (jshell): the queue a Java producer's SelectMessageQueueByHash picks for the key.
    assert [java_string_hash(key) for key in ("order-1", "订单-5", "😀", "")] == [-1207111310, 1085411547, 1772899, 0]
    keys = ["order-1", "order-2", "order-3", "订单-5"]
    queue_ids: defaultdict[str, set[int]] = defaultdict(set)
    async with Producer("PG_orderly_send", server.namesrv_addr) as producer:
        for step in range(5):
            for key in keys:
                result = await producer.send_orderly("ClientOrderlySend", f"{key}:{step}", key, keys=key)
                queue_ids[key].add(result.queue_id)
    assert all(len(ids) == 1 for ids in queue_ids.values()), queue_ids
    assert queue_ids["order-1"] == {1207111310 % 4}
    async with PullClient("CG_orderly_send", server.namesrv_addr) as client:
        await wait_for_route(client, "ClientOrderlySend")
        bodies: defaultdict[str, list[str]] = defaultdict(list)
        for queue in await client.queues("ClientOrderlySend"):
            for record in await records_of(client, queue):
                bodies[record.properties["KEYS"]].append(record.body.decode())
                assert {record.queue_id} == queue_ids[record.properties["KEYS"]]
    assert bodies == {key: [f"{key}:{step}" for step in range(5)] for key in keys}


async def records_of(client: PullClient, queue: MessageQueue) -> list[rec.StoredRecord]:
    result = await client.pull(queue, 0, max_count=1024)
    return list(rec.iter_records(result.raw))


async def test_transactions_commit_rollback_and_check_back(tmp_path: Path) -> None:
    conf = tmp_path / "broker.conf"
    conf.write_text("transactionCheckInterval=1000\ntransactionTimeOut=2000\n")  # check halves 2 s old, every second
    process = start_server(tmp_path / "data", broker_conf=conf)
    decisions = {
        "commit": TransactionState.COMMIT,
        "rollback": TransactionState.ROLLBACK,
        "unknown-then-commit": TransactionState.UNKNOWN,
        "unknown-then-rollback": TransactionState.UNKNOWN,
        "raises-then-commit": TransactionState.UNKNOWN,
    }
    checked: list[ReceivedMessage] = []

    async def check(message: ReceivedMessage) -> TransactionState:
        checked.append(message)
        return TransactionState.ROLLBACK if message.body.endswith(b"rollback") else TransactionState.COMMIT

    def local_transaction(body: str) -> Callable[[SendResult], TransactionState]:
        def execute(half: SendResult) -> TransactionState:
            assert half.status is SendStatus.SEND_OK
            if body.startswith("raises"):
                raise RuntimeError("the local transaction failed")
            return decisions[body]

        return execute

    try:
        async with (
            Producer("PG_tx", process.namesrv_addr, transaction_checker=check) as producer,
            PullClient("CG_tx", process.namesrv_addr) as client,
        ):
            results = {
                body: await producer.send_in_transaction(
                    "ClientTx", body, local_transaction(body), tags="Tx", keys=body
                )
                for body in decisions
            }
            assert {body: r.state for body, r in results.items()} == decisions
            unknown = {r.transaction_id for r in results.values() if r.state is TransactionState.UNKNOWN}
            deadline = time.monotonic() + 15
            while {m.msg_id for m in checked} != unknown:
                assert time.monotonic() < deadline, f"check-backs: {[m.body for m in checked]}"
                await asyncio.sleep(0.05)
            await wait_for_route(client, "ClientTx")
            stored: list[rec.StoredRecord] = []
            while sorted(r.body for r in stored) != [b"commit", b"raises-then-commit", b"unknown-then-commit"]:
                assert time.monotonic() < deadline, f"committed: {[r.body for r in stored]}"
                await asyncio.sleep(0.05)
                stored = [r for q in await client.queues("ClientTx") for r in await records_of(client, q)]
    finally:
        process.stop()
    for message in checked:
        assert message.topic == "ClientTx", "the check shows the half message in its real topic"
        assert (message.properties["TRAN_MSG"], message.properties["PGROUP"], message.tags) == ("true", "PG_tx", "Tx")
    ids = {body: r.transaction_id for body, r in results.items()}
    for record in stored:
        assert record.properties["UNIQ_KEY"] == ids[record.body.decode()], "the transaction id is the message id"
        assert record.sys_flag & rec.SYSFLAG_TRANSACTION_MASK == rec.SYSFLAG_TRANSACTION_COMMIT


async def test_unknown_topic_is_created_through_tbw102(server: ServerProcess) -> None:
    config = ProducerConfig(default_topic_queue_nums=2)
    async with Producer("PG_new", server.namesrv_addr, config=config) as producer:
        assert [q.queue_id for q in await producer.queues("ClientBrandNew")] == [0, 1], "TBW102's route, capped"
        results = [await producer.send("ClientBrandNew", f"m{i}".encode()) for i in range(4)]
    assert sorted(r.queue_id for r in results) == [0, 0, 1, 1], "round robin over the two queues"
    async with PullClient("CG_new", server.namesrv_addr) as client:
        deadline = time.monotonic() + 10
        while True:  # the broker registers the new topic with the name server right after creating it
            try:
                queues = await client.queues("ClientBrandNew", refresh=True)
                break
            except NoRouteError:
                assert time.monotonic() < deadline, "the new topic never reached the name server"
                await asyncio.sleep(0.1)
        assert [q.queue_id for q in queues] == [0, 1]
        assert sum([await client.max_offset(q) for q in queues]) == 4


async def test_broker_errors_surface_typed_with_code_and_remark(server: ServerProcess) -> None:
    config = ProducerConfig(max_message_size=8 << 20, compress_msg_body_over_bytes=1 << 30)
    async with Producer("PG_err", server.namesrv_addr, config=config) as producer:
        with pytest.raises(BrokerError) as caught:
            await producer.send("ClientErrors", os.urandom((4 << 20) + 1))
        assert caught.value.code == ResponseCode.MESSAGE_ILLEGAL
        assert caught.value.remark
        assert caught.value.addr == server.broker_addr
        assert str(caught.value.code) in str(caught.value)
    async with PullClient("CG_err", server.namesrv_addr) as client:
        await client.queues("ClientErrors")  # (the refused send created it) now the client knows broker-a
        with pytest.raises(BrokerError) as pulled:
            await client.pull(MessageQueue("ClientNeverCreated", "broker-a", 0), 0)
        assert pulled.value.code == ResponseCode.TOPIC_NOT_EXIST
        assert "ClientNeverCreated" in pulled.value.remark
        with pytest.raises(NoRouteError):
            await client.queues("ClientNeverCreated")


async def test_client_side_validation(server: ServerProcess) -> None:
    with pytest.raises(IllegalNameError):
        Producer("bad group!", server.namesrv_addr)
    producer = Producer("PG_valid", server.namesrv_addr)
    with pytest.raises(ClientStateError):
        await producer.send("T", b"x")
    async with producer:
        with pytest.raises(IllegalNameError):
            await producer.send("bad topic!", b"x")
        with pytest.raises(MessageIllegalError):
            await producer.send("ClientValid", b"")
        with pytest.raises(MessageIllegalError):
            await producer.send("ClientValid", b"x", properties={"TAGS": "sneaky"})
        with pytest.raises(MessageIllegalError):
            await producer.send("TBW102", b"x")
        with pytest.raises(MessageIllegalError):
            await producer.send_batch("ClientValid", [])
        with pytest.raises(NoRouteError):
            await producer.send("ClientValid", b"x", queue_id=99)
    with pytest.raises(ClientStateError):
        await producer.send("ClientValid", b"x")


async def test_offsets_and_heartbeat_registration(server: ServerProcess) -> None:
    async with Producer("PG_off", server.namesrv_addr) as producer:
        for i in range(3):
            await producer.send("ClientOffsets", f"{i}".encode(), queue_id=1)
    client = PullClient("CG_offsets", server.namesrv_addr)
    async with client:
        queue = MessageQueue("ClientOffsets", "broker-a", 1)
        await client.queues("ClientOffsets")  # learning the broker triggers a heartbeat
        assert await client.max_offset(queue) == 3
        assert await client.min_offset(queue) == 0
        assert await client.query_offset(queue) == 0, "a new group on a queue starting at 0 starts at 0"
        await client.commit_offset(queue, 2)
        assert await client.query_offset(queue) == 2
        result = await client.pull(queue, 2, commit_offset=3)
        assert result.message_count == 1
        assert await client.query_offset(queue) == 3, "the pull carried the commit"
        deadline = time.monotonic() + 10
        while client.client_id not in await asyncio.to_thread(consumer_ids, server.broker_addr, "CG_offsets"):
            assert time.monotonic() < deadline, "the heartbeat never registered the consumer"
            await asyncio.sleep(0.1)
    assert client.client_id not in await asyncio.to_thread(consumer_ids, server.broker_addr, "CG_offsets")


async def wait_for_route(client: PullClient, topic: str) -> None:
    """A topic auto-created by a send reaches the name server with the broker's next registration, a moment
    later: wait for its route as a consumer's route refresh would, with a deadline."""
    deadline = time.monotonic() + 10
    while True:
        try:
            await client.queues(topic)
        except NoRouteError:
            assert time.monotonic() < deadline, f"the auto-created topic {topic} never reached the name server"
            await asyncio.sleep(0.05)
        else:
            return


async def test_long_poll_returns_when_a_message_arrives(server: ServerProcess) -> None:
    async with (
        Producer("PG_poll", server.namesrv_addr) as producer,
        PullClient("CG_poll", server.namesrv_addr) as client,
    ):
        first = await producer.send("ClientPoll", b"first", queue_id=0)
        queue = MessageQueue("ClientPoll", "broker-a", 0)
        await wait_for_route(client, "ClientPoll")
        started = time.monotonic()
        held = asyncio.create_task(client.pull(queue, first.queue_offset + 1, suspend_s=10))
        await asyncio.sleep(0.3)
        assert not held.done()
        await producer.send("ClientPoll", b"second", queue_id=0)
        result = await held
        assert [m.body for m in result.messages] == [b"second"]
        assert time.monotonic() - started < 5
        empty = await client.pull(queue, first.queue_offset + 2, suspend_s=0.2)
        assert empty.status is PullStatus.NO_NEW_MSG
        moved = await client.pull(queue, 1000)
        assert moved.status is PullStatus.OFFSET_ILLEGAL
        assert moved.next_begin_offset == moved.max_offset, "past the end: corrected to the max offset, as RocketMQ 5"


async def test_a_dead_name_server_in_the_list_is_skipped(server: ServerProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    for addrs in (f"{dead};{server.namesrv_addr}", f"{server.namesrv_addr};{dead}"):
        async with Producer("PG_ns", addrs) as producer:
            for _ in range(3):  # whichever one is picked first, the route comes
                assert (await producer.send("ClientNamesrv", b"x")).status is SendStatus.SEND_OK


async def test_stopping_the_server_fails_sends_quickly_and_a_restart_recovers(tmp_path: Path) -> None:
    process = start_server(tmp_path / "data")
    try:
        config = ProducerConfig(send_timeout_s=2.0, client=ClientConfig(connect_timeout_s=1.0))
        async with Producer("PG_stop", process.namesrv_addr, config=config) as producer:
            errors: list[Exception] = []
            sent = 0
            stopping = asyncio.Event()

            async def sender() -> None:
                nonlocal sent
                while not errors or not stopping.is_set():
                    started = time.monotonic()
                    try:
                        await producer.send("ClientStop", b"x" * 100)
                        sent += 1
                    except (ConnectionFailedError, RequestTimeoutError, BrokerError) as exc:
                        assert time.monotonic() - started < 3.5, "a failing send must not hang"
                        errors.append(exc)
                        if stopping.is_set():
                            return
                    await asyncio.sleep(0)

            async with asyncio.TaskGroup() as group:
                for _ in range(8):
                    group.create_task(sender())
                await asyncio.sleep(0.5)
                stopping.set()
                await asyncio.to_thread(process.stop)
            assert sent > 0
            assert errors, "sends after the stop failed"
            assert any(isinstance(e, ConnectionFailedError) for e in errors)
            failed = errors[-1]
            assert "127.0.0.1" in str(failed)

            process = await asyncio.to_thread(process.restart)
            result = await producer.send("ClientStop", b"after restart")  # reconnects on its own
            assert result.status is SendStatus.SEND_OK
    finally:
        process.stop()


# --- against fakes ------------------------------------------------------------------------------------------------


@dataclass
class FakeBroker:
    """An in-process name server + broker: answers routes with itself, sends per a script of codes."""

    broker_name: str = "broker-a"
    send_codes: list[int] = field(default_factory=list)
    answer_sends: bool = True
    requests: list[RemotingCommand] = field(default_factory=list)
    peers: list[FakeBroker] = field(default_factory=list)
    server: RemotingServer | None = None

    @property
    def addr(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def route(self) -> bytes:
        brokers = [self, *self.peers]
        return json.dumps(
            {
                "brokerDatas": [
                    {"brokerAddrs": {"0": b.addr}, "brokerName": b.broker_name, "cluster": "C"} for b in brokers
                ],
                "queueDatas": [
                    {"brokerName": b.broker_name, "perm": 6, "readQueueNums": 1, "writeQueueNums": 1} for b in brokers
                ],
            }
        ).encode()

    def handle(self, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand | None:
        self.requests.append(request)
        match request.code:
            case RequestCode.GET_ROUTEINFO_BY_TOPIC:
                return request.make_response(ResponseCode.SUCCESS, body=self.route())
            case RequestCode.SEND_MESSAGE_V2 | RequestCode.SEND_BATCH_MESSAGE | RequestCode.PULL_MESSAGE:
                if not self.answer_sends:
                    return None
                code = self.send_codes.pop(0) if self.send_codes else ResponseCode.SUCCESS
                fields = {"msgId": "7F000001000000010000000000000000", "queueId": "0", "queueOffset": "7"}
                return request.make_response(code, f"scripted {code}", fields)
            case _:
                return request.make_response(ResponseCode.SUCCESS)

    def codes(self) -> list[int]:
        return [r.code for r in self.requests]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeBroker, FakeBroker]]:
    first, second = FakeBroker("broker-a"), FakeBroker("broker-b")
    first.peers = [second]
    async with (
        RemotingServer(first.handle, host="127.0.0.1", port=0) as first.server,
        RemotingServer(second.handle, host="127.0.0.1", port=0) as second.server,
    ):
        yield first, second


async def test_a_silent_broker_times_out(fakes: tuple[FakeBroker, FakeBroker]) -> None:
    first, second = fakes
    first.answer_sends = second.answer_sends = False
    config = ProducerConfig(send_timeout_s=0.3)
    async with Producer("PG_t", first.addr, config=config) as producer:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as caught:
            await producer.send("T", b"x")
        assert 0.25 < time.monotonic() - started < 1.5
        assert caught.value.timeout_s <= 0.3
        assert first.codes().count(RequestCode.SEND_MESSAGE_V2) + second.codes().count(RequestCode.SEND_MESSAGE_V2) == 1
    async with PullClient("CG_t", first.addr, config=ClientConfig(request_timeout_s=0.2)) as client:
        with pytest.raises(RequestTimeoutError):
            await client.pull(MessageQueue("T", "broker-a", 0), 0, suspend_s=0.1)


async def test_retryable_codes_are_retried_on_the_other_broker(fakes: tuple[FakeBroker, FakeBroker]) -> None:
    first, second = fakes
    first.send_codes = [ResponseCode.SYSTEM_BUSY] * 10
    second.send_codes = [ResponseCode.SYSTEM_ERROR] * 10
    async with Producer("PG_r", first.addr) as producer:
        with pytest.raises(BrokerError) as caught:
            await producer.send("T", b"x")
        sends = first.codes().count(RequestCode.SEND_MESSAGE_V2) + second.codes().count(RequestCode.SEND_MESSAGE_V2)
        assert sends == 3, "one send and two retries"
        assert first.codes().count(RequestCode.SEND_MESSAGE_V2) >= 1
        assert second.codes().count(RequestCode.SEND_MESSAGE_V2) >= 1, "retries go to the other broker"
        assert caught.value.code in (ResponseCode.SYSTEM_BUSY, ResponseCode.SYSTEM_ERROR)
        assert any("3 times" in note for note in caught.value.__notes__)

        first.send_codes, second.send_codes = [ResponseCode.SYSTEM_BUSY], [ResponseCode.SYSTEM_BUSY]
        result = await producer.send("T", b"x")  # one busy answer, then the other broker stores it
        assert result.status is SendStatus.SEND_OK
        first.send_codes = [ResponseCode.FLUSH_DISK_TIMEOUT]
        second.send_codes = [ResponseCode.FLUSH_DISK_TIMEOUT]
        assert (await producer.send("T", b"x")).status is SendStatus.FLUSH_DISK_TIMEOUT

        before = len(first.requests) + len(second.requests)
        first.send_codes, second.send_codes = [ResponseCode.MESSAGE_ILLEGAL], [ResponseCode.MESSAGE_ILLEGAL]
        with pytest.raises(BrokerError) as illegal:
            await producer.send("T", b"x")
        assert illegal.value.code == ResponseCode.MESSAGE_ILLEGAL
        assert illegal.value.remark == "scripted 13"
        assert len(first.requests) + len(second.requests) == before + 1, "not retryable: one attempt"


async def test_heartbeat_and_unregister_bodies(fakes: tuple[FakeBroker, FakeBroker]) -> None:
    first, second = fakes
    async with Producer("PG_hb", first.addr) as producer:
        await producer.send("T", b"x")
        deadline = time.monotonic() + 5
        while RequestCode.HEART_BEAT not in second.codes():  # a broker seen for the first time is heartbeated
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        client_id = producer.client_id
    heartbeat = next(r for r in second.requests if r.code == RequestCode.HEART_BEAT)
    body = loads_lenient(bytes(heartbeat.body))
    assert body["clientID"] == client_id
    assert body["producerDataSet"] == [{"groupName": "PG_hb"}]
    assert heartbeat.language == "PYTHON"
    unregister = [r for r in first.requests + second.requests if r.code == RequestCode.UNREGISTER_CLIENT]
    assert unregister, "close unregisters from the brokers it is connected to"
    assert unregister[0].ext_fields == {"clientID": client_id, "producerGroup": "PG_hb"}


async def test_requests_from_the_broker_are_answered_or_ignored(fakes: tuple[FakeBroker, FakeBroker]) -> None:
    first, _ = fakes
    async with Producer("PG_srv", first.addr) as producer:
        await producer.send("T", b"x")
        assert first.server is not None
        [channel] = [c for c in first.server.channels if not c.is_closed]
        running_info = RemotingCommand.request(RequestCode.GET_CONSUMER_RUNNING_INFO, {}, opaque=900_002)
        reply = await channel.request(running_info, 2)
        assert reply.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
        assert reply.opaque == 900_002
        notify = RemotingCommand.request(
            RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": "G"}, opaque=900_003, is_oneway=True
        )
        channel.send(notify)
        assert (await producer.send("T", b"still fine")).status is SendStatus.SEND_OK


async def test_transaction_requests_on_the_wire(fakes: tuple[FakeBroker, FakeBroker]) -> None:
    """The half message, END_TRANSACTION after the local transaction, and a check-back answered on its channel."""
    first, second = fakes
    checked: list[ReceivedMessage] = []

    def requests(code: int) -> list[RemotingCommand]:
        return [r for r in first.requests + second.requests if r.code == code]

    def check(message: ReceivedMessage) -> TransactionState:
        checked.append(message)
        return TransactionState.ROLLBACK

    async with Producer("PG_wire_tx", first.addr, transaction_checker=check) as producer:
        result = await producer.send_in_transaction("T", b"half", lambda half: TransactionState.COMMIT)
        assert result.state is TransactionState.COMMIT
        [half] = requests(RequestCode.SEND_MESSAGE_V2)
        assert int(half.ext_fields["f"]) & rec.SYSFLAG_TRANSACTION_MASK == rec.SYSFLAG_TRANSACTION_PREPARED
        assert "TRAN_MSG\x01true\x02" in half.ext_fields["i"]
        assert "PGROUP\x01PG_wire_tx\x02" in half.ext_fields["i"]
        assert first.server is not None
        [channel] = [c for c in first.server.channels if not c.is_closed]
        record = rec.encode_record(
            topic="T",
            queue_id=0,
            body=b"half",
            properties=f"UNIQ_KEY\x01{'AB' * 16}\x02TRAN_MSG\x01true\x02PGROUP\x01PG_wire_tx\x02",
            queue_offset=7,
            physical_offset=4096,
            sys_flag=rec.SYSFLAG_TRANSACTION_PREPARED,
        )
        check_fields = {"tranStateTableOffset": "7", "commitLogOffset": "4096", "transactionId": "TX-FROM-BROKER"}
        channel.send(
            RemotingCommand.request(
                RequestCode.CHECK_TRANSACTION_STATE, check_fields, record, opaque=900_010, is_oneway=True
            )
        )
        deadline = time.monotonic() + 5
        while len(requests(RequestCode.END_TRANSACTION)) < 2:
            assert time.monotonic() < deadline, "no END_TRANSACTION answered the check"
            await asyncio.sleep(0.02)
    ends = requests(RequestCode.END_TRANSACTION)
    [end] = [r for r in ends if r.ext_fields["fromTransactionCheck"] == "false"]  # to the broker of the half
    [answer] = [r for r in ends if r.ext_fields["fromTransactionCheck"] == "true"]  # on the check's channel
    assert answer in first.requests
    assert end.flag & 2, "END_TRANSACTION is oneway"
    assert end.ext_fields == {
        "producerGroup": "PG_wire_tx",
        "tranStateTableOffset": "7",
        "commitLogOffset": "0",
        "commitOrRollback": str(rec.SYSFLAG_TRANSACTION_COMMIT),
        "fromTransactionCheck": "false",
        "msgId": result.transaction_id,
        "transactionId": result.transaction_id,
        "topic": "T",
    }
    assert [m.body for m in checked] == [b"half"]
    assert answer.flag & 2
    assert answer.ext_fields == {
        "producerGroup": "PG_wire_tx",
        "tranStateTableOffset": "7",
        "commitLogOffset": "4096",
        "commitOrRollback": str(rec.SYSFLAG_TRANSACTION_ROLLBACK),
        "fromTransactionCheck": "true",
        "msgId": "AB" * 16,
        "transactionId": "TX-FROM-BROKER",
        "topic": "T",
    }


async def test_name_server_failures_are_typed(fakes: tuple[FakeBroker, FakeBroker]) -> None:
    async with Producer("PG_nons", f"127.0.0.1:{free_port()}") as producer:
        with pytest.raises(ConnectionFailedError):
            await producer.send("T", b"x")


async def test_oneway_sends_wait_while_the_socket_is_full() -> None:
    """A broker that stops reading: oneway sends block, then time out, instead of buffering without bound."""
    accepted: list[asyncio.StreamWriter] = []

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep the socket open, read nothing

    sink = await asyncio.start_server(never_read, "127.0.0.1", 0)
    sink_addr = f"127.0.0.1:{sink.sockets[0].getsockname()[1]}"
    namesrv = FakeBroker()
    namesrv.route = lambda: json.dumps(  # type: ignore[method-assign]
        {
            "brokerDatas": [{"brokerAddrs": {"0": sink_addr}, "brokerName": "stuck", "cluster": "C"}],
            "queueDatas": [{"brokerName": "stuck", "perm": 6, "readQueueNums": 1, "writeQueueNums": 1}],
        }
    ).encode()
    try:
        async with RemotingServer(namesrv.handle, host="127.0.0.1", port=0) as namesrv.server:
            config = ProducerConfig(send_timeout_s=0.5)
            async with Producer("PG_full", namesrv.addr, config=config) as producer:
                body = os.urandom(60_000)  # incompressible
                sent = 0

                async def flood() -> None:
                    nonlocal sent
                    for _ in range(10_000):
                        await producer.send_oneway("T", body)
                        sent += 1

                with pytest.raises(RequestTimeoutError, match="oneway"):
                    await flood()
                assert 0 < sent < 1000, "the socket and the transport's buffer hold a few MB at most"
    finally:
        for writer in accepted:
            writer.close()
        sink.close()
        await sink.wait_closed()


async def test_deliver_at_a_given_time(server: ServerProcess) -> None:
    async with (
        Producer("PG_timer", server.namesrv_addr) as producer,
        PullClient("CG_timer", server.namesrv_addr) as client,
    ):
        deliver_at = int(time.time() * 1000) + 1200
        sent = await producer.send("ClientTimer", b"on time", queue_id=0, deliver_at_ms=deliver_at)
        queue = MessageQueue("ClientTimer", sent.broker_name, 0)
        await wait_for_route(client, "ClientTimer")
        result = await client.pull(queue, 0, suspend_s=8)
        assert [m.body for m in result.messages] == [b"on time"]
        assert time.time() * 1000 >= deliver_at
