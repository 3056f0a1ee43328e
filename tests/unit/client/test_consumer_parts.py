"""The consumers' pure parts: process queues, the offset file, subscriptions and their heartbeat entries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tidemq.client import MessageQueue, ReceivedMessage, SubscriptionError
from tidemq.client._consumer_api import restore_retry_topic
from tidemq.client._consumer_base import make_subscription
from tidemq.client._offset_store import LocalFileOffsetStore, RemoteOffsetStore, read_offset_file, write_offset_file
from tidemq.client._process_queue import ProcessQueue


def message(offset: int, topic: str = "T", **properties: str) -> ReceivedMessage:
    return ReceivedMessage(
        topic=topic,
        body=b"x",
        queue_id=0,
        queue_offset=offset,
        commitlog_offset=1000 + offset,
        properties=dict(properties),
        born_timestamp=0,
        store_timestamp=0,
        born_host=("127.0.0.1", 1),
        store_host=("127.0.0.1", 2),
        reconsume_times=0,
        sys_flag=0,
        flag=0,
        store_size=100,
    )


async def test_process_queue_commits_the_lowest_offset_not_consumed() -> None:
    pq = ProcessQueue(limit=10)
    messages = [message(i) for i in range(5, 10)]
    pq.add(messages)
    assert pq.count == 5
    assert pq.remove(messages[2]) == 5, "7 done, 5 still pending"
    assert pq.remove(messages[0]) == 6
    assert pq.remove(messages[1]) == 8
    assert pq.remove(messages[4]) == 8
    assert pq.remove(messages[3]) == 10, "all done: one past the highest"
    assert pq.first() is None


async def test_process_queue_flow_control_and_order() -> None:
    pq = ProcessQueue(limit=3)
    pq.add([message(0), message(1)])
    assert pq._room.is_set()
    pq.add([message(2)])
    assert not pq._room.is_set(), "at the limit: the pull task must wait"
    pq.remove(message(1))
    assert pq._room.is_set()
    pq.add([message(0)])  # an offset that went back still keeps the order
    first = pq.first()
    assert first is not None
    assert first.queue_offset == 0


async def test_process_queue_bulk_and_one_by_one_adds_agree() -> None:
    # Pulled batches in order go in in bulk; anything else one by one, re-sorting: both keep the lowest first.
    pq = ProcessQueue(limit=100)
    pq.add([message(i) for i in (10, 11, 12)])
    pq.add([message(i) for i in (20, 14, 13)])  # not in order: one by one
    first = pq.first()
    assert first is not None
    assert first.queue_offset == 10
    pq.add([message(i) for i in (21, 22)])  # after everything held: in bulk
    pq.add([message(i) for i in (5, 6)])  # before everything held
    assert [m.queue_offset for m in pq._messages.values()] == [5, 6, 10, 11, 12, 13, 14, 20, 21, 22]
    assert pq.max_offset_seen == 22
    assert pq.remove_many([message(i) for i in (5, 6, 10, 11, 12, 13, 14, 20, 21)]) == 22
    assert pq.remove(message(22)) == 23
    pq.add([])
    assert pq.count == 0


def test_offset_file_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "offsets" / "G.json"
    offsets = {MessageQueue("T", "broker-a", 0): 5, MessageQueue("T", "broker-a", 1): 7}
    write_offset_file(path, "G", offsets)
    assert read_offset_file(path, "G") == offsets
    assert read_offset_file(path, "OTHER") == {}, "another group's file is not ours"
    data = json.loads(path.read_text())
    data["offsets"][0]["offset"] = 999
    path.write_text(json.dumps(data))
    assert read_offset_file(path, "G") == {}, "a bad CRC is ignored, not trusted"
    path.write_text("{not json")
    assert read_offset_file(path, "G") == {}
    assert read_offset_file(tmp_path / "missing.json", "G") == {}


async def test_local_store_writes_only_changes(tmp_path: Path) -> None:
    path = tmp_path / "G.json"
    store = LocalFileOffsetStore(path, "G")
    queue = MessageQueue("T", "broker-a", 0)
    assert await store.read_stored(queue) is None
    store.update(queue, 3)
    store.update(queue, 2, increase_only=True)
    assert store.read(queue) == 3
    await store.persist([queue])
    assert read_offset_file(path, "G") == {queue: 3}
    path.unlink()
    await store.persist([queue])
    assert not path.exists(), "unchanged offsets are not written again"
    again = LocalFileOffsetStore(path, "G")
    assert await again.read_stored(queue) is None


class _HeldUpdates:
    """Stands in for the broker calls: records each UPDATE_CONSUMER_OFFSET and answers only when released."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []
        self.answer = asyncio.Event()

    async def update_offset(self, queue: MessageQueue, offset: int) -> None:
        self.sent.append((queue.queue_id, offset))
        await self.answer.wait()


async def test_a_cancelled_persist_finishes_before_the_next_one_sends() -> None:
    # close() cancels a periodic persist that may be on the wire, then persists again. Apache applies updates on
    # several threads, so the final one must not leave before the cancelled one's replies: else an older offset
    # can land last (seen in CI: a consumed queue left at offset 0).
    api = _HeldUpdates()
    store = RemoteOffsetStore(api)  # type: ignore[arg-type]
    queue = MessageQueue("T", "broker-a", 1)
    store.update(queue, 0)
    periodic = asyncio.create_task(store.persist([queue]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert api.sent == [(1, 0)]
    store.update(queue, 2)
    periodic.cancel()
    final = asyncio.create_task(store.persist([queue]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert api.sent == [(1, 0)], "the final persist waits for the cancelled one's replies"
    assert not periodic.done(), "the cancelled persist holds on until its replies are in"
    api.answer.set()
    with pytest.raises(asyncio.CancelledError):
        await periodic
    await final
    assert api.sent == [(1, 0), (1, 2)]


def test_subscriptions_and_heartbeat_entries() -> None:
    tags = make_subscription("T", " TagA || TagB ")
    entry = tags.heartbeat_json()
    assert entry["subString"] == "TagA || TagB"
    assert entry["tagsSet"] == ["TagA", "TagB"]
    assert entry["codeSet"] == [2598919, 2598920], "Java String.hashCode of each tag (spec 5.7)"
    assert entry["expressionType"] == "TAG"
    sql = make_subscription("T", sql="a > 5 AND b = 'x'").heartbeat_json()
    assert sql["expressionType"] == "SQL92"
    assert sql["subString"] == "a > 5 AND b = 'x'"
    assert sql["tagsSet"] == []
    assert make_subscription("T", "").expression == "*"
    with pytest.raises(SubscriptionError):
        make_subscription("T", "TagA", sql="a > 1")
    with pytest.raises(SubscriptionError):
        make_subscription("T", sql="  ")


def test_retry_messages_get_their_topic_back() -> None:
    retried = message(0, "%RETRY%G", RETRY_TOPIC="Orders")
    assert restore_retry_topic(retried, "%RETRY%G").topic == "Orders"
    plain = message(0, "Orders")
    assert restore_retry_topic(plain, "%RETRY%G") is plain
