"""END_TRANSACTION (37) from producers, and CHECK_TRANSACTION_STATE (39) sent to them.

END_TRANSACTION is sent oneway: errors are logged, not answered (a Java broker answers when asked to).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tidemq.broker.transactions import COMMIT, ROLLBACK, CheckRequest
from tidemq.gateways.remoting_broker.common import boolean, error, integer, ok, text
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode
from tidemq.transport import RemotingChannel, next_opaque

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway

log = logging.getLogger(__name__)


def handle_end_transaction(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    service = gateway.broker.transactions
    if service is None:
        return error(request, ResponseCode.SERVICE_NOT_AVAILABLE, "the broker is starting")
    decision = integer(fields, "commitOrRollback")
    group = text(fields, "producerGroup", "")
    if decision not in (COMMIT, ROLLBACK):
        # TRANSACTION_NOT_TYPE: the producer does not know yet; the check-back will ask again.
        log.debug(
            "transaction of group %s still unknown (from check: %s)", group, boolean(fields, "fromTransactionCheck")
        )
        return ok(request)
    outcome = service.end(integer(fields, "commitLogOffset"), integer(fields, "tranStateTableOffset"), decision)
    if isinstance(outcome, str):
        log.warning("END_TRANSACTION from %s (group %s) refused: %s", channel.remote_address, group, outcome)
        return error(request, ResponseCode.SYSTEM_ERROR, outcome)
    if outcome.message_count:
        gateway.broker.stats.record_put(fields.get("topic") or "", outcome.message_count)
    return ok(request)


def send_transaction_check(gateway: BrokerGateway, check: CheckRequest) -> bool:
    """CHECK_TRANSACTION_STATE to one producer of the group (oneway, the half record as body)."""
    channel = gateway.broker.producers.any_channel(check.group)
    if not isinstance(channel, RemotingChannel) or channel.is_closed:
        return False
    fields = {
        "tranStateTableOffset": str(check.half_queue_offset),
        "commitLogOffset": str(check.half_physical_offset),
        "msgId": check.msg_id,
        "transactionId": check.transaction_id,
        "offsetMsgId": check.offset_msg_id,
        "topic": check.topic,
        "brokerName": gateway.broker.config.broker_name,
        "producerGroup": check.group,
    }
    channel.send(
        RemotingCommand.request(
            RequestCode.CHECK_TRANSACTION_STATE, fields, check.record, opaque=next_opaque(), is_oneway=True
        )
    )
    return True
