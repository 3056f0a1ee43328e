"""tidemq's Python client (``tidemq.client``) against Apache RocketMQ 5.5.0 itself.

The client is tested against tidemq in ``tests/integration/test_client_*.py``; this module runs the same scenarios,
with the same assertions, against the reference server, so that "works with RocketMQ" means Apache's broker too
and not only ours. One Apache name server + broker (``bench/peers/apache_rocketmq.py``, jars from Maven Central)
serves the module, with SQL92 filtering on and transaction checks every second; every test has its own topics and
groups, the topics created up front with the client's Admin. Not the retry topic: Apache's broker creates
``%RETRY%<group>`` at the group's first heartbeat, after the consumer looked up its routes, and the push consumer
must find it on its own (a rebalance that lacks a route is retried within seconds; Java's waits for its next route
refresh, up to 30 s, so the Java interop tests create it first).

Waits are on conditions, each with a deadline. The long ones are the broker's: the first redelivery through the
retry topic (delay level 3, 10 s) and the transaction check-back (halves are checked once 3 s old).

``TIDEMQ_CLIENT_PEER=tidemq`` runs the same module against ``tidemq dev`` (``semantics_peer.py``); both pass. Where
Apache 5.5.0 behaves differently and the test or the client adapts (see the comments there): its send path runs
on min(cores, 4) threads and may store one connection's oneway sends out of order (the broker here runs one, 4.x's
default; tidemq keeps the order); its INVOKE_BROKER_TO_RESET_OFFSET resets on the broker side and ignores
``isForce`` (the client's ``force=False`` reset computes offsets itself and resets queue by queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `bench` and `tests` as packages, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

from bench.peers.apache_rocketmq import ApacheRocketMQ, ensure_shim  # noqa: E402
from tests.interop.semantics_peer import Peer, running_peer  # noqa: E402
from tests.server_process import committed_offset, remoting_call  # noqa: E402

from tidemq.client import (  # noqa: E402
    Admin,
    ClientConfig,
    ConsumeFromWhere,
    ConsumeResult,
    ConsumerTimings,
    IllegalOffsetError,
    LitePullConsumer,
    Message,
    MessageModel,
    MessageNotFoundError,
    MessageQueue,
    NoRouteError,
    Producer,
    PullClient,
    PullStatus,
    PushConsumer,
    QueueNotAssignedError,
    ReceivedMessage,
    SendStatus,
    TransactionState,
    sync,
)
from tidemq.client._offset_store import read_offset_file  # noqa: E402
from tidemq.protocol.remoting import RequestCode, ResponseCode, dumps_compact, loads_lenient  # noqa: E402
from tidemq.store import record as rec  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.interop, pytest.mark.timeout(300)]

BROKER = "broker-a"
BROKER_CONF = {
    "enablePropertyFilter": "true",  # SQL92 subscriptions (off by default in Apache, on in tidemq)
    "transactionCheckInterval": "1000",  # check-backs every second...
    "transactionTimeOut": "3000",  # ...for halves 3 s old (a check answered later than that is asked again)
    "transactionOpBatchInterval": "200",  # op records (resolved halves) written within 0.2 s, not 3 s: no re-check
    # One send thread, 4.x's default (5.x uses min(cores, 4)): with several, Apache stores the requests of one
    # connection in whatever order its threads take them, so oneway sends would not keep their order.
    "sendMessageThreadPoolNums": "1",
}
TOPICS = {
    "ApSend": 4,
    "ApBig": 4,
    "ApBatch": 4,
    "ApOneway": 4,
    "ApConcurrent": 4,
    "ApOrderlySend": 4,
    "ApDelay": 4,
    "ApTx": 4,
    "ApTags": 4,
    "ApRetry": 4,
    "ApOrderly": 3,
    "ApBroadcast": 4,
    "ApSql": 4,
    "ApLite": 2,
    "ApLiteSub": 4,
    "ApLookup": 4,
    "ApProgress": 2,
    "ApResetRunning": 1,
}
FAST = ConsumerTimings(pull_suspend_s=2.0, persist_interval_s=1.0, orderly_suspend_s=0.2, shutdown_timeout_s=5)
"""Short long-poll holds so that closing never waits on a held pull; quick orderly retries."""
TEXT = "héllo wörld — 你好, RocketMQ 🌊"


@pytest.fixture(scope="module")
def apache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    root = tmp_path_factory.mktemp("apache-client")
    with _running(root) as peer:
        with sync.Admin(peer.namesrv_addr) as admin:
            for topic, queue_nums in TOPICS.items():
                admin.create_topic(topic, queue_nums)
        yield peer


@contextlib.contextmanager
def _running(root: Path) -> Iterator[Peer]:
    """Apache RocketMQ; or, with ``TIDEMQ_CLIENT_PEER=tidemq``, ``tidemq dev``, to see that both pass the same tests."""
    if os.environ.get("TIDEMQ_CLIENT_PEER") == "tidemq":
        with running_peer(root, BROKER_CONF) as peer:
            yield peer
        return
    ensure_shim()  # resolve Apache's jars (first run: Maven Central) before the start-up timeout counts
    apache = ApacheRocketMQ(root, broker_heap="1g", extra_broker_conf=BROKER_CONF)
    apache.start()
    try:
        yield Peer(apache.namesrv_addr, apache.broker_addr, apache.broker_port, "apache")
    finally:
        apache.stop(graceful=False)  # the data is thrown away: no need for Apache's 10 s shutdown hooks


# --- helpers ----------------------------------------------------------------------------------------------------


async def wait_for(probe: Callable[[], object], what: str, timeout_s: float = 10.0) -> float:
    """Poll ``probe`` every 20 ms until it is truthy; return the seconds it took."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def wait_for_async(probe: Callable[[], Awaitable[object]], what: str, timeout_s: float = 10.0) -> None:
    """Await ``probe`` every 50 ms until it returns something truthy (a broker-side condition)."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(0.05)


class Inbox:
    """A listener that records what it gets."""

    def __init__(self, decide: Callable[[ReceivedMessage], ConsumeResult | None] | None = None) -> None:
        self.messages: list[ReceivedMessage] = []
        self._decide = decide

    async def __call__(self, message: ReceivedMessage) -> ConsumeResult | None:
        self.messages.append(message)
        return self._decide(message) if self._decide else ConsumeResult.CONSUME_SUCCESS

    @property
    def ids(self) -> set[str]:
        return {m.msg_id for m in self.messages}


async def poll_until(consumer: LitePullConsumer, count: int, timeout_s: float = 10.0) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"polled {len(got)} of {count} messages"
        got += await consumer.poll(min(remaining, 1.0))
    return got


async def pull_all(client: PullClient, queue: MessageQueue, offset: int = 0) -> list[ReceivedMessage]:
    result = await client.pull(queue, offset, max_count=1024)
    assert result.status is PullStatus.FOUND, result
    return result.messages


async def messages_in(client: PullClient, queue: MessageQueue) -> list[ReceivedMessage]:
    """Every message of ``queue`` (none if it is empty)."""
    return (await client.pull(queue, 0, max_count=1024)).messages


async def committed(apache: Peer, group: str, topic: str, queue_id: int) -> int | None:
    return await asyncio.to_thread(committed_offset, apache.broker_addr, group, topic, queue_id)


async def is_committed(apache: Peer, group: str, topic: str, queue_id: int, offset: int) -> bool:
    return await committed(apache, group, topic, queue_id) == offset


async def max_offset(apache: Peer, topic: str, queue_id: int) -> int:
    response = await asyncio.to_thread(
        remoting_call, apache.broker_addr, RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": str(queue_id)}
    )
    return int(response.ext_fields["offset"])


# --- producer ---------------------------------------------------------------------------------------------------


async def test_send_and_pull_round_trip(apache: Peer) -> None:
    async with Producer("PG_ap_round", apache.namesrv_addr) as producer:
        result = await producer.send(
            "ApSend", TEXT, tags="TagA", keys=["order-1", "ключ"], properties={"color": "blue", "名": "値"}
        )
    assert result.status is SendStatus.SEND_OK
    assert len(result.msg_id) == 32
    assert result.broker_name == BROKER
    assert rec.decode_offset_msg_id(result.offset_msg_id)[1] == apache.broker_port
    async with PullClient("CG_ap_round", apache.namesrv_addr) as client:
        queues = await client.queues("ApSend")
        assert [q.queue_id for q in queues] == [0, 1, 2, 3]
        queue = MessageQueue("ApSend", result.broker_name, result.queue_id)
        pulled = await client.pull(queue, result.queue_offset)
        assert pulled.status is PullStatus.FOUND
        assert pulled.message_count == 1
        [message] = pulled.messages
        assert message.body == TEXT.encode()
        assert message.tags == "TagA"
        assert message.keys == ["order-1", "ключ"]
        assert message.properties["color"] == "blue"
        assert message.properties["名"] == "値"
        assert message.msg_id == result.msg_id
        assert message.offset_msg_id == result.offset_msg_id
        assert (message.queue_id, message.queue_offset) == (result.queue_id, result.queue_offset)
        assert message.born_host[0] == "127.0.0.1"
        assert message.reconsume_times == 0
        assert pulled.next_begin_offset == result.queue_offset + 1
        filtered = await client.pull(queue, result.queue_offset, expression="TagB")
        assert filtered.status is PullStatus.NO_MATCHED_MSG
        none = await client.pull(queue, result.queue_offset + 1)
        assert none.status is PullStatus.NO_NEW_MSG
        assert none.messages == []


async def test_large_bodies_are_compressed_and_come_back_whole(apache: Peer) -> None:
    body = b"compressible " * 2000
    async with Producer("PG_ap_big", apache.namesrv_addr) as producer:
        result = await producer.send("ApBig", body)
    async with PullClient("CG_ap_big", apache.namesrv_addr) as client:
        pulled = await client.pull(MessageQueue("ApBig", result.broker_name, result.queue_id), result.queue_offset)
        [message] = pulled.messages
        assert message.sys_flag & rec.SYSFLAG_COMPRESSED
        assert message.body == body
        assert len(bytes(next(pulled.bodies()))) < len(body) // 10


async def test_batch_goes_to_one_queue_with_consecutive_offsets(apache: Peer) -> None:
    messages = [Message(f"batch-{i}".encode(), tags="TagB", keys=f"key-{i}") for i in range(5)]
    async with Producer("PG_ap_batch", apache.namesrv_addr) as producer:
        result = await producer.send_batch("ApBatch", [*messages, b"plain"])
        second = await producer.send_batch("ApBatch", [b"x", b"y"], queue_id=result.queue_id)
    ids = result.msg_id.split(",")
    assert len(ids) == 6
    assert len(set(ids)) == 6
    assert len(result.offset_msg_id.split(",")) == 6
    assert second.queue_id == result.queue_id
    assert second.queue_offset == result.queue_offset + 6
    async with PullClient("CG_ap_batch", apache.namesrv_addr) as client:
        got = await pull_all(client, MessageQueue("ApBatch", result.broker_name, result.queue_id), result.queue_offset)
    assert [m.body for m in got] == [*(m.body for m in messages), b"plain", b"x", b"y"]
    assert [m.queue_offset for m in got] == list(range(result.queue_offset, result.queue_offset + 8))
    assert [m.msg_id for m in got[:6]] == ids
    assert got[2].keys == ["key-2"]
    assert got[0].tags == "TagB"


async def test_oneway_sends_arrive(apache: Peer) -> None:
    async with Producer("PG_ap_oneway", apache.namesrv_addr) as producer:
        for i in range(20):
            await producer.send_oneway("ApOneway", f"one-{i}".encode(), queue_id=0)
        last = await producer.send("ApOneway", b"sync", queue_id=0)
    assert last.queue_offset == 20, "the oneway sends before it on the same connection were stored first"
    async with PullClient("CG_ap_oneway", apache.namesrv_addr) as client:
        got = await pull_all(client, MessageQueue("ApOneway", BROKER, 0))
    assert [m.body for m in got] == [f"one-{i}".encode() for i in range(20)] + [b"sync"]


async def test_concurrent_sends_share_one_connection(apache: Peer) -> None:
    """The asyncio client's asynchronous send: many sends in flight at once, pipelined by opaque."""
    async with Producer("PG_ap_concurrent", apache.namesrv_addr) as producer:
        results = await asyncio.gather(*(producer.send("ApConcurrent", f"c{i}", keys=f"c{i}") for i in range(40)))
    assert all(r.status is SendStatus.SEND_OK for r in results)
    assert len({r.msg_id for r in results}) == 40
    assert len({(r.queue_id, r.queue_offset) for r in results}) == 40, "every send stored once"
    async with PullClient("CG_ap_concurrent", apache.namesrv_addr) as client:
        got = [m for q in await client.queues("ApConcurrent") for m in await pull_all(client, q)]
    assert sorted(m.msg_id for m in got) == sorted(r.msg_id for r in results)
    by_id = {r.msg_id: r for r in results}
    assert all((m.queue_id, m.queue_offset) == (by_id[m.msg_id].queue_id, by_id[m.msg_id].queue_offset) for m in got)


async def test_send_orderly_puts_one_key_on_one_queue_in_order(apache: Peer) -> None:
    keys = ["order-1", "order-2", "order-3", "order-4", "订单-5"]
    sent: defaultdict[str, list[int]] = defaultdict(list)
    async with Producer("PG_ap_orderly_send", apache.namesrv_addr) as producer:
        for step in range(6):
            for key in keys:
                result = await producer.send_orderly("ApOrderlySend", f"{key}:{step}", key, keys=key)
                sent[key].append(result.queue_id)
    assert all(len(set(queue_ids)) == 1 for queue_ids in sent.values()), sent
    # Java's SelectMessageQueueByHash: abs(String.hashCode) % queue count ("order-1".hashCode() == -1207111310).
    assert sent["order-1"][0] == 1207111310 % 4
    async with PullClient("CG_ap_orderly_send", apache.namesrv_addr) as client:
        got = [m for q in await client.queues("ApOrderlySend") for m in await messages_in(client, q)]
    by_key: defaultdict[str, list[str]] = defaultdict(list)
    for message in got:
        by_key[message.keys[0]].append(message.body.decode())
        assert message.queue_id == sent[message.keys[0]][0]
    assert by_key == {key: [f"{key}:{step}" for step in range(6)] for key in keys}


async def test_delay_level_is_never_delivered_early(apache: Peer) -> None:
    async with Producer("PG_ap_delay", apache.namesrv_addr) as producer:
        result = await producer.send("ApDelay", "in 1s", tags="TagA", delay_level=1)
        sent = time.monotonic()
    queue = MessageQueue("ApDelay", result.broker_name, result.queue_id)
    async with PullClient("CG_ap_delay", apache.namesrv_addr) as client:
        early = await client.pull(queue, 0)
        assert early.status is PullStatus.NO_NEW_MSG, "a delayed message is never consumable early"
        held = await client.pull(queue, 0, suspend_s=5)
        waited = time.monotonic() - sent
    assert held.status is PullStatus.FOUND
    [message] = held.messages
    assert (message.body, message.tags, message.msg_id) == (b"in 1s", "TagA", result.msg_id)
    assert message.properties["REAL_TOPIC"] == "ApDelay"
    assert message.properties["DELAY"] == "1"
    # Never early (the reply left after the store time, so 1 s minus a few ms at most); the upper bound only
    # catches a missed wake-up.
    assert 0.95 <= waited < 5, f"delivered after {waited:.3f}s for a 1 s delay"


async def test_transactions_commit_rollback_and_check_back(apache: Peer) -> None:
    topic = "ApTx"
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

    def local_transaction(body: str) -> Callable[[object], TransactionState]:
        def execute(_half: object) -> TransactionState:
            if body.startswith("raises"):
                raise RuntimeError("the local transaction failed")
            return decisions[body]

        return execute

    inbox = Inbox()
    consumer = PushConsumer(
        "CG_ap_tx", apache.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
    )
    consumer.subscribe(topic, "*", inbox)
    async with Producer("PG_ap_tx", apache.namesrv_addr, transaction_checker=check) as producer, consumer:
        results = {
            body: await producer.send_in_transaction(topic, body, local_transaction(body), tags="Tx", keys=body)
            for body in decisions
        }
        ids = {body: r.transaction_id for body, r in results.items()}
        assert {body: r.state for body, r in results.items()} == decisions
        assert all(r.send_result.status is SendStatus.SEND_OK for r in results.values())
        committed_bodies = {"commit", "unknown-then-commit", "raises-then-commit"}
        await wait_for(lambda: {m.body.decode() for m in inbox.messages} >= committed_bodies, "committed messages", 20)
        # The checked-back commits arrived after their check; give a rolled-back one as long to show up.
        await wait_for(lambda: len(checked) >= 3, "three check-backs", 10)
    unknown = {ids[b] for b in decisions if decisions[b] is TransactionState.UNKNOWN}
    assert {m.msg_id for m in checked} == unknown, "only undecided transactions are checked back"
    for message in checked:
        assert message.topic == topic, "the check shows the half message in its real topic"
        assert message.properties["TRAN_MSG"] == "true"
        assert message.properties["PGROUP"] == "PG_ap_tx"
        assert message.tags == "Tx"
    assert sorted(m.body.decode() for m in inbox.messages) == sorted(committed_bodies), "each commit once"
    async with PullClient("CG_ap_tx_raw", apache.namesrv_addr) as client:
        stored = [m.body.decode() for q in await client.queues(topic) for m in await messages_in(client, q)]
    assert sorted(stored) == sorted(committed_bodies), "rolled-back halves never reach the topic"
    for message in inbox.messages:
        assert message.topic == topic
        assert message.msg_id == ids[message.body.decode()], "the transaction id is the message id"
        assert message.keys == [message.body.decode()]
        # Stored again in its real topic as a committed message (Apache's resetTransactionValue), not prepared.
        assert message.sys_flag & rec.SYSFLAG_TRANSACTION_MASK == rec.SYSFLAG_TRANSACTION_COMMIT


# --- push consumer ----------------------------------------------------------------------------------------------


async def test_concurrent_consumer_gets_every_matching_message_once(apache: Peer) -> None:
    topic, group = "ApTags", "CG_ap_tags"
    tag_of = {0: "A", 1: "B", 2: "C"}
    async with Producer("PG_ap_tags", apache.namesrv_addr) as producer:
        sent = {(await producer.send(topic, f"m{i}", tags=tag_of[i % 3], keys=f"k{i}")).msg_id: i for i in range(30)}
        wanted = {msg_id for msg_id, i in sent.items() if tag_of[i % 3] in "AB"}
        inbox = Inbox()
        consumer = PushConsumer(
            group, apache.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
        )
        consumer.subscribe(topic, "A || B", inbox)
        async with consumer:
            await wait_for(lambda: len(inbox.messages) >= len(wanted), "all A and B messages consumed")
            late = await producer.send(topic, b"late", tags="B")
            await wait_for(lambda: late.msg_id in inbox.ids, "a message sent while running")
    received = [m.msg_id for m in inbox.messages]
    assert sorted(received) == sorted([*wanted, late.msg_id]), "each A and B message once, no C"
    assert {m.tags for m in inbox.messages} == {"A", "B"}
    assert all(m.topic == topic and m.broker_name == BROKER for m in inbox.messages)
    sample = next(m for m in inbox.messages if m.msg_id in wanted)
    assert sample.keys == [f"k{sent[sample.msg_id]}"]
    # Close persisted "the lowest offset not consumed": everything, on every queue, C messages included.
    for queue_id in range(4):
        assert await committed(apache, group, topic, queue_id) == await max_offset(apache, topic, queue_id)


@pytest.mark.timeout(90)
async def test_reconsume_later_comes_back_through_the_retry_topic(apache: Peer) -> None:
    topic, group = "ApRetry", "CG_ap_retry"
    seen: defaultdict[bytes, list[ReceivedMessage]] = defaultdict(list)

    def first_attempt_fails(message: ReceivedMessage) -> ConsumeResult:
        seen[message.body].append(message)
        if message.reconsume_times == 0 and message.body == b"later":
            return ConsumeResult.RECONSUME_LATER
        if message.reconsume_times == 0 and message.body == b"raises":
            raise RuntimeError("the listener failed")
        return ConsumeResult.CONSUME_SUCCESS

    consumer = PushConsumer(group, apache.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, "*", first_attempt_fails)  # a sync listener: runs in the consumer's threads
    async with Producer("PG_ap_retry", apache.namesrv_addr) as producer:
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


def lock_queue(apache: Peer, group: str, client_id: str, queue: MessageQueue) -> list[MessageQueue]:
    body = {
        "consumerGroup": group,
        "clientId": client_id,
        "mqSet": [{"topic": queue.topic, "brokerName": queue.broker_name, "queueId": queue.queue_id}],
    }
    response = remoting_call(apache.broker_addr, RequestCode.LOCK_BATCH_MQ, {}, dumps_compact(body))
    assert response.code == ResponseCode.SUCCESS
    locked = loads_lenient(bytes(response.body)).get("lockOKMQSet") or []
    return [MessageQueue(q["topic"], q["brokerName"], int(q["queueId"])) for q in locked]


async def test_orderly_consumer_keeps_per_key_order_through_a_local_retry(apache: Peer) -> None:
    topic, group = "ApOrderly", "CG_ap_orderly"
    keys = ["k0", "k1", "k2", "k3", "k4"]
    failed_once: set[str] = set()

    def fail_k1_3_once(message: ReceivedMessage) -> ConsumeResult:
        body = message.body.decode()
        if body == "k1:3" and body not in failed_once:
            failed_once.add(body)
            return ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT
        return ConsumeResult.SUCCESS

    inbox = Inbox(fail_k1_3_once)
    consumer = PushConsumer(
        group, apache.namesrv_addr, orderly=True, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST
    )
    consumer.subscribe(topic, "*", inbox)
    async with Producer("PG_ap_orderly", apache.namesrv_addr) as producer:
        queue_of = {}
        for step in range(8):
            for key in keys:
                queue_of[key] = (await producer.send_orderly(topic, f"{key}:{step}", key, keys=key)).queue_id
        async with consumer:
            await wait_for(lambda: len(inbox.messages) == 41, "40 messages, one of them twice")
            queue = MessageQueue(topic, BROKER, queue_of["k1"])
            assert queue in consumer.assigned_queues()
            # The broker lock is ours: another client of the group is refused.
            assert await asyncio.to_thread(lock_queue, apache, group, "127.0.0.1@intruder", queue) == []
        # Unlocked at close: now the other client gets it.
        assert await asyncio.to_thread(lock_queue, apache, group, "127.0.0.1@intruder", queue) == [queue]
    by_key: defaultdict[str, list[str]] = defaultdict(list)
    for message in inbox.messages:
        by_key[message.keys[0]].append(message.body.decode())
    for key in keys:
        expected = [f"{key}:{step}" for step in range(8)]
        if key == "k1":
            expected.insert(3, "k1:3")
        assert by_key[key] == expected, f"{key}: order kept, k1:3 again before k1:4"
    assert [m.reconsume_times for m in inbox.messages if m.body == b"k1:3"] == [0, 1]


async def test_broadcasting_members_each_get_everything(apache: Peer, tmp_path: Path) -> None:
    topic, group = "ApBroadcast", "CG_ap_broadcast"
    inboxes = [Inbox(), Inbox()]
    consumers = []
    for index, inbox in enumerate(inboxes):
        consumer = PushConsumer(
            group,
            apache.namesrv_addr,
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
        async with Producer("PG_ap_broadcast", apache.namesrv_addr) as producer:
            sent = {(await producer.send(topic, f"b{i}")).msg_id for i in range(20)}
        await wait_for(lambda: all(i.ids == sent for i in inboxes), "each member got all 20")
    finally:
        for consumer in consumers:
            await consumer.close()
    for index, inbox in enumerate(inboxes):
        assert len(inbox.messages) == 20, "each member got each message once"
        offsets = read_offset_file(tmp_path / f"member-{index}.json", group)
        assert sum(offsets.values()) == 20, offsets
    # Nothing of a broadcasting group is committed on the broker.
    assert await committed(apache, group, topic, 0) in (None, 0)


async def test_sql92_subscription_filters_at_the_broker(apache: Peer) -> None:
    topic, group = "ApSql", "CG_ap_sql"
    inbox = Inbox()
    consumer = PushConsumer(group, apache.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, listener=inbox, sql="amount > 5 AND region = 'eu'")
    async with Producer("PG_ap_sql", apache.namesrv_addr) as producer:
        sent = {}
        for amount in range(10):
            region = "us" if amount == 8 else "eu"
            result = await producer.send(topic, f"a{amount}", properties={"amount": str(amount), "region": region})
            sent[result.msg_id] = (amount, region)
        async with consumer:
            # The heartbeat carries the SQL92 subscription (spec 3.4).
            response = await asyncio.to_thread(
                remoting_call, apache.broker_addr, RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": group}
            )
            subscription = loads_lenient(bytes(response.body))["subscriptionTable"][topic]
            assert (subscription["expressionType"], subscription["subString"]) == (
                "SQL92",
                "amount > 5 AND region = 'eu'",
            )
            wanted = {msg_id for msg_id, (amount, region) in sent.items() if amount > 5 and region == "eu"}
            await wait_for(lambda: inbox.ids >= wanted, "the matching messages")
    assert inbox.ids == wanted
    # Filtered at the broker: a SQL92 pull returns only the matching records, no client-side check involved.
    async with PullClient("CG_ap_sql_raw", apache.namesrv_addr) as client:
        records = []
        for queue in await client.queues(topic):
            pulled = await client.pull(queue, 0, expression="amount > 5 AND region = 'eu'", expression_type="SQL92")
            records += list(rec.iter_records(pulled.raw))
    assert {r.properties["UNIQ_KEY"] for r in records} == wanted


# --- pull and lite pull consumer --------------------------------------------------------------------------------


async def test_held_pulls_on_an_idle_queue_come_back_empty(apache: Peer) -> None:
    """Apache answers held pulls on a 5 s tick: a pull sent right after one came back is answered about 5 s later
    whatever its hold, past the client's old timeout (hold + 3 s), so idle consumers logged failed pulls and paused
    3 s after each. The first pull lines the second up with the tick."""
    async with PullClient("CG_ap_held", apache.namesrv_addr) as client:
        queue = (await client.queues("ApLite"))[1]
        end = await client.max_offset(queue)
        for _ in range(2):
            started = time.monotonic()
            held = await client.pull(queue, end, suspend_s=1.0)
            waited = time.monotonic() - started
            assert held.status is PullStatus.NO_NEW_MSG
            assert waited >= 0.95, f"answered after {waited:.3f}s: not held"


async def test_lite_pull_assign_poll_commit_seek(apache: Peer) -> None:
    topic, group = "ApLite", "CG_ap_lite_assign"
    queue = MessageQueue(topic, BROKER, 0)
    async with Producer("PG_ap_lite", apache.namesrv_addr) as producer:
        for i in range(10):
            await producer.send(topic, f"q{i}", queue_id=0)
        await producer.send(topic, b"other queue", queue_id=1)
        consumer = LitePullConsumer(
            group, apache.namesrv_addr, consume_from_where="CONSUME_FROM_FIRST_OFFSET", auto_commit=False, timings=FAST
        )
        consumer.assign([queue])
        async with consumer:
            got = await poll_until(consumer, 10)
            assert [m.body for m in got] == [f"q{i}".encode() for i in range(10)]
            assert await consumer.committed(queue) in (None, 0), "nothing committed before commit()"
            await consumer.commit()
            assert await consumer.committed(queue) == 10
            assert await committed(apache, group, topic, 0) == 10
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
                await consumer.seek(MessageQueue(topic, BROKER, 1), 0)
            assert consumer.assignment() == [queue]


async def test_lite_pull_subscribers_split_the_queues_and_auto_commit(apache: Peer) -> None:
    topic, group = "ApLiteSub", "CG_ap_lite_subscribe"
    consumers = [
        LitePullConsumer(
            group,
            apache.namesrv_addr,
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
                == [MessageQueue(topic, BROKER, i) for i in range(4)]
                and all(len(c.assignment()) == 2 for c in consumers)
            ),
            "two lite consumers hold two queues each",
        )
        async with Producer("PG_ap_lite_sub", apache.namesrv_addr) as producer:
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
    offsets = [await committed(apache, group, topic, i) for i in range(4)]
    assert sum(c or 0 for c in offsets) == 20


# --- admin ------------------------------------------------------------------------------------------------------


async def test_admin_topics_and_cluster(apache: Peer) -> None:
    async with Admin(apache.namesrv_addr) as admin:
        info = await admin.cluster_info()
        assert info.clusters == {"DefaultCluster": [BROKER]}
        assert info.brokers[BROKER].master_addr == apache.broker_addr
        assert await admin.create_topic("ApAdminTopic", 3) == [BROKER]
        route = await admin.topic_route("ApAdminTopic")
        assert [(qd.broker_name, qd.read_queue_nums, qd.write_queue_nums) for qd in route.queue_datas] == [
            (BROKER, 3, 3)
        ]
        assert route.broker(BROKER) is not None
        assert "ApAdminTopic" in await admin.list_topics()
        await admin.create_topic("ApAdminTopic", 5)  # an update
        assert (await admin.topic_route("ApAdminTopic")).queue_datas[0].read_queue_nums == 5
        async with Producer("PG_ap_admin", apache.namesrv_addr) as producer:
            for _ in range(3):
                await producer.send("ApAdminTopic", b"x", queue_id=2)
        stats = {row.queue.queue_id: row for row in await admin.topic_stats("ApAdminTopic")}
        assert sorted(stats) == [0, 1, 2, 3, 4]
        assert (stats[2].min_offset, stats[2].max_offset) == (0, 3)
        assert stats[2].last_update_timestamp_ms > 0
        await admin.delete_topic("ApAdminTopic")
        assert "ApAdminTopic" not in await admin.list_topics()
        with pytest.raises(NoRouteError):
            await admin.topic_route("ApAdminTopic")
        with pytest.raises(ValueError, match="no cluster"):
            await admin.create_topic("ApElsewhere", 1, cluster="NoSuchCluster")


async def test_admin_message_lookups(apache: Peer) -> None:
    async with Producer("PG_ap_lookup", apache.namesrv_addr) as producer:
        first = await producer.send("ApLookup", b"order 17 created", keys=["order-17", "customer-3"])
        second = await producer.send("ApLookup", b"order 17 paid", keys="order-17")
        await producer.send("ApLookup", b"order 18 created", keys="order-18")
    async with Admin(apache.namesrv_addr) as admin:
        message = await admin.query_message_by_id(first.offset_msg_id)
        assert (message.body, message.msg_id, message.keys) == (
            b"order 17 created",
            first.msg_id,
            ["order-17", "customer-3"],
        )
        assert message.broker_name == BROKER
        found: list[ReceivedMessage] = []

        async def query() -> bool:
            found[:] = await admin.query_messages_by_key("ApLookup", "order-17")
            return len(found) >= 2

        # Apache's key index is built by its dispatcher, a moment after the store.
        await wait_for_async(query, "both messages of key order-17 indexed", 5)
        assert [m.msg_id for m in found] == [first.msg_id, second.msg_id]
        assert [m.msg_id for m in await admin.query_messages_by_key("ApLookup", first.msg_id)] == [first.msg_id]
        assert await admin.query_messages_by_key("ApLookup", "order-99") == []
        missing = first.offset_msg_id[:16] + f"{10**12:016X}"
        with pytest.raises(MessageNotFoundError):
            await admin.query_message_by_id(missing)


async def test_admin_consumer_progress_and_offset_reset(apache: Peer) -> None:
    topic, group = "ApProgress", "CG_ap_progress"
    q0, q1 = MessageQueue(topic, BROKER, 0), MessageQueue(topic, BROKER, 1)
    async with Producer("PG_ap_progress", apache.namesrv_addr) as producer:
        for i in range(4):
            await producer.send(topic, f"before-{i}", queue_id=0)
        for i in range(2):
            await producer.send(topic, f"other-{i}", queue_id=1)
        await asyncio.sleep(0.01)  # a gap in store time between the batches (store timestamps are in ms)
        middle_ms = time.time_ns() // 1_000_000
        await asyncio.sleep(0.01)
        for i in range(6):
            await producer.send(topic, f"after-{i}", queue_id=0)
    inbox = Inbox()
    consumer = PushConsumer(group, apache.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, "*", inbox)
    async with consumer:
        # Distinct ids: a redelivery must not pass for a message not yet consumed.
        await wait_for(lambda: len(inbox.ids) == 12, "all 12 messages consumed")
    # Seen twice against Apache (CI at stop 9, here at stop 10): a consumed queue read back at offset 0. The
    # deliveries say whether a queue was consumed twice (dropped and taken back) before the close.
    deliveries = [(m.queue_id, m.queue_offset, m.reconsume_times) for m in inbox.messages]
    async with Admin(apache.namesrv_addr) as admin:
        rows = {row.queue: row for row in await admin.consumer_progress(group, topic)}
        assert (rows[q0].broker_offset, rows[q0].consumer_offset, rows[q0].lag) == (10, 10, 0), deliveries
        assert (rows[q1].broker_offset, rows[q1].consumer_offset, rows[q1].lag) == (2, 2, 0), deliveries
        assert rows[q0].last_timestamp_ms > 0
        reset = await admin.reset_offset_by_timestamp(group, topic, middle_ms)
        assert reset == {q0: 4, q1: 2}, "the first message stored after the timestamp (the end if none)"
        rows = {row.queue: row for row in await admin.consumer_progress(group, topic)}
        assert (rows[q0].consumer_offset, rows[q0].lag) == (4, 6)
        assert (await admin.reset_offset_by_timestamp(group, topic, 0)) == {q0: 0, q1: 0}
        forward_only = await admin.reset_offset_by_timestamp(group, topic, middle_ms, force=False)
        assert forward_only == {q0: 0, q1: 0}, "without force an offset only moves back"


async def test_admin_reset_reaches_a_running_consumer(apache: Peer) -> None:
    topic, group = "ApResetRunning", "CG_ap_reset_running"
    queue = MessageQueue(topic, BROKER, 0)
    async with Producer("PG_ap_reset_running", apache.namesrv_addr) as producer:
        for i in range(4):
            await producer.send(topic, f"before-{i}")
        await asyncio.sleep(0.01)  # a gap in store time between the batches (store timestamps are in ms)
        middle_ms = time.time_ns() // 1_000_000
        await asyncio.sleep(0.01)
        for i in range(6):
            await producer.send(topic, f"after-{i}")
    inbox = Inbox()
    consumer = PushConsumer(group, apache.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe(topic, "*", inbox)
    async with consumer, Admin(apache.namesrv_addr) as admin:
        await wait_for(lambda: len(inbox.messages) == 10, "all 10 messages consumed")
        # Its progress is on the broker before the reset, so no later commit of the old offset can undo it.
        await wait_for_async(lambda: is_committed(apache, group, topic, 0, 10), "the consumer's progress committed")
        assert await admin.reset_offset_by_timestamp(group, topic, middle_ms) == {queue: 4}
        # Apache 5.x keeps the reset for the queue's next pull (OFFSET_MOVED), after the held one (5 s tick).
        await wait_for(lambda: len(inbox.messages) == 16, "the messages after the timestamp consumed again", 20)
    assert [m.body.decode() for m in inbox.messages[10:]] == [f"after-{i}" for i in range(6)]
    assert await committed(apache, group, topic, 0) == 10, "and committed again at close"
