"""What the push and lite pull consumers share: subscriptions, heartbeats, rebalance, start offsets, offsets.

:class:`ConsumerCore` owns a :class:`~tidemq.client._instance.ClientInstance` (connections, routes,
heartbeats), a :class:`~tidemq.client._consumer_api.ConsumerApi` and an offset store, and runs two loops in
one ``TaskGroup`` (the runner task):

* rebalance (Java's ``RebalanceImpl``): every ``rebalance_interval_s`` (20 s), at once when a broker sends
  NOTIFY_CONSUMER_IDS_CHANGED, and again after ``rebalance_retry_s`` (doubling up to the interval) while some
  topic could not be balanced (no route yet, our heartbeat not seen yet, a lock refused). For each subscribed
  topic: the route's readable queues and GET_CONSUMER_LIST_BY_GROUP, both sorted, go through the allocation
  strategy (clustering) or are all taken (broadcasting); the subclass applies the result
  (:meth:`ConsumerCore._apply_assignment`).
* offset persistence every ``persist_interval_s`` (5 s): UPDATE_CONSUMER_OFFSET per queue, or the local file.

A queue newly assigned starts at the group's stored offset; without one, at ``consume_from_where`` (LAST: the
queue's max offset, FIRST: 0, TIMESTAMP: SEARCH_OFFSET_BY_TIMESTAMP), and retry topics at 0
(``RebalancePushImpl.computePullFromWhere``).

Subclasses add their own tasks to the runner's ``TaskGroup`` (:meth:`ConsumerCore._start_tasks`) and stop
them in :meth:`ConsumerCore._stop_work` at close, which then persists offsets, unregisters and closes the
connections. State: everything on the event loop thread.

Brokers also ask consumers things for admin tools (bodies in ``_broker_calls``): running info (307), consume
a message directly (309), reset offsets (220) and current offsets (221). The handlers live here; the
subclasses supply their queues (:meth:`ConsumerCore._queue_infos`), their listener
(:meth:`ConsumerCore._consume_directly`) and how they move to reset offsets (:meth:`ConsumerCore._reset_offsets`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final, Self, TypeVar

from tidemq.client import _broker_calls as calls
from tidemq.client._allocate import AllocateStrategy, strategy_named
from tidemq.client._consumer_api import EXPRESSION_SQL92, EXPRESSION_TAG, ConsumerApi, parse_tag_expression
from tidemq.client._instance import ClientConfig, ClientInstance
from tidemq.client._message import ReceivedMessage, decode_message
from tidemq.client._offset_store import LocalFileOffsetStore, OffsetStore, RemoteOffsetStore
from tidemq.client._routes import MessageQueue, subscribe_queues
from tidemq.client.errors import ClientError, ClientStateError, SubscriptionError
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode
from tidemq.store import record as rec
from tidemq.store.names import validate_group, validate_topic
from tidemq.transport import RemotingChannel
from tidemq.transport.remoting import HandlerResult

log = logging.getLogger(__name__)

RETRY_TOPIC_PREFIX: Final = "%RETRY%"
DEFAULT_TIMESTAMP_LOOKBACK_MS: Final = 30 * 60 * 1000
"""CONSUME_FROM_TIMESTAMP without a timestamp starts half an hour back (Java's ``consumeTimestamp`` default)."""


class MessageModel(enum.Enum):
    """How a group shares messages (Java's ``MessageModel``)."""

    CLUSTERING = "CLUSTERING"
    """Each message goes to one member; queues are split among the members; offsets live on the brokers."""
    BROADCASTING = "BROADCASTING"
    """Every member gets every message; each keeps its own offsets in a local file."""


class ConsumeFromWhere(enum.Enum):
    """Where a group without a stored offset starts (Java's ``ConsumeFromWhere``)."""

    LAST_OFFSET = "CONSUME_FROM_LAST_OFFSET"
    """At the end: only messages stored from now on."""
    FIRST_OFFSET = "CONSUME_FROM_FIRST_OFFSET"
    """At the beginning: every message still stored."""
    TIMESTAMP = "CONSUME_FROM_TIMESTAMP"
    """At the first message stored at or after ``consume_timestamp_ms``."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscribed topic (Java's ``SubscriptionData``).

    Attributes:
        topic: the topic.
        expression: a tag expression (``"*"``, ``"TagA || TagB"``) or a SQL92 condition.
        expression_type: ``"TAG"`` or ``"SQL92"``.
        sub_version: when it was made, ms since the epoch (brokers keep the newest).
    """

    topic: str
    expression: str
    expression_type: str = EXPRESSION_TAG
    sub_version: int = 0

    def heartbeat_json(self) -> dict[str, object]:
        """Its ``subscriptionDataSet`` entry (spec 3.4), tag hashes included as Java computes them."""
        tags = [] if self.expression_type == EXPRESSION_SQL92 else sorted(parse_tag_expression(self.expression) or ())
        return {
            "classFilterMode": False,
            "topic": self.topic,
            "subString": self.expression,
            "tagsSet": tags,
            "codeSet": [rec.java_string_hash(tag) for tag in tags],
            "subVersion": self.sub_version,
            "expressionType": self.expression_type,
        }


def make_subscription(topic: str, expression: str = "*", sql: str | None = None) -> Subscription:
    """A subscription to ``topic``: ``sql`` (a SQL92 condition) when given, else the tag ``expression``.

    Raises:
        IllegalNameError: a bad topic name.
        SubscriptionError: both or neither of a non-empty expression and SQL, or a tag with a separator.
    """
    validate_topic(topic)
    sub_version = time.time_ns() // 1_000_000
    if sql is not None:
        if not sql.strip():
            raise SubscriptionError("the SQL92 expression is empty")
        if expression.strip() not in ("", "*"):
            raise SubscriptionError("give either a tag expression or sql=..., not both")
        return Subscription(topic, sql.strip(), EXPRESSION_SQL92, sub_version)
    if any(sep in expression for sep in "\x01\x02"):
        raise SubscriptionError(f"the tag expression {expression!r} contains a separator character")
    return Subscription(topic, expression.strip() or "*", EXPRESSION_TAG, sub_version)


@dataclass(frozen=True)
class ConsumerTimings:
    """Intervals and delays of the consumers; the defaults are the Java client's.

    Attributes:
        rebalance_interval_s: periodic rebalance (``MQClientInstance`` rebalance service, 20 s).
        rebalance_retry_s: first retry of a rebalance that could not finish (no route yet, lock refused...);
            doubles up to ``rebalance_interval_s``.
        persist_interval_s: offset persistence (``persistConsumerOffsetInterval``, 5 s).
        lock_interval_s: orderly lock renewal (20 s; the broker keeps a lock 60 s).
        pull_suspend_s: how long the broker may hold a pull (15 s push, ``brokerSuspendMaxTimeMillis``).
        pull_error_delay_s: pause after a failed pull (``pullTimeDelayMillsWhenException``, 3 s).
        orderly_suspend_s: pause before an orderly retry (``suspendCurrentQueueTimeMillis``, 1 s).
        local_retry_delay_s: pause before re-consuming locally a message whose send-back failed (5 s).
        shutdown_timeout_s: how long close waits for listeners in flight.
    """

    rebalance_interval_s: float = 20.0
    rebalance_retry_s: float = 1.0
    persist_interval_s: float = 5.0
    lock_interval_s: float = 20.0
    pull_suspend_s: float = 15.0
    pull_error_delay_s: float = 3.0
    orderly_suspend_s: float = 1.0
    local_retry_delay_s: float = 5.0
    shutdown_timeout_s: float = 30.0


EnumT = TypeVar("EnumT", bound=enum.Enum)


def _coerce_enum(value: EnumT | str, kind: type[EnumT], what: str) -> EnumT:
    try:
        return value if isinstance(value, kind) else kind(value)
    except ValueError:
        names = ", ".join(member.name for member in kind)
        raise ValueError(f"unknown {what} {value!r}; use one of {names}") from None


class ConsumerCore:
    """Subscriptions, heartbeat data, rebalance and offsets for one consumer group (see the module docstring).

    Raises:
        IllegalNameError: ``group`` breaks RocketMQ's naming rules.
        ValueError: an unknown model, start point or strategy, or no name server address.
    """

    consume_type: ClassVar[str] = "CONSUME_PASSIVELY"
    """The heartbeat's consumeType (push: CONSUME_PASSIVELY, lite pull: CONSUME_ACTIVELY)."""

    def __init__(
        self,
        group: str,
        namesrv_addr: str,
        *,
        message_model: MessageModel | str = MessageModel.CLUSTERING,
        consume_from_where: ConsumeFromWhere | str = ConsumeFromWhere.LAST_OFFSET,
        consume_timestamp_ms: int | None = None,
        allocate_strategy: str | AllocateStrategy = "average",
        offset_store_path: Path | str | None = None,
        timings: ConsumerTimings | None = None,
        client: ClientConfig | None = None,
    ) -> None:
        validate_group(group)
        self.group = group
        self.message_model = _coerce_enum(message_model, MessageModel, "message model")
        self.consume_from_where = _coerce_enum(consume_from_where, ConsumeFromWhere, "consume_from_where")
        self.consume_timestamp_ms = consume_timestamp_ms
        self.timings = timings or ConsumerTimings()
        self._strategy = strategy_named(allocate_strategy)
        self._instance = ClientInstance(namesrv_addr, client)
        self._api = ConsumerApi(self._instance, group)
        self.subscriptions: dict[str, Subscription] = {}
        self._offsets: OffsetStore
        if self.message_model is MessageModel.BROADCASTING:
            path = Path(offset_store_path) if offset_store_path else self.default_offset_path()
            self._offsets = LocalFileOffsetStore(path, group)
        else:
            self._offsets = RemoteOffsetStore(self._api)
        self._rebalance_wake = asyncio.Event()
        self._pull_failures: dict[MessageQueue, int] = {}
        self._runner: asyncio.Task[None] | None = None
        self._task_group: asyncio.TaskGroup | None = None
        self._is_stopping = False
        self._is_closed = False
        self._started_ms = 0

    # -- identity --------------------------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._instance.client_id

    @property
    def retry_topic(self) -> str:
        """``%RETRY%<group>``: where the broker puts messages to consume again."""
        return RETRY_TOPIC_PREFIX + self.group

    @property
    def is_clustering(self) -> bool:
        return self.message_model is MessageModel.CLUSTERING

    def default_offset_path(self) -> Path:
        """``~/.tidemq/offsets/<client id>/<group>.json``: a broadcasting member's offsets by default."""
        return Path.home() / ".tidemq" / "offsets" / self.client_id.replace("/", "_") / f"{self.group}.json"

    # -- subscriptions and heartbeats ------------------------------------------------------------------------

    def _add_subscription(self, subscription: Subscription) -> None:
        if self._is_closed:
            raise ClientStateError("the consumer is closed")
        self.subscriptions[subscription.topic] = subscription
        if self._instance.is_running:  # a subscription added while running: tell the brokers, rebalance now
            self._publish_heartbeat_data()
            self._rebalance_wake.set()
            if self._task_group is not None:
                self._task_group.create_task(self._instance.heartbeat(), name="heartbeat-after-subscribe")

    def _heartbeat_entry(self) -> dict[str, object]:
        """This consumer's ``consumerDataSet`` entry (spec 3.4), enums by name as Java writes them."""
        return {
            "groupName": self.group,
            "consumeType": self.consume_type,
            "messageModel": self.message_model.value,
            "consumeFromWhere": self.consume_from_where.value,
            "subscriptionDataSet": [sub.heartbeat_json() for sub in self.subscriptions.values()],
            "unitMode": False,
        }

    def _publish_heartbeat_data(self) -> None:
        self._instance.consumer_data[self.group] = self._heartbeat_entry()

    def _on_ids_changed(self, channel: RemotingChannel, request: RemotingCommand) -> None:
        """NOTIFY_CONSUMER_IDS_CHANGED (oneway, no answer): rebalance now."""
        group = request.ext_fields.get("consumerGroup")
        if not group or group == self.group:
            log.debug("%s: the members of group %s changed; rebalancing", self.client_id, self.group)
            self._rebalance_wake.set()

    # -- requests from brokers for admin tools ---------------------------------------------------------------

    def _register_broker_calls(self) -> None:
        handlers = self._instance.pool.handlers
        handlers[RequestCode.NOTIFY_CONSUMER_IDS_CHANGED] = self._on_ids_changed
        handlers[RequestCode.GET_CONSUMER_RUNNING_INFO] = self._on_running_info
        handlers[RequestCode.CONSUME_MESSAGE_DIRECTLY] = self._on_consume_directly
        handlers[RequestCode.RESET_CONSUMER_CLIENT_OFFSET] = self._on_reset_offset
        handlers[RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT] = self._on_consumer_status

    def _not_ours(self, request: RemotingCommand, key: str) -> RemotingCommand | None:
        """The answer Java gives a request for another group, or None when it is for ours."""
        group = request.ext_fields.get(key)
        if group == self.group:
            return None
        return request.make_response(
            ResponseCode.SYSTEM_ERROR, f"The Consumer Group <{group}> not exist in this consumer"
        )

    def _on_running_info(self, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
        """GET_CONSUMER_RUNNING_INFO: our properties, subscriptions and queues."""
        refusal = self._not_ours(request, "consumerGroup")
        if refusal is not None:
            return refusal
        properties = {
            **self._running_properties(),
            "consumerGroup": self.group,
            "messageModel": self.message_model.value,
            "consumeFromWhere": self.consume_from_where.value,
            "clientIP": self._instance.client_ip,
            "instanceName": self.client_id.partition("@")[2],
            calls.PROP_CONSUME_TYPE: self.consume_type,
            calls.PROP_CLIENT_VERSION: calls.CLIENT_VERSION_DESC,
            calls.PROP_CONSUMER_START_TIMESTAMP: str(self._started_ms),
            calls.PROP_NAMESERVER_ADDR: ";".join(self._instance.namesrv_addrs),
        }
        properties.setdefault(calls.PROP_CONSUME_ORDERLY, "false")
        properties.setdefault(calls.PROP_THREADPOOL_CORE_SIZE, "1")
        body = calls.running_info_body(
            properties,
            [sub.heartbeat_json() for sub in self.subscriptions.values()],
            self._queue_infos(),
            self.subscriptions,
            with_jstack=request.ext_fields.get("jstackEnable", "").lower() == "true",
        )
        return request.make_response(ResponseCode.SUCCESS, None, None, body)

    def _on_consume_directly(self, channel: RemotingChannel, request: RemotingCommand) -> HandlerResult:
        """CONSUME_MESSAGE_DIRECTLY: decode the record in the body, run the listener, say how it went."""
        refusal = self._not_ours(request, "consumerGroup")
        if refusal is not None:
            return refusal
        try:
            message = decode_message(request.body, 0, request.ext_fields.get("brokerName", ""))
        except ValueError as exc:
            return request.make_response(ResponseCode.SYSTEM_ERROR, f"the body is not a stored message: {exc}")
        return self._answer_consume_directly(request, message)

    async def _answer_consume_directly(self, request: RemotingCommand, message: ReceivedMessage) -> RemotingCommand:
        started = time.monotonic()
        outcome = await self._consume_directly(message)
        if outcome is None:
            return request.make_response(
                ResponseCode.SYSTEM_ERROR, f"The Consumer Group <{self.group}> not exist in this consumer"
            )
        result, remark = outcome
        spent_ms = int((time.monotonic() - started) * 1000)
        body = calls.consume_directly_body(
            result=result, is_orderly=self._is_orderly_consumer(), remark=remark, spent_ms=spent_ms
        )
        return request.make_response(ResponseCode.SUCCESS, None, None, body)

    def _is_orderly_consumer(self) -> bool:
        return False

    def _on_reset_offset(self, channel: RemotingChannel, request: RemotingCommand) -> None:
        """RESET_CONSUMER_CLIENT_OFFSET (oneway): move to the broker's offsets in a task of ours."""
        fields = request.ext_fields
        topic = fields.get("topic") or ""
        if fields.get("group") != self.group or not topic or self._task_group is None or self._is_stopping:
            return
        try:
            offsets = calls.parse_reset_body(request.body, topic)
        except ValueError as exc:
            log.warning(
                "%s: ignoring a malformed offset reset from %s: %s", self.client_id, channel.remote_address, exc
            )
            return
        log.info("%s: %s resets %s to %s", self.client_id, channel.remote_address, topic, offsets)
        self._task_group.create_task(self._reset_offsets(topic, offsets), name=f"reset-offsets-{topic}")

    def _on_consumer_status(self, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
        """GET_CONSUMER_STATUS_FROM_CLIENT: the in-memory offsets of our queues of the topic."""
        refusal = self._not_ours(request, "group")
        if refusal is not None:
            return refusal
        topic = request.ext_fields.get("topic") or ""
        offsets = {
            queue: offset
            for queue in self._assigned_queues()
            if queue.topic == topic and (offset := self._offsets.read(queue)) is not None
        }
        return request.make_response(ResponseCode.SUCCESS, None, None, calls.consumer_status_body(offsets))

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, heartbeat every broker of the subscribed topics, then start rebalancing and consuming.

        Raises:
            ClientStateError: the consumer was closed.
        """
        if self._is_closed:
            raise ClientStateError("a closed consumer cannot be started again")
        if self._runner is not None:
            return
        self._before_start()
        self._started_ms = time.time_ns() // 1_000_000
        self._register_broker_calls()
        self._publish_heartbeat_data()
        await self._instance.start()
        if isinstance(self._offsets, LocalFileOffsetStore):
            await self._offsets.load()
        for topic in list(self.subscriptions):
            try:
                await self._instance.routes.route(topic)  # learns the brokers, so the heartbeat reaches them
            except ClientError as exc:
                log.info("%s: no route for %s yet (%s); rebalance will retry", self.client_id, topic, exc)
        await self._instance.heartbeat()  # before the first rebalance: the brokers must list us as a member
        self._rebalance_wake.set()
        self._runner = asyncio.create_task(self._run(), name=f"tidemq-consumer-{self.group}")
        self._runner.add_done_callback(self._runner_done)

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        """A runner that ends on an error is a bug: say so at once (before close, the consumer has stopped)."""
        if not runner.cancelled() and runner.exception() is not None:
            log.error("%s: the consumer's tasks failed", self.client_id, exc_info=runner.exception())

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as task_group:
            self._task_group = task_group
            task_group.create_task(self._rebalance_loop(), name="rebalance")
            task_group.create_task(self._persist_loop(), name="persist-offsets")
            self._start_tasks(task_group)

    async def close(self) -> None:
        """Stop pulling, let listeners in flight finish, persist offsets, unregister, close connections.

        Safe to call twice.
        """
        if self._is_closed:
            return
        self._is_closed = True
        self._is_stopping = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await self._stop_work()
            runner.cancel()
            await asyncio.wait([runner])  # waits without re-raising the runner's cancellation (errors: _runner_done)
            await self._offsets.persist(self._assigned_queues())
            await self._after_persist()
        await self._instance.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_running(self) -> None:
        if self._runner is None or self._is_closed:
            raise ClientStateError("the consumer is closed" if self._is_closed else "the consumer is not started")

    # -- hooks for the subclasses ----------------------------------------------------------------------------

    def _before_start(self) -> None:
        """Checks and preparation before anything is sent (subscriptions, executors)."""

    def _start_tasks(self, task_group: asyncio.TaskGroup) -> None:
        """Start the subclass's long-lived tasks in the runner's group."""

    async def _stop_work(self) -> None:
        """At close, before the runner is cancelled: stop pulling and wait for work in flight."""

    async def _after_persist(self) -> None:
        """At close, after the final offset persist (orderly consumers unlock their queues here)."""

    def _assigned_queues(self) -> list[MessageQueue]:
        """The queues held now."""
        raise NotImplementedError

    async def _apply_assignment(self, topic: str, subscription: Subscription, queues: list[MessageQueue]) -> bool:
        """Make ``queues`` the held queues of ``topic``; False when some could not be taken yet."""
        raise NotImplementedError

    def _queue_infos(self) -> dict[MessageQueue, calls.QueueInfo]:
        """What running info reports per held queue; by default only the offset."""
        return {queue: calls.QueueInfo(self._offsets.read(queue) or 0) for queue in self._assigned_queues()}

    def _running_properties(self) -> dict[str, str]:
        """Settings running info shows besides the PROP_* keys (Java lists its consumer's fields)."""
        return {}

    async def _consume_directly(self, message: ReceivedMessage) -> tuple[str, str | None] | None:
        """Run the listener on ``message``: (CMResult name, remark), or None when this consumer has none."""
        return None

    async def _reset_offsets(self, topic: str, offsets: dict[MessageQueue, int]) -> None:
        """Move held queues of ``topic`` to ``offsets``, dropping what was pulled (only push consumers do)."""
        log.info("%s: ignoring an offset reset of %s (only push consumers follow them)", self.client_id, topic)

    # -- rebalance -------------------------------------------------------------------------------------------

    async def _rebalance_loop(self) -> None:
        retry_s = self.timings.rebalance_retry_s
        while not self._is_stopping:
            self._rebalance_wake.clear()
            try:
                is_complete = await self._rebalance()
            except Exception:  # a bug here must not stop rebalancing for good
                log.exception("%s: rebalance failed", self.client_id)
                is_complete = False
            if is_complete:
                wait_s, retry_s = self.timings.rebalance_interval_s, self.timings.rebalance_retry_s
            else:
                wait_s, retry_s = retry_s, min(retry_s * 2, self.timings.rebalance_interval_s)
            try:
                async with asyncio.timeout(wait_s):
                    await self._rebalance_wake.wait()
            except TimeoutError:
                pass

    async def _rebalance(self) -> bool:
        """Balance every subscribed topic once; True when every topic got its queues."""
        is_complete = True
        for topic, subscription in list(self.subscriptions.items()):
            if self._is_stopping:
                return True
            try:
                queues = await self._allocate(topic)
                if queues is None or not await self._apply_assignment(topic, subscription, queues):
                    is_complete = False
            except ClientError as exc:
                log.info("%s: cannot balance %s yet: %s", self.client_id, topic, exc)
                is_complete = False
        return is_complete

    async def _allocate(self, topic: str) -> list[MessageQueue] | None:
        """The queues of ``topic`` this member should hold; ``None`` when that cannot be known yet."""
        route = await self._instance.routes.route(topic)
        queues = sorted(subscribe_queues(topic, route))
        if not self.is_clustering:
            return queues
        client_ids = await self._api.consumer_ids(topic)
        if self.client_id not in client_ids:
            # The broker has not seen our heartbeat (a new broker, an expired channel): say hello again.
            log.info("%s: not yet a member of %s on the brokers of %s", self.client_id, self.group, topic)
            await self._instance.heartbeat()
            return None
        return self._strategy(self.group, self.client_id, queues, client_ids)

    async def _start_offset(self, queue: MessageQueue) -> int:
        """Where a newly held queue starts: the stored offset, else ``consume_from_where``.

        Raises:
            ClientError: the broker could not be asked.
        """
        stored = await self._offsets.read_stored(queue)
        if stored is not None and stored >= 0:
            return stored
        if queue.topic.startswith(RETRY_TOPIC_PREFIX) or self.consume_from_where is ConsumeFromWhere.FIRST_OFFSET:
            offset = 0
        elif self.consume_from_where is ConsumeFromWhere.TIMESTAMP:
            timestamp_ms = self.consume_timestamp_ms
            if timestamp_ms is None:
                timestamp_ms = time.time_ns() // 1_000_000 - DEFAULT_TIMESTAMP_LOOKBACK_MS
            offset = await self._api.search_offset(queue, timestamp_ms)
        else:
            offset = await self._api.max_offset(queue)
        log.info(
            "%s: %s has no stored offset; starting at %d (%s)",
            self.client_id,
            queue,
            offset,
            self.consume_from_where.name,
        )
        return offset

    # -- pull failures ---------------------------------------------------------------------------------------

    def _pull_failed(self, queue: MessageQueue, offset: int, error: Exception) -> None:
        """Log a failed pull: the first of a run as a warning, the rest (a broker down for a while) at debug."""
        count = self._pull_failures.get(queue, 0) + 1
        self._pull_failures[queue] = count
        level = logging.WARNING if count == 1 else logging.DEBUG
        log.log(level, "%s: pulling %s at %d failed (%d in a row): %s", self.client_id, queue, offset, count, error)

    def _pull_worked(self, queue: MessageQueue) -> None:
        count = self._pull_failures.pop(queue, 0)
        if count:
            log.info("%s: pulling %s works again after %d failures", self.client_id, queue, count)

    # -- offsets ---------------------------------------------------------------------------------------------

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.persist_interval_s)
            try:
                await self._offsets.persist(self._assigned_queues())
            except Exception:  # as above: keep persisting
                log.exception("%s: persisting offsets failed", self.client_id)

    async def persist_offsets(self, queues: Iterable[MessageQueue] | None = None) -> None:
        """Write the offsets of ``queues`` (default: every held queue) to the brokers or the file now."""
        await self._offsets.persist(self._assigned_queues() if queues is None else queues)
