"""PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361): RocketMQ's PullMessageProcessor, with long polling.

A pull that finds nothing new and may be suspended (sysFlag bit 1) is held until a message arrives on its
queue or ``suspendTimeoutMillis`` passes, then run once more (spec section 4).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final

from tidemq.broker.filters import MessageFilter, build_filter
from tidemq.broker.sql_filter import SqlFilterError
from tidemq.broker.topics import PERM_READ
from tidemq.gateways.remoting_broker.common import error, integer, text
from tidemq.protocol.remoting import RemotingCommand, ResponseCode
from tidemq.store.results import GetResult, GetStatus

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway
    from tidemq.transport import RemotingChannel

FLAG_COMMIT_OFFSET: Final = 1
FLAG_SUSPEND: Final = 2
FLAG_SUBSCRIPTION: Final = 4
MAX_HOLD_S: Final = 30.0
"""No client waits longer than 30 s for a pull reply (the C++ client's timeout); never hold longer."""

_PULL_CODES: Final = {
    GetStatus.FOUND: ResponseCode.SUCCESS,
    GetStatus.NO_MATCHED_MESSAGE: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetStatus.MESSAGE_WAS_REMOVING: ResponseCode.PULL_RETRY_IMMEDIATELY,
    GetStatus.OFFSET_FOUND_NULL: ResponseCode.PULL_NOT_FOUND,
    GetStatus.OFFSET_OVERFLOW_ONE: ResponseCode.PULL_NOT_FOUND,
    GetStatus.OFFSET_OVERFLOW_BADLY: ResponseCode.PULL_OFFSET_MOVED,
    GetStatus.OFFSET_TOO_SMALL: ResponseCode.PULL_OFFSET_MOVED,
}


def handle_pull(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand | Awaitable[RemotingCommand]:
    broker = gateway.broker
    fields = request.ext_fields
    group = text(fields, "consumerGroup")
    topic = text(fields, "topic")
    queue_id = integer(fields, "queueId")
    offset = integer(fields, "queueOffset")
    max_count = max(1, min(integer(fields, "maxMsgNums", 32), 1024))
    sys_flag = integer(fields, "sysFlag", 0)
    if not broker.config.broker_permission & PERM_READ:
        return error(
            request, ResponseCode.NO_PERMISSION, f"the broker[{broker.config.broker_ip1}] pulling message is forbidden"
        )
    group_config = broker.subscription_groups.find(group)
    if group_config is None:
        return error(request, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, f"subscription group [{group}] does not exist")
    if not group_config.consume_enable:
        return error(request, ResponseCode.NO_PERMISSION, f"subscription group no permission, {group}")
    topic_config = broker.topics.get(topic)
    if topic_config is None:
        return error(request, ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist, apply first please!")
    if not topic_config.is_readable:
        return error(request, ResponseCode.NO_PERMISSION, f"the topic[{topic}] pulling message is forbidden")
    if not 0 <= queue_id < max(topic_config.read_queue_nums, 1):
        return error(
            request,
            ResponseCode.SYSTEM_ERROR,
            f"queueId[{queue_id}] is illegal, topic:[{topic}] readQueueNums:[{topic_config.read_queue_nums}]",
        )
    if sys_flag & FLAG_SUBSCRIPTION:
        expression_type = fields.get("expressionType", "TAG").upper() or "TAG"
        if expression_type == "SQL92" and not broker.config.enable_property_filter:
            return error(
                request, ResponseCode.SYSTEM_ERROR, "The broker does not support consumer to filter message by SQL92"
            )
        try:
            tag_filter = build_filter(fields.get("subscription"), expression_type)
        except SqlFilterError as exc:
            return error(
                request, ResponseCode.SUBSCRIPTION_PARSE_FAILED, f"parse the consumer's subscription failed: {exc}"
            )
    else:
        subscription = broker.consumers.find_subscription(group, topic)
        if subscription is None:
            return error(
                request, ResponseCode.SUBSCRIPTION_NOT_EXIST, f"the consumer's subscription not exist, group: {group}"
            )
        if subscription.sub_version < integer(fields, "subVersion", 0):
            return error(request, ResponseCode.SUBSCRIPTION_NOT_LATEST, "the consumer's subscription not latest")
        tag_filter = subscription.tag_filter
    if sys_flag & FLAG_COMMIT_OFFSET and broker.config.broker_id == 0:
        commit_offset = integer(fields, "commitOffset", -1)
        if commit_offset >= 0:
            broker.offsets.commit(group, topic, queue_id, commit_offset)
    result = _get(gateway, topic, queue_id, offset, max_count, tag_filter)
    code = _code_for(result, offset)
    if code == ResponseCode.PULL_NOT_FOUND and sys_flag & FLAG_SUSPEND:
        if broker.config.long_polling_enable:
            hold_s = min(integer(fields, "suspendTimeoutMillis", 15000) / 1000, MAX_HOLD_S)
        else:
            hold_s = broker.config.short_polling_time_mills / 1000
        return _held(gateway, request, topic, queue_id, offset, max_count, tag_filter, hold_s)
    return _response(gateway, request, result, code)


async def _held(
    gateway: BrokerGateway,
    request: RemotingCommand,
    topic: str,
    queue_id: int,
    offset: int,
    max_count: int,
    tag_filter: MessageFilter,
    hold_s: float,
) -> RemotingCommand:
    deadline = time.monotonic() + hold_s
    while True:
        # Read again before every wait: this coroutine starts a loop pass after handle_pull's read, and a
        # message stored in between would otherwise wake nobody. The read and the waiter's registration run
        # without an await between them, so nothing can slip through.
        result = _get(gateway, topic, queue_id, offset, max_count, tag_filter)
        code = _code_for(result, offset)
        remaining = deadline - time.monotonic()
        if code != ResponseCode.PULL_NOT_FOUND or remaining <= 0 or not gateway.broker.is_running:
            return _response(gateway, request, result, code)
        await gateway.broker.holds.wait_for_message(topic, queue_id, offset, remaining)


def _get(
    gateway: BrokerGateway, topic: str, queue_id: int, offset: int, max_count: int, tag_filter: MessageFilter
) -> GetResult:
    if tag_filter.matches_all:
        return gateway.broker.store.get_messages(topic, queue_id, offset, max_count)
    return gateway.broker.store.get_messages(
        topic, queue_id, offset, max_count, tag_codes=tag_filter.codes, record_filter=tag_filter.matches_record
    )


def _code_for(result: GetResult, offset: int) -> int:
    status = result.status
    if status in (GetStatus.NO_MATCHED_LOGIC_QUEUE, GetStatus.NO_MESSAGE_IN_QUEUE):
        # RocketMQ: an empty queue asked at a non-zero offset means the client's offset is stale.
        return ResponseCode.PULL_OFFSET_MOVED if offset != 0 else ResponseCode.PULL_NOT_FOUND
    return _PULL_CODES[status]


def _response(gateway: BrokerGateway, request: RemotingCommand, result: GetResult, code: int) -> RemotingCommand:
    ext = request.ext_fields  # for the admin statistics (GET_CONSUME_STATS, GET_BROKER_RUNTIME_INFO)
    gateway.broker.stats.record_pull(
        ext["consumerGroup"], ext["topic"], int(ext["queueId"]), result.next_begin_offset, result.message_count
    )
    fields = {
        "nextBeginOffset": str(result.next_begin_offset),
        "minOffset": str(result.min_offset),
        "maxOffset": str(result.max_offset),
        "suggestWhichBrokerId": "0",
    }
    if code == ResponseCode.SUCCESS:
        chunks = result.chunks
        body: bytes | memoryview = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return request.make_response(code, "FOUND", fields, body)
    return request.make_response(code, result.status.value, fields)
