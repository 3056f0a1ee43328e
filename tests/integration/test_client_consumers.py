"""Push and lite pull consumers against a real ``tidemq dev`` subprocess.

Every test uses its own topics and groups on one module-wide server. Waits are on conditions (messages
received, queues assigned), each with a deadline; the only long wait is the first redelivery through the retry
topic, which the broker holds for delay level 3 (10 s).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, committed_offset, remoting_call, start_server
from tidemq.client import (
    Admin,
    ClientConfig,
    ConnectionFailedError,
    ConsumeFromWhere,
    ConsumeResult,
    ConsumerTimings,
    IllegalOffsetError,
    LitePullConsumer,
    MessageModel,
    MessageQueue,
    Producer,
    PullClient,
    PushConsumer,
    QueueNotAssignedError,
    ReceivedMessage,
)
from tidemq.client._offset_store import read_offset_file
from tidemq.client.push import Listener
from tidemq.protocol.remoting import RequestCode, ResponseCode, dumps_compact, loads_lenient

pytestmark = pytest.mark.timeout(60)

FAST = ConsumerTimings(pull_suspend_s=2.0, persist_interval_s=1.0, orderly_suspend_s=0.2, shutdown_timeout_s=5)
"""Short long-poll holds so that closing never waits on a held pull; quick orderly retries."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("consumers") / "data")
    try:
        yield process
    finally:
        process.stop()


async def wait_for(probe: Callable[[], object], what: str, timeout_s: float = 10.0) -> float:
    """Poll ``probe`` every 20 ms until it is truthy; return the seconds it took."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class Inbox:
    """A listener that records what it gets."""

    def __init__(self, decide: Callable[[ReceivedMessage], ConsumeResult | None] | None = None) -> None:
        self.messages: list[ReceivedMessage] = []
        self._decide = decide

    async def __call__(self, message: ReceivedMessage) -> ConsumeResult | None:
        self.messages.append(message)
        return self._decide(message) if self._decide else ConsumeResult.CONSUME_SUCCESS

    @property
    def bodies(self) -> list[bytes]:
        return [m.body for m in self.messages]


async def create_topic(server: ServerProcess, topic: str, queue_nums: int) -> None:
    async with Admin(server.namesrv_addr) as admin:
        await admin.create_topic(topic, queue_nums)


# --- push consumer ----------------------------------------------------------------------------------------------


async def test_concurrent_consumer_gets_every_matching_message_once(server: ServerProcess) -> None:
    topic, group = "PushTags", "CG_push_tags"
    async with Producer("PG_push_tags", server.namesrv_addr) as producer:
        sent = {
            (await producer.send(topic, f"m{i}", tags="TagA" if i % 2 else "TagB", keys=f"k{i}")).msg_id: i
            for i in range(40)
        }
        wanted = {msg_id for msg_id, i in sent.items() if i % 2}
        inbox = Inbox()
        consumer = PushConsumer(
            group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
        )
        consumer.subscribe(topic, "TagA || TagC", inbox)
        async with consumer:
            await wait_for(lambda: len(inbox.messages) >= len(wanted), "all TagA messages consumed")
            late = await producer.send(topic, b"late", tags="TagA")
            await wait_for(lambda: late.msg_id in {m.msg_id for m in inbox.messages}, "a message sent while running")
    received = [m.msg_id for m in inbox.messages]
    assert sorted(received) == sorted([*wanted, late.msg_id]), "each TagA message once, no TagB"
    assert {m.tags for m in inbox.messages} == {"TagA"}
    assert all(m.topic == topic and m.broker_name == "broker-a" for m in inbox.messages)
    sample = next(m for m in inbox.messages if m.msg_id in wanted)
    assert sample.keys == [f"k{sent[sample.msg_id]}"]
    # Close persisted "the lowest offset not consumed": everything, on every queue, TagB messages included.
    for queue_id in range(4):
        committed = await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, queue_id)
        assert committed == await asyncio.to_thread(max_offset, server, topic, queue_id)


def max_offset(server: ServerProcess, topic: str, queue_id: int) -> int:
    response = remoting_call(server.broker_addr, RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": str(queue_id)})
    return int(response.ext_fields["offset"])


async def test_members_share_queues_and_rebalance_within_seconds(server: ServerProcess) -> None:
    topic, group = "PushRebalance", "CG_rebalance"
    await create_topic(server, topic, 8)
    inbox = Inbox()

    def member() -> PushConsumer:
        consumer = PushConsumer(
            group, server.namesrv_addr, consume_from_where="CONSUME_FROM_FIRST_OFFSET", timings=FAST
        )
        consumer.subscribe(topic, "*", inbox)
        return consumer

    def split(*members: PushConsumer) -> list[int]:
        held = [[q for q in m.assigned_queues() if q.topic == topic] for m in members]
        everything = sorted(q for share in held for q in share)
        if everything != [MessageQueue(topic, "broker-a", i) for i in range(8)]:
            return []  # overlapping or incomplete: the rebalance is still under way
        return sorted((len(share) for share in held), reverse=True)

    sent: set[str] = set()
    async with Producer("PG_rebalance", server.namesrv_addr) as producer:

        async def send(count: int) -> None:
            for i in range(count):
                sent.add((await producer.send(topic, f"r{len(sent)}-{i}")).msg_id)

        first, second, third = member(), member(), member()
        try:
            await first.start()
            await wait_for(lambda: split(first) == [8], "the only member holds all 8 queues")
            await send(16)
            await second.start()
            took = await wait_for(lambda: split(first, second) == [4, 4], "two members hold 4 + 4")
            assert took < 5
            await send(16)
            await third.start()
            took = await wait_for(lambda: split(first, second, third) == [3, 3, 2], "three members hold 3 + 3 + 2")
            assert took < 5
            await send(16)
            await third.close()
            took = await wait_for(lambda: split(first, second) == [4, 4], "back to 4 + 4 when one leaves")
            assert took < 5
            await send(16)
            await wait_for(lambda: sent <= {m.msg_id for m in inbox.messages}, "every message consumed")
        finally:
            for consumer in (third, second, first):
                await consumer.close()
    assert len(sent) == 64


async def test_orderly_consumer_keeps_queue_order_through_a_local_retry(server: ServerProcess) -> None:
    topic, group = "PushOrderly", "CG_orderly"
    await create_topic(server, topic, 3)
    failed_once: set[int] = set()

    def fail_message_7_once(message: ReceivedMessage) -> ConsumeResult:
        number = int(message.body)
        if number == 7 and number not in failed_once:
            failed_once.add(number)
            return ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT
        return ConsumeResult.SUCCESS

    inbox = Inbox(fail_message_7_once)
    consumer = PushConsumer(
        group, server.namesrv_addr, orderly=True, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
    )
    consumer.subscribe(topic, "*", inbox)
    async with Producer("PG_orderly", server.namesrv_addr) as producer:
        for number in range(30):
            await producer.send(topic, str(number), queue_id=number % 3)
        async with consumer:
            await wait_for(lambda: len(inbox.messages) == 31, "30 messages, one of them twice")
            queue = MessageQueue(topic, "broker-a", 1)
            assert queue in consumer.assigned_queues()
            # The broker lock is ours: another client of the group is refused.
            assert await asyncio.to_thread(lock_queue, server, group, "127.0.0.1@intruder", queue) == []
        # Unlocked at close: now the other client gets it.
        assert await asyncio.to_thread(lock_queue, server, group, "127.0.0.1@intruder", queue) == [queue]
    by_queue: defaultdict[int, list[int]] = defaultdict(list)
    for message in inbox.messages:
        by_queue[message.queue_id].append(int(message.body))
    assert by_queue[0] == list(range(0, 30, 3))
    assert by_queue[1] == [1, 4, 7, 7, 10, 13, 16, 19, 22, 25, 28], "7 again before 10: order kept"
    assert by_queue[2] == list(range(2, 30, 3))
    sevens = [m.reconsume_times for m in inbox.messages if m.body == b"7"]
    assert sevens == [0, 1]


def lock_queue(server: ServerProcess, group: str, client_id: str, queue: MessageQueue) -> list[MessageQueue]:
    body = {
        "consumerGroup": group,
        "clientId": client_id,
        "mqSet": [{"topic": queue.topic, "brokerName": queue.broker_name, "queueId": queue.queue_id}],
    }
    response = remoting_call(server.broker_addr, RequestCode.LOCK_BATCH_MQ, {}, dumps_compact(body))
    assert response.code == ResponseCode.SUCCESS
    locked = loads_lenient(bytes(response.body)).get("lockOKMQSet") or []
    return [MessageQueue(q["topic"], q["brokerName"], int(q["queueId"])) for q in locked]


@pytest.mark.timeout(90)
async def test_reconsume_later_comes_back_through_the_retry_topic(server: ServerProcess) -> None:
    topic, group = "PushRetry", "CG_retry"
    seen: defaultdict[bytes, list[ReceivedMessage]] = defaultdict(list)

    def first_attempt_fails(message: ReceivedMessage) -> ConsumeResult:
        seen[message.body].append(message)
        if message.reconsume_times == 0 and message.body == b"later":
            return ConsumeResult.RECONSUME_LATER
        if message.reconsume_times == 0 and message.body == b"raises":
            raise RuntimeError("the listener failed")
        return ConsumeResult.CONSUME_SUCCESS

    consumer = PushConsumer(group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, "*", first_attempt_fails)  # a sync listener: runs in the consumer's threads
    async with Producer("PG_retry", server.namesrv_addr) as producer:
        results = {body: await producer.send(topic, body, tags="T") for body in (b"ok", b"later", b"raises")}
    started = time.monotonic()
    async with consumer:
        await wait_for(lambda: len(seen[b"later"]) == 2 and len(seen[b"raises"]) == 2, "two redeliveries", 40)
    assert time.monotonic() - started >= 9, "the first retry waits for delay level 3 (10 s)"
    assert len(seen[b"ok"]) == 1
    for body in (b"later", b"raises"):
        first, again = seen[body]
        assert (first.topic, first.reconsume_times) == (topic, 0)
        assert again.topic == topic, "the original topic is restored before the listener sees it"
        assert again.reconsume_times == 1
        assert again.msg_id == results[body].msg_id, "the UNIQ_KEY survives the retry"
        assert again.properties["RETRY_TOPIC"] == topic
        assert again.tags == "T"


async def test_broadcasting_members_each_get_everything(server: ServerProcess, tmp_path: Path) -> None:
    topic, group = "PushBroadcast", "CG_broadcast"
    await create_topic(server, topic, 4)
    inboxes = [Inbox(), Inbox()]
    consumers = []
    for index, inbox in enumerate(inboxes):
        consumer = PushConsumer(
            group,
            server.namesrv_addr,
            message_model=MessageModel.BROADCASTING,
            offset_store_path=tmp_path / f"member-{index}.json",
            timings=FAST,
            client=ClientConfig(instance_name=f"broadcast-{index}"),
        )
        consumer.subscribe(topic, "*", inbox)
        consumers.append(consumer)
    try:
        for consumer in consumers:
            await consumer.start()
        await wait_for(lambda: all(len(c.assigned_queues()) == 4 for c in consumers), "each member holds every queue")
        async with Producer("PG_broadcast", server.namesrv_addr) as producer:
            sent = {(await producer.send(topic, f"b{i}")).msg_id for i in range(20)}
        await wait_for(lambda: all({m.msg_id for m in i.messages} == sent for i in inboxes), "each member got all 20")
    finally:
        for consumer in consumers:
            await consumer.close()
    for index, inbox in enumerate(inboxes):
        assert len(inbox.messages) == 20, "each member got each message once"
        offsets = read_offset_file(tmp_path / f"member-{index}.json", group)
        assert sum(offsets.values()) == 20, offsets
    # Nothing of a broadcasting group is committed on the broker.
    assert await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, 0) in (None, 0)


async def test_consume_from_first_offset_on_a_new_group(server: ServerProcess) -> None:
    topic = "PushFromWhere"
    async with Producer("PG_where", server.namesrv_addr) as producer:
        old = {(await producer.send(topic, f"old{i}")).msg_id for i in range(6)}
        inbox = Inbox()
        consumer = PushConsumer(
            "CG_where_first", server.namesrv_addr, consume_from_where="CONSUME_FROM_FIRST_OFFSET", timings=FAST
        )
        consumer.subscribe(topic, "*", inbox)
        async with consumer:
            await wait_for(lambda: {m.msg_id for m in inbox.messages} == old, "the old messages")


async def test_consume_from_last_offset_on_a_new_group(server: ServerProcess) -> None:
    topic, group = "PushFromLast", "CG_where_last"
    async with Producer("PG_last", server.namesrv_addr) as producer:
        for i in range(6):
            await producer.send(topic, f"old{i}")
        inbox = Inbox()
        consumer = PushConsumer(group, server.namesrv_addr, timings=FAST)
        consumer.subscribe(topic, "*", inbox)
        async with consumer:
            await wait_for(lambda: len(consumer.assigned_queues()) == 5, "4 queues and the retry queue held")
            new = {(await producer.send(topic, f"new{i}")).msg_id for i in range(4)}
            await wait_for(lambda: {m.msg_id for m in inbox.messages} >= new, "the new messages")
        assert {m.msg_id for m in inbox.messages} == new, "nothing stored before the group started"


async def test_a_restarted_consumer_resumes_at_the_committed_offset(server: ServerProcess) -> None:
    topic, group = "PushResume", "CG_resume"
    async with Producer("PG_resume", server.namesrv_addr) as producer:
        first_batch = {(await producer.send(topic, f"a{i}")).msg_id for i in range(10)}
        inbox = Inbox()
        consumer = PushConsumer(
            group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
        )
        consumer.subscribe(topic, "*", inbox)
        async with consumer:
            await wait_for(lambda: {m.msg_id for m in inbox.messages} == first_batch, "the first batch")
        second_batch = {(await producer.send(topic, f"b{i}")).msg_id for i in range(5)}
    again = Inbox()
    restarted = PushConsumer(group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    restarted.subscribe(topic, "*", again)
    async with restarted:
        await wait_for(lambda: {m.msg_id for m in again.messages} >= second_batch, "the second batch")
    # Every queue got some of the second batch (round robin), and a queue is consumed in offset order: a first-batch
    # message delivered again would have come before them.
    assert {m.msg_id for m in again.messages} == second_batch, "nothing of the first batch again"


# --- lite pull consumer -----------------------------------------------------------------------------------------


async def poll_until(consumer: LitePullConsumer, count: int, timeout_s: float = 10.0) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"polled {len(got)} of {count} messages"
        got += await consumer.poll(min(remaining, 1.0))
    return got


async def test_lite_pull_assign_poll_commit_seek(server: ServerProcess) -> None:
    topic, group = "LiteAssign", "CG_lite_assign"
    queue = MessageQueue(topic, "broker-a", 0)
    async with Producer("PG_lite", server.namesrv_addr) as producer:
        for i in range(10):
            await producer.send(topic, f"q{i}", queue_id=0)
        await producer.send(topic, b"other queue", queue_id=1)
        consumer = LitePullConsumer(
            group, server.namesrv_addr, consume_from_where="CONSUME_FROM_FIRST_OFFSET", auto_commit=False, timings=FAST
        )
        consumer.assign([queue])
        async with consumer:
            got = await poll_until(consumer, 10)
            assert [m.body for m in got] == [f"q{i}".encode() for i in range(10)]
            assert await consumer.committed(queue) in (None, 0), "nothing committed before commit()"
            await consumer.commit()
            assert await consumer.committed(queue) == 10
            assert await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, 0) == 10
            await consumer.seek(queue, 7)
            assert [m.body for m in await poll_until(consumer, 3)] == [b"q7", b"q8", b"q9"]
            await consumer.seek_to_begin(queue)
            assert len(await poll_until(consumer, 10)) == 10
            await consumer.seek_to_end(queue)
            assert await consumer.poll(0.3) == []
            await producer.send(topic, b"fresh", queue_id=0)
            assert [m.body for m in await poll_until(consumer, 1)] == [b"fresh"]
            with pytest.raises(IllegalOffsetError):
                await consumer.seek(queue, 1000)
            with pytest.raises(QueueNotAssignedError):
                await consumer.seek(MessageQueue(topic, "broker-a", 1), 0)
            assert consumer.assignment() == [queue]


async def test_lite_pull_subscribers_split_the_queues_and_auto_commit(server: ServerProcess) -> None:
    topic, group = "LiteSubscribe", "CG_lite_subscribe"
    await create_topic(server, topic, 4)
    consumers = [
        LitePullConsumer(
            group,
            server.namesrv_addr,
            consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
            auto_commit_interval_s=0.2,
            timings=FAST,
        )
        for _ in range(2)
    ]
    for consumer in consumers:
        consumer.subscribe(topic, "*")
    try:
        for consumer in consumers:
            await consumer.start()
        await wait_for(
            lambda: (
                sorted(q for c in consumers for q in c.assignment())
                == [MessageQueue(topic, "broker-a", i) for i in range(4)]
                and all(len(c.assignment()) == 2 for c in consumers)
            ),
            "two lite consumers hold two queues each",
        )
        async with Producer("PG_lite_sub", server.namesrv_addr) as producer:
            sent = {(await producer.send(topic, f"s{i}")).msg_id for i in range(20)}
        received: set[str] = set()

        async def drain(consumer: LitePullConsumer) -> None:
            while not sent <= received:
                received.update(m.msg_id for m in await consumer.poll(0.2))

        await asyncio.wait_for(asyncio.gather(*(drain(c) for c in consumers)), 15)
    finally:
        for consumer in consumers:
            await consumer.close()  # auto-commit: close commits what was polled
    assert received == sent
    committed = [await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, i) for i in range(4)]
    assert sum(c or 0 for c in committed) == 20


# --- edge cases -------------------------------------------------------------------------------------------------


async def test_an_offset_past_the_end_moves_to_the_brokers_next_begin_offset(server: ServerProcess) -> None:
    topic, group = "PushMoved", "CG_moved"
    queue = MessageQueue(topic, "broker-a", 0)
    async with Producer("PG_moved", server.namesrv_addr) as producer:
        for i in range(3):
            await producer.send(topic, f"before{i}", queue_id=0)
        async with PullClient(group, server.namesrv_addr) as client:
            await client.commit_offset(queue, 1000)  # a stale offset, e.g. from before the topic was recreated
        inbox = Inbox()
        consumer = PushConsumer(group, server.namesrv_addr, timings=FAST)
        consumer.subscribe(topic, "*", inbox)
        async with consumer:
            await wait_for(lambda: committed_on_queue_0(server, group, topic) == 3, "the corrected offset is committed")
            after = await producer.send(topic, b"after", queue_id=0)
            await wait_for(lambda: [m.msg_id for m in inbox.messages] == [after.msg_id], "the next message")


def committed_on_queue_0(server: ServerProcess, group: str, topic: str) -> int | None:
    return committed_offset(server.broker_addr, group, topic, 0)


async def test_flow_control_pauses_pulling_a_full_queue(server: ServerProcess) -> None:
    topic, group = "PushFlow", "CG_flow"
    release = asyncio.Event()
    seen: list[bytes] = []

    async def slow(message: ReceivedMessage) -> ConsumeResult:
        seen.append(message.body)
        await release.wait()
        return ConsumeResult.CONSUME_SUCCESS

    async with Producer("PG_flow", server.namesrv_addr) as producer:
        for i in range(60):
            await producer.send(topic, f"f{i}", queue_id=0)
        consumer = PushConsumer(
            group,
            server.namesrv_addr,
            consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
            consume_concurrency=2,
            pull_batch_size=4,
            max_cached_messages_per_queue=10,
            timings=FAST,
        )
        consumer.subscribe(topic, "*", slow)
        async with consumer:
            queue = MessageQueue(topic, "broker-a", 0)
            await wait_for(lambda: consumer.cached_messages().get(queue, 0) >= 10, "the queue filled up")
            held = consumer.cached_messages()[queue]
            assert held <= 10 + 4 - 1, "at most one batch beyond the limit"
            assert len(seen) == 2, "two listener calls in flight (consume_concurrency)"
            release.set()
            await wait_for(lambda: len(seen) == 60, "all 60 consumed once released")


async def test_close_waits_for_listeners_in_flight_and_commits_them(server: ServerProcess) -> None:
    topic, group = "PushGraceful", "CG_graceful"
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(message: ReceivedMessage) -> None:
        started.set()
        await release.wait()

    async with Producer("PG_graceful", server.namesrv_addr) as producer:
        await producer.send(topic, b"slow one", queue_id=0)
    consumer = PushConsumer(group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, "*", slow)
    await consumer.start()
    await asyncio.wait_for(started.wait(), 10)
    closing = asyncio.create_task(consumer.close())
    done, _ = await asyncio.wait([closing], timeout=0.2)
    assert not done, "close waits for the listener"
    release.set()
    await asyncio.wait_for(closing, 10)
    assert await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, 0) == 1


async def test_orderly_gives_up_on_a_message_after_max_reconsume_times(server: ServerProcess) -> None:
    topic, group = "PushOrderlyDlq", "CG_orderly_dlq"
    attempts: defaultdict[bytes, int] = defaultdict(int)

    def poison_fails(message: ReceivedMessage) -> ConsumeResult:
        attempts[message.body] += 1
        return ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT if message.body == b"poison" else ConsumeResult.SUCCESS

    async with Producer("PG_orderly_dlq", server.namesrv_addr) as producer:
        for body in (b"one", b"poison", b"two"):
            await producer.send(topic, body, queue_id=0)
    consumer = PushConsumer(
        group,
        server.namesrv_addr,
        orderly=True,
        max_reconsume_times=2,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        timings=FAST,
    )
    consumer.subscribe(topic, "*", poison_fails)
    async with consumer:
        await wait_for(lambda: attempts[b"two"] == 1, "consumption went on past the poison message")
    assert attempts == {b"one": 1, b"poison": 3, b"two": 1}, "the first try and two local retries"
    assert await asyncio.to_thread(max_offset, server, f"%DLQ%{group}", 0) == 1, "the poison message is in the DLQ"


async def test_sql92_subscription(server: ServerProcess) -> None:
    topic, group = "PushSql", "CG_sql"
    inbox = Inbox()
    consumer = PushConsumer(group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, listener=inbox, sql="amount > 5 AND region = 'eu'")
    async with Producer("PG_sql", server.namesrv_addr) as producer:
        sent = {}
        for amount in range(10):
            result = await producer.send(topic, f"a{amount}", properties={"amount": str(amount), "region": "eu"})
            sent[result.msg_id] = amount
        async with consumer:
            # The heartbeat carries the SQL92 subscription (spec 3.4).
            response = await asyncio.to_thread(
                remoting_call, server.broker_addr, RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": group}
            )
            subscription = loads_lenient(bytes(response.body))["subscriptionTable"][topic]
            assert (subscription["expressionType"], subscription["subString"]) == (
                "SQL92",
                "amount > 5 AND region = 'eu'",
            )
            wanted = {msg_id for msg_id, amount in sent.items() if amount > 5}
            await wait_for(lambda: {m.msg_id for m in inbox.messages} >= wanted, "the matching messages")
    assert {m.msg_id for m in inbox.messages} == wanted


async def test_orderly_members_hand_locked_queues_over(server: ServerProcess) -> None:
    topic, group = "PushOrderlyPair", "CG_orderly_pair"
    await create_topic(server, topic, 4)
    consumed: list[ReceivedMessage] = []  # one list for both members: the order queues were consumed in

    def member() -> PushConsumer:
        consumer = PushConsumer(group, server.namesrv_addr, orderly=True, timings=FAST)
        consumer.subscribe(topic, "*", consumed.append)
        return consumer

    def held(consumer: PushConsumer) -> list[MessageQueue]:
        return [q for q in consumer.assigned_queues() if q.topic == topic]

    first, second = member(), member()
    try:
        await first.start()
        await wait_for(lambda: len(held(first)) == 4, "the first member locked all 4 queues")
        await second.start()
        took = await wait_for(
            lambda: len(held(first)) == 2 and len(held(second)) == 2 and not set(held(first)) & set(held(second)),
            "the queues split 2 + 2 after the locks changed hands",
        )
        assert took < 5
        async with Producer("PG_orderly_pair", server.namesrv_addr) as producer:
            for number in range(40):
                await producer.send(topic, str(number), queue_id=number % 4)
        await wait_for(lambda: len(consumed) == 40, "all 40 consumed")
    finally:
        await second.close()
        await first.close()
    for queue_id in range(4):
        assert [int(m.body) for m in consumed if m.queue_id == queue_id] == list(range(queue_id, 40, 4))


async def test_consumers_ride_out_a_broker_restart(tmp_path: Path) -> None:
    own_server = start_server(tmp_path / "data")
    try:
        topic, group = "PushRestart", "CG_restart"
        inbox = Inbox()
        consumer = PushConsumer(
            group,
            own_server.namesrv_addr,
            consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
            timings=ConsumerTimings(pull_suspend_s=1, pull_error_delay_s=0.2, persist_interval_s=0.5),
        )
        consumer.subscribe(topic, "*", inbox)
        async with Producer("PG_restart", own_server.namesrv_addr) as producer:
            before = {(await producer.send(topic, f"before{i}")).msg_id for i in range(8)}
            async with consumer:
                await wait_for(lambda: {m.msg_id for m in inbox.messages} == before, "consumed before the restart")
                own_server = await asyncio.to_thread(own_server.restart)
                after = {(await producer.send(topic, f"after{i}")).msg_id for i in range(8)}
                await wait_for(lambda: {m.msg_id for m in inbox.messages} == before | after, "consumed after it")
        assert len(inbox.messages) == 16, "nothing consumed twice"
        committed = [
            await asyncio.to_thread(committed_offset, own_server.broker_addr, group, topic, i) for i in range(4)
        ]
        assert sum(c or 0 for c in committed) == 16
    finally:
        own_server.stop()


async def test_subscribing_while_running(server: ServerProcess) -> None:
    group = "CG_late_subscribe"
    first, second = Inbox(), Inbox()
    consumer = PushConsumer(group, server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe("LateA", "*", first)
    async with Producer("PG_late", server.namesrv_addr) as producer:
        a = await producer.send("LateA", b"a")
        b = await producer.send("LateB", b"b")
        async with consumer:
            await wait_for(lambda: [m.msg_id for m in first.messages] == [a.msg_id], "the first topic")
            consumer.subscribe("LateB", "*", second)
            await wait_for(lambda: [m.msg_id for m in second.messages] == [b.msg_id], "the topic added later")
            response = await asyncio.to_thread(
                remoting_call, server.broker_addr, RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": group}
            )
            assert set(loads_lenient(bytes(response.body))["subscriptionTable"]) == {
                "LateA",
                "LateB",
                f"%RETRY%{group}",
            }
    assert [m.msg_id for m in first.messages] == [a.msg_id], "each listener gets its own topic"


async def test_a_failed_send_back_is_consumed_again_locally(server: ServerProcess) -> None:
    topic, group = "PushLocalRetry", "CG_local_retry"
    seen: list[ReceivedMessage] = []

    def fails_first(message: ReceivedMessage) -> ConsumeResult:
        seen.append(message)
        return ConsumeResult.RECONSUME_LATER if message.reconsume_times == 0 else ConsumeResult.CONSUME_SUCCESS

    consumer = PushConsumer(
        group,
        server.namesrv_addr,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        timings=ConsumerTimings(pull_suspend_s=2, local_retry_delay_s=0.2),
    )
    consumer.subscribe(topic, "*", fails_first)

    async def broker_unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionFailedError(server.broker_addr, "simulated")

    consumer._api.send_back = broker_unreachable  # type: ignore[method-assign]
    async with Producer("PG_local_retry", server.namesrv_addr) as producer:
        sent = await producer.send(topic, b"retry me", queue_id=0)
    async with consumer:
        await wait_for(lambda: len(seen) == 2, "consumed again here after the send-back failed")
    assert [(m.msg_id, m.reconsume_times, m.topic) for m in seen] == [(sent.msg_id, 0, topic), (sent.msg_id, 1, topic)]
    assert await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, 0) == 1


async def test_a_backlog_for_a_sync_listener_is_consumed_in_shares_with_failures_retried(server: ServerProcess) -> None:
    """Under a backlog a sync listener gets several messages per trip to the thread pool (one call each); a
    message that raises or answers RECONSUME_LATER inside such a share still comes back alone through the retry
    topic, and the others are committed."""
    topic, group = "PushShares", "CG_push_shares"
    await create_topic(server, topic, 4)
    async with Producer("PG_push_shares", server.namesrv_addr) as producer:
        for queue_id in range(4):
            batch = [f"s{queue_id}-{i}".encode() for i in range(100)]
            await producer.send_batch(topic, batch, queue_id=queue_id)
    calls: defaultdict[bytes, list[int]] = defaultdict(list)  # body -> reconsume_times of each call
    threads: set[int] = set()

    def listener(message: ReceivedMessage) -> ConsumeResult:
        threads.add(threading.get_ident())
        calls[message.body].append(message.reconsume_times)
        index = int(message.body.split(b"-")[1])
        if message.reconsume_times == 0 and index % 50 == 7:
            raise RuntimeError("fails once")
        if message.reconsume_times == 0 and index % 50 == 31:
            return ConsumeResult.RECONSUME_LATER
        return ConsumeResult.CONSUME_SUCCESS

    failing = {f"s{q}-{i}".encode() for q in range(4) for i in (7, 57, 31, 81)}
    consumer = PushConsumer(
        group,
        server.namesrv_addr,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        consume_concurrency=4,
        timings=FAST,
    )
    consumer.subscribe(topic, "*", listener)
    async with consumer:
        await wait_for(
            lambda: len(calls) == 400 and all(len(calls[body]) == 2 for body in failing), "backlog and retries", 45
        )
    assert threading.get_ident() not in threads, "a sync listener runs in the consumer's threads"
    for body, attempts in calls.items():
        assert attempts == ([0, 1] if body in failing else [0]), (body, attempts)
    for queue_id in range(4):
        committed = await asyncio.to_thread(committed_offset, server.broker_addr, group, topic, queue_id)
        assert committed == 100


async def test_a_quick_sync_listener_gets_batches_whole_and_a_blocking_one_gets_shares(server: ServerProcess) -> None:
    # Quick listeners: sharing a batch among idle workers only multiplies thread-pool hops (the GIL runs one at a
    # time). Blocking ones: the shares are what lets consume_concurrency calls wait at once.
    topic = "PushWholeBatches"
    async with Producer("PG_shares", server.namesrv_addr) as producer:
        for i in range(128):
            await producer.send(topic, f"q{i}", queue_id=0)

    threads_by_offset: dict[int, int] = {}

    def quick(message: ReceivedMessage) -> None:
        threads_by_offset[message.queue_offset] = threading.get_ident()

    consumer = PushConsumer(
        "CG_quick_shares",
        server.namesrv_addr,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        consume_concurrency=8,
        pull_batch_size=16,
        timings=FAST,
    )
    consumer.subscribe(topic, "*", quick)
    async with consumer:
        await wait_for(lambda: len(threads_by_offset) == 128, "the quick listener got all 128")
    in_order = [threads_by_offset[offset] for offset in sorted(threads_by_offset)]
    runs = 1 + sum(1 for a, b in itertools.pairwise(in_order) if a != b)
    # Shared out, each batch of 16 would be spread over the 8 workers' threads (~64 runs in all); whole, a batch
    # stays on one thread (8 runs), the first batch or two excepted (shared before the listener was timed).
    assert runs <= 24, f"{runs} runs of one thread: the quick listener's batches were shared out"

    # A blocking listener, timed as slow on a first few messages; then 64 arrive at once (one batch send, one
    # pull) while every worker is idle: they must be shared out, so that consume_concurrency calls wait at once.
    overlap = _Overlap()

    def blocking(message: ReceivedMessage) -> None:
        overlap.enter()
        time.sleep(0.01)
        overlap.leave(message)

    peak = await _peak_calls_on_a_batch(server, "PushSharesBlocking", blocking, overlap)
    assert peak == 4, f"the batch of 64 ran {peak} call(s) at a time, not consume_concurrency = 4"


async def test_an_awaiting_coroutine_listener_runs_consume_concurrency_calls_at_once(server: ServerProcess) -> None:
    # Coroutine listeners are awaited a batch at a time by one worker when quick; one that awaits I/O must still
    # get even shares of a batch, so that consume_concurrency of its calls wait at once.
    overlap = _Overlap()

    async def awaiting(message: ReceivedMessage) -> None:
        overlap.enter()
        await asyncio.sleep(0.01)
        overlap.leave(message)

    peak = await _peak_calls_on_a_batch(server, "PushSharesAwaiting", awaiting, overlap)
    assert peak == 4, f"the batch of 64 ran {peak} call(s) at a time, not consume_concurrency = 4"


class _Overlap:
    """How many listener calls run at once (from the listener threads or the loop), and what they consumed."""

    def __init__(self) -> None:
        self.running = self.peak = 0
        self.done: list[int] = []
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self, message: ReceivedMessage) -> None:
        with self._lock:
            self.running -= 1
            self.done.append(message.queue_offset)


async def _peak_calls_on_a_batch(server: ServerProcess, topic: str, listener: Listener, overlap: _Overlap) -> int:
    """Time ``listener`` as slow on 4 single messages, then send 64 at once (one pull, all 4 workers idle) and
    return how many of its calls ran at once on them."""
    consumer = PushConsumer(
        f"CG_{topic}",
        server.namesrv_addr,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        consume_concurrency=4,
        pull_batch_size=64,
        timings=FAST,
    )
    consumer.subscribe(topic, "*", listener)
    async with Producer(f"PG_{topic}", server.namesrv_addr) as producer, consumer:
        for i in range(4):
            await producer.send(topic, f"w{i}", queue_id=0)
            await wait_for(lambda n=i + 1: len(overlap.done) == n, "a warm-up message consumed")
        overlap.peak = 0
        await producer.send_batch(topic, [f"b{i}".encode() for i in range(64)], queue_id=0)
        await wait_for(lambda: len(overlap.done) == 68, "the batch of 64 consumed", 30)
    return overlap.peak
