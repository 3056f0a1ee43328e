"""Queue allocation strategies against the outputs of RocketMQ's own classes.

The expected tables were printed by ``AllocateMessageQueueAveragely``, ``AllocateMessageQueueAveragelyByCircle``
and ``AllocateMessageQueueConsistentHash`` of rocketmq-client 5.5.0 (Apache's jar, run with a JDK), for queue
lists sorted as the client sorts them (topic, broker name, queue id: ``a0`` is ``broker-a`` queue 0) and client
ids ``127.0.0.1@client-0`` ... (sorted). Each row is one client's share, in client-id order.
"""

from __future__ import annotations

import pytest

from tidemq.client import MessageQueue, allocate_averagely, allocate_by_circle, allocate_consistent_hash
from tidemq.client._allocate import AllocateStrategy, strategy_named


def make_queues(count: int) -> list[MessageQueue]:
    """``count`` queues over two brokers: broker-a takes the larger half (as in the Java program)."""
    queues = [MessageQueue("TopicA", "broker-a", i) for i in range(count // 2 + count % 2)]
    queues += [MessageQueue("TopicA", "broker-b", i) for i in range(count // 2)]
    return sorted(queues)


def shares(strategy: AllocateStrategy, queue_count: int, client_count: int) -> list[str]:
    queues = make_queues(queue_count)
    client_ids = [f"127.0.0.1@client-{i}" for i in range(client_count)]
    return [
        ",".join(f"{q.broker_name[-1]}{q.queue_id}" for q in strategy("G", cid, queues, client_ids))
        for cid in client_ids
    ]


JAVA_OUTPUTS: dict[AllocateStrategy, dict[tuple[int, int], list[str]]] = {
    allocate_averagely: {
        (8, 3): ["a0,a1,a2", "a3,b0,b1", "b2,b3"],
        (4, 3): ["a0,a1", "b0", "b1"],
        (3, 5): ["a0", "a1", "b0", "", ""],
        (10, 4): ["a0,a1,a2", "a3,a4,b0", "b1,b2", "b3,b4"],
        (16, 3): ["a0,a1,a2,a3,a4,a5", "a6,a7,b0,b1,b2", "b3,b4,b5,b6,b7"],
    },
    allocate_by_circle: {
        (8, 3): ["a0,a3,b2", "a1,b0,b3", "a2,b1"],
        (4, 3): ["a0,b1", "a1", "b0"],
        (3, 5): ["a0", "a1", "b0", "", ""],
        (10, 4): ["a0,a4,b3", "a1,b0,b4", "a2,b1", "a3,b2"],
        (16, 3): ["a0,a3,a6,b1,b4,b7", "a1,a4,a7,b2,b5", "a2,a5,b0,b3,b6"],
    },
    allocate_consistent_hash: {
        (8, 3): ["a1,b1", "a0,b0,b2,b3", "a2,a3"],
        (4, 3): ["a1,b1", "a0,b0", ""],
        (3, 5): ["a1", "a0", "", "", "b0"],
        (10, 4): ["a1,b1,b4", "a0,b2,b3", "a2,a3,a4", "b0"],
        (16, 3): ["a1,b1,b4,b5", "a0,b0,b2,b3,b7", "a2,a3,a4,a5,a6,a7,b6"],
    },
}


@pytest.mark.parametrize(
    ("strategy", "queue_count", "client_count"),
    [(s, q, c) for s, table in JAVA_OUTPUTS.items() for (q, c) in table],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_matches_rocketmq(strategy: AllocateStrategy, queue_count: int, client_count: int) -> None:
    assert shares(strategy, queue_count, client_count) == JAVA_OUTPUTS[strategy][(queue_count, client_count)]


@pytest.mark.parametrize("strategy", list(JAVA_OUTPUTS))
@pytest.mark.parametrize(("queue_count", "client_count"), [(1, 1), (7, 2), (8, 8), (5, 9), (64, 7)])
def test_every_queue_goes_to_exactly_one_member(
    strategy: AllocateStrategy, queue_count: int, client_count: int
) -> None:
    queues = make_queues(queue_count)
    client_ids = [f"10.0.0.{i}@x" for i in range(client_count)]
    taken = [q for cid in client_ids for q in strategy("G", cid, queues, client_ids)]
    assert sorted(taken) == queues


def test_averagely_8_queues_3_consumers_is_3_3_2() -> None:
    assert [len(s.split(",")) for s in shares(allocate_averagely, 8, 3)] == [3, 3, 2]


def test_a_client_the_broker_does_not_list_gets_nothing() -> None:
    queues = make_queues(4)
    for strategy in JAVA_OUTPUTS:
        assert strategy("G", "127.0.0.1@stranger", queues, ["127.0.0.1@a", "127.0.0.1@b"]) == []


def test_consistent_hash_moves_few_queues_when_a_member_joins() -> None:
    queues = make_queues(64)
    before_ids = [f"127.0.0.1@client-{i}" for i in range(4)]
    after_ids = [*before_ids, "127.0.0.1@client-4"]
    before = {q: cid for cid in before_ids for q in allocate_consistent_hash("G", cid, queues, before_ids)}
    after = {q: cid for cid in after_ids for q in allocate_consistent_hash("G", cid, queues, after_ids)}
    moved = [q for q in queues if before[q] != after[q]]
    assert all(after[q] == "127.0.0.1@client-4" for q in moved), "only queues for the newcomer move"


def test_strategy_names() -> None:
    assert strategy_named("average") is allocate_averagely
    assert strategy_named("round_robin") is allocate_by_circle
    assert strategy_named("consistent_hash") is allocate_consistent_hash
    assert strategy_named(allocate_by_circle) is allocate_by_circle
    with pytest.raises(ValueError, match="unknown allocation strategy"):
        strategy_named("random")
