"""SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320): RocketMQ's SendMessageProcessor.

The C++ client sends batches as code 10 with ``batch`` = "1"; Java's broker would read that as false, we
honour it (spec 2.1). The hot path does no per-message object work beyond the store's own.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

import orjson

from tidemq.broker.schedule import PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC
from tidemq.broker.timer import MAX_DELAY_MS, deliver_time_of
from tidemq.broker.topics import DLQ_GROUP_TOPIC_PREFIX, PERM_READ, PERM_WRITE, RETRY_GROUP_TOPIC_PREFIX
from tidemq.broker.transactions import HALF_TOPIC, half_properties
from tidemq.errors import IllegalNameError
from tidemq.gateways.remoting_broker.common import BadRequest, boolean, error, integer, text
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, SerializeType, plain_response_frame
from tidemq.store import record as rec
from tidemq.store.config import FlushDiskType
from tidemq.store.names import validate_topic
from tidemq.store.results import PutResult, PutStatus
from tidemq.store.tag_codes import SCHEDULE_TOPIC, delay_level_of

if TYPE_CHECKING:
    from tidemq.broker.broker import Broker
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway
    from tidemq.transport import RemotingChannel
    from tidemq.transport.remoting import Answer

V2_NAMES: Final = {
    "a": "producerGroup",
    "b": "topic",
    "c": "defaultTopic",
    "d": "defaultTopicQueueNums",
    "e": "queueId",
    "f": "sysFlag",
    "g": "bornTimestamp",
    "h": "flag",
    "i": "properties",
    "j": "reconsumeTimes",
    "k": "unitMode",
    "l": "maxReconsumeTimes",
    "m": "batch",
    "n": "brokerName",
}
"""TOTALSIZE, MAGICCODE, BODYCRC, FLAG, BODYLENGTH of one batch entry (MessageDecoder.encodeMessage)."""

_STATUS_CODES: Final = {
    PutStatus.PUT_OK: ResponseCode.SUCCESS,
    PutStatus.FLUSH_DISK_TIMEOUT: ResponseCode.FLUSH_DISK_TIMEOUT,
    PutStatus.SERVICE_NOT_AVAILABLE: ResponseCode.SERVICE_NOT_AVAILABLE,
    PutStatus.MESSAGE_ILLEGAL: ResponseCode.MESSAGE_ILLEGAL,
    PutStatus.PROPERTIES_SIZE_EXCEEDED: ResponseCode.MESSAGE_ILLEGAL,
    PutStatus.UNKNOWN_ERROR: ResponseCode.SYSTEM_ERROR,
}


_SEND_FIELDS_JSON: Final = (
    '{"msgId":"%s","queueId":"%d","queueOffset":"%d","MSG_REGION":"DefaultRegion","TRACE_ON":"true"}'
)
"""A send's answer fields, written once for both of :func:`_response`'s ways: formatted into the frame, or
parsed for the general encoder (a transaction's half, a ROCKETMQ-serialized request)."""


class SendKeys(NamedTuple):
    """The extFields names a send's header uses: SEND_MESSAGE spells them out, SEND_MESSAGE_V2 and
    SEND_BATCH_MESSAGE use one letter each (:data:`V2_NAMES`). Reading either directly, rather than renaming a
    V2 header's 14 fields first, saves a tenth of the broker's Python work per single send."""

    topic: str
    default_topic: str
    default_topic_queue_nums: str
    queue_id: str
    sys_flag: str
    born_timestamp: str
    flag: str
    properties: str
    reconsume_times: str
    max_reconsume_times: str
    batch: str


_NAMES_BY_FIELD: Final = {name: short for short, name in V2_NAMES.items()}
_FIELDS: Final = (
    "topic",
    "defaultTopic",
    "defaultTopicQueueNums",
    "queueId",
    "sysFlag",
    "bornTimestamp",
    "flag",
    "properties",
    "reconsumeTimes",
    "maxReconsumeTimes",
    "batch",
)
V1_KEYS: Final = SendKeys(*_FIELDS)
V2_KEYS: Final = SendKeys(*(_NAMES_BY_FIELD[name] for name in _FIELDS))


def send_keys(request: RemotingCommand) -> SendKeys:
    """The names ``request``'s header uses. A V2 or batch request spelled out in full (older tools, tests) is
    read by its full names, as the broker always has."""
    if request.code != RequestCode.SEND_MESSAGE and "b" in request.ext_fields:
        return V2_KEYS
    return V1_KEYS


@functools.lru_cache(maxsize=4096)
def _topic_illegal(topic: str) -> str | None:
    """Why ``topic`` is not a legal name, or None; remembered, as a broker sees the same few topics again."""
    try:
        validate_topic(topic)
    except IllegalNameError as exc:
        return str(exc)
    return None


def _numbers(fields: Mapping[str, str], keys: SendKeys) -> tuple[int, int, int, int, int]:
    """queueId (-1 when absent), sysFlag, bornTimestamp, reconsumeTimes and flag (0 when absent or empty).

    Converted in one go, with :func:`integer` only to word the error for a field that is not a number: five
    calls of it were 4% of the broker's CPU per single send.
    """
    get = fields.get
    try:
        return (
            int(get(keys.queue_id) or -1),
            int(get(keys.sys_flag) or 0),
            int(get(keys.born_timestamp) or 0),
            int(get(keys.reconsume_times) or 0),
            int(get(keys.flag) or 0),
        )
    except ValueError:
        return (
            integer(fields, keys.queue_id, -1, field_name="queueId"),
            integer(fields, keys.sys_flag, 0, field_name="sysFlag"),
            integer(fields, keys.born_timestamp, 0, field_name="bornTimestamp"),
            integer(fields, keys.reconsume_times, 0, field_name="reconsumeTimes"),
            integer(fields, keys.flag, 0, field_name="flag"),
        )


class PreparedSend(NamedTuple):
    """A send checked and routed (retry or dead letter, half message, timer, delay level), ready to append."""

    topic: str
    queue_id: int
    properties: str
    sys_flag: int
    born_timestamp: int
    reconsume_times: int
    user_flag: int
    is_batch: bool
    reply_queue_id: int
    """The queue the sender asked for, which the answer names (a delayed message is stored elsewhere)."""
    transaction_id: str


def handle_send(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> Answer | Awaitable[Answer]:
    """One send, whole: :func:`prepare_send`, :func:`append_send`, :func:`finish_send`."""
    prepared = prepare_send(gateway, channel, request)
    if isinstance(prepared, RemotingCommand):
        return prepared
    return finish_send(gateway, request, prepared, append_send(gateway, channel, request, prepared))


def handle_sends(
    gateway: BrokerGateway, channel: RemotingChannel, requests: Sequence[RemotingCommand]
) -> list[Answer | Awaitable[Answer] | Exception | None]:
    """A run of sends from one read, in three passes: prepare every send, append every prepared one, then
    answer every one. The appends happen in the requests' order, as :func:`handle_send` one after the other
    would do them; the passes keep each step's code hot in the CPU's caches (about a sixth of the broker's CPU
    per sync send, ``bench/broker_read_bench.py``). Consecutive single sends are stored by one store call
    (:func:`_store`), which took another sixth off; a batch send between them is stored alone, in its
    place. A request that fails gets its exception in its place: a
    :class:`~tidemq.gateways.remoting_broker.common.BadRequest` its answer, as :meth:`BrokerGateway.handle`
    words it. A store call that raises (refusals are results, so this is a bug) fails every send it held."""
    results: list[Answer | Awaitable[Answer] | Exception | None] = []
    ready: list[tuple[int, RemotingCommand, PreparedSend]] = []
    for request in requests:
        try:
            prepared = prepare_send(gateway, channel, request)
        except BadRequest as exc:
            results.append(error(request, exc.code, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001  # passed on: the transport logs and answers it
            results.append(exc)
            continue
        if isinstance(prepared, RemotingCommand):
            results.append(prepared)
        else:
            ready.append((len(results), request, prepared))
            results.append(None)  # its answer, after the append pass
    for (index, request, prepared), stored in zip(ready, _store(gateway, channel, ready), strict=True):
        if isinstance(stored, Exception):
            results[index] = stored
            continue
        try:
            results[index] = finish_send(gateway, request, prepared, stored)
        except Exception as exc:  # noqa: BLE001  # passed on, as above
            results[index] = exc
    return results


def _store(
    gateway: BrokerGateway, channel: RemotingChannel, ready: list[tuple[int, RemotingCommand, PreparedSend]]
) -> list[PutResult | Exception]:
    """Each prepared send's put result, or the exception storing it raised, in order: consecutive single sends
    in one store call (:meth:`~tidemq.store.message_store.MessageStore.append_singles`), a batch send alone, in
    its place."""
    stored: list[PutResult | Exception] = []
    singles: list[tuple[RemotingCommand, PreparedSend]] = []
    for _, request, prepared in ready:
        if not prepared.is_batch:
            singles.append((request, prepared))
            continue
        stored.extend(_store_singles(gateway, channel, singles))  # the singles before it, then the batch
        singles = []
        try:
            stored.append(append_send(gateway, channel, request, prepared))
        except Exception as exc:  # noqa: BLE001  # passed on: the transport logs and answers it
            stored.append(exc)
    stored.extend(_store_singles(gateway, channel, singles))
    return stored


def _store_singles(
    gateway: BrokerGateway, channel: RemotingChannel, singles: list[tuple[RemotingCommand, PreparedSend]]
) -> Sequence[PutResult | Exception]:
    """The put results of single sends stored by one store call; the call's exception for each, if it raised."""
    if not singles:
        return ()
    messages = [
        (
            prepared.topic,
            prepared.queue_id,
            bytes(request.body),
            prepared.properties,
            prepared.user_flag,
            prepared.sys_flag,
            prepared.born_timestamp,
            prepared.reconsume_times,
        )
        for request, prepared in singles
    ]
    try:
        return gateway.broker.store.append_singles(messages, gateway.host_of(channel))
    except Exception as exc:  # noqa: BLE001  # every send of the call fails with it
        return [exc] * len(singles)


def prepare_send(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> PreparedSend | RemotingCommand:
    """Check a send (topic, permissions, queue) and route it; an error answer when it is refused.

    Raises:
        BadRequest: a header field is missing or not a number.
    """
    broker = gateway.broker
    fields = request.ext_fields
    keys = send_keys(request)
    topic = text(fields, keys.topic, field_name="topic")
    illegal = _topic_illegal(topic)
    if illegal is not None:
        return error(request, ResponseCode.SYSTEM_ERROR, illegal)
    if not broker.config.broker_permission & PERM_WRITE:
        return error(
            request, ResponseCode.NO_PERMISSION, f"the broker[{broker.config.broker_ip1}] sending message is forbidden"
        )
    topic_config = broker.topics.get(topic)
    if topic_config is None:
        if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            topic_config = broker.topics.create_system_like(topic, 1, PERM_READ | PERM_WRITE)
        else:
            default_topic = fields.get(keys.default_topic) or ""
            topic_config = broker.topics.create_in_send(
                topic,
                default_topic,
                integer(fields, keys.default_topic_queue_nums, 4, field_name="defaultTopicQueueNums"),
            )
        if topic_config is None:
            return error(request, ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist, apply first please!")
    if not topic_config.is_writable:
        return error(request, ResponseCode.NO_PERMISSION, f"the topic[{topic}] sending message is forbidden")
    queue_id, sys_flag, born_timestamp, reconsume_times, user_flag = _numbers(fields, keys)
    if queue_id < 0:
        queue_id = random.randrange(topic_config.write_queue_nums)  # noqa: S311  # load spreading, not security
    elif queue_id >= max(topic_config.write_queue_nums, topic_config.read_queue_nums):
        return error(
            request,
            ResponseCode.SYSTEM_ERROR,
            f"request queueId[{queue_id}] is illegal, topic {topic} has {topic_config.write_queue_nums} write queues",
        )
    is_batch = request.code == RequestCode.SEND_BATCH_MESSAGE or boolean(fields, keys.batch)
    properties = fields.get(keys.properties, "")
    reply_queue_id = queue_id
    transaction_id = ""
    if not is_batch and topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        dead = _retry_or_dead_letter(broker, request, fields, keys, topic, properties)
        if isinstance(dead, RemotingCommand):
            return dead
        if dead is not None:
            topic, queue_id, properties = dead
    if not is_batch and sys_flag & rec.SYSFLAG_TRANSACTION_MASK == rec.SYSFLAG_TRANSACTION_PREPARED:
        # A transaction's half message: kept aside in RMQ_SYS_TRANS_HALF_TOPIC until END_TRANSACTION.
        properties = half_properties(properties, topic, queue_id)
        topic, queue_id = HALF_TOPIC, 0
        transaction_id = rec.find_property(properties, rec.PROPERTY_UNIQ_KEY) or ""
    elif not is_batch and ("TIMER_" in properties or "__STARTDELIVERTIME" in properties):
        timed = _timer(broker, topic, queue_id, properties)
        if isinstance(timed, str):
            return error(request, ResponseCode.MESSAGE_ILLEGAL, timed)
        topic, queue_id, properties = timed
    elif not is_batch and "DELAY\x01" in properties:
        topic, queue_id, properties = _schedule(broker, topic, queue_id, properties, sys_flag)
    return PreparedSend(
        topic,
        queue_id,
        properties,
        sys_flag,
        born_timestamp,
        reconsume_times,
        user_flag,
        is_batch,
        reply_queue_id,
        transaction_id,
    )


def append_send(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand, prepared: PreparedSend
) -> PutResult:
    """Store a prepared send's message (or batch)."""
    store = gateway.broker.store
    if prepared.is_batch:
        return store.append_batch(
            prepared.topic,
            prepared.queue_id,
            request.body,
            sys_flag=prepared.sys_flag,
            born_timestamp=prepared.born_timestamp,
            born_host=gateway.host_of(channel),
            reconsume_times=prepared.reconsume_times,
        )
    return store.append_one(
        prepared.topic,
        prepared.queue_id,
        bytes(request.body),
        prepared.properties,
        flag=prepared.user_flag,
        sys_flag=prepared.sys_flag,
        born_timestamp=prepared.born_timestamp,
        born_host=gateway.host_of(channel),
        reconsume_times=prepared.reconsume_times,
    )


def finish_send(
    gateway: BrokerGateway, request: RemotingCommand, prepared: PreparedSend, result: PutResult
) -> Answer | Awaitable[Answer]:
    """Count a stored send and answer it: at once, or once durable under SYNC_FLUSH (unless WAIT=false)."""
    broker = gateway.broker
    if result.status is PutStatus.PUT_OK:
        broker.stats.record_put(prepared.topic, result.message_count)
        if broker.config.flush_disk_type is FlushDiskType.SYNC_FLUSH and "WAIT\x01false" not in prepared.properties:
            return _respond_when_durable(gateway, request, result, prepared.reply_queue_id, prepared.transaction_id)
    return _response(gateway, request, result, prepared.reply_queue_id, prepared.transaction_id)


async def _respond_when_durable(
    gateway: BrokerGateway, request: RemotingCommand, result: PutResult, queue_id: int, transaction_id: str
) -> Answer:
    timeout_s = gateway.broker.config.sync_flush_timeout / 1000
    if not await gateway.broker.durable.wait(result.end_offset, timeout_s):
        result = PutResult(
            PutStatus.FLUSH_DISK_TIMEOUT,
            result.physical_offset,
            result.queue_offset,
            result.message_count,
            physical_offsets=result.physical_offsets,
        )
    return _response(gateway, request, result, queue_id, transaction_id)


def _timer(broker: Broker, topic: str, queue_id: int, properties: str) -> tuple[str, int, str] | str:
    """A message with a delivery time (TIMER_DELIVER_MS, TIMER_DELAY_SEC/MS, __STARTDELIVERTIME) waits in the
    timer topic; one already due is stored as is. Returns an error text for a bad or too distant time."""
    pairs = rec.parse_properties(properties)
    now_ms = int(time.time() * 1000)
    try:
        deliver_ms = deliver_time_of(pairs, now_ms)
    except ValueError:
        return "timer message illegal: the delivery time is not a number"
    if deliver_ms is None or deliver_ms <= now_ms or broker.timer is None:
        return topic, queue_id, properties
    if deliver_ms - now_ms > MAX_DELAY_MS:
        return f"timer message illegal: the delay is over the maximum of {MAX_DELAY_MS // 1000} s"
    return broker.timer.schedule(pairs, deliver_ms, now_ms, topic, queue_id)


def _retry_or_dead_letter(
    broker: Broker, request: RemotingCommand, fields: Mapping[str, str], keys: SendKeys, topic: str, properties: str
) -> RemotingCommand | tuple[str, int, str] | None:
    """A plain send to ``%RETRY%<group>`` (RocketMQ's handleRetryAndDLQ): its ``reconsumeTimes`` header at or
    above ``maxReconsumeTimes`` (the header's, else the group's retryMaxTimes) sends it to ``%DLQ%<group>``
    instead, undelayed. Java's orderly consumer gives up on a message this way (sendMessageBack through its
    producer), as does a concurrent one whose CONSUMER_SEND_MSG_BACK failed. Returns an error response, the
    dead-letter destination (topic, queue, properties), or None to store the message as sent.
    """
    group = topic[len(RETRY_GROUP_TOPIC_PREFIX) :]
    group_config = broker.subscription_groups.find(group)
    if group_config is None:
        return error(request, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, f"subscription group not exist, {group}")
    max_times = integer(fields, keys.max_reconsume_times, group_config.retry_max_times, field_name="maxReconsumeTimes")
    if integer(fields, keys.reconsume_times, 0, field_name="reconsumeTimes") < max_times:
        return None
    dlq = broker.topics.create_system_like(DLQ_GROUP_TOPIC_PREFIX + group, 1, PERM_WRITE)
    if "DELAY\x01" in properties:
        pairs = rec.parse_properties(properties)
        pairs.pop(rec.PROPERTY_DELAY, None)
        properties = rec.encode_properties(pairs)
    return dlq.topic_name, 0, properties


def _schedule(broker: Broker, topic: str, queue_id: int, properties: str, sys_flag: int) -> tuple[str, int, str]:
    """A message with DELAY=n goes to SCHEDULE_TOPIC_XXXX queue n-1, remembering its real topic and queue
    (RocketMQ's CommitLog.putMessage); levels above the highest are clamped. Transaction halves are not delayed.
    """
    levels = broker.store.config.delay_levels_ms
    level = delay_level_of(properties, len(levels))
    if level <= 0 or sys_flag & rec.SYSFLAG_TRANSACTION_MASK in (
        rec.SYSFLAG_TRANSACTION_PREPARED,
        rec.SYSFLAG_TRANSACTION_ROLLBACK,
    ):
        return topic, queue_id, properties
    pairs = rec.parse_properties(properties)
    pairs[rec.PROPERTY_DELAY] = str(level)
    pairs[PROPERTY_REAL_TOPIC] = topic
    pairs[PROPERTY_REAL_QUEUE_ID] = str(queue_id)
    return SCHEDULE_TOPIC, level - 1, rec.encode_properties(pairs)


def _response(
    gateway: BrokerGateway, request: RemotingCommand, result: PutResult, queue_id: int, transaction_id: str = ""
) -> Answer:
    """SendMessageResponseHeader: as an encoded frame in the common case (JSON, not a transaction's half)."""
    code = _STATUS_CODES[result.status]
    if result.status not in (PutStatus.PUT_OK, PutStatus.FLUSH_DISK_TIMEOUT):
        return error(request, code, result.error or result.status.value)
    host, port = gateway.store_host
    offsets = result.physical_offsets
    msg_id = rec.offset_msg_id(host, port, offsets[0]) if len(offsets) == 1 else rec.offset_msg_ids(host, port, offsets)
    fields_json = _SEND_FIELDS_JSON % (msg_id, queue_id, result.queue_offset)
    if not transaction_id and request.serialize_type == SerializeType.JSON:
        # Every value is hex or a number: no escaping, so the frame is formatted directly.
        return plain_response_frame(code, request.opaque, fields_json)
    fields: dict[str, str] = orjson.loads(fields_json)
    if transaction_id:
        fields["transactionId"] = transaction_id
    # Built directly: make_response would copy the fields just made.
    return RemotingCommand(
        code, opaque=request.opaque, flag=1, ext_fields=fields, serialize_type=request.serialize_type
    )
