"""The name server process: a RemotingServer answering with :class:`NamesrvHandlers`, plus broker expiry.

State ownership: everything runs on one event loop. The route table and the handlers belong to it; the
server's TaskGroup owns one task, the expiry scan, which runs every ``scanNotActiveBrokerInterval`` (5 s) and
removes brokers silent for 120 s, closing their channels as RocketMQ's ``scanNotActiveBroker`` does. A broker
whose channel closes is removed at once (``BrokerHousekeepingService.onChannelClose``).

Usage::

    async with NameServer(NamesrvConfig(listen_port=0, bind_address="127.0.0.1")) as namesrv:
        print(namesrv.port)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Self

from tidemq.namesrv.config import NamesrvConfig
from tidemq.namesrv.handlers import NamesrvHandlers, wall_clock_ms
from tidemq.namesrv.route_table import RemovedBroker, RouteTable
from tidemq.protocol.remoting import RemotingCommand
from tidemq.transport import RemotingChannel, RemotingServer

log = logging.getLogger(__name__)


class NameServer:
    """A RocketMQ-compatible name server.

    Args:
        config: settings; ``listen_port=0`` picks a free port, readable from :attr:`port` after :meth:`start`.
        clock_ms: milliseconds since the epoch, for registration times and expiry; tests pass a fake.
    """

    def __init__(self, config: NamesrvConfig | None = None, *, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        config = config or NamesrvConfig()
        self._clock_ms = clock_ms
        self.route_table = RouteTable(
            delete_topic_with_broker_registration=config.delete_topic_with_broker_registration
        )
        self.handlers = NamesrvHandlers(self.route_table, config, clock_ms=clock_ms)
        self._server = RemotingServer(
            self._handle, host=config.bind_address, port=config.listen_port, on_close=self._channel_closed
        )
        self._tasks: contextlib.AsyncExitStack | None = None
        self._scan_task: asyncio.Task[None] | None = None

    @property
    def config(self) -> NamesrvConfig:
        """The settings in force (UPDATE_NAMESRV_CONFIG may have changed them since start)."""
        return self.handlers.config

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._server.port

    @property
    def host(self) -> str:
        """The address listened on, as configured."""
        return self.handlers.config.bind_address

    async def start(self) -> None:
        """Listen, then start the expiry scan."""
        await self._server.start()
        stack = contextlib.AsyncExitStack()
        task_group = await stack.enter_async_context(asyncio.TaskGroup())
        self._scan_task = task_group.create_task(self._scan_loop(), name="namesrv-expiry-scan")
        self._tasks = stack
        log.info("name server listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop the scan, close every connection and the listening socket."""
        if self._scan_task is not None:
            self._scan_task.cancel()
            self._scan_task = None
        if self._tasks is not None:
            await self._tasks.aclose()
            self._tasks = None
        await self._server.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def scan_now(self) -> list[RemovedBroker]:
        """Run one expiry scan: remove silent brokers and close their channels; returns them."""
        removed = self.route_table.scan_expired(self._clock_ms(), self.handlers.config.broker_channel_expired_time_ms)
        for broker in removed:
            if isinstance(broker.channel_key, RemotingChannel):
                broker.channel_key.close()
        return removed

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.handlers.config.scan_not_active_broker_interval_ms / 1000)
            try:
                self.scan_now()
            except Exception:  # a bug in one scan must not stop expiry for good, nor cancel the server's owner
                log.exception("broker expiry scan failed")

    def _handle(self, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
        return self.handlers.handle(request, channel)

    def _channel_closed(self, channel: RemotingChannel) -> None:
        self.route_table.channel_closed(channel)
