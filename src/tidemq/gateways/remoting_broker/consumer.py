"""Client and consumer-group requests: HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP,
QUERY/UPDATE_CONSUMER_OFFSET, LOCK/UNLOCK_BATCH_MQ, CONSUMER_SEND_MSG_BACK.

Heartbeat bodies differ by client: Java writes enum names, the C++ client ordinals and string subVersions,
and zeros in codeSet (spec 3.4) — tag hashes are always recomputed here from the tags.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from tidemq.broker.clients import ClientInfo, Subscription, make_subscription
from tidemq.broker.filters import build_filter
from tidemq.broker.schedule import PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC
from tidemq.broker.sql_filter import SqlFilterError
from tidemq.broker.topics import DLQ_GROUP_TOPIC_PREFIX, PERM_READ, PERM_WRITE, RETRY_GROUP_TOPIC_PREFIX
from tidemq.gateways.remoting_broker.common import BadRequest, error, integer, ok, text
from tidemq.protocol.remoting import RemotingCommand, ResponseCode, dumps_compact, loads_lenient
from tidemq.store import record as rec
from tidemq.store.tag_codes import SCHEDULE_TOPIC

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway
    from tidemq.transport import RemotingChannel

log = logging.getLogger(__name__)

CONSUME_TYPES: Final = ("CONSUME_ACTIVELY", "CONSUME_PASSIVELY", "CONSUME_POP")
MESSAGE_MODELS: Final = ("BROADCASTING", "CLUSTERING")
CONSUME_FROM: Final = (
    "CONSUME_FROM_LAST_OFFSET",
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET",
    "CONSUME_FROM_MAX_OFFSET",
    "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP",
)
LOCK_EXPIRY_S: Final = 60.0
"""A queue lock lapses 60 s after its last renewal (rebalanceLockMaxLiveTime)."""


def _enum(value: Any, names: tuple[str, ...], default: str) -> str:
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        if value.isdigit() and int(value) < len(names):
            return names[int(value)]
        if value in names:
            return value
    return default


def _json_body(request: RemotingCommand) -> dict[str, Any]:
    try:
        data = loads_lenient(bytes(request.body))
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body is not a JSON object")
    return data


def handle_heartbeat(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    broker = gateway.broker
    data = _json_body(request)
    client_id = str(data.get("clientID") or "")
    if not client_id:
        return error(request, ResponseCode.SYSTEM_ERROR, "the heartbeat has no clientID")
    now_ms = int(time.time() * 1000)
    for consumer in data.get("consumerDataSet") or []:
        group = str(consumer.get("groupName") or "")
        if not group:
            continue
        group_config = broker.subscription_groups.find(group)
        model = _enum(consumer.get("messageModel"), MESSAGE_MODELS, "CLUSTERING")
        if group_config is not None and model == "CLUSTERING":
            broker.topics.create_system_like(
                RETRY_GROUP_TOPIC_PREFIX + group, group_config.retry_queue_nums, PERM_READ | PERM_WRITE
            )
        subscriptions = _subscriptions(group, consumer.get("subscriptionDataSet") or [])
        info = ClientInfo(client_id, channel, channel.remote_address, request.language, request.version, now_ms)
        broker.consumers.register(
            group,
            info,
            consume_type=_enum(consumer.get("consumeType"), CONSUME_TYPES, "CONSUME_PASSIVELY"),
            message_model=model,
            consume_from_where=_enum(consumer.get("consumeFromWhere"), CONSUME_FROM, CONSUME_FROM[0]),
            subscriptions=subscriptions,
            notify=broker.config.notify_consumer_ids_changed_enable,
        )
    for producer in data.get("producerDataSet") or []:
        group = str(producer.get("groupName") or "")
        if group:
            broker.producers.register(
                group, ClientInfo(client_id, channel, channel.remote_address, request.language, request.version, now_ms)
            )
    return ok(request)


def _subscriptions(group: str, entries: list[Any]) -> list[Subscription]:
    """Heartbeat subscriptions; one whose SQL92 does not compile is left out (its pulls then get
    SUBSCRIPTION_NOT_EXIST) and logged, as the client was told at CHECK_CLIENT_CONFIG."""
    found: list[Subscription] = []
    for sub in entries:
        if not isinstance(sub, dict) or not sub.get("topic"):
            continue
        try:
            found.append(
                make_subscription(
                    str(sub["topic"]),
                    str(sub.get("subString") or "*"),
                    str(sub.get("expressionType") or "TAG"),
                    int(sub.get("subVersion") or 0),
                )
            )
        except (SqlFilterError, ValueError) as exc:
            log.warning("group %s: ignoring the subscription to %s: %s", group, sub.get("topic"), exc)
    return found


def handle_check_client_config(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """CHECK_CLIENT_CONFIG (46): the Java client validates a SQL92 subscription before it starts."""
    data = _json_body(request)
    subscription = data.get("subscriptionData") or {}
    kind = str(subscription.get("expressionType") or "TAG").upper()
    if kind == "TAG":
        return ok(request)
    if kind != "SQL92":
        return error(request, ResponseCode.SYSTEM_ERROR, f"the expression type {kind} is not supported")
    if not gateway.broker.config.enable_property_filter:
        return error(
            request, ResponseCode.SYSTEM_ERROR, "The broker does not support consumer to filter message by SQL92"
        )
    try:
        build_filter(str(subscription.get("subString") or ""), kind)
    except SqlFilterError as exc:
        return error(request, ResponseCode.SUBSCRIPTION_PARSE_FAILED, f"The SQL expression is illegal: {exc}")
    return ok(request)


def handle_unregister_client(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    client_id = text(fields, "clientID")
    if fields.get("producerGroup"):
        gateway.broker.producers.unregister(fields["producerGroup"], client_id)
    if fields.get("consumerGroup"):
        gateway.broker.consumers.unregister(fields["consumerGroup"], client_id)
    return ok(request)


def handle_get_consumer_list(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    group = text(request.ext_fields, "consumerGroup")
    info = gateway.broker.consumers.find(group)
    if info is None or not info.clients:
        return error(request, ResponseCode.SYSTEM_ERROR, f"no consumer for this group, {group}")
    return ok(request, body=dumps_compact({"consumerIdList": info.client_ids()}))


def handle_query_consumer_offset(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    group, topic, queue_id = text(fields, "consumerGroup"), text(fields, "topic"), integer(fields, "queueId")
    offset = gateway.broker.offsets.query(group, topic, queue_id)
    if offset >= 0:
        return ok(request, {"offset": str(offset)})
    # RocketMQ: a group that never committed on a queue still starting at 0 begins at 0; else the client
    # decides from its consumeFromWhere.
    if fields.get("setZeroIfNotFound", "").lower() == "false":
        # RocketMQ 5: the client asked not to be placed at 0; it applies its consumeFromWhere instead.
        return error(
            request, ResponseCode.QUERY_NOT_FOUND, "Not found, do not set to zero, maybe this group boot first"
        )
    if gateway.broker.store.get_min_offset(topic, queue_id) <= 0 or fields.get("setZeroIfNotFound") == "true":
        return ok(request, {"offset": "0"})
    return error(
        request, ResponseCode.QUERY_NOT_FOUND, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first"
    )


def handle_update_consumer_offset(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    offset = integer(fields, "commitOffset")
    if offset >= 0:
        gateway.broker.offsets.commit(
            text(fields, "consumerGroup"), text(fields, "topic"), integer(fields, "queueId"), offset
        )
    return ok(request)


def _queues(data: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [
        (str(mq.get("topic")), str(mq.get("brokerName")), int(mq.get("queueId", 0))) for mq in data.get("mqSet") or []
    ]


def handle_lock_batch(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    data = _json_body(request)
    group, client_id = str(data.get("consumerGroup") or ""), str(data.get("clientId") or "")
    if not group or not client_id:
        return error(request, ResponseCode.SYSTEM_ERROR, "the lock request lacks consumerGroup or clientId")
    locks = gateway.broker.locks
    now = time.monotonic()
    locked: list[dict[str, object]] = []
    for topic, broker_name, queue_id in _queues(data):
        key = (group, topic, broker_name, queue_id)
        holder = locks.get(key)
        if holder is None or holder[0] == client_id or now - holder[1] > LOCK_EXPIRY_S:
            locks[key] = (client_id, now)
            locked.append({"brokerName": broker_name, "queueId": queue_id, "topic": topic})
    return ok(request, body=dumps_compact({"lockOKMQSet": locked}))


def handle_unlock_batch(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    data = _json_body(request)
    group, client_id = str(data.get("consumerGroup") or ""), str(data.get("clientId") or "")
    locks = gateway.broker.locks
    for topic, broker_name, queue_id in _queues(data):
        key = (group, topic, broker_name, queue_id)
        holder = locks.get(key)
        if holder is not None and holder[0] == client_id:
            del locks[key]
    return ok(request)


def handle_send_back(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    """CONSUMER_SEND_MSG_BACK: re-store a failed message for a later retry (RocketMQ's sendMessageBack).

    The copy goes to ``%RETRY%group`` after a delay (level 3 + reconsumeTimes unless the client names one:
    10 s, 30 s, 1 min ... 2 h), through SCHEDULE_TOPIC_XXXX; past maxReconsumeTimes (16), or when the client
    asks with a negative level, it goes to ``%DLQ%group`` (write-only) at once. The original topic and id stay
    in RETRY_TOPIC and ORIGIN_MESSAGE_ID (the first record's offset id).
    """
    broker = gateway.broker
    fields = request.ext_fields
    group = text(fields, "group")
    physical = integer(fields, "offset")
    group_config = broker.subscription_groups.find(group)
    if group_config is None:
        return error(request, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, f"subscription group not exist, {group}")
    data = broker.store.read_record(physical)
    if data is None:
        return error(request, ResponseCode.SYSTEM_ERROR, f"look message by offset failed, {physical}")
    record = rec.decode_record(data)
    max_times = integer(fields, "maxReconsumeTimes", group_config.retry_max_times)
    delay_level = integer(fields, "delayLevel", 0)
    properties = dict(record.properties)
    properties.setdefault("RETRY_TOPIC", record.topic)
    # As Apache's broker (every version): the record's own ORIGIN_MESSAGE_ID, else its offset id; the header's
    # originMsgId is not used (the Java client sends its UNIQ_KEY there, the C++ client nothing).
    properties.setdefault("ORIGIN_MESSAGE_ID", rec.offset_msg_id(*gateway.store_host, record.physical_offset))
    properties.pop(rec.PROPERTY_DELAY, None)
    if record.reconsume_times >= max_times or delay_level < 0:
        target = broker.topics.create_system_like(DLQ_GROUP_TOPIC_PREFIX + group, 1, PERM_WRITE)
        topic, queue_id = target.topic_name, 0
    else:
        retry = broker.topics.create_system_like(
            RETRY_GROUP_TOPIC_PREFIX + group, group_config.retry_queue_nums, PERM_READ | PERM_WRITE
        )
        levels = broker.store.config.delay_levels_ms
        level = min(delay_level or 3 + record.reconsume_times, len(levels))
        properties[rec.PROPERTY_DELAY] = str(level)
        properties[PROPERTY_REAL_TOPIC] = retry.topic_name
        properties[PROPERTY_REAL_QUEUE_ID] = "0"
        topic, queue_id = SCHEDULE_TOPIC, level - 1
    result = broker.store.append_messages(
        topic,
        queue_id,
        [(record.body, rec.encode_properties(properties), record.flag)],
        sys_flag=record.sys_flag,
        born_timestamp=record.born_timestamp,
        born_host=record.born_host,
        reconsume_times=record.reconsume_times + 1,
    )
    if not result.is_ok:
        return error(request, ResponseCode.SYSTEM_ERROR, result.error or result.status.value)
    return ok(request)
