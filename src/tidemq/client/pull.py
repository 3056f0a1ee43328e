"""A low-level pull client: PULL_MESSAGE on one queue at a time, plus the offset calls a consumer needs.

::

    async with PullClient("CG_audit", "127.0.0.1:9876") as client:
        for queue in await client.queues("Orders"):
            offset = await client.query_offset(queue) or 0
            result = await client.pull(queue, offset, suspend_s=5)
            for message in result.messages:
                ...
            await client.commit_offset(queue, result.next_begin_offset)

This is the raw layer: no rebalance, no offset bookkeeping (for those, use :class:`~tidemq.client.PushConsumer`
or :class:`~tidemq.client.LitePullConsumer`; all three send their requests through ``_consumer_api``). It also
serves the load generator, which only counts: :attr:`PullResult.raw` is the pull body as the broker sent
it (stored records, spec 5.1), :attr:`PullResult.message_count` reads only the records' size words, and
:attr:`PullResult.messages` decodes them on first access.

A pull with ``suspend_s`` > 0 may be held by the broker until a message arrives (long polling, spec 4.2); the
request timeout is then ``suspend_s`` plus ``request_timeout_s`` plus 5 s (``HELD_PULL_GRACE_S``: Apache answers
held pulls on a 5 s tick). When the broker suggests a slave (``suggestWhichBrokerId``) the next pull of that
queue goes there, if the route knows its address.

State: the client instance (connections, routes, heartbeats) and the suggested broker per queue, on the loop
thread. The group is heartbeated as a CONSUME_ACTIVELY clustering consumer, as Java's pull consumer does.
"""

from __future__ import annotations

from tidemq.client._consumer_api import (
    FLAG_COMMIT_OFFSET,
    FLAG_SUBSCRIPTION,
    FLAG_SUSPEND,
    MAX_PULL_COUNT,
    ConsumerApi,
    PullResult,
    PullStatus,
    parse_tag_expression,
)
from tidemq.client._instance import ClientConfig, ClientInstance
from tidemq.client._routes import MessageQueue, subscribe_queues
from tidemq.client.errors import NoRouteError
from tidemq.store.names import validate_group

__all__ = [
    "FLAG_COMMIT_OFFSET",
    "FLAG_SUBSCRIPTION",
    "FLAG_SUSPEND",
    "MAX_PULL_COUNT",
    "PullClient",
    "PullResult",
    "PullStatus",
    "parse_tag_expression",
]


class PullClient:
    """Pulls messages queue by queue for one consumer group.

    Args:
        group: the consumer group (offsets are kept per group).
        namesrv_addr: name servers, ``"host:port;host:port"``.
        config: connection, heartbeat and route settings.

    Raises:
        IllegalNameError: ``group`` breaks RocketMQ's naming rules.
        ValueError: ``namesrv_addr`` names no server.
    """

    def __init__(self, group: str, namesrv_addr: str, *, config: ClientConfig | None = None) -> None:
        validate_group(group)
        self.group = group
        self._instance = ClientInstance(namesrv_addr, config)
        self._routes = self._instance.routes
        self._api = ConsumerApi(self._instance, group)

    @property
    def client_id(self) -> str:
        return self._instance.client_id

    async def start(self) -> None:
        """Start heartbeats (as a CONSUME_ACTIVELY consumer of the group) and route refreshes."""
        self._instance.consumer_data[self.group] = {
            "groupName": self.group,
            "consumeType": "CONSUME_ACTIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [],
            "unitMode": False,
        }
        await self._instance.start()

    async def close(self) -> None:
        """Unregister from the brokers and close the connections; pulls in flight fail."""
        await self._instance.close()

    async def __aenter__(self) -> PullClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def queues(self, topic: str, *, refresh: bool = False) -> list[MessageQueue]:
        """The topic's readable queues, from its route (asked of the name servers unless cached).

        Raises:
            NoRouteError: no name server knows the topic, or it has no readable queue.
            ClientError: no name server answered.
        """
        self._instance.check_running()
        queues = subscribe_queues(topic, await self._routes.route(topic, refresh=refresh))
        if not queues:
            raise NoRouteError(topic, "the route has no readable queue")
        return queues

    async def pull(
        self,
        queue: MessageQueue,
        offset: int,
        *,
        max_count: int = 32,
        expression: str = "*",
        expression_type: str = "TAG",
        suspend_s: float = 0.0,
        commit_offset: int | None = None,
        timeout_s: float | None = None,
    ) -> PullResult:
        """Pull up to ``max_count`` messages of ``queue`` from ``offset``.

        Args:
            queue: the queue.
            offset: the first queue offset wanted.
            max_count: at most this many messages (1..1024).
            expression: a tag expression, ``"*"`` or ``"TagA || TagB"``, or a SQL92 condition.
            expression_type: ``"TAG"``, or ``"SQL92"`` (the broker evaluates it against message properties).
            suspend_s: let the broker hold the pull this long when nothing is there yet (0: answer at once).
            commit_offset: also store this as the group's offset of the queue (pull flag bit 0, master only).
            timeout_s: overrides ``request_timeout_s``, or ``suspend_s + HELD_PULL_GRACE_S + request_timeout_s``
                for a held pull.

        Raises:
            BrokerError: an error code (no such topic, group not allowed...).
            ConnectionFailedError, RequestTimeoutError: the broker could not be reached or did not answer.
            NoRouteError: the queue's broker is not in any route.
        """
        self._instance.check_running()
        return await self._api.pull(
            queue,
            offset,
            max_count=max_count,
            expression=expression,
            expression_type=expression_type,
            suspend_s=suspend_s,
            commit_offset=commit_offset,
            timeout_s=timeout_s,
        )

    async def query_offset(self, queue: MessageQueue) -> int | None:
        """The group's committed offset of ``queue``, ``None`` if it has none (QUERY_NOT_FOUND).

        Raises:
            BrokerError, ConnectionFailedError, RequestTimeoutError, NoRouteError: as for :meth:`pull`.
        """
        self._instance.check_running()
        return await self._api.query_offset(queue)

    async def commit_offset(self, queue: MessageQueue, offset: int) -> None:
        """Store ``offset`` as the group's offset of ``queue`` (UPDATE_CONSUMER_OFFSET), and wait for the reply.

        Raises:
            BrokerError, ConnectionFailedError, RequestTimeoutError, NoRouteError: as for :meth:`pull`.
        """
        self._instance.check_running()
        await self._api.update_offset(queue, offset)

    async def max_offset(self, queue: MessageQueue) -> int:
        """The queue's next offset to be written (GET_MAX_OFFSET)."""
        self._instance.check_running()
        return await self._api.max_offset(queue)

    async def min_offset(self, queue: MessageQueue) -> int:
        """The queue's first offset still stored (GET_MIN_OFFSET)."""
        self._instance.check_running()
        return await self._api.min_offset(queue)

    async def search_offset(self, queue: MessageQueue, timestamp_ms: int) -> int:
        """The first offset of ``queue`` stored at or after ``timestamp_ms`` (SEARCH_OFFSET_BY_TIMESTAMP)."""
        self._instance.check_running()
        return await self._api.search_offset(queue, timestamp_ms)
