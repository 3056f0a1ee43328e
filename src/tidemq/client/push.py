"""The push consumer: the client pulls, your listener is called (Java's ``DefaultMQPushConsumer``).

::

    async def on_message(message: ReceivedMessage) -> ConsumeResult:
        print(message.topic, message.body)
        return ConsumeResult.CONSUME_SUCCESS

    consumer = PushConsumer("CG_orders", "127.0.0.1:9876")
    consumer.subscribe("Orders", "created || paid", on_message)
    async with consumer:
        await stop_event.wait()

How it works (the shared parts are in ``_consumer_base``: rebalance, start offsets, offset persistence):

* Each held queue has a pull task: PULL_MESSAGE with long polling (15 s), the subscription in the request,
  and, in clustering, the current offset to commit (pull flag bit 0). Pulled messages wait in the queue's
  :class:`~tidemq.client._process_queue.ProcessQueue`; above ``max_cached_messages_per_queue`` the pull task
  pauses (flow control).
* Concurrent listeners: ``consume_concurrency`` worker tasks take messages from one work queue. A listener
  returns CONSUME_SUCCESS (or ``None``), or RECONSUME_LATER (or raises): in clustering the message goes back
  to the broker (CONSUMER_SEND_MSG_BACK, redelivered through ``%RETRY%<group>`` after a delay, to the DLQ
  after ``max_reconsume_times``); if that fails it is consumed again locally after 5 s. In broadcasting a failed
  message is logged and dropped, as Java does.
* Orderly listeners (``orderly=True``): in clustering a queue is locked on the broker (LOCK_BATCH_MQ) before it
  is pulled and the locks are renewed every 20 s; one task per queue hands messages over one at a time in
  offset order; a failure suspends the queue for a moment and retries the same message, so order holds; past
  ``max_reconsume_times`` local retries the message goes to the DLQ. Queues are unlocked when dropped and at
  shutdown.
* Offsets: the lowest offset not yet consumed per queue, committed with pulls, every 5 s, when a queue is
  dropped and at shutdown.
* Sync listeners run in a thread pool of ``consume_concurrency`` threads, async ones on the loop. A pulled batch
  is shared among the idle workers, so that blocking listeners wait ``consume_concurrency`` at a time; a
  listener timed as quick (:data:`QUICK_LISTENER_S`) gets it whole: one trip to the pool for the batch, or, for
  a coroutine, one worker awaiting it on each message in turn. A quick coroutine listener is the fastest kind:
  handing messages to another thread and back costs a sync listener ~3 µs a message, about half of it in
  caches (the two threads run on different cores) and half in the GIL changing hands.

State: the held queues (``_states``), the work queue and the in-flight count, on the event loop thread; the
runner's TaskGroup owns every task (loops, pulls, workers, local retries).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, cast

from tidemq.client._allocate import AllocateStrategy
from tidemq.client._broker_calls import PROP_CONSUME_ORDERLY, PROP_THREADPOOL_CORE_SIZE, QueueInfo
from tidemq.client._consumer_api import PullResult, PullStatus, restore_retry_topic
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
from tidemq.client._process_queue import ProcessQueue
from tidemq.client._routes import MessageQueue
from tidemq.client.errors import ClientError, SubscriptionError

log = logging.getLogger(__name__)


MAX_MESSAGES_PER_HOP: Final = 32
"""At most this many messages go to the thread pool in one hop (see ``_consume_worker``)."""
QUICK_LISTENER_S: Final = 100e-6
"""A listener that takes less than this per message (a running average) gets each pulled batch whole: threads
cannot run Python in parallel, so sharing a sync listener's messages among idle workers would only multiply the
hops to the thread pool (16 hops for a batch of 32 with 20 workers idle: 88k msgs/s where whole batches reach
more), and sharing a quick coroutine's would only add task switches."""


class ConsumeResult(enum.Enum):
    """What a listener says about a message (Java's ``ConsumeConcurrentlyStatus`` / ``ConsumeOrderlyStatus``)."""

    CONSUME_SUCCESS = "CONSUME_SUCCESS"
    """Done: the offset may move past it."""
    RECONSUME_LATER = "RECONSUME_LATER"
    """Failed: deliver it again later (concurrent: through the retry topic; orderly: after a short pause)."""
    SUCCESS = "CONSUME_SUCCESS"
    """The orderly spelling of CONSUME_SUCCESS (an alias)."""
    SUSPEND_CURRENT_QUEUE_A_MOMENT = "RECONSUME_LATER"
    """The orderly spelling of RECONSUME_LATER (an alias): the queue pauses, then the same message again."""


Listener = Callable[[ReceivedMessage], ConsumeResult | Awaitable[ConsumeResult | None] | None]
"""Called with each message; returns a :class:`ConsumeResult` (``None`` means success) or raises (retry)."""
CoroutineListener = Callable[[ReceivedMessage], Awaitable[object]]
"""A listener that is a coroutine function (or an object whose ``__call__`` is one): its calls are awaited."""


class _InFlight:
    """Consumptions in flight (a listener call and its follow-up), so that close can wait for them. A class, not
    a generator context manager: it is entered once per pulled batch, and the generator cost five times more."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.idle.clear()

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1
        if not self.count:
            self.idle.set()


@dataclass(eq=False)
class _QueueState:
    """One held queue: its process queue, where the next pull starts, and its tasks."""

    queue: MessageQueue
    subscription: Subscription
    pq: ProcessQueue
    next_offset: int
    pull_task: asyncio.Task[None] | None = None
    consume_task: asyncio.Task[None] | None = None
    lock_changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_pull_ms: int = 0
    last_consume_ms: int = 0


class PushConsumer(ConsumerCore):
    """Consumes subscribed topics by calling listeners (see the module docstring).

    Args:
        group: the consumer group.
        namesrv_addr: name servers, ``"host:port;host:port"``.
        message_model: CLUSTERING (share the messages) or BROADCASTING (every member gets all).
        consume_from_where: where a group without a stored offset starts: LAST_OFFSET, FIRST_OFFSET, TIMESTAMP.
        consume_timestamp_ms: the start for TIMESTAMP (default: half an hour ago).
        allocate_strategy: ``"average"``, ``"round_robin"``, ``"consistent_hash"``, or a function.
        consume_concurrency: listener calls in flight at once (concurrent listeners).
        pull_batch_size: messages asked for per pull.
        max_cached_messages_per_queue: pulling a queue pauses while it holds this many unconsumed messages.
        max_reconsume_times: retries before a message goes to the DLQ.
        orderly: consume each queue in order, one message at a time, under a broker lock (clustering).
        offset_store_path: BROADCASTING only: the offset file (default ``~/.tidemq/offsets/<client id>/<group>.json``).
        timings: intervals and delays.
        client: connection, heartbeat and route settings.

    Raises:
        IllegalNameError: ``group`` breaks RocketMQ's naming rules.
        ValueError: a bad setting, or no name server address.
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
        if consume_concurrency < 1 or pull_batch_size < 1 or max_cached_messages_per_queue < 1:
            raise ValueError("consume_concurrency, pull_batch_size and max_cached_messages_per_queue must be >= 1")
        self.consume_concurrency = consume_concurrency
        self.pull_batch_size = pull_batch_size
        self.max_cached_messages_per_queue = max_cached_messages_per_queue
        self.max_reconsume_times = max_reconsume_times
        self.is_orderly = orderly
        self._listeners: dict[str, tuple[Listener, bool]] = {}
        """Topic -> (listener, whether it is a coroutine function)."""
        self._states: dict[MessageQueue, _QueueState] = {}
        self._dropping: set[_QueueState] = set()
        self._work: asyncio.Queue[tuple[_QueueState, list[ReceivedMessage]]] = asyncio.Queue()
        """Pulled messages to consume: one item per pull (or per share of one, see :meth:`_take_share`)."""
        self._waiting_workers = 0
        self._listener_s: dict[int, float] = {}
        """Running average of each listener's time per message (a coroutine's includes its awaits), by ``id`` of
        the listener (a listener need not be hashable); a listener not timed yet has no entry."""
        self._in_flight = _InFlight()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def _needs_lock(self) -> bool:
        return self.is_orderly and self.is_clustering

    def subscribe(
        self, topic: str, expression: str = "*", listener: Listener | None = None, *, sql: str | None = None
    ) -> None:
        """Consume ``topic``'s messages matching ``expression`` (tags) or ``sql`` (SQL92) with ``listener``.

        Subscribing again to a topic replaces its expression and listener. May be called after start.

        Args:
            topic: the topic.
            expression: ``"*"`` or tags, ``"TagA || TagB"``.
            listener: called with each message; sync functions run in a thread pool, coroutines on the loop.
            sql: a SQL92 condition on message properties instead of tags (the broker must support it).

        Raises:
            IllegalNameError: a bad topic name.
            SubscriptionError: no listener, a bad expression, or both tags and SQL.
            ClientStateError: the consumer is closed.
        """
        if listener is None:
            raise SubscriptionError(f"subscribing to {topic} needs a listener")
        subscription = make_subscription(topic, expression, sql)
        is_async = inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(type(listener).__call__)
        self._listeners[topic] = (listener, is_async)
        self._add_subscription(subscription)

    # -- lifecycle hooks -------------------------------------------------------------------------------------

    def _before_start(self) -> None:
        if not self._listeners:
            raise SubscriptionError("subscribe to a topic before starting the consumer")
        if self.is_clustering and self.retry_topic not in self.subscriptions:
            # Messages to consume again come back through %RETRY%<group> (spec 3.10); every member reads it.
            self.subscriptions[self.retry_topic] = make_subscription(self.retry_topic, "*")
        self._executor = ThreadPoolExecutor(self.consume_concurrency, thread_name_prefix=f"tidemq-consume-{self.group}")

    def _start_tasks(self, task_group: asyncio.TaskGroup) -> None:
        if not self.is_orderly:
            for index in range(self.consume_concurrency):
                task_group.create_task(self._consume_worker(), name=f"consume-{index}")
        if self._needs_lock:
            task_group.create_task(self._lock_loop(), name="lock-renewal")

    async def _stop_work(self) -> None:
        for state in self._states.values():
            if state.pull_task is not None:
                state.pull_task.cancel()
        try:
            async with asyncio.timeout(self.timings.shutdown_timeout_s):
                await self._in_flight.idle.wait()
        except TimeoutError:
            log.warning(
                "%s: %d listener calls still running at close; abandoning them", self.client_id, self._in_flight.count
            )

    async def _after_persist(self) -> None:
        if self._needs_lock:
            await self._unlock(self._assigned_queues())

    async def close(self) -> None:
        """Stop pulling, let listeners in flight finish, persist offsets, unlock (orderly), unregister.

        Safe to call twice.
        """
        await super().close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _assigned_queues(self) -> list[MessageQueue]:
        # Queues being dropped still count until their offset is persisted (a close may cut their drop short).
        return [*self._states, *(state.queue for state in self._dropping if state.queue not in self._states)]

    def assigned_queues(self) -> list[MessageQueue]:
        """The queues this member holds now, sorted."""
        return sorted(self._states)

    def cached_messages(self) -> dict[MessageQueue, int]:
        """Per held queue, the messages pulled but not yet consumed (flow control keeps this near the limit)."""
        return {queue: state.pq.count for queue, state in sorted(self._states.items())}

    # -- assignment ------------------------------------------------------------------------------------------

    async def _apply_assignment(self, topic: str, subscription: Subscription, queues: list[MessageQueue]) -> bool:
        wanted = set(queues)
        for queue in [q for q in self._states if q.topic == topic and q not in wanted]:
            self._drop(queue)
        for queue, state in self._states.items():
            if queue.topic == topic and state.subscription != subscription:
                state.subscription = subscription  # a new expression applies from the next pull
        new = [queue for queue in queues if queue not in self._states]
        is_complete = True
        locked: set[MessageQueue] = set()
        if new and self._needs_lock:
            locked = await self._lock(new)
            is_complete = len(locked) == len(new)  # held by a member that has not let go yet: try again soon
            new = [queue for queue in new if queue in locked]
        for queue in new:
            if self._is_stopping:
                return True
            try:
                offset = await self._start_offset(queue)
            except ClientError as exc:
                log.warning("%s: cannot find where to start %s: %s", self.client_id, queue, exc)
                is_complete = False
                continue
            if queue not in self._states and not self._is_stopping:
                self._add_queue(queue, subscription, offset, is_locked=queue in locked)
        return is_complete

    def _add_queue(self, queue: MessageQueue, subscription: Subscription, offset: int, *, is_locked: bool) -> None:
        assert self._task_group is not None
        pq = ProcessQueue(self.max_cached_messages_per_queue)
        state = _QueueState(queue, subscription, pq, offset)
        if is_locked:
            self._set_locked(state, True)
        self._offsets.update(queue, offset)
        self._states[queue] = state
        log.info("%s: now consuming %s from offset %d", self.client_id, queue, offset)
        state.pull_task = self._task_group.create_task(self._pull_loop(state), name=f"pull-{queue}")
        if self.is_orderly:
            state.consume_task = self._task_group.create_task(self._orderly_loop(state), name=f"orderly-{queue}")

    def _drop(self, queue: MessageQueue) -> None:
        assert self._task_group is not None
        state = self._states.pop(queue)
        state.pq.drop()
        state.lock_changed.set()
        if state.pull_task is not None:
            state.pull_task.cancel()
        log.info("%s: no longer consuming %s", self.client_id, queue)
        self._dropping.add(state)
        self._task_group.create_task(self._finish_drop(state), name=f"drop-{queue}")

    async def _finish_drop(self, state: _QueueState) -> None:
        """After a drop: let the orderly task finish its message, persist the offset, unlock."""
        if state.consume_task is not None:
            await asyncio.wait([state.consume_task], timeout=self.timings.shutdown_timeout_s)
        await self._offsets.persist([state.queue])
        self._dropping.discard(state)
        if state.queue not in self._states:  # not taken back meanwhile
            self._offsets.remove(state.queue)
            if self._needs_lock:
                await self._unlock([state.queue])

    # -- pulling ---------------------------------------------------------------------------------------------

    async def _pull_loop(self, state: _QueueState) -> None:
        pq, queue = state.pq, state.queue
        while not pq.is_dropped:
            if pq.count >= pq.limit:
                await pq.wait_for_room()
                continue
            if self._needs_lock and (not pq.is_locked or pq.is_lock_expired):
                state.lock_changed.clear()
                await state.lock_changed.wait()  # the lock loop or a drop wakes us
                continue
            commit = self._offsets.read(queue) if self.is_clustering else None
            subscription = state.subscription
            try:
                result = await self._api.pull(
                    queue,
                    state.next_offset,
                    max_count=self.pull_batch_size,
                    expression=subscription.expression,
                    expression_type=subscription.expression_type,
                    sub_version=subscription.sub_version,
                    suspend_s=self.timings.pull_suspend_s,
                    commit_offset=commit if commit else None,
                )
                state.last_pull_ms = _now_ms()
                if not pq.is_dropped:
                    self._on_pulled(state, result)
                    self._pull_worked(queue)
            except (ClientError, ValueError) as exc:  # ValueError: a pull body that is not whole records
                self._pull_failed(queue, state.next_offset, exc)
                await asyncio.sleep(self.timings.pull_error_delay_s)

    def _on_pulled(self, state: _QueueState, result: PullResult) -> None:
        queue, pq = state.queue, state.pq
        match result.status:
            case PullStatus.FOUND:
                messages = result.messages
                if queue.topic == self.retry_topic:
                    messages = [restore_retry_topic(message, self.retry_topic) for message in messages]
                state.next_offset = result.next_begin_offset
                if not messages:  # every record failed the client-side tag check
                    self._correct_offset(state, result.next_begin_offset)
                    return
                pq.add(messages)
                pq.pulled_up_to = result.next_begin_offset
                if not self.is_orderly:
                    self._work.put_nowait((state, messages))
            case PullStatus.NO_NEW_MSG | PullStatus.NO_MATCHED_MSG:
                state.next_offset = result.next_begin_offset
                self._correct_offset(state, result.next_begin_offset)
            case PullStatus.OFFSET_ILLEGAL:
                log.warning(
                    "%s: offset %d of %s is illegal (queue holds %d..%d); moving to %d",
                    self.client_id,
                    state.next_offset,
                    queue,
                    result.min_offset,
                    result.max_offset,
                    result.next_begin_offset,
                )
                state.next_offset = result.next_begin_offset
                self._offsets.update(queue, result.next_begin_offset)
                assert self._task_group is not None
                self._task_group.create_task(self._offsets.persist([queue]), name=f"persist-{queue}")

    def _correct_offset(self, state: _QueueState, next_begin_offset: int) -> None:
        """Nothing held and the broker skipped ahead (filtered or no messages): the offset follows (Java's
        ``correctTagsOffset``)."""
        if state.pq.count == 0:
            self._offsets.update(state.queue, next_begin_offset, increase_only=True)

    # -- consuming -------------------------------------------------------------------------------------------

    def _listener_for(self, topic: str) -> tuple[Listener, bool]:
        entry = self._listeners.get(topic)
        if entry is None:  # a retried message of a topic no longer subscribed: any listener of ours
            entry = next(iter(self._listeners.values()))
        return entry

    async def _call_listener(self, message: ReceivedMessage) -> object:
        """The listener's answer for ``message`` (sync listeners run in the pool); its exceptions propagate."""
        listener, is_async = self._listener_for(message.topic)
        if is_async:
            result = listener(message)
        else:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, listener, message)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _invoke(self, message: ReceivedMessage) -> ConsumeResult:
        """Call the listener; exceptions and unknown answers mean RECONSUME_LATER."""
        try:
            result = await self._call_listener(message)
        except Exception as exc:  # noqa: BLE001  # the message's failure, never the consumer's; logged there
            self._listener_failed(message, exc)
            return ConsumeResult.RECONSUME_LATER
        return await self._answer(message, result)

    def _listener_failed(self, message: ReceivedMessage, exc: BaseException) -> None:
        """Log a listener that raised: the message is consumed again."""
        log.warning(
            "%s: the listener raised on message %s; it will be consumed again",
            self.client_id,
            message.msg_id,
            exc_info=exc,
        )

    async def _answer(self, message: ReceivedMessage, result: object) -> ConsumeResult:
        """A listener's answer as a ConsumeResult (None: success; an awaitable is awaited; anything else: later)."""
        if inspect.isawaitable(result):
            try:
                result = await result
            except Exception as exc:  # noqa: BLE001  # logged by _listener_failed
                self._listener_failed(message, exc)
                return ConsumeResult.RECONSUME_LATER
        if result is None:
            return ConsumeResult.CONSUME_SUCCESS
        if isinstance(result, ConsumeResult):
            return result
        log.warning("%s: the listener returned %r, not a ConsumeResult; consuming again later", self.client_id, result)
        return ConsumeResult.RECONSUME_LATER

    def _commit(self, state: _QueueState, message: ReceivedMessage) -> None:
        self._commit_many(state, (message,))

    def _commit_many(self, state: _QueueState, messages: Iterable[ReceivedMessage]) -> None:
        """Forget consumed messages of one queue and move its offset to the lowest one still held."""
        state.last_consume_ms = _now_ms()
        offset = state.pq.remove_many(messages)
        if offset >= 0 and not state.pq.is_dropped:
            self._offsets.update(state.queue, offset, increase_only=True)

    async def _consume_worker(self) -> None:
        work = self._work
        while True:
            self._waiting_workers += 1
            try:
                state, messages = await work.get()
            finally:
                self._waiting_workers -= 1
            messages = self._take_share(state, messages)
            pq = state.pq
            if pq.is_dropped or self._is_stopping:
                continue
            live = [message for message in messages if pq.contains(message)]
            if not live:
                continue
            with self._in_flight:  # covers the send-backs too, so close waits for them
                if state.queue.topic == self.retry_topic:  # restored to their real topics: a listener each
                    for message in live:
                        await self._consume_one(state, message)
                    continue
                listener, is_async = self._listener_for(live[0].topic)
                if is_async:
                    await self._consume_async_batch(state, cast(CoroutineListener, listener), live)
                    continue
                for start in range(0, len(live), MAX_MESSAGES_PER_HOP):
                    await self._consume_sync_batch(state, listener, live[start : start + MAX_MESSAGES_PER_HOP])

    def _take_share(self, state: _QueueState, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """The part of a pulled batch this worker consumes: all of it when the other workers are busy (a
        backlog: one trip to the thread pool for many messages), else an even share, the rest queued again for
        the idle workers (so that listeners that block still run ``consume_concurrency`` at a time)."""
        idle = self._waiting_workers
        if not idle or len(messages) < 2 or self._is_quick_listener(messages[0].topic):
            return messages
        size = -(-len(messages) // (idle + 1))
        for start in range(size, len(messages), size):
            self._work.put_nowait((state, messages[start : start + size]))
        return messages[:size]

    def _is_quick_listener(self, topic: str) -> bool:
        """Whether ``topic`` goes to a listener measured quick (see :data:`QUICK_LISTENER_S`). A listener that
        blocks or awaits I/O keeps getting even shares, so ``consume_concurrency`` of its calls run at once."""
        spent = self._listener_s.get(id(self._listener_for(topic)[0]))
        return spent is not None and spent < QUICK_LISTENER_S

    def _time_listener(self, listener: object, spent_s: float, count: int) -> None:
        """Fold a batch's time per message into the listener's running average."""
        per_message = spent_s / count
        average = self._listener_s.get(id(listener))
        self._listener_s[id(listener)] = per_message if average is None else 0.8 * average + 0.2 * per_message

    async def _consume_one(self, state: _QueueState, message: ReceivedMessage) -> None:
        result = await self._invoke(message)
        await self._after_concurrent(state, message, result)

    async def _consume_sync_batch(
        self, state: _QueueState, listener: Listener, messages: list[ReceivedMessage]
    ) -> None:
        """Call a plain-function listener on each message in one trip to the thread pool (a trip per message
        cost ~40 µs, most of a push consumer's time), then commit the consumed ones together."""

        def run_all() -> tuple[list[tuple[object, BaseException | None]], float]:
            answers: list[tuple[object, BaseException | None]] = []
            append = answers.append
            started = time.perf_counter()
            for message in messages:
                try:
                    append((listener(message), None))
                except Exception as exc:  # noqa: BLE001  # the message's failure, logged below
                    append((None, exc))
            return answers, time.perf_counter() - started

        answers, spent = await asyncio.get_running_loop().run_in_executor(self._executor, run_all)
        self._time_listener(listener, spent, len(messages))
        consumed: list[ReceivedMessage] = []
        success = ConsumeResult.CONSUME_SUCCESS
        for message, (answer, exc) in zip(messages, answers, strict=True):
            if exc is None and (answer is None or answer is success):
                consumed.append(message)
                continue
            if exc is not None:
                self._listener_failed(message, exc)
                answer = ConsumeResult.RECONSUME_LATER
            if await self._settle(state, message, answer):
                consumed.append(message)
        if consumed:
            self._commit_many(state, consumed)

    async def _consume_async_batch(
        self, state: _QueueState, listener: CoroutineListener, messages: list[ReceivedMessage]
    ) -> None:
        """Await a coroutine listener on each message in turn, on the loop, then commit the consumed ones
        together: a task, a commit and three awaits per message had cost a quick listener 13 µs a message."""
        consumed: list[ReceivedMessage] = []
        success = ConsumeResult.CONSUME_SUCCESS
        started = time.perf_counter()
        for message in messages:
            try:
                answer = await listener(message)
            except Exception as exc:  # noqa: BLE001  # the message's failure, never the consumer's; logged there
                self._listener_failed(message, exc)
                answer = ConsumeResult.RECONSUME_LATER
            if answer is None or answer is success or await self._settle(state, message, answer):
                consumed.append(message)
        self._time_listener(listener, time.perf_counter() - started, len(messages))
        if consumed:
            self._commit_many(state, consumed)

    async def _settle(self, state: _QueueState, message: ReceivedMessage, answer: object) -> bool:
        """A batch listener's answer other than plain success: True when it still means consumed (committed with
        the batch), else the message is sent back or retried here (see :meth:`_after_concurrent`)."""
        result = await self._answer(message, answer)
        if result is ConsumeResult.CONSUME_SUCCESS:
            return True
        await self._after_concurrent(state, message, result)
        return False

    async def _after_concurrent(self, state: _QueueState, message: ReceivedMessage, result: ConsumeResult) -> None:
        if result is ConsumeResult.CONSUME_SUCCESS:
            self._commit(state, message)
            return
        if not self.is_clustering:
            log.warning("%s: dropping failed message %s (broadcasting has no retry)", self.client_id, message.msg_id)
            self._commit(state, message)
            return
        try:
            await self._api.send_back(message, state.queue, delay_level=0, max_reconsume_times=self.max_reconsume_times)
        except ClientError as exc:
            log.warning("%s: cannot send %s back (%s); consuming it again here", self.client_id, message.msg_id, exc)
            assert self._task_group is not None
            retry = replace(message, reconsume_times=message.reconsume_times + 1)
            self._task_group.create_task(self._consume_later(state, retry), name="local-retry")
            return
        self._commit(state, message)

    async def _consume_later(self, state: _QueueState, message: ReceivedMessage) -> None:
        await asyncio.sleep(self.timings.local_retry_delay_s)
        if not state.pq.is_dropped:
            state.pq.replace(message)
            self._work.put_nowait((state, [message]))

    async def _orderly_loop(self, state: _QueueState) -> None:
        pq = state.pq
        while not pq.is_dropped and not self._is_stopping:
            message = pq.first()
            if message is None:
                await pq.wait_for_messages()
                continue
            if self._needs_lock and (not pq.is_locked or pq.is_lock_expired):
                state.lock_changed.clear()
                await state.lock_changed.wait()
                continue
            with self._in_flight:
                result = await self._invoke(message)
                if pq.is_dropped:
                    return  # another member holds the queue now: it will consume this message again
                if result is ConsumeResult.CONSUME_SUCCESS:
                    self._commit(state, message)
                    continue
                await self._orderly_failed(state, message)
            await asyncio.sleep(self.timings.orderly_suspend_s)

    async def _orderly_failed(self, state: _QueueState, message: ReceivedMessage) -> None:
        attempts = message.reconsume_times + 1
        if attempts > self.max_reconsume_times:
            if not self.is_clustering:
                log.warning("%s: dropping %s after %d attempts", self.client_id, message.msg_id, attempts)
                self._commit(state, message)
                return
            try:
                await self._api.send_back(
                    message, state.queue, delay_level=-1, max_reconsume_times=self.max_reconsume_times
                )
            except ClientError as exc:
                log.warning("%s: cannot move %s to the DLQ: %s", self.client_id, message.msg_id, exc)
            else:
                log.warning("%s: moved %s to the DLQ after %d attempts", self.client_id, message.msg_id, attempts)
                self._commit(state, message)
                return
        state.pq.replace(replace(message, reconsume_times=attempts))

    # -- requests from brokers for admin tools (handlers in ConsumerCore) -------------------------------------

    def _is_orderly_consumer(self) -> bool:
        return self.is_orderly

    def _running_properties(self) -> dict[str, str]:
        return {
            PROP_CONSUME_ORDERLY: "true" if self.is_orderly else "false",
            PROP_THREADPOOL_CORE_SIZE: str(self.consume_concurrency),
            "consumeThreadMin": str(self.consume_concurrency),
            "consumeThreadMax": str(self.consume_concurrency),
            "pullBatchSize": str(self.pull_batch_size),
            "pullThresholdForQueue": str(self.max_cached_messages_per_queue),
            "maxReconsumeTimes": str(self.max_reconsume_times),
        }

    def _queue_infos(self) -> dict[MessageQueue, QueueInfo]:
        infos = {}
        wall_minus_monotonic_ms = _now_ms() - time.monotonic() * 1000
        for queue, state in self._states.items():
            low, high, size = state.pq.cached_span()
            infos[queue] = QueueInfo(
                commit_offset=self._offsets.read(queue) or 0,
                cached_min_offset=low,
                cached_max_offset=high,
                cached_count=state.pq.count,
                cached_bytes=size,
                is_locked=state.pq.is_locked,
                last_lock_ms=int(state.pq.last_lock_s * 1000 + wall_minus_monotonic_ms) if state.pq.last_lock_s else 0,
                last_pull_ms=state.last_pull_ms,
                last_consume_ms=state.last_consume_ms,
            )
        return infos

    async def _consume_directly(self, message: ReceivedMessage) -> tuple[str, str | None] | None:
        """Java's ``consumeMessageDirectly``: the listener's verdict, exceptions reported, nothing committed."""
        if message.topic == self.retry_topic:
            message = restore_retry_topic(message, self.retry_topic)
        try:
            result = await self._call_listener(message)
        except Exception as exc:  # noqa: BLE001  # the listener's failure goes to the admin tool (CR_THROW_EXCEPTION)
            return "CR_THROW_EXCEPTION", f"{type(exc).__name__}: {exc}"
        if result is None or result is ConsumeResult.CONSUME_SUCCESS:
            return "CR_SUCCESS", None
        if result is ConsumeResult.RECONSUME_LATER:
            return "CR_LATER", None
        return "CR_RETURN_NULL", f"the listener returned {result!r}"

    async def _reset_offsets(self, topic: str, offsets: dict[MessageQueue, int]) -> None:
        """Java's ``MQClientInstance.resetOffset`` without its 10 s pause: each held queue of ``topic`` named in
        ``offsets`` drops what it pulled, starts over at its new offset, and the offsets are committed."""
        moved = []
        for queue, offset in offsets.items():
            state = self._states.get(queue)
            if state is None or queue.topic != topic or self._is_stopping:
                continue
            self._restart_queue(state, offset)
            moved.append(queue)
        if moved:
            await self._offsets.persist(moved)

    def _restart_queue(self, state: _QueueState, offset: int) -> None:
        """Replace a held queue's state by a fresh one at ``offset``; listeners in flight on the old one commit
        nothing (its process queue is dropped)."""
        queue = state.queue
        del self._states[queue]
        state.pq.drop()
        state.lock_changed.set()
        if state.pull_task is not None:
            state.pull_task.cancel()
        self._add_queue(queue, state.subscription, offset, is_locked=False)
        fresh = self._states[queue]
        fresh.pq.is_locked, fresh.pq.last_lock_s = state.pq.is_locked, state.pq.last_lock_s
        fresh.lock_changed.set()

    # -- orderly locks ---------------------------------------------------------------------------------------

    def _set_locked(self, state: _QueueState, is_locked: bool) -> None:
        state.pq.is_locked = is_locked
        if is_locked:
            state.pq.last_lock_s = time.monotonic()
        state.lock_changed.set()

    async def _lock(self, queues: list[MessageQueue]) -> set[MessageQueue]:
        """LOCK_BATCH_MQ per broker; the queues now held (a failure counts as none)."""
        locked, _ = await self._lock_by_broker(queues)
        return locked

    async def _lock_by_broker(self, queues: list[MessageQueue]) -> tuple[set[MessageQueue], set[str]]:
        """The queues now held, and the brokers that could not be asked."""
        locked: set[MessageQueue] = set()
        failed: set[str] = set()
        for broker_name, members in _by_broker(queues).items():
            try:
                locked |= await self._api.lock(broker_name, members[0].topic, members)
            except ClientError as exc:
                failed.add(broker_name)
                log.warning("%s: cannot lock queues on %s: %s", self.client_id, broker_name, exc)
        return locked, failed

    async def _unlock(self, queues: list[MessageQueue]) -> None:
        for broker_name, members in _by_broker(queues).items():
            try:
                await self._api.unlock(broker_name, members[0].topic, members)
            except ClientError as exc:
                log.info("%s: cannot unlock queues on %s: %s", self.client_id, broker_name, exc)

    async def _lock_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.lock_interval_s)
            try:
                await self.renew_locks()
            except Exception:  # keep renewing: a lapse stops consumption of the queues
                log.exception("%s: lock renewal failed", self.client_id)

    async def renew_locks(self) -> None:
        """Lock (again) every held queue; queues the broker refuses stop being consumed until locked."""
        states = dict(self._states)
        locked, failed = await self._lock_by_broker(list(states))
        for queue, state in states.items():
            if queue.broker_name not in failed:  # unreachable: keep the lock until it expires client-side
                self._set_locked(state, queue in locked)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _by_broker(queues: list[MessageQueue]) -> dict[str, list[MessageQueue]]:
    grouped: defaultdict[str, list[MessageQueue]] = defaultdict(list)
    for queue in queues:
        grouped[queue.broker_name].append(queue)
    return grouped
