"""Fixtures that start real tidemq servers on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tidemq.broker.broker import Broker
from tidemq.broker.config import BrokerConfig
from tidemq.gateways.remoting_broker import BrokerGateway
from tidemq.protocol.remoting import RemotingCommand
from tidemq.transport import RemotingChannel, connect, next_opaque


@dataclass
class RunningBroker:
    broker: Broker
    gateway: BrokerGateway

    @property
    def port(self) -> int:
        return self.gateway.port


def small_broker_config(root: Path, **overrides: object) -> BrokerConfig:
    values: dict[str, object] = {
        "store_path_root_dir": root,
        "broker_ip1": "127.0.0.1",
        "listen_port": 0,
        "mapped_file_size_commit_log": 4 << 20,
        "mapped_file_size_consume_queue": 20 * 10_000,
        "max_message_size": 1 << 20,
        "max_hash_slot_num": 10_000,
        "max_index_num": 40_000,
    }
    values.update(overrides)
    return BrokerConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def running_broker(tmp_path: Path) -> AsyncIterator[RunningBroker]:
    broker = Broker(small_broker_config(tmp_path / "broker"))
    await broker.start()
    gateway = BrokerGateway(broker, host="127.0.0.1", port=0, with_vip_channel=False)
    await gateway.start()
    try:
        yield RunningBroker(broker, gateway)
    finally:
        await gateway.close()
        await broker.close()


async def call(
    channel: RemotingChannel, code: int, fields: dict[str, str] | None = None, body: bytes = b"", timeout_s: float = 5
) -> RemotingCommand:
    return await channel.request(RemotingCommand.request(code, fields or {}, body, opaque=next_opaque()), timeout_s)


async def open_client(port: int) -> RemotingChannel:
    return await connect("127.0.0.1", port)
