"""A starting broker serves no request before its store is open and its topics, groups and offsets are loaded.

Found with the official C++ client across a broker restart: its pulls reached the new broker while the store was
still opening and were answered TOPIC_NOT_EXIST; a heartbeat in that window auto-creates ``%RETRY%group`` and
rewrites ``topics.json`` with nothing else in it, before the file is read.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.integration.conftest import call, small_broker_config
from tidemq.broker.runtime import BrokerRuntime
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, dumps_compact
from tidemq.store.message_store import MessageStore
from tidemq.transport import connect

HEARTBEAT = {
    "clientID": "127.0.0.1@early",
    "consumerDataSet": [
        {
            "groupName": "CG_early",
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": "T_kept", "subString": "*", "subVersion": 1}],
        }
    ],
}


async def _heartbeat(port: int) -> RemotingCommand:
    channel = await connect("127.0.0.1", port)
    try:
        return await call(channel, RequestCode.HEART_BEAT, body=dumps_compact(HEARTBEAT))
    finally:
        channel.close()


async def test_no_request_is_served_before_the_broker_has_loaded_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small_broker_config(tmp_path / "broker")
    async with BrokerRuntime(config, host="127.0.0.1") as first:
        channel = await connect("127.0.0.1", first.port)
        created = await call(
            channel,
            RequestCode.UPDATE_AND_CREATE_TOPIC,
            {"topic": "T_kept", "readQueueNums": "2", "writeQueueNums": "2"},
        )
        assert created.code == ResponseCode.SUCCESS
        channel.close()

    opening = threading.Event()
    release = threading.Event()
    real_open = MessageStore.open

    def slow_open(store: MessageStore) -> MessageStore:
        opening.set()
        assert release.wait(10)
        return real_open(store)

    monkeypatch.setattr(MessageStore, "open", slow_open)
    runtime = BrokerRuntime(config, host="127.0.0.1")
    starting = asyncio.create_task(runtime.start())
    try:
        assert await asyncio.get_running_loop().run_in_executor(None, opening.wait, 10)
        port = runtime.port
        assert port != 0
        with pytest.raises(OSError):  # bound, but not accepting yet
            await _heartbeat(port)
        release.set()
        await starting
        assert runtime.broker.topics.get("T_kept") is not None
        assert (await _heartbeat(port)).code == ResponseCode.SUCCESS
        assert runtime.broker.topics.get("T_kept") is not None
        assert runtime.broker.topics.get("%RETRY%CG_early") is not None
    finally:
        release.set()
        if not starting.done():
            await starting
        await runtime.close()
