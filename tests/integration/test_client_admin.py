"""Admin and the blocking facade against a real ``tidemq dev`` subprocess."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, start_server
from tidemq.client import (
    Admin,
    ClientStateError,
    ConsumeFromWhere,
    ConsumerTimings,
    MessageNotFoundError,
    MessageQueue,
    NoRouteError,
    Producer,
    PullClient,
    ReceivedMessage,
    TransactionState,
    sync,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("admin") / "data")
    try:
        yield process
    finally:
        process.stop()


async def test_topics_and_cluster(server: ServerProcess) -> None:
    async with Admin(server.namesrv_addr) as admin:
        info = await admin.cluster_info()
        assert info.clusters == {"DefaultCluster": ["broker-a"]}
        assert info.brokers["broker-a"].master_addr == server.broker_addr
        assert await admin.create_topic("AdminTopic", 3) == ["broker-a"]
        route = await admin.topic_route("AdminTopic")
        assert [(qd.broker_name, qd.read_queue_nums, qd.write_queue_nums) for qd in route.queue_datas] == [
            ("broker-a", 3, 3)
        ]
        assert "AdminTopic" in await admin.list_topics()
        await admin.create_topic("AdminTopic", 5)  # an update
        assert (await admin.topic_route("AdminTopic")).queue_datas[0].read_queue_nums == 5
        async with Producer("PG_admin", server.namesrv_addr) as producer:
            for _ in range(3):
                await producer.send("AdminTopic", b"x", queue_id=2)
        stats = {row.queue.queue_id: row for row in await admin.topic_stats("AdminTopic")}
        assert sorted(stats) == [0, 1, 2, 3, 4]
        assert (stats[2].min_offset, stats[2].max_offset) == (0, 3)
        assert stats[2].last_update_timestamp_ms > 0
        await admin.delete_topic("AdminTopic")
        assert "AdminTopic" not in await admin.list_topics()
        with pytest.raises(NoRouteError):
            await admin.topic_route("AdminTopic")
        with pytest.raises(ValueError, match="no cluster"):
            await admin.create_topic("Elsewhere", 1, cluster="NoSuchCluster")


async def test_message_lookups(server: ServerProcess) -> None:
    async with Producer("PG_lookup", server.namesrv_addr) as producer:
        first = await producer.send("AdminLookup", b"order 17 created", keys=["order-17", "customer-3"])
        second = await producer.send("AdminLookup", b"order 17 paid", keys="order-17")
        await producer.send("AdminLookup", b"order 18 created", keys="order-18")
    async with Admin(server.namesrv_addr) as admin:
        message = await admin.query_message_by_id(first.offset_msg_id)
        assert (message.body, message.msg_id, message.keys) == (
            b"order 17 created",
            first.msg_id,
            ["order-17", "customer-3"],
        )
        assert message.broker_name == "broker-a"
        found = await admin.query_messages_by_key("AdminLookup", "order-17")
        assert [m.msg_id for m in found] == [first.msg_id, second.msg_id]
        assert [m.msg_id for m in await admin.query_messages_by_key("AdminLookup", first.msg_id)] == [first.msg_id]
        assert await admin.query_messages_by_key("AdminLookup", "order-99") == []
        missing = first.offset_msg_id[:16] + f"{10**12:016X}"
        with pytest.raises(MessageNotFoundError):
            await admin.query_message_by_id(missing)


async def test_consumer_progress_and_offset_reset(server: ServerProcess) -> None:
    topic, group = "AdminProgress", "CG_admin_progress"
    async with Producer("PG_progress", server.namesrv_addr) as producer:
        for i in range(4):
            await producer.send(topic, f"before-{i}", queue_id=0)
        await asyncio.sleep(0.01)  # a gap in store time between the batches (store timestamps are in ms)
        middle_ms = time.time_ns() // 1_000_000
        await asyncio.sleep(0.01)
        for i in range(6):
            await producer.send(topic, f"after-{i}", queue_id=0)
    queue = MessageQueue(topic, "broker-a", 0)
    async with PullClient(group, server.namesrv_addr) as client:
        await client.commit_offset(queue, 7)
    async with Admin(server.namesrv_addr) as admin:
        rows = {row.queue: row for row in await admin.consumer_progress(group, topic)}
        assert (rows[queue].broker_offset, rows[queue].consumer_offset, rows[queue].lag) == (10, 7, 3)
        reset = await admin.reset_offset_by_timestamp(group, topic, middle_ms)
        assert reset[queue] == 4, "the first message stored after the timestamp"
        rows = {row.queue: row for row in await admin.consumer_progress(group, topic)}
        assert (rows[queue].consumer_offset, rows[queue].lag) == (4, 6)
        assert (await admin.reset_offset_by_timestamp(group, topic, 0))[queue] == 0
        forward_only = await admin.reset_offset_by_timestamp(group, topic, middle_ms, force=False)
        assert forward_only[queue] == 0, "without force an offset only moves back"


def test_blocking_facade(server: ServerProcess) -> None:
    """Plain threads, no event loop in the test: the facade runs its own."""
    topic = "SyncFacade"
    with sync.Admin(server.namesrv_addr) as admin:
        admin.create_topic(topic, 2)
    received: list[ReceivedMessage] = []
    all_in = threading.Event()

    def on_message(message: ReceivedMessage) -> None:  # a plain function, in a worker thread
        assert threading.current_thread() is not threading.main_thread()
        received.append(message)
        if len(received) == 5:
            all_in.set()

    consumer = sync.PushConsumer(
        "CG_sync",
        server.namesrv_addr,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        timings=ConsumerTimings(pull_suspend_s=1),
    )
    consumer.subscribe(topic, "*", on_message)
    with sync.Producer("PG_sync", server.namesrv_addr) as producer, consumer:
        sent = {producer.send(topic, f"s{i}").msg_id for i in range(5)}
        assert all_in.wait(10)
    assert {m.msg_id for m in received} == sent
    lite = sync.LitePullConsumer("CG_sync_lite", server.namesrv_addr, consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    with lite:
        queues = lite.fetch_queues(topic)
        lite.assign(queues)
        polled: list[ReceivedMessage] = []
        deadline = time.monotonic() + 10
        while len(polled) < 5 and time.monotonic() < deadline:
            polled += lite.poll(0.5)
        lite.commit()
        assert {m.msg_id for m in polled} == sent
        assert sum(lite.committed(q) or 0 for q in queues) == 5
    with pytest.raises(ClientStateError, match="not started"):
        lite.poll(0.1)


def test_blocking_producer_sends_orderly_and_in_transactions(tmp_path: Path) -> None:
    conf = tmp_path / "broker.conf"
    conf.write_text("transactionCheckInterval=1000\ntransactionTimeOut=2000\n")  # check halves 2 s old, every second
    process = start_server(tmp_path / "data", broker_conf=conf)
    checked: list[bytes] = []

    def check(message: ReceivedMessage) -> TransactionState:  # a plain function, on the producer's loop thread
        checked.append(message.body)
        return TransactionState.COMMIT

    try:
        with sync.Producer("PG_sync_tx", process.namesrv_addr, transaction_checker=check) as producer:
            orderly = [producer.send_orderly("SyncOrderly", f"key-1:{step}", "key-1") for step in range(4)]
            results = {
                body: producer.send_in_transaction("SyncTx", body, lambda _half, state=state: state)
                for body, state in (
                    ("commit", TransactionState.COMMIT),
                    ("rollback", TransactionState.ROLLBACK),
                    ("unknown", TransactionState.UNKNOWN),
                )
            }
            deadline = time.monotonic() + 15
            while b"unknown" not in checked:
                assert time.monotonic() < deadline, "no check-back for the UNKNOWN transaction"
                time.sleep(0.05)
        assert len({r.queue_id for r in orderly}) == 1, "one sharding key, one queue"
        first = orderly[0].queue_offset
        assert [r.queue_offset for r in orderly] == [first, first + 1, first + 2, first + 3]
        assert {body: r.state for body, r in results.items()} == {
            "commit": TransactionState.COMMIT,
            "rollback": TransactionState.ROLLBACK,
            "unknown": TransactionState.UNKNOWN,
        }
        lite = sync.LitePullConsumer("CG_sync_tx", process.namesrv_addr, consume_from_where="CONSUME_FROM_FIRST_OFFSET")
        with lite:
            lite.assign(lite.fetch_queues("SyncTx"))
            polled: list[ReceivedMessage] = []
            while sorted(m.body for m in polled) != [b"commit", b"unknown"]:
                assert time.monotonic() < deadline, f"visible: {[m.body for m in polled]}"
                polled += lite.poll(0.5)
    finally:
        process.stop()
    assert set(checked) == {b"unknown"}, "only the UNKNOWN transaction is checked back"
