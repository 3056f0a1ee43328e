"""tidemq's Python client SDK for RocketMQ's remoting protocol (any 4.x/5.x broker, tidemq's included).

asyncio-first::

    async with Producer("PG", "127.0.0.1:9876") as producer:
        result = await producer.send("Orders", b"hello", tags="TagA")

* :class:`Producer` - ``send`` / ``send_oneway`` / ``send_batch`` / ``send_orderly`` / ``send_in_transaction``
  with routing, retries and heartbeats.
* :class:`PushConsumer` - listeners called with each message: concurrent or orderly, clustering (rebalance,
  retries through ``%RETRY%<group>``) or broadcasting (offsets in a local file).
* :class:`LitePullConsumer` - ``poll()`` batches pulled in the background; ``subscribe`` or ``assign``,
  ``commit``, ``seek``.
* :class:`Admin` - topics, cluster layout, consumer progress, message lookups, offset resets.
* :class:`PullClient` - PULL_MESSAGE on one queue, offsets: the raw layer.
* :mod:`tidemq.client.sync` - blocking versions of the above for scripts (an event loop in a thread).
* :mod:`tidemq.client.errors` - the client's exceptions (a branch of :mod:`tidemq.errors`).

Internals, shared by every client: ``_instance`` (client id, heartbeats, background loops), ``_connections``
(one connection per address), ``_routes`` (name-server routes, TBW102 fallback, queue selection), ``_message``
(UNIQ_KEY, properties, batch and record codecs), ``_transaction`` (transaction states and callback types). The
consumers share ``_consumer_api`` (the broker calls), ``_consumer_base`` (subscriptions, rebalance, start
offsets), ``_allocate`` (queue allocation strategies), ``_offset_store`` (broker or file offsets) and
``_process_queue`` (pulled, unconsumed messages per queue).
``_loadgen`` drives ``tidemq bench``. The client imports the protocol, transport and store record layout, never
the broker, name server or gateways.
"""

from tidemq.client._allocate import (
    AllocateStrategy,
    allocate_averagely,
    allocate_by_circle,
    allocate_consistent_hash,
)
from tidemq.client._consumer_base import ConsumeFromWhere, ConsumerTimings, MessageModel, Subscription
from tidemq.client._instance import ClientConfig
from tidemq.client._message import Message, ReceivedMessage, new_uniq_key
from tidemq.client._routes import MessageQueue, TopicRoute, parse_topic_route
from tidemq.client._transaction import LocalTransaction, TransactionChecker, TransactionState
from tidemq.client.admin import Admin, BrokerInfo, ClusterInfo, QueueProgress, QueueStats
from tidemq.client.errors import (
    BrokerError,
    ClientError,
    ClientStateError,
    ConnectionFailedError,
    IllegalOffsetError,
    MessageNotFoundError,
    NoRouteError,
    QueueNotAssignedError,
    RequestTimeoutError,
    SubscriptionError,
)
from tidemq.client.lite_pull import LitePullConsumer
from tidemq.client.producer import Producer, ProducerConfig, SendResult, SendStatus, TransactionResult
from tidemq.client.pull import PullClient, PullResult, PullStatus
from tidemq.client.push import ConsumeResult, Listener, PushConsumer

__all__ = [
    # producing
    "Producer",
    "ProducerConfig",
    "SendResult",
    "SendStatus",
    "TransactionState",
    "TransactionResult",
    "LocalTransaction",
    "TransactionChecker",
    "Message",
    "new_uniq_key",
    # consuming
    "PushConsumer",
    "ConsumeResult",
    "Listener",
    "LitePullConsumer",
    "MessageModel",
    "ConsumeFromWhere",
    "ConsumerTimings",
    "Subscription",
    "AllocateStrategy",
    "allocate_averagely",
    "allocate_by_circle",
    "allocate_consistent_hash",
    "PullClient",
    "PullResult",
    "PullStatus",
    "ReceivedMessage",
    # administration
    "Admin",
    "BrokerInfo",
    "ClusterInfo",
    "QueueProgress",
    "QueueStats",
    # shared
    "ClientConfig",
    "MessageQueue",
    "TopicRoute",
    "parse_topic_route",
    # errors
    "ClientError",
    "ClientStateError",
    "NoRouteError",
    "ConnectionFailedError",
    "RequestTimeoutError",
    "BrokerError",
    "SubscriptionError",
    "QueueNotAssignedError",
    "IllegalOffsetError",
    "MessageNotFoundError",
]
