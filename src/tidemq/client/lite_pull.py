"""The lite pull consumer: you call ``poll()``, the client pulls ahead in the background
(Java's ``DefaultLitePullConsumer``).

::

    consumer = LitePullConsumer("CG_audit", "127.0.0.1:9876")
    consumer.subscribe("Orders", "*")              # or consumer.assign(queues): no rebalance then
    async with consumer:
        while running:
            for message in await consumer.poll(timeout_s=1.0):
                handle(message)                      # auto-commit: offsets of polled messages are
                                                     # committed at a later poll (every 5 s) and at close

* ``subscribe`` takes queues by rebalance among the group's members (as the push consumer does); ``assign``
  takes exactly the queues given. The two cannot be mixed.
* One background task per held queue pulls with long polling into a buffer, pausing while the queue has
  ``max_cached_messages_per_queue`` messages buffered; ``poll`` returns the next buffered batch (one pull's
  messages, from one queue).
* Offsets: a polled batch counts as consumed. ``commit()`` stores the consumed offsets (UPDATE_CONSUMER_OFFSET,
  waiting for the replies); with ``auto_commit`` (the default) ``poll`` does it every ``auto_commit_interval_s``
  and ``close`` does it once more. ``seek`` moves a queue's next pull (and its consumed offset) and drops what
  was buffered for it.

State: the held queues and the buffer, on the event loop thread; the runner's TaskGroup owns the pull tasks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tidemq.client._allocate import AllocateStrategy
from tidemq.client._consumer_api import EXPRESSION_TAG, PullStatus
from tidemq.client._consumer_base import (
    ConsumeFromWhere,
    ConsumerCore,
    ConsumerTimings,
    MessageModel,
    Subscription,
    make_subscription,
)
from tidemq.client._instance import ClientConfig
from tidemq.client._message import ReceivedMessage
from tidemq.client._routes import MessageQueue, subscribe_queues
from tidemq.client.errors import ClientError, ClientStateError, IllegalOffsetError, NoRouteError, QueueNotAssignedError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _LiteQueue:
    """One held queue: where its next pull starts, what was polled, what is buffered."""

    queue: MessageQueue
    subscription: Subscription
    next_offset: int
    consumed_offset: int | None = None
    """One past the last polled message (or where a seek put it); what ``commit`` stores."""
    generation: int = 0
    """Bumped by a seek: buffered batches of older generations are dropped."""
    buffered: int = 0
    is_dropped: bool = False
    room: asyncio.Event = field(default_factory=asyncio.Event)
    pull_task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class _Batch:
    state: _LiteQueue
    generation: int
    messages: list[ReceivedMessage]
    next_offset: int


class LitePullConsumer(ConsumerCore):
    """Pulls in the background, hands messages over on :meth:`poll` (see the module docstring).

    Args:
        group: the consumer group.
        namesrv_addr: name servers, ``"host:port;host:port"``.
        message_model: CLUSTERING (offsets on the brokers) or BROADCASTING (offsets in a local file).
        consume_from_where: where a queue without a stored offset starts.
        consume_timestamp_ms: the start for TIMESTAMP (default: half an hour ago).
        allocate_strategy: ``"average"``, ``"round_robin"``, ``"consistent_hash"``, or a function (subscribe mode).
        auto_commit: commit polled offsets every ``auto_commit_interval_s`` (in ``poll``) and at close.
        auto_commit_interval_s: see ``auto_commit``.
        pull_batch_size: messages asked for per pull (and at most returned per poll).
        max_cached_messages_per_queue: a queue's background pulls pause while this many are buffered.
        offset_store_path: BROADCASTING only: the offset file.
        timings: intervals and delays (``pull_suspend_s`` is the long-poll hold of background pulls).
        client: connection, heartbeat and route settings.
    """

    consume_type = "CONSUME_ACTIVELY"

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
        super().__init__(
            group,
            namesrv_addr,
            message_model=message_model,
            consume_from_where=consume_from_where,
            consume_timestamp_ms=consume_timestamp_ms,
            allocate_strategy=allocate_strategy,
            offset_store_path=offset_store_path,
            timings=timings,
            client=client,
        )
        self.auto_commit = auto_commit
        self.auto_commit_interval_s = auto_commit_interval_s
        self.pull_batch_size = max(1, pull_batch_size)
        self.max_cached_messages_per_queue = max(1, max_cached_messages_per_queue)
        self._states: dict[MessageQueue, _LiteQueue] = {}
        self._dropping: set[_LiteQueue] = set()
        self._assigned: dict[MessageQueue, Subscription] | None = None
        self._buffer: collections.deque[_Batch] = collections.deque()
        self._ready = asyncio.Event()
        self._next_commit_s = 0.0

    # -- what to consume -------------------------------------------------------------------------------------

    def subscribe(self, topic: str, expression: str = "*", *, sql: str | None = None) -> None:
        """Take queues of ``topic`` by rebalance, filtered by tags or ``sql``.

        Raises:
            IllegalNameError: a bad topic name.
            SubscriptionError: a bad expression.
            ClientStateError: queues were assigned by hand already, or the consumer is closed.
        """
        if self._assigned is not None:
            raise ClientStateError("this consumer was given queues with assign(); it cannot also subscribe")
        self._add_subscription(make_subscription(topic, expression, sql))

    def assign(self, queues: Iterable[MessageQueue], expression: str = "*", *, sql: str | None = None) -> None:
        """Hold exactly ``queues`` (no rebalance), filtered by tags or ``sql``; replaces an earlier assignment.

        Raises:
            ClientStateError: the consumer subscribed already, or is closed.
        """
        if self.subscriptions:
            raise ClientStateError("this consumer subscribed to topics; it cannot also be given queues")
        if self._is_closed:
            raise ClientStateError("the consumer is closed")
        assigned = {queue: make_subscription(queue.topic, expression, sql) for queue in queues}
        self._assigned = assigned
        if self._task_group is not None:  # running (else the runner applies it when it starts)
            self._apply_manual()

    def assignment(self) -> list[MessageQueue]:
        """The queues held now, sorted."""
        return sorted(self._states)

    async def fetch_queues(self, topic: str) -> list[MessageQueue]:
        """Every readable queue of ``topic`` (for :meth:`assign`).

        Raises:
            NoRouteError: no name server knows the topic.
        """
        queues = subscribe_queues(topic, await self._instance.routes.route(topic, refresh=True))
        if not queues:
            raise NoRouteError(topic, "the route has no readable queue")
        return sorted(queues)

    # -- lifecycle hooks -------------------------------------------------------------------------------------

    def _start_tasks(self, task_group: asyncio.TaskGroup) -> None:
        self._next_commit_s = time.monotonic() + self.auto_commit_interval_s
        if self._assigned is not None:
            self._apply_manual()

    async def _stop_work(self) -> None:
        for state in self._states.values():
            if state.pull_task is not None:
                state.pull_task.cancel()
        if self.auto_commit:
            self._take_consumed_offsets()

    def _assigned_queues(self) -> list[MessageQueue]:
        # Queues being dropped still count until their offset is persisted (a close may cut their drop short).
        return [*self._states, *(state.queue for state in self._dropping if state.queue not in self._states)]

    def _apply_manual(self) -> None:
        assert self._task_group is not None
        assert self._assigned is not None
        for queue in [q for q in self._states if q not in self._assigned]:
            self._drop(queue)
        for queue, subscription in self._assigned.items():
            if queue not in self._states:
                self._task_group.create_task(self._add_assigned(queue, subscription), name=f"assign-{queue}")

    async def _add_assigned(self, queue: MessageQueue, subscription: Subscription) -> None:
        while not self._is_stopping:
            try:
                offset = await self._start_offset(queue)
            except ClientError as exc:
                log.warning("%s: cannot find where to start %s: %s", self.client_id, queue, exc)
                await asyncio.sleep(self.timings.pull_error_delay_s)
                continue
            if self._assigned is not None and queue in self._assigned and queue not in self._states:
                self._add_queue(queue, subscription, offset)
            return

    async def _apply_assignment(self, topic: str, subscription: Subscription, queues: list[MessageQueue]) -> bool:
        wanted = set(queues)
        for queue in [q for q in self._states if q.topic == topic and q not in wanted]:
            self._drop(queue)
        is_complete = True
        for queue in queues:
            if queue in self._states or self._is_stopping:
                continue
            try:
                offset = await self._start_offset(queue)
            except ClientError as exc:
                log.warning("%s: cannot find where to start %s: %s", self.client_id, queue, exc)
                is_complete = False
                continue
            if queue not in self._states and not self._is_stopping:
                self._add_queue(queue, subscription, offset)
        return is_complete

    def _add_queue(self, queue: MessageQueue, subscription: Subscription, offset: int) -> None:
        assert self._task_group is not None
        state = _LiteQueue(queue, subscription, offset)
        state.room.set()
        self._offsets.update(queue, offset)
        self._states[queue] = state
        log.info("%s: now pulling %s from offset %d", self.client_id, queue, offset)
        state.pull_task = self._task_group.create_task(self._pull_loop(state), name=f"pull-{queue}")

    def _drop(self, queue: MessageQueue) -> None:
        assert self._task_group is not None
        state = self._states.pop(queue)
        state.is_dropped = True
        if self.auto_commit and state.consumed_offset is not None:
            self._offsets.update(queue, state.consumed_offset)  # what was polled counts: commit it on the way out
        if state.pull_task is not None:
            state.pull_task.cancel()
        self._purge(state)
        log.info("%s: no longer pulling %s", self.client_id, queue)
        self._dropping.add(state)
        self._task_group.create_task(self._finish_drop(state), name=f"drop-{queue}")

    async def _finish_drop(self, state: _LiteQueue) -> None:
        await self._offsets.persist([state.queue])
        self._dropping.discard(state)
        if state.queue not in self._states:
            self._offsets.remove(state.queue)

    # -- background pulls ------------------------------------------------------------------------------------

    async def _pull_loop(self, state: _LiteQueue) -> None:
        queue = state.queue
        while not state.is_dropped:
            if state.buffered >= self.max_cached_messages_per_queue:
                state.room.clear()
                await state.room.wait()
                continue
            subscription = state.subscription
            try:
                result = await self._api.pull(
                    queue,
                    state.next_offset,
                    max_count=self.pull_batch_size,
                    expression=subscription.expression,
                    expression_type=subscription.expression_type or EXPRESSION_TAG,
                    sub_version=subscription.sub_version,
                    suspend_s=self.timings.pull_suspend_s,
                )
                messages = result.messages if result.status is PullStatus.FOUND else []
            except (ClientError, ValueError) as exc:
                self._pull_failed(queue, state.next_offset, exc)
                await asyncio.sleep(self.timings.pull_error_delay_s)
                continue
            if state.is_dropped:
                return
            self._pull_worked(queue)
            if result.status is PullStatus.OFFSET_ILLEGAL:
                log.warning(
                    "%s: offset %d of %s is illegal; moving to %d",
                    self.client_id,
                    state.next_offset,
                    queue,
                    result.next_begin_offset,
                )
            state.next_offset = result.next_begin_offset
            if messages:
                state.buffered += len(messages)
                self._buffer.append(_Batch(state, state.generation, messages, result.next_begin_offset))
                self._ready.set()
            elif not state.buffered:
                state.consumed_offset = result.next_begin_offset  # skipped (filtered) or moved: nothing to poll

    def _purge(self, state: _LiteQueue) -> None:
        """Forget what is buffered for ``state``'s queue."""
        self._buffer = collections.deque(batch for batch in self._buffer if batch.state is not state)
        state.buffered = 0
        state.room.set()

    # -- the application's calls -----------------------------------------------------------------------------

    async def poll(self, timeout_s: float = 5.0) -> list[ReceivedMessage]:
        """The next buffered messages (one pull's worth, from one queue), waiting up to ``timeout_s``.

        Returns an empty list when nothing arrived in time. With ``auto_commit``, commits consumed offsets first
        when ``auto_commit_interval_s`` has passed.

        Raises:
            ClientStateError: the consumer is not started or is closed.
        """
        self._check_running()
        if self.auto_commit and time.monotonic() >= self._next_commit_s:
            await self.commit()
        deadline = time.monotonic() + timeout_s
        while True:
            while self._buffer:
                batch = self._buffer.popleft()
                state = batch.state
                if state.is_dropped or batch.generation != state.generation:
                    continue
                state.buffered -= len(batch.messages)
                if state.buffered < self.max_cached_messages_per_queue:
                    state.room.set()
                state.consumed_offset = batch.next_offset
                return batch.messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._ready.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._ready.wait()
            except TimeoutError:
                return []

    def _take_consumed_offsets(self) -> list[MessageQueue]:
        queues = []
        for queue, state in self._states.items():
            if state.consumed_offset is not None:
                self._offsets.update(queue, state.consumed_offset)
                queues.append(queue)
        return queues

    async def commit(self) -> None:
        """Store the consumed offsets of every held queue now (one past what :meth:`poll` returned).

        Raises:
            ClientStateError: the consumer is not started or is closed.
        """
        self._check_running()
        self._next_commit_s = time.monotonic() + self.auto_commit_interval_s
        await self._offsets.persist(self._take_consumed_offsets())

    async def committed(self, queue: MessageQueue) -> int | None:
        """The group's stored offset of ``queue`` (asked of the broker, or read from the file)."""
        self._check_running()
        return await self._offsets.read_stored(queue)

    async def seek(self, queue: MessageQueue, offset: int) -> None:
        """Pull ``queue`` from ``offset`` next; what was buffered for it is dropped.

        Raises:
            QueueNotAssignedError: the consumer does not hold ``queue``.
            IllegalOffsetError: ``offset`` is outside the queue's ``[min_offset, max_offset]``.
        """
        self._check_running()
        state = self._states.get(queue)
        if state is None:
            raise QueueNotAssignedError(queue)
        min_offset, max_offset = await self._api.min_offset(queue), await self._api.max_offset(queue)
        if not min_offset <= offset <= max_offset:
            raise IllegalOffsetError(queue, offset, min_offset, max_offset)
        if self._states.get(queue) is not state:
            raise QueueNotAssignedError(queue)  # dropped by a rebalance while we asked
        assert self._task_group is not None
        if state.pull_task is not None:
            state.pull_task.cancel()
        state.generation += 1
        self._purge(state)
        state.next_offset = offset
        state.consumed_offset = offset
        state.pull_task = self._task_group.create_task(self._pull_loop(state), name=f"pull-{queue}")

    async def _reset_offsets(self, topic: str, offsets: dict[MessageQueue, int]) -> None:
        """A broker's offset reset (RESET_CONSUMER_CLIENT_OFFSET): seek each held queue named in it. Java's lite
        pull consumer ignores the request; following it is what mqadmin ``resetOffsetByTime`` users expect."""
        for queue, offset in offsets.items():
            if queue in self._states and queue.topic == topic and not self._is_stopping:
                try:
                    await self.seek(queue, offset)
                except ClientError as exc:  # not held any more, offset out of range, broker unreachable
                    log.warning("%s: cannot follow the reset of %s to %d: %s", self.client_id, queue, offset, exc)

    async def seek_to_begin(self, queue: MessageQueue) -> None:
        """:meth:`seek` to the queue's first stored offset."""
        self._check_running()
        if queue not in self._states:
            raise QueueNotAssignedError(queue)
        await self.seek(queue, await self._api.min_offset(queue))

    async def seek_to_end(self, queue: MessageQueue) -> None:
        """:meth:`seek` to the queue's end: only messages stored from now on."""
        self._check_running()
        if queue not in self._states:
            raise QueueNotAssignedError(queue)
        await self.seek(queue, await self._api.max_offset(queue))
