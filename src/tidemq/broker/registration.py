"""The broker's side of name server registration (RocketMQ's ``BrokerOuterAPI.registerBrokerAll``).

A :class:`BrokerRegistrar` keeps the broker registered with **every** name server, each on its own connection:

* :meth:`~BrokerRegistrar.start` registers with all of them concurrently, then each is refreshed every
  ``interval_s`` (``registerNameServerPeriod``, 30 s; the name server forgets a broker after 120 s).
* :meth:`~BrokerRegistrar.register_now` re-registers at once, after a topic change.
* A failure (refused, timed out, an error code) is logged and retried with backoff; it is never fatal, since
  any one name server is enough for clients. A dropped connection is re-opened and the broker re-registered
  after ``retry_delay_s``: the name server drops a broker whose channel closes.
* :meth:`~BrokerRegistrar.close` sends UNREGISTER_BROKER to each name server and closes the connections.

The body is a ``RegisterBrokerBody`` in JSON (``compressed=false``), with ``bodyCrc32`` = CRC-32 & 0x7FFFFFFF
as ``UtilAll.crc32`` computes it (spec 7.1). A slave learns its master's address and HA address from the
answers (:attr:`~BrokerRegistrar.master_addr`), for replication.

State ownership: the registrar's TaskGroup owns one refresh task per name server; each name server's
connection is used under that name server's lock, so a refresh and :meth:`register_now` never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tidemq.errors import ConfigError, ProtocolError
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, dumps_compact, loads_lenient
from tidemq.transport import RemotingChannel, connect, next_opaque

log = logging.getLogger(__name__)

BodyProvider = Callable[[], tuple[Mapping[str, object], Mapping[str, int]]]
"""Returns ``(topicConfigTable, dataVersion)`` as JSON-able dicts: topic name -> TopicConfig JSON, and
``{"counter":..,"stateVersion":..,"timestamp":..}``."""


@dataclass(frozen=True, slots=True)
class BrokerIdentity:
    """Who registers: cluster, broker name, id (0 = master), client address and HA address (``ip:port``)."""

    cluster: str
    broker_name: str
    broker_id: int
    broker_addr: str
    ha_server_addr: str


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """One name server's answer: for a slave, its master's addresses; the ORDER_TOPIC_CONFIG KV table."""

    namesrv_addr: str
    master_addr: str | None
    ha_server_addr: str | None
    kv_table: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Link:
    """One name server: its address, connection, and refresh bookkeeping."""

    addr: str
    host: str
    port: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    channel: RemotingChannel | None = None
    failures: int = 0


class BrokerRegistrar:
    """Registers one broker with a list of name servers and keeps it registered.

    Args:
        namesrv_addrs: ``host:port`` of every name server (``namesrvAddr`` split on ``;``).
        identity: the broker's names and addresses.
        body_provider: called for each registration; see :data:`BodyProvider`.
        interval_s: refresh period (``registerNameServerPeriod``).
        request_timeout_s: how long to wait for each answer.
        connect_timeout_s: how long to wait for each connection.
        retry_delay_s: first delay after a failure or a dropped connection; doubled per failure up to
            ``interval_s``.
        heartbeat_timeout_ms: sent as ``heartbeatTimeoutMillis`` when given (5.x): how long the name server
            waits for us before expiring the broker; it uses 120 s otherwise.
    """

    def __init__(
        self,
        namesrv_addrs: list[str],
        identity: BrokerIdentity,
        body_provider: BodyProvider,
        *,
        interval_s: float = 30.0,
        request_timeout_s: float = 6.0,
        connect_timeout_s: float = 3.0,
        retry_delay_s: float = 1.0,
        heartbeat_timeout_ms: int | None = None,
    ) -> None:
        self.identity = identity
        self._links = [_parse_link(addr) for addr in dict.fromkeys(a.strip() for a in namesrv_addrs if a.strip())]
        self._body_provider = body_provider
        self._interval_s = interval_s
        self._request_timeout_s = request_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._retry_delay_s = retry_delay_s
        self._heartbeat_timeout_ms = heartbeat_timeout_ms
        self._tasks: contextlib.AsyncExitStack | None = None
        self._refreshers: list[asyncio.Task[None]] = []
        self._is_closing = False
        self.results: dict[str, RegistrationResult] = {}
        """The last successful answer of each name server, by its address."""

    @property
    def namesrv_addrs(self) -> list[str]:
        return [link.addr for link in self._links]

    @property
    def master_addr(self) -> str | None:
        """The master's client address as the name servers answered it (a slave's replication source)."""
        return next((r.master_addr for r in self._ordered_results() if r.master_addr), None)

    @property
    def master_ha_server_addr(self) -> str | None:
        """The master's HA address as the name servers answered it."""
        return next((r.ha_server_addr for r in self._ordered_results() if r.ha_server_addr), None)

    def _ordered_results(self) -> list[RegistrationResult]:
        return [self.results[link.addr] for link in self._links if link.addr in self.results]

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register with every name server at once, then keep refreshing in the background."""
        await self.register_now()
        stack = contextlib.AsyncExitStack()
        task_group = await stack.enter_async_context(asyncio.TaskGroup())
        self._refreshers = [
            task_group.create_task(self._keep_registered(link), name=f"register-{link.addr}") for link in self._links
        ]
        self._tasks = stack

    async def register_now(self) -> dict[str, RegistrationResult | None]:
        """Register with every name server concurrently; returns each one's result (``None`` if it failed).

        Does nothing once :meth:`close` has begun: a late topic change must not re-register a stopping broker.
        """
        if self._is_closing:
            return {}
        request = self._register_request()
        async with asyncio.TaskGroup() as group:
            tasks = {link.addr: group.create_task(self._register_one(link, request)) for link in self._links}
        return {addr: task.result() for addr, task in tasks.items()}

    async def close(self) -> None:
        """Stop refreshing, unregister from every name server, close the connections."""
        self._is_closing = True
        for task in self._refreshers:
            task.cancel()
        self._refreshers = []
        if self._tasks is not None:
            await self._tasks.aclose()
            self._tasks = None
        async with asyncio.TaskGroup() as group:
            for link in self._links:
                group.create_task(self._unregister_one(link))
        for link in self._links:
            channel, link.channel = link.channel, None
            if channel is not None:
                channel.close()
                await channel.wait_closed()

    async def __aenter__(self) -> BrokerRegistrar:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- one name server ----------------------------------------------------------------------------------------

    async def _keep_registered(self, link: _Link) -> None:
        delay = self._interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await link.wake.wait()
            if link.wake.is_set():  # the connection dropped: re-register soon, but never in a tight loop
                link.wake.clear()
                await asyncio.sleep(self._retry_delay_s)
            try:
                request = self._register_request()
            except Exception:  # the broker's body provider failed; keep the refresh alive for the next round
                log.exception("cannot build the REGISTER_BROKER body")
                delay = self._interval_s
                continue
            result = await self._register_one(link, request)
            delay = self._interval_s if result is not None else self._backoff_s(link)

    def _backoff_s(self, link: _Link) -> float:
        return float(min(self._interval_s, self._retry_delay_s * 2 ** min(link.failures - 1, 16)))

    async def _register_one(self, link: _Link, request: RemotingCommand) -> RegistrationResult | None:
        async with link.lock:
            try:
                channel = await self._channel(link)
                request = _with_fresh_opaque(request)
                response = await channel.request(request, self._request_timeout_s)
            except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
                self._note_failure(link, f"{type(exc).__name__}: {exc}")
                return None
        if response.code != ResponseCode.SUCCESS:
            self._note_failure(link, f"code {response.code}: {response.remark}")
            return None
        if link.failures:
            log.info("registered with name server %s again", link.addr)
        elif link.addr not in self.results:
            log.info("registered with name server %s", link.addr)
        link.failures = 0
        result = RegistrationResult(
            link.addr,
            response.ext_fields.get("masterAddr") or None,
            response.ext_fields.get("haServerAddr") or None,
            _kv_table(response.body, link.addr),
        )
        self.results[link.addr] = result
        return result

    def _note_failure(self, link: _Link, reason: str) -> None:
        link.failures += 1
        if link.failures == 1:
            log.warning("cannot register with name server %s: %s (retrying)", link.addr, reason)
        else:
            log.debug("cannot register with name server %s (%d failures): %s", link.addr, link.failures, reason)

    async def _unregister_one(self, link: _Link) -> None:
        identity = self.identity
        ext_fields = {
            "brokerAddr": identity.broker_addr,
            "brokerId": str(identity.broker_id),
            "brokerName": identity.broker_name,
            "clusterName": identity.cluster,
        }
        async with link.lock:
            try:
                channel = await self._channel(link)
                request = RemotingCommand.request(RequestCode.UNREGISTER_BROKER, ext_fields, opaque=next_opaque())
                response = await channel.request(request, self._request_timeout_s)
            except (OSError, TimeoutError) as exc:
                log.warning("cannot unregister from name server %s: %s: %s", link.addr, type(exc).__name__, exc)
                return
        if response.code != ResponseCode.SUCCESS:
            log.warning("name server %s refused to unregister us: %s %s", link.addr, response.code, response.remark)

    async def _channel(self, link: _Link) -> RemotingChannel:
        channel = link.channel
        if channel is not None and not channel.is_closed:
            return channel
        channel = await connect(link.host, link.port, timeout_s=self._connect_timeout_s)
        channel.close_callbacks.append(lambda closed: self._connection_lost(link, closed))
        link.channel = channel
        return channel

    def _connection_lost(self, link: _Link, channel: RemotingChannel) -> None:
        if link.channel is not channel:
            return
        link.channel = None
        if not self._is_closing:
            log.info("connection to name server %s lost; re-registering", link.addr)
            link.wake.set()

    def _register_request(self) -> RemotingCommand:
        topic_config_table, data_version = self._body_provider()
        body = dumps_compact(
            {
                "filterServerList": [],
                "topicConfigSerializeWrapper": {
                    "dataVersion": dict(data_version),
                    "topicConfigTable": dict(topic_config_table),
                },
            }
        )
        identity = self.identity
        ext_fields = {
            "bodyCrc32": str(zlib.crc32(body) & 0x7FFFFFFF),
            "brokerAddr": identity.broker_addr,
            "brokerId": str(identity.broker_id),
            "brokerName": identity.broker_name,
            "clusterName": identity.cluster,
            "compressed": "false",
            "enableActingMaster": "false",
            "haServerAddr": identity.ha_server_addr,
        }
        if self._heartbeat_timeout_ms is not None:
            ext_fields["heartbeatTimeoutMillis"] = str(self._heartbeat_timeout_ms)
        return RemotingCommand.request(RequestCode.REGISTER_BROKER, ext_fields, body, opaque=0)


def _with_fresh_opaque(request: RemotingCommand) -> RemotingCommand:
    """The same request with its own opaque: one body is sent to every name server."""
    return RemotingCommand.request(request.code, request.ext_fields, request.body, opaque=next_opaque())


def _kv_table(body: bytes | memoryview, namesrv_addr: str) -> dict[str, str]:
    if not body:
        return {}
    try:
        table = loads_lenient(body).get("table")
    except (ProtocolError, AttributeError) as exc:
        log.debug("ignoring an unreadable REGISTER_BROKER answer body from %s: %s", namesrv_addr, exc)
        return {}
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def _parse_link(addr: str) -> _Link:
    host, separator, port = addr.rpartition(":")
    if not separator or not port.isdigit():
        raise ConfigError(f"namesrvAddr: {addr!r} is not host:port")
    return _Link(addr, host.strip("[]"), int(port))
