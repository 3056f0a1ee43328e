"""Requests that reach consumers through the broker (RocketMQ's ``Broker2Client`` and the consumer half of its
``AdminBrokerProcessor``): what ``mqadmin consumerStatus``, ``consumerProgress -s``, ``queryMsgById -g -d``,
``resetOffsetByTime`` and ``getConsumerStatus`` rely on.

* GET_CONSUMER_RUNNING_INFO (307) and CONSUME_MESSAGE_DIRECTLY (309), from an admin tool: forwarded to the named
  client over its own connection (a request with a fresh opaque, :data:`CALL_CLIENT_TIMEOUT_S` to answer) and
  the client's answer relayed unchanged. For 309 the broker first puts the stored record of ``msgId`` (an offset
  message id) into the body and its ``brokerName`` into the header, as Apache does.
* INVOKE_BROKER_TO_RESET_OFFSET (222): per queue the offset of the first message stored at or after
  ``timestamp`` (-1: the max offset); ``isForce=false`` only moves offsets back (Apache 4.x ``Broker2Client``).
  The broker commits the new offsets itself (Apache 5.x ``assignResetOffset``), so a group with no consumer
  online is reset too, and sends RESET_CONSUMER_CLIENT_OFFSET (220, oneway) to each online member, which drops
  its cached messages and pulls again from there (Apache 4.x; 5.x clients still honour it). The answer is
  ResetOffsetBody ``{"offsetTable":{{MessageQueue}:offset}}``.
* INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223): GET_CONSUMER_STATUS_FROM_CLIENT (221) to each member (or the one
  named by ``clientAddr``, which Apache compares with the client id), answered as GetConsumerStatusBody
  ``{"consumerTable":{clientId:{{MessageQueue}:offset}}}``; members that fail or time out are left out.

Errors are answered, never dropped: a missing field, a client not online (SYSTEM_ERROR "The Consumer <group>
<clientId> not online", Apache's text), a client that does not answer in time (CONSUME_MSG_TIMEOUT), a
connection that closes first (SYSTEM_ERROR). Waiting for a client runs as a task owned by the admin tool's
channel, so it holds up nothing else on either connection.

Deviations from Apache, on purpose: a queue the group never committed is reset like the others (4.x refuses
the whole request, "THe consumer group not exist"); the reset body sent to a C++ client uses the list form
(ResetOffsetBodyForC) when that client is CPP, where Apache picks the form by the admin request's language.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from tidemq.broker.clients import ClientInfo
from tidemq.errors import RemoteProtocolError
from tidemq.gateways.remoting_broker.common import boolean, error, integer, ok, text
from tidemq.protocol.remoting import (
    RemotingCommand,
    RequestCode,
    ResponseCode,
    dumps_compact,
    loads_lenient,
    message_queue_key,
)
from tidemq.store import record as rec
from tidemq.transport import RemotingChannel, next_opaque
from tidemq.transport.remoting import HandlerResult

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway

log = logging.getLogger(__name__)

CALL_CLIENT_TIMEOUT_S: Final = 10.0
"""How long a forwarded 307/309 may take (Apache's ``Broker2Client.callClient``: 10 s). mqadmin itself waits 5 s
for running info and 15 s for consume-directly; the gateway's ``client_call_timeout_s`` overrides this."""
CONSUMER_STATUS_TIMEOUT_S: Final = 5.0
"""Per member for GET_CONSUMER_STATUS_FROM_CLIENT (Apache's ``getConsumeStatus``: 5 s)."""

Handler = Callable[["BrokerGateway", RemotingChannel, RemotingCommand], HandlerResult]


# ---------------------------------------------------------------------------------------------------------------------
# Forwarded calls: 307 and 309


def _client_channel(gateway: BrokerGateway, group: str, client_id: str) -> RemotingChannel | None:
    """The open connection of ``client_id`` as a consumer of ``group`` (its latest heartbeat's), if any."""
    info = gateway.broker.consumers.find(group)
    client = info.clients.get(client_id) if info is not None else None
    if client is None or not isinstance(client.channel, RemotingChannel) or client.channel.is_closed:
        return None
    return client.channel


def _call_consumer(
    gateway: BrokerGateway,
    request: RemotingCommand,
    fields: Mapping[str, str],
    body: bytes | memoryview,
) -> HandlerResult:
    """Forward ``request``'s code with ``fields`` and ``body`` to the client named in the header; relay the answer."""
    group, client_id = text(fields, "consumerGroup"), text(fields, "clientId")
    target = _client_channel(gateway, group, client_id)
    if target is None:
        return error(request, ResponseCode.SYSTEM_ERROR, f"The Consumer <{group}> <{client_id}> not online")
    forward = RemotingCommand.request(request.code, fields, body, opaque=next_opaque())
    return _relay(request, target, forward, group, client_id, gateway.client_call_timeout_s)


async def _relay(
    request: RemotingCommand,
    channel: RemotingChannel,
    forward: RemotingCommand,
    group: str,
    client_id: str,
    timeout_s: float,
) -> RemotingCommand:
    try:
        answer = await channel.request(forward, timeout_s)
    except TimeoutError:
        log.info("consumer %s of %s did not answer request code %d in %s s", client_id, group, request.code, timeout_s)
        return error(
            request,
            ResponseCode.CONSUME_MSG_TIMEOUT,
            f"consumer <{group}> <{client_id}> Timeout: no answer within {timeout_s:g} s",
        )
    except ConnectionError as exc:
        return error(request, ResponseCode.SYSTEM_ERROR, f"invoke consumer <{group}> <{client_id}> Exception: {exc}")
    return request.make_response(answer.code, answer.remark, answer.ext_fields, answer.body)


def handle_get_consumer_running_info(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> HandlerResult:
    """GET_CONSUMER_RUNNING_INFO (307): consumerGroup, clientId, jstackEnable → the client's ConsumerRunningInfo."""
    return _call_consumer(gateway, request, request.ext_fields, request.body)


def handle_consume_message_directly(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> HandlerResult:
    """CONSUME_MESSAGE_DIRECTLY (309): consumerGroup, clientId, msgId (an offset message id) → the client's
    ConsumeMessageDirectlyResult. The client gets the stored record as the body."""
    broker = gateway.broker
    fields = dict(request.ext_fields)
    text(fields, "consumerGroup"), text(fields, "clientId")  # missing ones are refused before the store is read
    msg_id = text(fields, "msgId")
    try:
        _, _, physical_offset = rec.decode_offset_msg_id(msg_id)
    except ValueError:
        return error(request, ResponseCode.SYSTEM_ERROR, f"the msgId {msg_id[:64]!r} is not an offset message id")
    record = broker.store.read_record(physical_offset)
    if record is None:
        return error(request, ResponseCode.SYSTEM_ERROR, f"can not find message by the offset, {physical_offset}")
    fields["brokerName"] = broker.config.broker_name
    topic_config = broker.topics.get(fields.get("topic") or "")
    if topic_config is not None:
        fields["topicSysFlag"] = str(topic_config.topic_sys_flag)
    group_config = broker.subscription_groups.groups.get(fields["consumerGroup"])
    if group_config is not None:
        fields["groupSysFlag"] = str(group_config.to_json().get("groupSysFlag", 0))
    return _call_consumer(gateway, request, fields, record)


# ---------------------------------------------------------------------------------------------------------------------
# Offset reset: 222, and 220 to each member


def _reset_targets(
    gateway: BrokerGateway, topic: str, group: str, fields: Mapping[str, str], queue_ids: list[int]
) -> dict[int, int] | str:
    """Per queue the offset to reset to, or why not (the remark of an error answer)."""
    broker = gateway.broker
    store = broker.store
    timestamp = integer(fields, "timestamp")
    is_force = boolean(fields, "isForce", True)
    explicit = integer(fields, "offset", -1)
    targets: dict[int, int] = {}
    for queue_id in queue_ids:
        if explicit >= 0 and len(queue_ids) == 1:  # 5.x: an exact offset for one queue
            low, high = store.get_min_offset(topic, queue_id), store.get_max_offset(topic, queue_id)
            if explicit < low or explicit > high:
                return f"Target offset {explicit} not in consume queue range [{low}-{high}]"
            targets[queue_id] = explicit
            continue
        if timestamp == -1:
            offset = store.get_max_offset(topic, queue_id)
        else:
            offset = store.get_offset_by_time(topic, queue_id, timestamp)
        offset = max(offset, 0)
        committed = broker.offsets.query(group, topic, queue_id)
        # Apache 4.x: without force an offset only moves back; the committed one stays when it is lower.
        targets[queue_id] = offset if is_force or committed < 0 or offset < committed else committed
    return targets


def _is_known_group(gateway: BrokerGateway, group: str, topic: str) -> bool:
    broker = gateway.broker
    return (
        group in broker.subscription_groups.groups
        or broker.consumers.find(group) is not None
        or topic in broker.offsets.topics_of_group(group)
    )


def handle_invoke_reset_offset(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """INVOKE_BROKER_TO_RESET_OFFSET (222): topic, group, timestamp, isForce (+ 5.x queueId, offset)."""
    broker = gateway.broker
    fields = request.ext_fields
    topic, group = text(fields, "topic"), text(fields, "group")
    config = broker.topics.get(topic)
    if config is None:
        return error(
            request,
            ResponseCode.TOPIC_NOT_EXIST,
            f"[reset-offset] reset offset failed, no topic in this broker. topic={topic}",
        )
    if not _is_known_group(gateway, group, topic):
        return error(request, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, f"Group {group} does not exist")
    queue_id = integer(fields, "queueId", -1)
    queue_ids = [queue_id] if queue_id >= 0 else list(range(config.read_queue_nums))
    targets = _reset_targets(gateway, topic, group, fields, queue_ids)
    if isinstance(targets, str):
        return error(request, ResponseCode.SYSTEM_ERROR, targets)
    broker_name = broker.config.broker_name
    for qid, offset in targets.items():
        broker.offsets.commit(group, topic, qid, offset)
    table = {message_queue_key(topic, broker_name, qid): offset for qid, offset in sorted(targets.items())}
    header = {
        "topic": topic,
        "group": group,
        "timestamp": fields["timestamp"],
        "isForce": fields.get("isForce", "true"),
    }
    notified = _notify_reset(gateway, header, targets)
    log.info(
        "reset offsets of %s on %s to %s (timestamp %s); told %d consumers",
        group,
        topic,
        targets,
        fields.get("timestamp"),
        notified,
    )
    return ok(request, body=dumps_compact({"offsetTable": table}))


def _notify_reset(gateway: BrokerGateway, header: dict[str, str], targets: dict[int, int]) -> int:
    """RESET_CONSUMER_CLIENT_OFFSET (220, oneway, ``header``: topic, group, timestamp, isForce) to every online
    member of the group; returns how many."""
    topic = header["topic"]
    info = gateway.broker.consumers.find(header["group"])
    if info is None:
        return 0
    broker_name = gateway.broker.config.broker_name
    table = {message_queue_key(topic, broker_name, qid): offset for qid, offset in sorted(targets.items())}
    body = dumps_compact({"offsetTable": table})
    body_for_c = dumps_compact(
        {
            "offsetTable": [
                {"brokerName": broker_name, "offset": offset, "queueId": qid, "topic": topic}
                for qid, offset in sorted(targets.items())
            ]
        }
    )
    count = 0
    for client in info.clients.values():
        target = client.channel
        if not isinstance(target, RemotingChannel) or target.is_closed:
            continue
        chosen = body_for_c if client.language.upper() == "CPP" else body
        target.send(
            RemotingCommand.request(
                RequestCode.RESET_CONSUMER_CLIENT_OFFSET, header, chosen, opaque=next_opaque(), is_oneway=True
            )
        )
        count += 1
    return count


# ---------------------------------------------------------------------------------------------------------------------
# Consumer status: 223, asking each member with 221


def handle_invoke_get_consumer_status(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> HandlerResult:
    """INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223): topic, group, clientAddr (opt; a client id)."""
    fields = request.ext_fields
    topic, group = text(fields, "topic"), text(fields, "group")
    wanted = (fields.get("clientAddr") or "").strip()
    info = gateway.broker.consumers.find(group)
    members = [
        c
        for c in (info.clients.values() if info is not None else ())
        if isinstance(c.channel, RemotingChannel) and not c.channel.is_closed and (not wanted or c.client_id == wanted)
    ]
    if info is None or not info.clients:
        return error(request, ResponseCode.SYSTEM_ERROR, f"No Any Consumer online in the consumer group: [{group}]")
    return _gather_status(request, topic, group, members)


async def _gather_status(
    request: RemotingCommand, topic: str, group: str, members: list[ClientInfo]
) -> RemotingCommand:
    asks: list[Awaitable[dict[Any, Any] | None]] = [_ask_status(member, topic, group) for member in members]
    answers = await asyncio.gather(*asks)
    table = {m.client_id: answer for m, answer in zip(members, answers, strict=True) if answer is not None}
    return ok(request, body=dumps_compact({"consumerTable": table}))


async def _ask_status(member: ClientInfo, topic: str, group: str) -> dict[Any, Any] | None:
    """One member's ``messageQueueTable``; None (logged) when it fails, times out or answers garbage."""
    assert isinstance(member.channel, RemotingChannel)
    ask = RemotingCommand.request(
        RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT, {"topic": topic, "group": group}, opaque=next_opaque()
    )
    try:
        answer = await member.channel.request(ask, CONSUMER_STATUS_TIMEOUT_S)
    except (TimeoutError, ConnectionError) as exc:
        log.info("consumer status of %s (%s): %s", member.client_id, group, exc or "timeout")
        return None
    if answer.code != ResponseCode.SUCCESS or not answer.body:
        return None
    try:
        table = loads_lenient(answer.body).get("messageQueueTable")
    except (RemoteProtocolError, AttributeError) as exc:
        log.warning("consumer %s sent a malformed GetConsumerStatusBody: %s", member.client_id, exc)
        return None
    return table if isinstance(table, dict) else {}


HANDLERS: Final[dict[int, Handler]] = {
    RequestCode.GET_CONSUMER_RUNNING_INFO: handle_get_consumer_running_info,
    RequestCode.CONSUME_MESSAGE_DIRECTLY: handle_consume_message_directly,
    RequestCode.INVOKE_BROKER_TO_RESET_OFFSET: handle_invoke_reset_offset,
    RequestCode.INVOKE_BROKER_TO_GET_CONSUMER_STATUS: handle_invoke_get_consumer_status,
}
