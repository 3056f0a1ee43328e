"""The producer: ``send``, ``send_oneway``, ``send_batch``, ``send_orderly`` and ``send_in_transaction``
(Java's ``DefaultMQProducer`` and ``TransactionMQProducer``).

::

    async with Producer("PG_orders", "127.0.0.1:9876") as producer:
        result = await producer.send("Orders", b"...", tags="created", keys=["order-17"])
        print(result.msg_id, result.queue_id, result.queue_offset)

How a send goes (``DefaultMQProducerImpl.sendDefaultImpl``):

1. The topic's route comes from the name servers once, then from the cache (refreshed every 30 s). A topic they
   do not know goes out with TBW102's route and the broker creates it (``_routes``).
2. A queue is picked round robin over the writable queues of master brokers; each message gets a UNIQ_KEY.
3. SEND_MESSAGE_V2 (310) with the single-letter header, or SEND_BATCH_MESSAGE (320) with a batch body, goes to
   the broker on the one connection the client keeps to it; any number of sends share it (pipelined by opaque).
4. Codes 0/10/11/12 are results (SEND_OK, FLUSH_DISK_TIMEOUT, SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT). A
   retryable code (:data:`RETRYABLE_CODES`) or a failed connection is retried on the next queue of another
   broker when there is one, up to ``retry_times_when_send_failed`` more times, all within ``send_timeout_s``;
   a timeout is not retried (the time is spent). Other codes raise :class:`~tidemq.client.errors.BrokerError`
   at once. Oneway sends and sends to an explicit queue are not retried, as in Java.

``send_orderly`` picks the queue from a sharding key as Java's ``SelectMessageQueueByHash`` does (the key's
``String.hashCode`` modulo the writable queues), so Java and Python producers put one key on the same queue.

Transactions (``TransactionMQProducerImpl``, spec 3.15): ``send_in_transaction`` sends a half message (TRAN_MSG,
PGROUP, sysFlag TRANSACTION_PREPARED), runs the local transaction, and ends it with END_TRANSACTION (oneway) to
the broker that stored the half: commit, rollback, or "unknown", which leaves the decision to the broker's
check-back. The broker's CHECK_TRANSACTION_STATE requests reach the producer given a ``transaction_checker``;
each runs as a task of the connection it came on, and the answer goes back on that connection.

The per-message path builds one properties string, one header dict and one command; no per-message tasks.
State: the client instance (connections, routes, heartbeats) and the producer's settings, on the loop thread.
"""

from __future__ import annotations

import enum
import logging
import time
import zlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from tidemq.client._connections import client_error
from tidemq.client._instance import LANGUAGE, ClientConfig, ClientInstance
from tidemq.client._message import (
    PROPERTY_WAIT_TRUE,
    Message,
    decode_message,
    encode_batch,
    message_properties,
    new_uniq_key,
)
from tidemq.client._routes import AUTO_CREATE_TOPIC, MessageQueue, PublishInfo
from tidemq.client._transaction import (
    END_TRANSACTION_TYPE,
    LocalTransaction,
    TransactionChecker,
    TransactionState,
    resolve_state,
)
from tidemq.client.errors import BrokerError, ClientError, ConnectionFailedError, NoRouteError, RequestTimeoutError
from tidemq.errors import MessageIllegalError
from tidemq.protocol.remoting import DEFAULT_VERSION, RemotingCommand, RequestCode, ResponseCode
from tidemq.store import record as rec
from tidemq.store.names import validate_group, validate_topic
from tidemq.transport import RemotingChannel, next_opaque

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE: Final = 4 << 20
"""The broker's default ``maxMessageSize`` (4 MiB); Java's producer checks bodies against the same number."""

RETRYABLE_CODES: Final = frozenset(
    {
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SYSTEM_BUSY,
        ResponseCode.TOPIC_NOT_EXIST,
        ResponseCode.SERVICE_NOT_AVAILABLE,
        ResponseCode.NO_PERMISSION,
        ResponseCode.NO_BUYER_ID,
        ResponseCode.NOT_IN_CURRENT_UNIT,
        ResponseCode.FLOW_CONTROL,
        ResponseCode.GO_AWAY,
    }
)
"""Codes worth another broker (``DefaultMQProducer.retryResponseCodes`` plus SYSTEM_BUSY and the 5.x ones)."""


class SendStatus(enum.Enum):
    """How far a sent message got (Java's ``SendStatus``); every status means the broker stored it."""

    SEND_OK = "SEND_OK"
    FLUSH_DISK_TIMEOUT = "FLUSH_DISK_TIMEOUT"
    FLUSH_SLAVE_TIMEOUT = "FLUSH_SLAVE_TIMEOUT"
    SLAVE_NOT_AVAILABLE = "SLAVE_NOT_AVAILABLE"


_STATUS_BY_CODE: Final[dict[int, SendStatus]] = {
    ResponseCode.SUCCESS: SendStatus.SEND_OK,
    ResponseCode.FLUSH_DISK_TIMEOUT: SendStatus.FLUSH_DISK_TIMEOUT,
    ResponseCode.FLUSH_SLAVE_TIMEOUT: SendStatus.FLUSH_SLAVE_TIMEOUT,
    ResponseCode.SLAVE_NOT_AVAILABLE: SendStatus.SLAVE_NOT_AVAILABLE,
}


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the broker said about a stored message (Java's ``SendResult``).

    Attributes:
        status: SEND_OK, or a durability warning (the message is stored either way).
        msg_id: the UNIQ_KEY the producer gave the message, the id users see; for a batch, the ids joined by
            commas.
        offset_msg_id: the broker's id (store host + commit-log offset; comma-joined for a batch).
        queue_id: the queue the message went to.
        queue_offset: its offset in that queue (the first message's, for a batch).
        broker_name: the broker that stored it.
    """

    status: SendStatus
    msg_id: str
    offset_msg_id: str
    queue_id: int
    queue_offset: int
    broker_name: str


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """What ``send_in_transaction`` did (Java's ``TransactionSendResult``).

    Attributes:
        send_result: the half message's result; its ``msg_id`` is the transaction id.
        state: the local transaction's answer, sent to the broker with END_TRANSACTION.
    """

    send_result: SendResult
    state: TransactionState

    @property
    def transaction_id(self) -> str:
        return self.send_result.msg_id


@dataclass(frozen=True)
class ProducerConfig:
    """Producer settings; the defaults are Java's ``DefaultMQProducer`` ones.

    Attributes:
        send_timeout_s: the whole budget of one send, retries included (``sendMsgTimeout``, 3 s).
        retry_times_when_send_failed: extra attempts of a synchronous send (2).
        default_topic_queue_nums: queues asked for when a send creates a topic (``defaultTopicQueueNums``, 4).
        compress_msg_body_over_bytes: bodies larger than this are zlib-compressed (4096; batches never are).
        max_message_size: the largest body (or batch body) accepted (4 MiB, the broker's default).
        client: connection, heartbeat and route settings.
    """

    send_timeout_s: float = 3.0
    retry_times_when_send_failed: int = 2
    default_topic_queue_nums: int = 4
    compress_msg_body_over_bytes: int = 4096
    max_message_size: int = MAX_MESSAGE_SIZE
    client: ClientConfig = field(default_factory=ClientConfig)


class Producer:
    """Sends messages to the brokers of a name server's cluster.

    Args:
        group: the producer group (shows in the broker's producer table; transactions use it).
        namesrv_addr: name servers, ``"host:port;host:port"``.
        config: settings; the defaults suit most uses.
        transaction_checker: answers the broker's transaction check-backs (see :data:`TransactionChecker`);
            without one, check-backs go unanswered and undecided transactions stay open until the broker gives up.

    Raises:
        IllegalNameError: ``group`` breaks RocketMQ's naming rules.
        ValueError: ``namesrv_addr`` names no server.
    """

    def __init__(
        self,
        group: str,
        namesrv_addr: str,
        *,
        config: ProducerConfig | None = None,
        transaction_checker: TransactionChecker | None = None,
    ) -> None:
        validate_group(group)
        self.group = group
        self.config = config or ProducerConfig()
        self._instance = ClientInstance(namesrv_addr, self.config.client)
        self._routes = self._instance.routes
        self._pool = self._instance.pool
        self._transaction_checker = transaction_checker
        if transaction_checker is not None:
            self._pool.handlers[RequestCode.CHECK_TRANSACTION_STATE] = self._on_check_transaction
        self._checked_topics: set[str] = set()
        self._queue_nums_text = str(self.config.default_topic_queue_nums)

    @property
    def client_id(self) -> str:
        return self._instance.client_id

    async def start(self) -> None:
        """Start heartbeats and route refreshes; connections open on first use."""
        self._instance.producer_groups.add(self.group)
        await self._instance.start()

    async def close(self) -> None:
        """Unregister from the brokers and close the connections; sends in flight fail."""
        await self._instance.close()

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def queues(self, topic: str) -> list[MessageQueue]:
        """The queues a send to ``topic`` picks from (TBW102's shape for a topic not created yet).

        Raises:
            NoRouteError: no route for the topic, nor TBW102 to create it from.
            ClientError: no name server answered.
        """
        self._instance.check_running()
        return [queue for queue, _ in (await self._publish_info(topic)).targets]

    # -- sending ---------------------------------------------------------------------------------------------

    async def send(
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
        deliver_at_ms: int | None = None,
    ) -> SendResult:
        """Send one message and wait until the broker stored it.

        Args:
            topic: where to; created by the broker on first use when it allows auto-creation.
            body: the payload (a ``str`` is sent as UTF-8).
            tags: one tag, for consumer-side filtering.
            keys: business keys (a ``str`` is one key), indexed for queries.
            properties: user properties (RocketMQ's reserved names are refused).
            queue_id: send to this queue instead of round robin (no retries then).
            broker_name: with ``queue_id``, the broker of that queue when several have it.
            delay_level: 1..18 delays delivery by RocketMQ's level table (1 s ... 2 h); 0 is none.
            deliver_at_ms: deliver at this time (ms since the epoch, at most 3 days ahead): RocketMQ 5's timer
                message (``TIMER_DELIVER_MS``).

        Raises:
            IllegalNameError: a bad topic name.
            MessageIllegalError: empty or too large body, bad property.
            NoRouteError: no route for the topic, nor TBW102 to create it from.
            BrokerError: the broker refused it (``code``, ``remark``), after retries when retryable.
            ConnectionFailedError: no broker could be reached, after retries.
            RequestTimeoutError: no answer within ``send_timeout_s``.
            ClientStateError: the producer is not started or is closed.
        """
        self._instance.check_running()
        if topic not in self._checked_topics:
            self._check_topic(topic)
        payload, sys_flag = self._payload(body)
        uniq_key = new_uniq_key()
        properties_text = message_properties(
            uniq_key, tags, keys, properties, delay_level=delay_level, deliver_at_ms=deliver_at_ms
        )
        return await self._send(
            RequestCode.SEND_MESSAGE_V2, topic, payload, properties_text, sys_flag, uniq_key, queue_id, broker_name
        )

    async def send_oneway(
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        queue_id: int | None = None,
        broker_name: str | None = None,
    ) -> None:
        """Send one message without waiting for the broker (no result, no retries).

        Arguments and errors are those of :meth:`send`, minus everything that needs a reply: only a connection
        that cannot be opened, or a socket that stays full for ``send_timeout_s``, is reported. The call waits
        while the socket's buffer is above its high-water mark, so a fast loop of oneway sends cannot queue
        without bound.
        """
        self._instance.check_running()
        if topic not in self._checked_topics:
            self._check_topic(topic)
        payload, sys_flag = self._payload(body)
        properties_text = message_properties(new_uniq_key(), tags, keys, properties)
        info = await self._publish_info(topic)
        queue, addr = info.select() if queue_id is None else info.target(queue_id, broker_name)
        request = self._request(RequestCode.SEND_MESSAGE_V2, topic, queue, payload, properties_text, sys_flag)
        request.flag = 2  # oneway: the broker does not answer
        await self._pool.invoke_oneway(addr, request, self.config.send_timeout_s)

    async def send_batch(
        self,
        topic: str,
        messages: Iterable[Message | bytes],
        *,
        queue_id: int | None = None,
        broker_name: str | None = None,
    ) -> SendResult:
        """Send several messages to one queue in one request (SEND_BATCH_MESSAGE); they get consecutive offsets.

        Args:
            topic: the topic of every message.
            messages: :class:`Message` objects, or plain bodies.
            queue_id: the queue to use instead of round robin (no retries then).
            broker_name: with ``queue_id``, the broker of that queue.

        Returns:
            One result: ``msg_id`` holds every UNIQ_KEY joined by commas, ``queue_offset`` the first offset.

        Raises:
            MessageIllegalError: no messages, an empty body, or a batch body above ``max_message_size``.
            And the errors of :meth:`send`.
        """
        self._instance.check_running()
        if topic not in self._checked_topics:
            self._check_topic(topic)
        entries: list[tuple[bytes, str, int]] = []
        ids: list[str] = []
        for message in messages:
            item = message if isinstance(message, Message) else Message(message)
            if not item.body:
                raise MessageIllegalError("a message of the batch has an empty body")
            uniq_key = new_uniq_key()
            ids.append(uniq_key)
            entries.append(
                (bytes(item.body), message_properties(uniq_key, item.tags, item.keys, item.properties), item.flag)
            )
        if not entries:
            raise MessageIllegalError("the batch is empty")
        batch_body = encode_batch(entries)
        if len(batch_body) > self.config.max_message_size:
            raise MessageIllegalError(
                f"the batch body is {len(batch_body)} bytes, more than the limit of {self.config.max_message_size}"
            )
        return await self._send(
            RequestCode.SEND_BATCH_MESSAGE,
            topic,
            batch_body,
            PROPERTY_WAIT_TRUE,
            0,
            ",".join(ids),
            queue_id,
            broker_name,
        )

    async def send_orderly(
        self,
        topic: str,
        body: bytes | str,
        sharding_key: str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> SendResult:
        """Send one message to the queue its ``sharding_key`` maps to, so that messages of one key keep their
        order in one queue (Java's ``send(msg, SelectMessageQueueByHash, key)``; an orderly consumer then reads
        them in that order).

        The queue is the key's Java ``String.hashCode`` modulo the topic's writable queues: the same queue a Java
        producer picks for that key, as long as the route does not change. No retries on another queue, which
        would break the order.

        Raises:
            The errors of :meth:`send`.
        """
        self._instance.check_running()
        if topic not in self._checked_topics:
            self._check_topic(topic)
        queue, _ = (await self._publish_info(topic)).select_by_key(sharding_key)
        return await self.send(
            topic,
            body,
            tags=tags,
            keys=keys,
            properties=properties,
            queue_id=queue.queue_id,
            broker_name=queue.broker_name,
        )

    async def send_in_transaction(
        self,
        topic: str,
        body: bytes | str,
        local_transaction: LocalTransaction,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> TransactionResult:
        """Send ``body`` as a transactional message: stored as a half message (invisible to consumers), then
        ``local_transaction`` runs, and its answer commits (delivers), rolls back (discards) or leaves the message
        to the broker's check-back (UNKNOWN, answered by the producer's ``transaction_checker``).

        A local transaction that raises counts as UNKNOWN (the error goes to the broker as the remark), as in
        Java. The END_TRANSACTION request is oneway: if it is lost, the check-back decides.

        Raises:
            The errors of :meth:`send` (for the half message; the local transaction then does not run).
        """
        self._instance.check_running()
        if topic not in self._checked_topics:
            self._check_topic(topic)
        payload, sys_flag = self._payload(body)
        uniq_key = new_uniq_key()
        properties_text = message_properties(uniq_key, tags, keys, properties)
        properties_text += f"TRAN_MSG\x01true\x02PGROUP\x01{self.group}\x02"
        half = await self._send(
            RequestCode.SEND_MESSAGE_V2,
            topic,
            payload,
            properties_text,
            sys_flag | rec.SYSFLAG_TRANSACTION_PREPARED,
            uniq_key,
            None,
            None,
        )
        remark = ""
        if half.status is not SendStatus.SEND_OK:
            state = TransactionState.ROLLBACK  # not durably stored: Java rolls back too
        else:
            try:
                state = await resolve_state(local_transaction(half))
            except Exception as exc:  # the application's failure: undecided, the check-back will ask
                log.warning("local transaction of %s raised; leaving it to the check-back", uniq_key, exc_info=True)
                state, remark = TransactionState.UNKNOWN, f"executeLocalTransactionBranch exception: {exc!r}"
        await self._end_transaction(half, topic, state, remark)
        return TransactionResult(half, state)

    # -- internals -------------------------------------------------------------------------------------------

    def _check_topic(self, topic: str) -> None:
        validate_topic(topic)
        if topic == AUTO_CREATE_TOPIC:
            raise MessageIllegalError(f"the topic {AUTO_CREATE_TOPIC} is the auto-create template, not for messages")
        if len(topic.encode()) > rec.MAX_TOPIC_BYTES:
            raise MessageIllegalError(f"the topic is longer than {rec.MAX_TOPIC_BYTES} bytes")
        self._checked_topics.add(topic)

    def _payload(self, body: bytes | str) -> tuple[bytes, int]:
        """The body as sent and its sysFlag: compressed (bit 0) above ``compress_msg_body_over_bytes``."""
        payload = body.encode() if isinstance(body, str) else bytes(body)
        size = len(payload)
        if not size:
            raise MessageIllegalError("the message body is empty")
        if size > self.config.max_message_size:
            raise MessageIllegalError(
                f"the message body is {size} bytes, more than the limit of {self.config.max_message_size}"
            )
        if size > self.config.compress_msg_body_over_bytes:
            compressed = zlib.compress(payload, 5)  # Java's and the C++ client's level
            if len(compressed) < size:
                return compressed, rec.SYSFLAG_COMPRESSED
        return payload, 0

    async def _publish_info(self, topic: str) -> PublishInfo:
        info = self._routes.cached_publish_info(topic)
        if info is None:
            info = await self._routes.publish_info(topic, self.config.default_topic_queue_nums)
        return info

    def _request(
        self, code: int, topic: str, queue: MessageQueue, body: bytes, properties: str, sys_flag: int
    ) -> RemotingCommand:
        """SendMessageRequestHeaderV2, single-letter fields (spec 3.2)."""
        fields = {
            "a": self.group,
            "b": topic,
            "c": AUTO_CREATE_TOPIC,
            "d": self._queue_nums_text,
            "e": str(queue.queue_id),
            "f": str(sys_flag),
            "g": str(time.time_ns() // 1_000_000),
            "h": "0",
            "i": properties,
            "j": "0",
            "k": "false",
            "m": "true" if code == RequestCode.SEND_BATCH_MESSAGE else "false",
        }
        return RemotingCommand(code, LANGUAGE, DEFAULT_VERSION, next_opaque(), 0, None, fields, body)

    async def _send(
        self,
        code: int,
        topic: str,
        body: bytes,
        properties: str,
        sys_flag: int,
        msg_id: str,
        queue_id: int | None,
        broker_name: str | None,
    ) -> SendResult:
        info = self._routes.cached_publish_info(topic) or await self._publish_info(topic)
        timeout_s = self.config.send_timeout_s
        deadline = time.monotonic() + timeout_s
        attempts = 1 if queue_id is not None else 1 + max(0, self.config.retry_times_when_send_failed)
        avoid: str | None = None
        last_error: ClientError | None = None
        for attempt in range(attempts):
            queue, addr = info.select(avoid) if queue_id is None else info.target(queue_id, broker_name)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            request = self._request(code, topic, queue, body, properties, sys_flag)
            channel = self._pool.open_channel(addr)
            try:
                if channel is None:
                    response = await self._pool.invoke(addr, request, remaining)
                else:  # the common case, without invoke's coroutine
                    response = await channel.request(request, remaining)
            except ConnectionFailedError as exc:
                last_error, avoid = exc, queue.broker_name
                continue
            except (TimeoutError, ConnectionError) as exc:
                error = client_error(addr, exc, remaining)
                if isinstance(error, RequestTimeoutError):
                    raise error from None
                last_error, avoid = error, queue.broker_name
                continue
            status = _STATUS_BY_CODE.get(response.code)
            if status is not None:
                fields = response.ext_fields
                return SendResult(
                    status,
                    msg_id,
                    fields.get("msgId", ""),
                    int(fields.get("queueId", queue.queue_id)),
                    int(fields.get("queueOffset", -1)),
                    queue.broker_name,
                )
            error = BrokerError(response.code, response.remark, addr)
            if response.code not in RETRYABLE_CODES or attempt + 1 == attempts:
                if attempt:
                    error.add_note(f"send to topic {topic} failed {attempt + 1} times")
                raise error
            last_error, avoid = error, queue.broker_name
        if last_error is None:
            raise RequestTimeoutError(info.targets[0][1] if info.targets else "?", timeout_s, "send")
        last_error.add_note(f"send to topic {topic} failed after {attempt + 1} attempts within {timeout_s} s")
        raise last_error

    # -- transactions ----------------------------------------------------------------------------------------

    async def _end_transaction(self, half: SendResult, topic: str, state: TransactionState, remark: str) -> None:
        """END_TRANSACTION (oneway) for a half message this producer just sent."""
        addr = self._routes.find_broker_addr(half.broker_name)
        if addr is None:
            raise NoRouteError(topic, f"no address for broker {half.broker_name}")
        _, _, commitlog_offset = rec.decode_offset_msg_id(half.offset_msg_id)
        fields = self._end_fields(half.queue_offset, commitlog_offset, half.msg_id, topic, state, from_check=False)
        request = self._instance.make_request(RequestCode.END_TRANSACTION, fields)
        request.flag = 2  # oneway
        request.remark = remark or None
        await self._pool.invoke_oneway(addr, request, self.config.send_timeout_s)

    def _end_fields(
        self,
        queue_offset: int,
        commitlog_offset: int,
        msg_id: str,
        topic: str,
        state: TransactionState,
        *,
        from_check: bool,
    ) -> dict[str, str]:
        """EndTransactionRequestHeader (spec 3.15)."""
        return {
            "producerGroup": self.group,
            "tranStateTableOffset": str(queue_offset),
            "commitLogOffset": str(commitlog_offset),
            "commitOrRollback": str(END_TRANSACTION_TYPE[state]),
            "fromTransactionCheck": "true" if from_check else "false",
            "msgId": msg_id,
            "transactionId": msg_id,
            "topic": topic,
        }

    def _on_check_transaction(self, channel: RemotingChannel, request: RemotingCommand) -> Awaitable[None]:
        """CHECK_TRANSACTION_STATE (oneway, spec 3.15): answered by a task the connection owns."""
        return self._check_transaction(channel, request)

    async def _check_transaction(self, channel: RemotingChannel, request: RemotingCommand) -> None:
        checker = self._transaction_checker
        assert checker is not None
        fields = request.ext_fields
        try:
            message = decode_message(request.body)
        except ValueError as exc:
            log.warning("%s sent a transaction check with a bad body: %s", channel.remote_address, exc)
            return
        try:
            state = await resolve_state(checker(message))
            remark = ""
        except Exception as exc:  # the application's failure: the broker asks again at its next check
            log.warning("transaction checker raised on %s", message.msg_id, exc_info=True)
            state, remark = TransactionState.UNKNOWN, f"checkLocalTransaction exception: {exc!r}"
        end = self._end_fields(
            int(fields.get("tranStateTableOffset") or 0),
            int(fields.get("commitLogOffset") or message.commitlog_offset),
            message.msg_id,
            message.topic,
            state,
            from_check=True,
        )
        end["transactionId"] = fields.get("transactionId") or message.msg_id
        answer = self._instance.make_request(RequestCode.END_TRANSACTION, end)
        answer.flag = 2  # oneway
        answer.remark = remark or None
        if not channel.is_closed:
            channel.send(answer)
