"""Transactions over the wire: half messages hidden until commit, rollback, and the broker's check-back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tidemq.broker.broker import Broker
from tidemq.gateways.remoting_broker import BrokerGateway
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode
from tidemq.store import record as rec
from tidemq.transport import RemotingChannel, connect

from .conftest import call, small_broker_config
from .test_broker_remoting import pull_fields, send_fields

PREPARED = 4
COMMIT = 8
ROLLBACK = 12


def half_fields(topic: str, uniq: str) -> dict[str, str]:
    fields = send_fields(topic, 0, f"TRAN_MSG\x01true\x02PGROUP\x01TxGroup\x02UNIQ_KEY\x01{uniq}\x02WAIT\x01true\x02")
    fields["sysFlag"] = str(PREPARED)
    return fields


def end_fields(reply: RemotingCommand, decision: int, from_check: bool = False) -> dict[str, str]:
    _, _, physical = rec.decode_offset_msg_id(reply.ext_fields["msgId"])
    return {
        "producerGroup": "TxGroup",
        "tranStateTableOffset": reply.ext_fields["queueOffset"],
        "commitLogOffset": str(physical),
        "commitOrRollback": str(decision),
        "fromTransactionCheck": str(from_check).lower(),
        "msgId": reply.ext_fields.get("transactionId", ""),
        "transactionId": reply.ext_fields.get("transactionId", ""),
    }


async def bodies(client: RemotingChannel, topic: str) -> list[bytes]:
    reply = await call(client, RequestCode.PULL_MESSAGE, pull_fields(topic, 0, 0))
    if reply.code != ResponseCode.SUCCESS:
        return []
    return [r.body for r in rec.iter_records(bytes(reply.body))]


async def test_commit_rollback_and_check_back(tmp_path: Path) -> None:
    config = small_broker_config(tmp_path / "b", transaction_time_out=300, transaction_check_interval=200)
    broker = Broker(config)
    await broker.start()
    checks: asyncio.Queue[RemotingCommand] = asyncio.Queue()

    def producer_side(channel: RemotingChannel, request: RemotingCommand) -> None:
        checks.put_nowait(request)

    try:
        async with BrokerGateway(broker, host="127.0.0.1", port=0, with_vip_channel=False) as gateway:
            client = await connect("127.0.0.1", gateway.port, producer_side)
            heartbeat = {"clientID": "tx-producer", "producerDataSet": [{"groupName": "TxGroup"}]}
            await call(client, RequestCode.HEART_BEAT, {}, json.dumps(heartbeat).encode())
            await call(client, RequestCode.SEND_MESSAGE, send_fields("Tx", 0), b"plain")
            committed = await call(client, RequestCode.SEND_MESSAGE, half_fields("Tx", "TX-1"), b"commit me")
            assert committed.code == ResponseCode.SUCCESS, committed.remark
            assert committed.ext_fields["transactionId"] == "TX-1"
            rolled = await call(client, RequestCode.SEND_MESSAGE, half_fields("Tx", "TX-2"), b"roll me back")
            unknown = await call(client, RequestCode.SEND_MESSAGE, half_fields("Tx", "TX-3"), b"ask me later")
            assert unknown.code == ResponseCode.SUCCESS
            assert await bodies(client, "Tx") == [b"plain"], "half messages are invisible"
            assert (await call(client, RequestCode.END_TRANSACTION, end_fields(committed, COMMIT))).code == 0
            assert (await call(client, RequestCode.END_TRANSACTION, end_fields(rolled, ROLLBACK))).code == 0
            assert await bodies(client, "Tx") == [b"plain", b"commit me"]
            twice = await call(client, RequestCode.END_TRANSACTION, end_fields(committed, COMMIT))
            assert twice.code == ResponseCode.SYSTEM_ERROR, "a second commit is refused, not duplicated"
            # The unknown one is checked back once it is older than transactionTimeOut.
            check = await asyncio.wait_for(checks.get(), 10)
            assert check.code == RequestCode.CHECK_TRANSACTION_STATE
            assert check.ext_fields["transactionId"] == "TX-3"
            [half] = list(rec.iter_records(bytes(check.body)))
            assert half.body == b"ask me later"
            assert (half.topic, half.queue_id) == ("Tx", 0), "shown in its real topic and queue, as Java's broker does"
            answer = {
                "producerGroup": "TxGroup",
                "tranStateTableOffset": check.ext_fields["tranStateTableOffset"],
                "commitLogOffset": check.ext_fields["commitLogOffset"],
                "commitOrRollback": str(COMMIT),
                "fromTransactionCheck": "true",
                "msgId": check.ext_fields["msgId"],
                "transactionId": check.ext_fields["transactionId"],
            }
            assert (await call(client, RequestCode.END_TRANSACTION, answer)).code == 0
            assert await bodies(client, "Tx") == [b"plain", b"commit me", b"ask me later"]
            client.close()
    finally:
        await broker.close()
