"""The broker calls every consumer makes, one method each (Java's ``MQClientAPIImpl``, the consumer half).

:class:`ConsumerApi` sends, for one consumer group, over a :class:`~tidemq.client._instance.ClientInstance`'s
connections: PULL_MESSAGE (spec 4), QUERY/UPDATE_CONSUMER_OFFSET, GET_MAX/MIN_OFFSET,
SEARCH_OFFSET_BY_TIMESTAMP, GET_CONSUMER_LIST_BY_GROUP, LOCK/UNLOCK_BATCH_MQ and CONSUMER_SEND_MSG_BACK. Error
codes become :class:`~tidemq.client.errors.BrokerError`; the codes a caller must tell apart (pull statuses,
QUERY_NOT_FOUND) are returned instead.

:class:`PullResult` keeps the pull body as the broker sent it and decodes it on first access; the client
re-checks tags after decoding, as Java's ``processPullResult`` does (the broker filters by tag hash, and hashes
collide).

State: the broker id each queue's broker suggested for its next pull; on the event loop thread.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Final

from tidemq.client._instance import ClientInstance
from tidemq.client._message import ReceivedMessage, count_records, decode_messages, iter_bodies
from tidemq.client._routes import MASTER_ID, MessageQueue
from tidemq.client.errors import BrokerError, ClientError, NoRouteError
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, dumps_compact, loads_lenient

FLAG_COMMIT_OFFSET: Final = 1
FLAG_SUSPEND: Final = 2
FLAG_SUBSCRIPTION: Final = 4
MAX_PULL_COUNT: Final = 1024
"""The broker caps ``maxMsgNums`` here too."""
EXPRESSION_TAG: Final = "TAG"
EXPRESSION_SQL92: Final = "SQL92"
HELD_PULL_GRACE_S: Final = 5.0
"""Added to a held pull's timeout: Apache's ``PullRequestHoldService`` looks at held pulls every 5 s, so a pull held
for ``suspend_s`` with nothing arriving is answered up to 5 s after that (measured on 5.5.0: 2 s holds came back
after 5 s, 15 s holds after 20 s). Java's push consumer allows 15 s (``CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND``)."""


class PullStatus(enum.Enum):
    """Java's ``PullStatus``, from the pull's response code."""

    FOUND = "FOUND"
    """Code 0: the body holds at least one message."""
    NO_NEW_MSG = "NO_NEW_MSG"
    """Code 19: nothing at or after the offset (after the long-poll hold, if any)."""
    NO_MATCHED_MSG = "NO_MATCHED_MSG"
    """Code 20: messages were there, none matched the expression; pull again from ``next_begin_offset``."""
    OFFSET_ILLEGAL = "OFFSET_ILLEGAL"
    """Code 21: the offset is outside ``[min_offset, max_offset]``; ``next_begin_offset`` is where to go."""


_STATUS_BY_CODE: Final[dict[int, PullStatus]] = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


@functools.lru_cache(maxsize=256)  # every pull parses its subscription's expression: one each, in practice
def parse_tag_expression(expression: str) -> frozenset[str] | None:
    """``"TagA || TagB"`` to ``{"TagA", "TagB"}``; ``None`` for ``"*"`` or an empty expression (everything)."""
    expression = expression.strip()
    if not expression or expression == "*":
        return None
    return frozenset(tag.strip() for tag in expression.split("||") if tag.strip())


@dataclass(frozen=True)
class PullResult:
    """One pull's answer.

    Attributes:
        status: what the broker found.
        next_begin_offset: where to pull next.
        min_offset: the queue's first offset still stored.
        max_offset: the queue's next offset to be written.
        raw: the body: stored records back to back (empty unless FOUND).
        queue: the queue pulled.
        suggest_which_broker_id: 0, or the slave the broker suggests for the next pull.
        tags: the expression's tags, ``None`` for all (and for SQL92 expressions, which only the broker checks);
            :attr:`messages` re-checks them as Java's client does (the broker filters by tag hash, and hashes
            collide).
    """

    status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    raw: bytes
    queue: MessageQueue
    suggest_which_broker_id: int = 0
    tags: frozenset[str] | None = None

    @cached_property
    def message_count(self) -> int:
        """Records in :attr:`raw` (before the client-side tag check), counted from their size words."""
        return count_records(self.raw) if self.raw else 0

    @cached_property
    def messages(self) -> list[ReceivedMessage]:
        """The messages, decoded on first access, bodies inflated, filtered by :attr:`tags`.

        Raises:
            ValueError: the body is not whole records (a broken broker).
        """
        if not self.raw:
            return []
        messages = decode_messages(self.raw, self.queue.broker_name)
        if self.tags is not None:
            tags = self.tags
            messages = [message for message in messages if message.tags in tags]
        return messages

    def bodies(self) -> Iterator[memoryview]:
        """Each record's body as stored (no decoding, no tag check, compressed bodies as they are)."""
        return iter_bodies(self.raw)


class ConsumerApi:
    """Consumer requests of one group, sent through one client instance.

    Args:
        instance: connections, routes and the request factory.
        group: the consumer group every request names.
    """

    def __init__(self, instance: ClientInstance, group: str) -> None:
        self.instance = instance
        self.group = group
        self._routes = instance.routes
        self._pool = instance.pool
        self._timeout_s = instance.config.request_timeout_s
        self._suggested: dict[MessageQueue, int] = {}

    # -- pulling ---------------------------------------------------------------------------------------------

    async def pull(
        self,
        queue: MessageQueue,
        offset: int,
        *,
        max_count: int = 32,
        expression: str = "*",
        expression_type: str = EXPRESSION_TAG,
        sub_version: int = 0,
        suspend_s: float = 0.0,
        commit_offset: int | None = None,
        timeout_s: float | None = None,
    ) -> PullResult:
        """Pull up to ``max_count`` messages of ``queue`` from ``offset`` (the subscription travels with it).

        Raises:
            BrokerError: an error code (no such topic, group not allowed, expression refused...).
            ConnectionFailedError, RequestTimeoutError: the broker could not be reached or did not answer.
            NoRouteError: the queue's broker is not in any route.
        """
        is_sql = expression_type.upper() == EXPRESSION_SQL92
        tags = None if is_sql else parse_tag_expression(expression)
        broker_id = self._suggested.get(queue, MASTER_ID)
        addr = self._routes.find_broker_addr(queue.broker_name, broker_id) or await self.broker_addr(
            queue.broker_name, queue.topic, broker_id
        )
        sys_flag = FLAG_SUBSCRIPTION
        if suspend_s > 0:
            sys_flag |= FLAG_SUSPEND
        if commit_offset is not None and broker_id == MASTER_ID:
            sys_flag |= FLAG_COMMIT_OFFSET
        fields = {
            "consumerGroup": self.group,
            "topic": queue.topic,
            "queueId": str(queue.queue_id),
            "queueOffset": str(offset),
            "maxMsgNums": str(max(1, min(max_count, MAX_PULL_COUNT))),
            "sysFlag": str(sys_flag),
            "commitOffset": str(commit_offset if commit_offset is not None else 0),
            "suspendTimeoutMillis": str(int(suspend_s * 1000)),
            "subscription": expression or "*",
            "subVersion": str(sub_version),
            "expressionType": EXPRESSION_SQL92 if is_sql else EXPRESSION_TAG,
        }
        request = self.instance.make_request(RequestCode.PULL_MESSAGE, fields)
        if not timeout_s:
            timeout_s = suspend_s + HELD_PULL_GRACE_S + self._timeout_s if suspend_s > 0 else self._timeout_s
        response = await self._pool.invoke(addr, request, timeout_s)
        status = _STATUS_BY_CODE.get(response.code)
        if status is None:
            raise BrokerError(response.code, response.remark, addr)
        ext = response.ext_fields
        suggested = int(ext.get("suggestWhichBrokerId") or 0)
        if suggested != MASTER_ID and self._routes.find_broker_addr(queue.broker_name, suggested):
            self._suggested[queue] = suggested
        else:
            self._suggested.pop(queue, None)
        body = response.body
        return PullResult(
            status,
            int(ext.get("nextBeginOffset") or offset),
            int(ext.get("minOffset") or 0),
            int(ext.get("maxOffset") or 0),
            body if isinstance(body, bytes) else bytes(body),
            queue,
            suggested,
            tags,
        )

    # -- offsets ---------------------------------------------------------------------------------------------

    async def query_offset(self, queue: MessageQueue, *, zero_if_not_found: bool | None = None) -> int | None:
        """The group's committed offset of ``queue``, ``None`` if it has none (QUERY_NOT_FOUND).

        Args:
            queue: the queue.
            zero_if_not_found: sent as ``setZeroIfNotFound`` (RocketMQ 5). ``False`` asks the broker to say
                "not found" for a group that never committed, instead of answering 0 for a queue that still
                holds its first message.
        """
        fields = {"consumerGroup": self.group}
        if zero_if_not_found is not None:
            fields["setZeroIfNotFound"] = "true" if zero_if_not_found else "false"
        response = await self._call(queue, RequestCode.QUERY_CONSUMER_OFFSET, fields)
        if response.code == ResponseCode.QUERY_NOT_FOUND:
            return None
        return int(response.ext_fields.get("offset") or 0)

    async def update_offset(self, queue: MessageQueue, offset: int) -> None:
        """Store ``offset`` as the group's offset of ``queue`` (UPDATE_CONSUMER_OFFSET) and wait for the reply."""
        await self._call(
            queue, RequestCode.UPDATE_CONSUMER_OFFSET, {"consumerGroup": self.group, "commitOffset": str(offset)}
        )

    async def max_offset(self, queue: MessageQueue) -> int:
        """The queue's next offset to be written (GET_MAX_OFFSET)."""
        return int((await self._call(queue, RequestCode.GET_MAX_OFFSET, {})).ext_fields.get("offset") or 0)

    async def min_offset(self, queue: MessageQueue) -> int:
        """The queue's first offset still stored (GET_MIN_OFFSET)."""
        return int((await self._call(queue, RequestCode.GET_MIN_OFFSET, {})).ext_fields.get("offset") or 0)

    async def search_offset(self, queue: MessageQueue, timestamp_ms: int) -> int:
        """The first offset stored at or after ``timestamp_ms`` (SEARCH_OFFSET_BY_TIMESTAMP)."""
        response = await self._call(queue, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, {"timestamp": str(timestamp_ms)})
        return int(response.ext_fields.get("offset") or 0)

    # -- the group -------------------------------------------------------------------------------------------

    async def consumer_ids(self, topic: str) -> list[str]:
        """The group's live members as a broker of ``topic`` knows them, sorted; ``[]`` when it knows none.

        Every broker hears every member's heartbeat, so any broker of the topic will do; the next is asked when
        one cannot be reached.

        Raises:
            NoRouteError: no name server knows the topic.
            ClientError: no broker of the topic answered (the last failure).
        """
        route = await self._routes.route(topic)
        last_error: ClientError | None = None
        for broker in route.broker_datas:
            addr = broker.master_addr or next(iter(broker.broker_addrs.values()), None)
            if addr is None:
                continue
            request = self.instance.make_request(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": self.group})
            try:
                response = await self._pool.invoke(addr, request, self._timeout_s)
            except ClientError as exc:
                last_error = exc
                continue
            if response.code != ResponseCode.SUCCESS:
                return []  # the Java broker answers SYSTEM_ERROR for a group without members
            data = loads_lenient(response.body) if response.body else {}
            ids = data.get("consumerIdList") if isinstance(data, dict) else None
            return sorted(str(client_id) for client_id in ids or [])
        if last_error is not None:
            raise last_error
        raise NoRouteError(topic, "the route names no broker address")

    async def lock(self, broker_name: str, topic: str, queues: Iterable[MessageQueue]) -> set[MessageQueue]:
        """LOCK_BATCH_MQ: the queues of ``broker_name`` this client now holds (renewed if it held them already)."""
        addr = await self.broker_addr(broker_name, topic)
        body = dumps_compact(self._lock_body(queues))
        request = self.instance.make_request(RequestCode.LOCK_BATCH_MQ, {}, body)
        response = await self._pool.invoke(addr, request, self._timeout_s)
        if response.code != ResponseCode.SUCCESS:
            raise BrokerError(response.code, response.remark, addr)
        data = loads_lenient(response.body) if response.body else {}
        locked = data.get("lockOKMQSet") if isinstance(data, dict) else None
        return {
            MessageQueue(str(item["topic"]), str(item["brokerName"]), int(item["queueId"]))
            for item in locked or []
            if isinstance(item, dict)
        }

    async def unlock(self, broker_name: str, topic: str, queues: Iterable[MessageQueue]) -> None:
        """UNLOCK_BATCH_MQ for queues of ``broker_name`` (the broker ignores queues locked by someone else)."""
        addr = await self.broker_addr(broker_name, topic)
        body = dumps_compact(self._lock_body(queues))
        request = self.instance.make_request(RequestCode.UNLOCK_BATCH_MQ, {}, body)
        response = await self._pool.invoke(addr, request, self._timeout_s)
        if response.code != ResponseCode.SUCCESS:
            raise BrokerError(response.code, response.remark, addr)

    def _lock_body(self, queues: Iterable[MessageQueue]) -> dict[str, object]:
        return {
            "consumerGroup": self.group,
            "clientId": self.instance.client_id,
            "onlyThisBroker": False,
            "mqSet": [{"brokerName": q.broker_name, "queueId": q.queue_id, "topic": q.topic} for q in queues],
        }

    async def send_back(
        self, message: ReceivedMessage, queue: MessageQueue, *, delay_level: int, max_reconsume_times: int
    ) -> None:
        """CONSUMER_SEND_MSG_BACK: have the broker store ``message`` again for a later retry (spec 3.10).

        Args:
            message: the failed message, as pulled (its commit-log offset names it).
            queue: the queue it was pulled from (its broker stored it).
            delay_level: 0 lets the broker choose (3 + reconsume times); -1 sends it to the DLQ at once.
            max_reconsume_times: past this many retries the broker sends it to ``%DLQ%<group>``.

        Raises:
            BrokerError, ConnectionFailedError, RequestTimeoutError, NoRouteError: it was not stored again.
        """
        addr = self._routes.find_broker_addr(queue.broker_name)
        if addr is None:
            addr = "{}:{}".format(*message.store_host)
        origin_topic = message.properties.get("RETRY_TOPIC") or message.topic
        fields = {
            "offset": str(message.commitlog_offset),
            "group": self.group,
            "delayLevel": str(delay_level),
            "originMsgId": message.msg_id,
            "originTopic": origin_topic,
            "unitMode": "false",
            "maxReconsumeTimes": str(max_reconsume_times),
        }
        request = self.instance.make_request(RequestCode.CONSUMER_SEND_MSG_BACK, fields)
        response = await self._pool.invoke(addr, request, self._timeout_s)
        if response.code != ResponseCode.SUCCESS:
            raise BrokerError(response.code, response.remark, addr)

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _call(self, queue: MessageQueue, code: int, fields: dict[str, str]) -> RemotingCommand:
        """A request about ``queue`` to its master; SUCCESS and QUERY_NOT_FOUND are returned, the rest raised."""
        addr = await self.broker_addr(queue.broker_name, queue.topic)
        fields.update(topic=queue.topic, queueId=str(queue.queue_id))
        response = await self._pool.invoke(addr, self.instance.make_request(code, fields), self._timeout_s)
        if response.code not in (ResponseCode.SUCCESS, ResponseCode.QUERY_NOT_FOUND):
            raise BrokerError(response.code, response.remark, addr)
        return response

    async def broker_addr(self, broker_name: str, topic: str, broker_id: int = MASTER_ID) -> str:
        """The address of ``broker_name`` (its ``broker_id``, else its master), asking for ``topic``'s route if needed.

        Raises:
            NoRouteError: no route names the broker.
        """
        routes = self._routes
        addr = routes.find_broker_addr(broker_name, broker_id)
        if addr is None and broker_id != MASTER_ID:
            addr = routes.find_broker_addr(broker_name, MASTER_ID)
        if addr is None:
            await routes.route(topic, refresh=True)
            addr = routes.find_broker_addr(broker_name, MASTER_ID)
        if addr is None:
            raise NoRouteError(topic, f"no address for broker {broker_name}")
        return addr


def restore_retry_topic(message: ReceivedMessage, retry_topic: str) -> ReceivedMessage:
    """A message pulled from ``%RETRY%<group>`` with its original topic back (Java's ``resetRetryAndNamespace``)."""
    if message.topic != retry_topic:
        return message
    original = message.properties.get("RETRY_TOPIC")
    if not original:
        return message
    return replace(message, topic=original)  # rare path: only retried messages pay for the copy


__all__ = [
    "EXPRESSION_SQL92",
    "EXPRESSION_TAG",
    "ConsumerApi",
    "PullResult",
    "PullStatus",
    "parse_tag_expression",
    "restore_retry_topic",
]
