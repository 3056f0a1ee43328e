"""Queue allocation among the members of a consumer group: RocketMQ's three usual strategies, as pure functions.

Every member computes the same answer from the same inputs, with no coordination: the group's client ids and a
topic's queues, both sorted (``RebalanceImpl.rebalanceByTopic`` sorts them before calling the strategy). Each
function returns the queues ``client_id`` takes, in queue order, and nothing when ``client_id`` is not among
``client_ids`` (the broker has not seen its heartbeat yet).

* :func:`allocate_averagely` - ``AllocateMessageQueueAveragely``, the default: contiguous blocks, the first
  ``queues % members`` members take one more.
* :func:`allocate_by_circle` - ``AllocateMessageQueueAveragelyByCircle``: round robin, queue i to member i % n.
* :func:`allocate_consistent_hash` - ``AllocateMessageQueueConsistentHash``: a hash ring with 10 virtual nodes
  per member (MD5, first 4 bytes), each queue to the first node at or after the hash of Java's
  ``MessageQueue.toString()``. Fewer queues move when members come and go, at the cost of a less even spread.

The unit tests pin outputs of the Java classes (rocketmq-client 5.5.0). Pure code: no I/O, no asyncio.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from typing import Final

from tidemq.client._routes import MessageQueue

AllocateStrategy = Callable[[str, str, Sequence[MessageQueue], Sequence[str]], list[MessageQueue]]
"""``(group, client_id, queues, client_ids) -> the queues client_id takes``; inputs are sorted."""

VIRTUAL_NODES: Final = 10
"""``AllocateMessageQueueConsistentHash``'s default ``virtualNodeCnt``."""


def allocate_averagely(
    group: str, client_id: str, queues: Sequence[MessageQueue], client_ids: Sequence[str]
) -> list[MessageQueue]:
    """Contiguous blocks of ``len(queues) // len(client_ids)``, one more for the first ``len % n`` members."""
    if client_id not in client_ids or not queues:
        return []
    index = client_ids.index(client_id)
    queue_count, member_count = len(queues), len(client_ids)
    mod = queue_count % member_count
    takes_extra = mod > 0 and index < mod
    size = 1 if queue_count <= member_count else queue_count // member_count + takes_extra
    start = index * size if takes_extra else index * size + mod
    count = min(size, queue_count - start)
    return [queues[(start + i) % queue_count] for i in range(max(0, count))]


def allocate_by_circle(
    group: str, client_id: str, queues: Sequence[MessageQueue], client_ids: Sequence[str]
) -> list[MessageQueue]:
    """Round robin: queue ``i`` goes to member ``i % len(client_ids)``."""
    if client_id not in client_ids:
        return []
    index = client_ids.index(client_id)
    return [queue for i, queue in enumerate(queues) if i % len(client_ids) == index]


def _md5_hash(key: str) -> int:
    """Java's ``ConsistentHashRouter.MD5Hash``: the first 4 digest bytes, big-endian, as a non-negative long."""
    return int.from_bytes(hashlib.md5(key.encode()).digest()[:4], "big")  # noqa: S324  # placement, not security


def _java_queue_text(queue: MessageQueue) -> str:
    """Java's ``MessageQueue.toString()``, the key the ring hashes."""
    return f"MessageQueue [topic={queue.topic}, brokerName={queue.broker_name}, queueId={queue.queue_id}]"


def allocate_consistent_hash(
    group: str, client_id: str, queues: Sequence[MessageQueue], client_ids: Sequence[str]
) -> list[MessageQueue]:
    """Each queue to the member owning the first ring node at or after its hash (wrapping to the first node)."""
    if client_id not in client_ids:
        return []
    ring: dict[int, str] = {}
    for member in client_ids:  # Java: ring.put(hash, node), a later node with the same hash replaces the earlier
        for replica in range(VIRTUAL_NODES):
            ring[_md5_hash(f"{member}-{replica}")] = member
    points = sorted(ring)
    chosen: list[MessageQueue] = []
    for queue in queues:
        position = bisect.bisect_left(points, _md5_hash(_java_queue_text(queue)))
        owner = ring[points[position % len(points)]]
        if owner == client_id:
            chosen.append(queue)
    return chosen


STRATEGIES: Final[dict[str, AllocateStrategy]] = {
    "average": allocate_averagely,
    "round_robin": allocate_by_circle,
    "consistent_hash": allocate_consistent_hash,
}
"""Strategies by the names the consumers accept."""


def strategy_named(name: str | AllocateStrategy) -> AllocateStrategy:
    """The strategy called ``name`` (``average``, ``round_robin``, ``consistent_hash``), or ``name`` if callable.

    Raises:
        ValueError: an unknown name.
    """
    if callable(name):
        return name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown allocation strategy {name!r}; use one of {', '.join(STRATEGIES)}") from None
