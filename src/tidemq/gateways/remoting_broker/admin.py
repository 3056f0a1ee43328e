"""Admin requests (mqadmin, the dashboard): topics and subscription groups.

``HANDLERS`` maps request codes to handlers; the gateway merges it into its table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from tidemq.broker.topics import TopicConfig
from tidemq.errors import IllegalNameError
from tidemq.gateways.remoting_broker.common import boolean, error, integer, ok, text
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, dumps_compact
from tidemq.store.names import validate_topic

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway
    from tidemq.transport import RemotingChannel

Handler = Callable[["BrokerGateway", "RemotingChannel", RemotingCommand], RemotingCommand]


def handle_update_and_create_topic(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    topic = text(fields, "topic")
    try:
        validate_topic(topic)
    except IllegalNameError as exc:
        return error(request, ResponseCode.SYSTEM_ERROR, str(exc))
    if topic == gateway.broker.config.broker_cluster_name:
        return error(request, ResponseCode.SYSTEM_ERROR, f"the topic[{topic}] is conflict with system reserved words.")
    read_queues = integer(fields, "readQueueNums", 16)
    write_queues = integer(fields, "writeQueueNums", 16)
    if not (0 < read_queues <= 1024 and 0 < write_queues <= 1024):
        return error(request, ResponseCode.SYSTEM_ERROR, "readQueueNums and writeQueueNums must be within 1..1024")
    config = TopicConfig(
        topic,
        read_queues,
        write_queues,
        integer(fields, "perm", 6),
        fields.get("topicFilterType", "SINGLE_TAG"),
        integer(fields, "topicSysFlag", 0),
        boolean(fields, "order"),
    )
    gateway.broker.topics.put(config)
    return ok(request)


def handle_get_all_topic_config(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    return ok(request, body=dumps_compact(gateway.broker.topics.serialize_wrapper()))


HANDLERS: Final[dict[int, Handler]] = {
    RequestCode.UPDATE_AND_CREATE_TOPIC: handle_update_and_create_topic,
    RequestCode.GET_ALL_TOPIC_CONFIG: handle_get_all_topic_config,
}
