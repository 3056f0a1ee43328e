"""One remoting connection per peer address, shared by everything a client instance sends.

A :class:`ConnectionPool` keeps one :class:`~tidemq.transport.RemotingChannel` per ``"host:port"`` (broker or
name server), opens it on first use and opens it again on the next use after it closed, as Java's
``NettyRemotingClient`` does with its channel table. Concurrent first uses of an address share one connect.

:meth:`ConnectionPool.invoke` turns transport failures into the client's exceptions: a refused or dropped
connection becomes :class:`~tidemq.client.errors.ConnectionFailedError`, a missing reply
:class:`~tidemq.client.errors.RequestTimeoutError`. Response codes are left to the caller.

Writes are corked: a :class:`ClientChannel` collects the frames written during one pass of the event loop and
hands them to the socket in one ``writelines`` (one ``writev``) at the end of it. With 64 coroutines sending
over one connection that replaces 64 syscalls by one; measured against a minimal fake broker the client's CPU
per synchronous send dropped by a quarter. A channel also exposes whether the socket has drained
(``wait_writable``), which gives oneway sends the back-pressure that replies give synchronous ones.

Brokers also send requests to clients on the same connections (NOTIFY_CONSUMER_IDS_CHANGED,
GET_CONSUMER_RUNNING_INFO, CHECK_TRANSACTION_STATE...). :attr:`ConnectionPool.handlers` maps a request code to
the handler that answers it; consumers and transactional producers register theirs there (a consumer's
NOTIFY_CONSUMER_IDS_CHANGED handler triggers its rebalance; without a consumer the notification is ignored).
Anything unhandled is answered REQUEST_CODE_NOT_SUPPORTED, as Java does; oneway requests
(NOTIFY_CONSUMER_IDS_CHANGED) get no answer.

State: the channel table and per-address connect locks, all on the event loop thread. The pool imports nothing
from the broker, name server or gateways.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from tidemq.client.errors import ClientError, ClientStateError, ConnectionFailedError, RequestTimeoutError
from tidemq.protocol.remoting import DEFAULT_MAX_FRAME, RemotingCommand, RequestCode, ResponseCode
from tidemq.transport import RemotingChannel, RequestHandler
from tidemq.transport.remoting import HandlerResult

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S: Final = 3.0
"""Java's ``connectTimeoutMillis`` default (3 s)."""
CLOSE_WAIT_S: Final = 2.0
"""How long :meth:`ConnectionPool.close` waits for each socket to finish closing."""


def split_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) to ``(host, port)``.

    Raises:
        ValueError: no port, or a port that is not a number.
    """
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {addr!r}")
    return host.strip("[]"), int(port)


class ClientChannel(RemotingChannel):
    """A :class:`~tidemq.transport.RemotingChannel` with corked writes and a writable event.

    Frames are corked as on every channel (see :meth:`RemotingChannel.send`): they leave together at the end of
    the loop pass, or at once past the transport's limits. Order is kept.
    The writable event follows the transport's ``pause_writing``/``resume_writing`` (its high-water marks).
    """

    def __init__(self, handler: RequestHandler | None, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(handler, max_frame=max_frame)
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def is_writable(self) -> bool:
        """The socket's buffer is below its high-water mark."""
        return self._writable.is_set()

    async def wait_writable(self) -> None:
        """Return once the socket's buffer drained below its low-water mark (or the channel closed)."""
        await self._writable.wait()

    def pause_writing(self) -> None:
        # Not the base class's reaction (stop reading the peer): a client that stops reading replies while the
        # broker stops reading requests until its replies drain would deadlock both. Oneway senders wait instead.
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def close(self) -> None:
        self.flush()  # the transport writes out what it holds before it closes
        super().close()

    def abort(self) -> None:
        """Close now, dropping unwritten data (a peer that stopped reading would hold a close forever)."""
        self._corked = []
        transport = self._transport
        if transport is not None:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._corked = []
        self._writable.set()  # wake oneway senders: they find the channel closed
        super().connection_lost(exc)


def client_error(addr: str, exc: TimeoutError | ConnectionError, timeout_s: float) -> ClientError:
    """The client's error for what a channel's request future raised: a timeout or a lost connection."""
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError(addr, timeout_s)
    return ConnectionFailedError(addr, str(exc) or type(exc).__name__)


def _ignore(channel: RemotingChannel, request: RemotingCommand) -> HandlerResult:
    """For oneway notifications nobody acts on yet."""
    return None


class ConnectionPool:
    """Channels by address, opened lazily and re-opened after they close.

    Args:
        connect_timeout_s: how long opening one TCP connection may take.
        max_frame: the largest frame accepted from a peer.
    """

    def __init__(
        self, *, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, max_frame: int = DEFAULT_MAX_FRAME
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._max_frame = max_frame
        self._channels: dict[str, ClientChannel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._is_closed = False
        self.handlers: dict[int, RequestHandler] = {RequestCode.NOTIFY_CONSUMER_IDS_CHANGED: _ignore}
        """Broker-initiated requests we answer, by request code; register more before connections open."""

    @property
    def addresses(self) -> list[str]:
        """Addresses with an open channel."""
        return [addr for addr, channel in self._channels.items() if not channel.is_closed]

    async def channel(self, addr: str) -> ClientChannel:
        """The open channel to ``addr``, connecting first if there is none.

        Raises:
            ConnectionFailedError: the connection cannot be opened.
            ClientStateError: the pool is closed.
        """
        channel = self._channels.get(addr)
        if channel is not None and not channel.is_closed:
            return channel
        return await self._connect(addr)

    def open_channel(self, addr: str) -> ClientChannel | None:
        """The channel to ``addr`` if one is open, else None (then :meth:`invoke` or :meth:`channel` opens one).

        With :func:`client_error`, a hot path sends without :meth:`invoke`'s coroutine: one frame less to create
        and to resume on every request.
        """
        channel = self._channels.get(addr)
        return None if channel is None or channel.is_closed else channel

    async def invoke(self, addr: str, request: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send ``request`` to ``addr`` and return the reply, whatever its code.

        Raises:
            ConnectionFailedError: cannot connect, or the connection closed before the reply came.
            RequestTimeoutError: no reply within ``timeout_s``.
            ClientStateError: the pool is closed.
        """
        channel = self._channels.get(addr)
        if channel is None or channel.is_closed:
            channel = await self._connect(addr, timeout_s)
        try:
            return await channel.request(request, timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            raise client_error(addr, exc, timeout_s) from None

    async def invoke_oneway(self, addr: str, request: RemotingCommand, timeout_s: float) -> None:
        """Write ``request`` (flag oneway) to ``addr``, waiting only for the connection and for room in its buffer.

        Raises:
            ConnectionFailedError: cannot connect, or the connection is closing.
            RequestTimeoutError: the socket's buffer did not drain within ``timeout_s`` (a stuck peer).
            ClientStateError: the pool is closed.
        """
        channel = self._channels.get(addr)
        if channel is None or channel.is_closed:
            channel = await self._connect(addr, timeout_s)
        if not channel.is_writable:
            try:
                async with asyncio.timeout(timeout_s):
                    await channel.wait_writable()
            except TimeoutError:
                raise RequestTimeoutError(addr, timeout_s, "oneway send") from None
        if channel.is_closed:
            raise ConnectionFailedError(addr, "the connection is closing")
        channel.send(request)

    async def _connect(self, addr: str, timeout_s: float | None = None) -> ClientChannel:
        """Open (or wait for another task opening) the channel to ``addr``, within ``timeout_s`` if given."""
        if self._is_closed:
            raise ClientStateError("the client is closed")
        lock = self._locks.get(addr)
        if lock is None:
            lock = self._locks[addr] = asyncio.Lock()
        async with lock:
            channel = self._channels.get(addr)
            if channel is not None and not channel.is_closed:
                return channel  # another task connected while we waited for the lock
            try:
                host, port = split_addr(addr)
            except ValueError as exc:
                raise ConnectionFailedError(addr, str(exc)) from None
            connect_timeout_s = (
                self._connect_timeout_s if timeout_s is None else min(timeout_s, self._connect_timeout_s)
            )
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(connect_timeout_s):
                    _, channel = await loop.create_connection(self._make_channel, host, port)
            except TimeoutError:
                raise ConnectionFailedError(addr, f"connect timed out after {connect_timeout_s:.3g} s") from None
            except OSError as exc:
                raise ConnectionFailedError(addr, exc.strerror or str(exc)) from None
            if self._is_closed:  # close() ran while we were connecting
                channel.close()
                raise ClientStateError("the client is closed")
            log.debug("connected to %s from %s", addr, channel.local_address)
            self._channels[addr] = channel
            return channel

    def _make_channel(self) -> ClientChannel:
        return ClientChannel(self._dispatch, max_frame=self._max_frame)

    def _dispatch(self, channel: RemotingChannel, request: RemotingCommand) -> HandlerResult:
        handler = self.handlers.get(request.code)
        if handler is not None:
            return handler(channel, request)
        log.debug("%s sent request code %d, which this client does not handle", channel.remote_address, request.code)
        return request.make_response(
            ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {request.code} not supported"
        )

    def close_channel(self, addr: str) -> None:
        """Close the channel to ``addr`` if there is one; the next use reconnects."""
        channel = self._channels.pop(addr, None)
        if channel is not None:
            channel.close()

    async def close(self) -> None:
        """Close every channel (requests in flight fail with ConnectionFailedError); the pool stays closed."""
        self._is_closed = True
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            channel.close()
        for channel in channels:
            try:
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await channel.wait_closed()
            except TimeoutError:
                log.warning("%s did not take our last %s s of data; closing hard", channel.remote_address, CLOSE_WAIT_S)
                channel.abort()
