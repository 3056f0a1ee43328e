"""A running broker: the Broker, its remoting gateway and its name-server registration, started and stopped
together. Used by ``tidemq broker``, ``tidemq dev`` and tests that want the whole thing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tidemq.broker.broker import Broker
from tidemq.broker.config import BrokerConfig
from tidemq.gateways.remoting_broker import BrokerGateway

log = logging.getLogger(__name__)


class BrokerRuntime:
    """``async with BrokerRuntime(config, host=...) as runtime: runtime.port``."""

    def __init__(self, config: BrokerConfig, *, host: str = "0.0.0.0") -> None:
        self.broker = Broker(config)
        self.gateway = BrokerGateway(
            self.broker, host=host, port=config.listen_port, with_vip_channel=config.listen_port > 2
        )
        self.registrar: Any = None
        self._register_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def config(self) -> BrokerConfig:
        return self.broker.config

    async def start(self) -> None:
        # Bind first (listenPort 0 picks the port the store must know), but accept connections only once the
        # broker has opened its store and loaded its topics, groups and offsets: a request served earlier
        # would see none of them, and one that changes a config file (a heartbeat auto-creating %RETRY%group)
        # would overwrite the file before it is read.
        await self.gateway.start(serving=False)
        if self.broker.config.listen_port != self.gateway.port:
            self.broker.bind_port(self.gateway.port)
            self.gateway.store_host = (self.broker.config.broker_ip1, self.gateway.port)
        await self.broker.start()
        await self.gateway.start_serving()
        namesrv_addrs = self.broker.config.namesrv_addrs
        if namesrv_addrs:
            from tidemq.broker.registration import BrokerIdentity, BrokerRegistrar

            config = self.broker.config
            identity = BrokerIdentity(
                cluster=config.broker_cluster_name,
                broker_name=config.broker_name,
                broker_id=config.broker_id,
                broker_addr=config.broker_addr,
                ha_server_addr=config.ha_server_addr,
            )
            self.registrar = BrokerRegistrar(
                namesrv_addrs, identity, self.broker.register_body, interval_s=config.register_name_server_period / 1000
            )
            await self.registrar.start()
            self.broker.topics.on_change = self._topics_changed

    def _topics_changed(self) -> None:
        if self.registrar is None:
            return
        if self._register_task is None or self._register_task.done():
            self._register_task = asyncio.get_running_loop().create_task(self.registrar.register_now())

    async def close(self) -> None:
        if self.registrar is not None:
            await self.registrar.close()
        if self._register_task is not None:
            self._register_task.cancel()
        await self.gateway.close()
        await self.broker.close()

    async def __aenter__(self) -> BrokerRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
