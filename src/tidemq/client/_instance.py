"""The client instance: what producers and consumers share (Java's ``MQClientInstance``).

A :class:`ClientInstance` owns

* the client id (``ip@instanceName``, the name defaulting to ``pid#nanos`` as Java's ``changeInstanceNameToPID``),
* one :class:`~tidemq.client._connections.ConnectionPool` and one :class:`~tidemq.client._routes.RouteCache`,
* the groups it heartbeats: producer groups and consumer groups with their subscriptions,
* two background loops in one ``TaskGroup``: a HEART_BEAT to every broker the routes mention, at once for a
  broker seen for the first time and then every ``heartbeat_interval_s`` (30 s, ``heartbeatBrokerInterval``);
  and a route refresh every ``route_refresh_interval_s`` (30 s, ``pollNameServerInterval``).

On close it stops the loops, sends UNREGISTER_CLIENT for each group to each broker it is connected to, and
closes the connections. State lives on the event loop thread; the runner task owns the loops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from tidemq.client._connections import ConnectionPool, split_addr
from tidemq.client._message import local_ipv4
from tidemq.client._routes import RouteCache, parse_namesrv_addrs
from tidemq.client.errors import BrokerError, ClientError, ClientStateError
from tidemq.protocol.remoting import DEFAULT_VERSION, RemotingCommand, RequestCode, ResponseCode, dumps_compact
from tidemq.transport import next_opaque

log = logging.getLogger(__name__)

LANGUAGE: Final = "PYTHON"
"""The ``language`` of our requests; brokers only record it."""
UNREGISTER_TIMEOUT_S: Final = 1.0
"""Unregistering is a courtesy (the broker drops us when the connection closes anyway): never wait long."""


@dataclass(frozen=True)
class ClientConfig:
    """Settings every client (producer, consumer) shares; the defaults are the Java client's.

    Attributes:
        request_timeout_s: timeout of name-server and admin-style requests (``mqClientApiTimeout``, 3 s).
        connect_timeout_s: timeout of opening one TCP connection (``connectTimeoutMillis``, 3 s).
        heartbeat_interval_s: period of HEART_BEAT to each broker (``heartbeatBrokerInterval``, 30 s); brokers
            forget a client after 120 s without one.
        route_refresh_interval_s: period of asking the name servers again (``pollNameServerInterval``, 30 s).
        instance_name: the part of the client id after ``@``; empty means ``pid#nanos``, unique per instance.
    """

    request_timeout_s: float = 3.0
    connect_timeout_s: float = 3.0
    heartbeat_interval_s: float = 30.0
    route_refresh_interval_s: float = 30.0
    instance_name: str = ""


def _probe_target(namesrv_addrs: Iterable[str]) -> str:
    """An IPv4 literal to probe our address with: a name server's, so the id shows the interface we use."""
    for addr in namesrv_addrs:
        try:
            host, _ = split_addr(addr)
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            continue
    return "10.255.255.255"


class ClientInstance:
    """Connections, routes and heartbeats for the producers and consumers that use it.

    Args:
        namesrv_addr: ``"host:port;host:port"``.
        config: shared settings.

    Raises:
        ValueError: ``namesrv_addr`` names no server.
    """

    def __init__(self, namesrv_addr: str, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        namesrv_addrs = parse_namesrv_addrs(namesrv_addr)
        self.namesrv_addrs: tuple[str, ...] = tuple(namesrv_addrs)
        """The name servers, as given (running info reports them)."""
        self.client_ip = socket.inet_ntoa(local_ipv4(_probe_target(namesrv_addrs)))
        instance_name = self.config.instance_name or f"{os.getpid()}#{time.monotonic_ns()}"
        self.client_id = f"{self.client_ip}@{instance_name}"
        self.pool = ConnectionPool(connect_timeout_s=self.config.connect_timeout_s)
        self.routes = RouteCache(
            self.pool,
            namesrv_addrs,
            request_timeout_s=self.config.request_timeout_s,
            make_request=self.make_request,
            on_new_broker=self._on_new_broker,
        )
        self.producer_groups: set[str] = set()
        self.consumer_data: dict[str, dict[str, Any]] = {}
        """Consumer group -> its ConsumerData heartbeat entry (spec 3.4), kept by the consumer that owns it."""
        self._new_brokers: set[str] = set()
        self._heartbeat_wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._is_closed = False

    def make_request(self, code: int, ext_fields: dict[str, str], body: bytes = b"") -> RemotingCommand:
        """A request with our language and version and a fresh opaque; ``ext_fields`` is used, not copied."""
        return RemotingCommand(code, LANGUAGE, DEFAULT_VERSION, next_opaque(), 0, None, ext_fields, body)

    @property
    def is_running(self) -> bool:
        return self._runner is not None and not self._is_closed

    def check_running(self) -> None:
        """Raise ClientStateError unless started and not closed."""
        if self._runner is None or self._is_closed:
            raise ClientStateError("the client is closed" if self._is_closed else "the client is not started")

    async def start(self) -> None:
        """Start the heartbeat and route-refresh loops (no I/O before the first use)."""
        if self._is_closed:
            raise ClientStateError("a closed client cannot be started again")
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"tidemq-client-{self.client_id}")

    async def close(self) -> None:
        """Stop the loops, unregister from the brokers, close every connection. Safe to call twice."""
        if self._is_closed:
            return
        self._is_closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.wait([runner])  # waits without re-raising the runner's cancellation into us
            if not runner.cancelled() and runner.exception() is not None:
                log.error("the client's background loops failed", exc_info=runner.exception())
            await self._unregister_all()
        await self.pool.close()

    # -- heartbeats ------------------------------------------------------------------------------------------

    def heartbeat_body(self) -> bytes:
        """HeartbeatData (spec 3.4), enums by name as Java writes them."""
        return dumps_compact(
            {
                "clientID": self.client_id,
                "producerDataSet": [{"groupName": group} for group in sorted(self.producer_groups)],
                "consumerDataSet": list(self.consumer_data.values()),
            }
        )

    async def send_heartbeat(self, addr: str) -> None:
        """One HEART_BEAT to ``addr``.

        Raises:
            ClientError: it failed (connection, timeout or error code).
        """
        request = self.make_request(RequestCode.HEART_BEAT, {}, self.heartbeat_body())
        response = await self.pool.invoke(addr, request, self.config.request_timeout_s)
        if response.code != ResponseCode.SUCCESS:
            raise BrokerError(response.code, response.remark, addr)

    async def heartbeat(self, addrs: Iterable[str] | None = None) -> None:
        """HEART_BEAT to ``addrs`` (default: every broker the routes mention), concurrently; failures are logged."""
        targets = list(self.routes.broker_addresses if addrs is None else addrs)
        if not targets or not (self.producer_groups or self.consumer_data):
            return
        async with asyncio.TaskGroup() as group:
            for addr in targets:
                group.create_task(self._heartbeat_one(addr))

    async def _heartbeat_one(self, addr: str) -> None:
        try:
            await self.send_heartbeat(addr)
        except ClientError as exc:
            log.warning("heartbeat to %s failed: %s", addr, exc)

    def _on_new_broker(self, addr: str) -> None:
        self._new_brokers.add(addr)
        self._heartbeat_wake.set()

    # -- background loops ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat_loop(), name="heartbeat")
            group.create_task(self._route_loop(), name="route-refresh")

    async def _heartbeat_loop(self) -> None:
        interval_s = self.config.heartbeat_interval_s
        next_full = time.monotonic() + interval_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_full - time.monotonic())):
                    await self._heartbeat_wake.wait()
            except TimeoutError:
                pass
            self._heartbeat_wake.clear()
            if time.monotonic() >= next_full:
                next_full = time.monotonic() + interval_s
                self._new_brokers.clear()
                targets = None
            else:
                targets, self._new_brokers = self._new_brokers, set()
            try:
                await self.heartbeat(targets)
            except Exception:  # a bug here must not stop heartbeats for good; the next round may succeed
                log.exception("heartbeat round failed")

    async def _route_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.route_refresh_interval_s)
            try:
                await self.routes.refresh_all()
            except Exception:  # as above: keep refreshing
                log.exception("route refresh failed")

    async def _unregister_all(self) -> None:
        connected = set(self.pool.addresses)
        targets = [addr for addr in self.routes.broker_addresses if addr in connected]
        fields = [{"producerGroup": group} for group in sorted(self.producer_groups)]
        fields += [{"consumerGroup": group} for group in sorted(self.consumer_data)]
        if not targets or not fields:
            return
        async with asyncio.TaskGroup() as group:
            for addr in targets:
                for extra in fields:
                    group.create_task(self._unregister_one(addr, {"clientID": self.client_id, **extra}))

    async def _unregister_one(self, addr: str, fields: dict[str, str]) -> None:
        request = self.make_request(RequestCode.UNREGISTER_CLIENT, fields)
        try:
            response = await self.pool.invoke(addr, request, min(UNREGISTER_TIMEOUT_S, self.config.request_timeout_s))
        except ClientError as exc:
            log.info("cannot unregister from %s: %s", addr, exc)
            return
        if response.code != ResponseCode.SUCCESS:
            log.info("%s refused to unregister us: %d %s", addr, response.code, response.remark)
