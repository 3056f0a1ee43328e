"""Offsets and lookups: GET_MAX/MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP, GET_EARLIEST_MSG_STORETIME,
VIEW_MESSAGE_BY_ID, QUERY_MESSAGE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidemq.gateways.remoting_broker.common import error, integer, ok, text
from tidemq.protocol.remoting import RemotingCommand, ResponseCode

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway
    from tidemq.transport import RemotingChannel


def handle_get_max_offset(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    return ok(
        request, {"offset": str(gateway.broker.store.get_max_offset(text(fields, "topic"), integer(fields, "queueId")))}
    )


def handle_get_min_offset(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    return ok(
        request, {"offset": str(gateway.broker.store.get_min_offset(text(fields, "topic"), integer(fields, "queueId")))}
    )


def handle_search_offset(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    fields = request.ext_fields
    upper = fields.get("boundaryType", "lower").lower() == "upper"
    offset = gateway.broker.store.get_offset_by_time(
        text(fields, "topic"), integer(fields, "queueId"), integer(fields, "timestamp"), upper=upper
    )
    return ok(request, {"offset": str(offset)})


def handle_earliest_time(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    fields = request.ext_fields
    stamp = gateway.broker.store.get_earliest_store_time(text(fields, "topic"), integer(fields, "queueId"))
    return ok(request, {"timestamp": str(stamp)})


def handle_view_message(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    physical = integer(request.ext_fields, "offset")
    data = gateway.broker.store.read_record(physical)
    if data is None:
        return error(request, ResponseCode.SYSTEM_ERROR, f"can not find message by the offset, {physical}")
    return ok(request, body=data)


def handle_query_message(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    fields = request.ext_fields
    store = gateway.broker.store
    found = store.query_by_key(
        text(fields, "topic"),
        text(fields, "key"),
        max(1, min(integer(fields, "maxNum", 32), 64)),
        integer(fields, "beginTimestamp", 0),
        integer(fields, "endTimestamp", 2**62),
    )
    ext = {
        "indexLastUpdateTimestamp": str(store.index.last_update_timestamp),
        "indexLastUpdatePhyoffset": str(store.index.last_update_physical_offset),
    }
    if not found:
        return request.make_response(
            ResponseCode.QUERY_NOT_FOUND, "can not find message, maybe time range not correct", ext
        )
    return ok(request, ext, b"".join(found))
