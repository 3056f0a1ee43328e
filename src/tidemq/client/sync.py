"""Blocking versions of the clients, for scripts and code without an event loop.

::

    from tidemq.client import sync

    with sync.Producer("PG", "127.0.0.1:9876") as producer:
        producer.send("Orders", b"hello", tags="created")

    def on_message(message):                     # runs in a worker thread
        print(message.body)

    consumer = sync.PushConsumer("CG", "127.0.0.1:9876")
    consumer.subscribe("Orders", "*", on_message)
    with consumer:
        input("consuming; press Enter to stop")

Each object runs the asyncio client in an event loop of its own, on a daemon thread started by ``start()`` and
stopped by ``close()``; every call is handed to that loop with ``asyncio.run_coroutine_threadsafe`` and waits
for the answer. Exceptions are the asyncio client's. Listeners of a :class:`PushConsumer` are plain functions;
they run in the consumer's thread pool, never on the loop thread.

State: the loop and its thread, per object; the wrapped client lives on that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Generic, Protocol, Self, TypeVar

from tidemq.client import admin as _admin
from tidemq.client import lite_pull as _lite_pull
from tidemq.client import producer as _producer
from tidemq.client import push as _push
from tidemq.client._allocate import AllocateStrategy
from tidemq.client._consumer_base import ConsumeFromWhere, ConsumerTimings, MessageModel
from tidemq.client._instance import ClientConfig
from tidemq.client._message import Message, ReceivedMessage
from tidemq.client._routes import MessageQueue, TopicRoute
from tidemq.client._transaction import LocalTransaction, TransactionChecker
from tidemq.client.errors import ClientStateError

T = TypeVar("T")


class _Lifecycle(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Lifecycle)

CALL_TIMEOUT_S: Final = 300.0
"""No call waits longer than this for the loop (a guard; the clients' own timeouts are far shorter)."""


class LoopThread:
    """An event loop running on a daemon thread; :meth:`call` runs a coroutine there and waits for it."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run ``coroutine`` on the loop; return its result or raise its exception."""
        if self._loop.is_closed():
            coroutine.close()
            raise ClientStateError("the client is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise ClientStateError("a blocking call from the client's own event loop thread would wait forever")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self) -> None:
        """Cancel what is left on the loop, stop it, join the thread, close the loop. Safe to call twice."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            self.call(_cancel_remaining())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()


async def _cancel_remaining() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class _Blocking(Generic[ClientT]):
    """Start/close and ``with`` support around one asyncio client on its own loop thread."""

    def __init__(self, name: str, client: ClientT) -> None:
        self._thread: LoopThread | None = None
        self._name = name
        self._client = client

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._thread is None:
            coroutine.close()
            raise ClientStateError("the client is not started")
        return self._thread.call(coroutine)

    def _run_plain(self, function: Callable[[], T]) -> T:
        """Run a plain function on the loop thread (the client's state belongs to it), or here before start."""
        if self._thread is None:
            return function()
        return self._thread.call(_call(function))

    def start(self) -> None:
        """Start the loop thread and the client on it."""
        if self._thread is None:
            self._thread = LoopThread(self._name)
            try:
                self._thread.call(self._client.start())
            except BaseException:
                self._thread.stop()
                self._thread = None
                raise

    def close(self) -> None:
        """Close the client, then stop its loop thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                thread.call(self._client.close())
            finally:
                thread.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Producer(_Blocking[_producer.Producer]):
    """:class:`tidemq.client.Producer`, blocking. Arguments are the same."""

    def __init__(
        self,
        group: str,
        namesrv_addr: str,
        *,
        config: _producer.ProducerConfig | None = None,
        transaction_checker: TransactionChecker | None = None,
    ) -> None:
        """``transaction_checker`` (and a ``send_in_transaction``'s local transaction) run on the producer's
        own event-loop thread: a slow one holds up this producer's other sends while it runs."""
        super().__init__(
            f"tidemq-producer-{group}",
            _producer.Producer(group, namesrv_addr, config=config, transaction_checker=transaction_checker),
        )

    @property
    def client_id(self) -> str:
        return self._client.client_id

    def send(
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        queue_id: int | None = None,
        broker_name: str | None = None,
        delay_level: int = 0,
    ) -> _producer.SendResult:
        """See :meth:`tidemq.client.Producer.send`."""
        return self._run(
            self._client.send(
                topic,
                body,
                tags=tags,
                keys=keys,
                properties=properties,
                queue_id=queue_id,
                broker_name=broker_name,
                delay_level=delay_level,
            )
        )

    def send_oneway(
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """See :meth:`tidemq.client.Producer.send_oneway`."""
        self._run(self._client.send_oneway(topic, body, tags=tags, keys=keys, properties=properties))

    def send_batch(
        self, topic: str, messages: Iterable[Message | bytes], *, queue_id: int | None = None
    ) -> _producer.SendResult:
        """See :meth:`tidemq.client.Producer.send_batch`."""
        return self._run(self._client.send_batch(topic, list(messages), queue_id=queue_id))

    def send_orderly(
        self,
        topic: str,
        body: bytes | str,
        sharding_key: str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> _producer.SendResult:
        """See :meth:`tidemq.client.Producer.send_orderly`."""
        return self._run(
            self._client.send_orderly(topic, body, sharding_key, tags=tags, keys=keys, properties=properties)
        )

    def send_in_transaction(
        self,
        topic: str,
        body: bytes | str,
        local_transaction: LocalTransaction,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> _producer.TransactionResult:
        """See :meth:`tidemq.client.Producer.send_in_transaction`."""
        return self._run(
            self._client.send_in_transaction(
                topic, body, local_transaction, tags=tags, keys=keys, properties=properties
            )
        )


class PushConsumer(_Blocking[_push.PushConsumer]):
    """:class:`tidemq.client.PushConsumer`, blocking; listeners are plain functions run in worker threads.

    Arguments are those of :class:`tidemq.client.PushConsumer`.
    """

    def __init__(
        self,
        group: str,
        namesrv_addr: str,
        *,
        message_model: MessageModel | str = MessageModel.CLUSTERING,
        consume_from_where: ConsumeFromWhere | str = ConsumeFromWhere.LAST_OFFSET,
        consume_timestamp_ms: int | None = None,
        allocate_strategy: str | AllocateStrategy = "average",
        consume_concurrency: int = 20,
        pull_batch_size: int = 32,
        max_cached_messages_per_queue: int = 1000,
        max_reconsume_times: int = 16,
        orderly: bool = False,
        offset_store_path: Path | str | None = None,
        timings: ConsumerTimings | None = None,
        client: ClientConfig | None = None,
    ) -> None:
        consumer = _push.PushConsumer(
            group,
            namesrv_addr,
            message_model=message_model,
            consume_from_where=consume_from_where,
            consume_timestamp_ms=consume_timestamp_ms,
            allocate_strategy=allocate_strategy,
            consume_concurrency=consume_concurrency,
            pull_batch_size=pull_batch_size,
            max_cached_messages_per_queue=max_cached_messages_per_queue,
            max_reconsume_times=max_reconsume_times,
            orderly=orderly,
            offset_store_path=offset_store_path,
            timings=timings,
            client=client,
        )
        super().__init__(f"tidemq-consumer-{group}", consumer)

    @property
    def client_id(self) -> str:
        return self._client.client_id

    def subscribe(
        self, topic: str, expression: str = "*", listener: _push.Listener | None = None, *, sql: str | None = None
    ) -> None:
        """See :meth:`tidemq.client.PushConsumer.subscribe`; before or after start."""
        self._run_plain(lambda: self._client.subscribe(topic, expression, listener, sql=sql))

    def assigned_queues(self) -> list[MessageQueue]:
        """The queues this member holds now."""
        return self._run_plain(self._client.assigned_queues)


class LitePullConsumer(_Blocking[_lite_pull.LitePullConsumer]):
    """:class:`tidemq.client.LitePullConsumer`, blocking. Arguments are the same."""

    def __init__(
        self,
        group: str,
        namesrv_addr: str,
        *,
        message_model: MessageModel | str = MessageModel.CLUSTERING,
        consume_from_where: ConsumeFromWhere | str = ConsumeFromWhere.LAST_OFFSET,
        consume_timestamp_ms: int | None = None,
        allocate_strategy: str | AllocateStrategy = "average",
        auto_commit: bool = True,
        auto_commit_interval_s: float = 5.0,
        pull_batch_size: int = 32,
        max_cached_messages_per_queue: int = 1000,
        offset_store_path: Path | str | None = None,
        timings: ConsumerTimings | None = None,
        client: ClientConfig | None = None,
    ) -> None:
        consumer = _lite_pull.LitePullConsumer(
            group,
            namesrv_addr,
            message_model=message_model,
            consume_from_where=consume_from_where,
            consume_timestamp_ms=consume_timestamp_ms,
            allocate_strategy=allocate_strategy,
            auto_commit=auto_commit,
            auto_commit_interval_s=auto_commit_interval_s,
            pull_batch_size=pull_batch_size,
            max_cached_messages_per_queue=max_cached_messages_per_queue,
            offset_store_path=offset_store_path,
            timings=timings,
            client=client,
        )
        super().__init__(f"tidemq-lite-pull-{group}", consumer)

    def subscribe(self, topic: str, expression: str = "*", *, sql: str | None = None) -> None:
        self._run_plain(lambda: self._client.subscribe(topic, expression, sql=sql))

    def assign(self, queues: Iterable[MessageQueue], expression: str = "*", *, sql: str | None = None) -> None:
        chosen = list(queues)
        self._run_plain(lambda: self._client.assign(chosen, expression, sql=sql))

    def assignment(self) -> list[MessageQueue]:
        return self._run_plain(self._client.assignment)

    def fetch_queues(self, topic: str) -> list[MessageQueue]:
        return self._run(self._client.fetch_queues(topic))

    def poll(self, timeout_s: float = 5.0) -> list[ReceivedMessage]:
        return self._run(self._client.poll(timeout_s))

    def commit(self) -> None:
        self._run(self._client.commit())

    def committed(self, queue: MessageQueue) -> int | None:
        return self._run(self._client.committed(queue))

    def seek(self, queue: MessageQueue, offset: int) -> None:
        self._run(self._client.seek(queue, offset))

    def seek_to_begin(self, queue: MessageQueue) -> None:
        self._run(self._client.seek_to_begin(queue))

    def seek_to_end(self, queue: MessageQueue) -> None:
        self._run(self._client.seek_to_end(queue))


class Admin(_Blocking[_admin.Admin]):
    """:class:`tidemq.client.Admin`, blocking."""

    def __init__(self, namesrv_addr: str, *, config: ClientConfig | None = None) -> None:
        super().__init__("tidemq-admin", _admin.Admin(namesrv_addr, config=config))

    def create_topic(
        self,
        topic: str,
        queue_nums: int = 8,
        *,
        cluster: str | None = None,
        broker_name: str | None = None,
        perm: int = _admin.PERM_READ_WRITE,
        order: bool = False,
        wait_s: float = 5.0,
    ) -> list[str]:
        return self._run(
            self._client.create_topic(
                topic, queue_nums, cluster=cluster, broker_name=broker_name, perm=perm, order=order, wait_s=wait_s
            )
        )

    def delete_topic(self, topic: str, *, cluster: str | None = None) -> None:
        self._run(self._client.delete_topic(topic, cluster=cluster))

    def list_topics(self) -> list[str]:
        return self._run(self._client.list_topics())

    def cluster_info(self) -> _admin.ClusterInfo:
        return self._run(self._client.cluster_info())

    def topic_route(self, topic: str) -> TopicRoute:
        return self._run(self._client.topic_route(topic))

    def topic_stats(self, topic: str) -> list[_admin.QueueStats]:
        return self._run(self._client.topic_stats(topic))

    def consumer_progress(self, group: str, topic: str | None = None) -> list[_admin.QueueProgress]:
        return self._run(self._client.consumer_progress(group, topic))

    def reset_offset_by_timestamp(
        self, group: str, topic: str, timestamp_ms: int, *, force: bool = True
    ) -> dict[MessageQueue, int]:
        return self._run(self._client.reset_offset_by_timestamp(group, topic, timestamp_ms, force=force))

    def query_message_by_id(self, offset_msg_id: str) -> ReceivedMessage:
        return self._run(self._client.query_message_by_id(offset_msg_id))

    def query_messages_by_key(
        self, topic: str, key: str, *, max_num: int = 32, begin_ms: int = 0, end_ms: int | None = None
    ) -> list[ReceivedMessage]:
        return self._run(
            self._client.query_messages_by_key(topic, key, max_num=max_num, begin_ms=begin_ms, end_ms=end_ms)
        )


async def _call(function: Callable[[], T]) -> T:
    return function()


__all__ = ["Admin", "LitePullConsumer", "LoopThread", "Producer", "PushConsumer"]
