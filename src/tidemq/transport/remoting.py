"""The remoting protocol over asyncio: one ``RemotingChannel`` per TCP connection, either side.

A channel feeds received bytes to the sans-IO :class:`RemotingConnection`, decodes every complete command of
the read, and then:

* a response: completes the future waiting on its opaque (late or unknown responses are logged and dropped);
* a request: calls the ``RequestHandler`` (or, when the server has one, the ``BatchHandler`` with every request
  of the read at once). A handler returns a response, ``None`` (oneway, or answered later), or an awaitable of
  either (long polling, SYNC_FLUSH waits); awaitables run as tasks owned by the channel, cancelled when it
  closes. Synchronous handlers answer inline, with no task, which keeps the common path cheap; inline answers
  are encoded after every handler of the read has run. Responses leave in completion order, not arrival order;
  the opaque matches them up.

Back-pressure: when the socket's write buffer passes its high-water mark, the channel stops reading that
peer until it drains. A peer that breaks the protocol gets one log line and a closed connection.

State ownership: everything here runs on the event loop thread; the store's threads reach it only through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Final, cast

from tidemq.errors import ProtocolError, TidemqError, response_code_for
from tidemq.protocol.remoting import RemotingCommand, RemotingConnection, ResponseCode, encode
from tidemq.protocol.remoting.connection import DEFAULT_MAX_FRAME

log = logging.getLogger(__name__)

Answer = RemotingCommand | bytes
"""A response, as a command or already encoded as one frame (``plain_response_frame``: a hot path's answer)."""
HandlerResult = Answer | None | Awaitable[Answer | None]
RequestHandler = Callable[["RemotingChannel", RemotingCommand], HandlerResult]
"""Called on the loop for every request a peer sends."""
BatchHandler = Callable[["RemotingChannel", list[RemotingCommand]], list[HandlerResult | Exception]]
"""Called on the loop, instead of the ``RequestHandler``, with every request of one read in order. Returns one
result per request, in order: what a ``RequestHandler`` would return, or the exception handling it raised (which
the channel answers as it answers a handler's exception). Lets a server run like requests in passes."""

_opaque_counter: Final = itertools.count(1)
CORK_LIMIT_BYTES: Final = 16 * 1024
"""Queued output past this is written at once rather than at the end of the loop pass. Past a few KiB one more
frame saves no syscall worth having, and holding big frames back makes the peer wait: with 256 KiB, a broker
answered a push consumer's 8 pulls (~10 KiB each) all at once, the consumer decoded them while the broker idled,
and each side sat idle a quarter of the time (pull round trips of 1 ms). At 16 KiB answers leave in pairs: drain
117k -> 140k msgs/s. Small frames are still held to :data:`CORK_LIMIT_COMMANDS`: 32 sync sends (~480 B each) or
their answers fit; at 8 KiB the Python client's sends left 17 to a write, and sync sends lost ~5%."""
CORK_LIMIT_COMMANDS: Final = 32
"""Queued commands past this are written at once. Corking a whole loop pass made two busy peers take turns: the
client queued 64 sends while the broker idled, then the broker answered 64 while the client idled. Writing every
32 lets each side start on the first requests (or responses) while the other still produces the rest, and keeps
the writes few: sync sends from 64 coroutines went from ~15k msgs/s (whole pass) to ~22k (every 12), and every 32
took a third of the broker's writes off again, +7% with the Java client's 64 threads on one connection (where
~43 requests arrive per read) and +5% with tidemq's own load. Two processes on two cores in both cases."""
TIMEOUT_SWEEP_S: Final = 0.05
"""How often a channel with requests in flight looks for expired ones: a request times out at most this late."""


def next_opaque() -> int:
    """Request ids for requests we originate; one counter per process, as the Java client has per instance."""
    return next(_opaque_counter) & 0x7FFFFFFF


class RemotingChannel(asyncio.Protocol):
    """One connection. Exposes ``remote_address`` ("ip:port") and request/response helpers."""

    def __init__(
        self,
        handler: RequestHandler | None,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        on_close: Callable[[RemotingChannel], None] | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self._handler = handler
        self._batch_handler = batch_handler
        self._codec = RemotingConnection(max_frame)
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop serving the connection, kept from :meth:`connection_made`: Python 3.11's
        ``asyncio.get_running_loop()`` makes a getpid system call each time (one per sync send, strace). py-spy
        blames that call for a tenth of the client's CPU, but A/B runs show no measurable difference (~0.1 µs a
        call): kept as it costs nothing, not as a speed-up."""
        self._pending: dict[int, tuple[asyncio.Future[RemotingCommand], float, float]] = {}
        """Requests in flight by opaque: (future, deadline on the loop clock, timeout)."""
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._corked: list[bytes | memoryview] = []
        self._corked_bytes = 0
        self._corked_commands = 0
        self.remote_address = ""
        self.local_address = ""
        self.close_callbacks: list[Callable[[RemotingChannel], None]] = []

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.remote_address = _address_text(peer)
        self.local_address = _address_text(local)

    def data_received(self, data: bytes) -> None:
        """Handle a read in three passes: decode every complete frame, run every handler (and complete every
        response), then encode every inline answer.

        Passes rather than one frame at a time because each pass keeps its code and data hot in the CPU's
        caches: the broker spent 29 µs of CPU per sync send frame by frame and 22 µs in passes, with ~40 sends
        to a read (microbenchmark in docs/benchmarks.md). Answers leave in completion order either way.
        """
        codec = self._codec
        codec.receive_data(data)
        commands: list[RemotingCommand] = []
        broken: ProtocolError | None = None
        try:
            while (command := codec.next_event()) is not None:
                commands.append(command)
        except ProtocolError as exc:  # the frames before the bad one are served; then the connection closes
            broken = exc
        requests: list[RemotingCommand] = []
        for command in commands:
            if command.flag & 1:
                self._complete(command)
            else:
                requests.append(command)
        if requests:
            answers: list[tuple[RemotingCommand, Answer]] = []
            for request, result in zip(requests, self._handle_all(requests), strict=True):
                answer = self._settle(request, result)
                if answer is not None:
                    answers.append((request, answer))
            for request, response in answers:
                self._answer(request, response)
        if broken is not None:
            log.warning("closing %s: %s", self.remote_address, broken)
            self.close()
        self.flush()  # every reply answered inline above leaves in one writev

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for future, _, _ in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"connection to {self.remote_address} closed"))
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        self._closed.set()
        for callback in (self._on_close, *self.close_callbacks):
            if callback is not None:
                try:
                    callback(self)
                except Exception:  # one failing observer must not keep the others from hearing of the close
                    log.exception("close callback failed")

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- requests from the peer ------------------------------------------------------------------------

    def _handle_all(self, requests: list[RemotingCommand]) -> list[HandlerResult | Exception]:
        """Every request's handler result (or the exception its handler raised), in order."""
        results: list[HandlerResult | Exception]
        if self._batch_handler is not None:
            try:
                results = self._batch_handler(self, requests)
            except Exception as exc:  # noqa: BLE001  # a batch handler's bug: each request of the read gets it
                results = [exc] * len(requests)
            if len(results) == len(requests):
                return results
            bug = RuntimeError(f"the batch handler answered {len(results)} of {len(requests)} requests")
            return [bug] * len(requests)
        handler = self._handler
        if handler is None:
            refusal = "not a server"
            return [request.make_response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, refusal) for request in requests]
        results = []
        for request in requests:
            try:
                results.append(handler(self, request))
            except Exception as exc:  # noqa: BLE001  # a handler bug costs one request; _settle logs it
                results.append(exc)
        return results

    def _settle(self, request: RemotingCommand, result: HandlerResult | Exception) -> Answer | None:
        """The inline answer to ``request`` given its handler's result (an error answer for an exception), or
        None when there is none yet (oneway, answered later, or running as a task that answers when done)."""
        if result is None or isinstance(result, bytes | RemotingCommand):
            return result
        if isinstance(result, TidemqError):
            return request.make_response(response_code_for(result), str(result))
        if isinstance(result, Exception):
            log.error("handler for request code %d failed", request.code, exc_info=result)
            return request.make_response(ResponseCode.SYSTEM_ERROR, f"{type(result).__name__}: {result}")
        task = asyncio.ensure_future(self._finish(request, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def _finish(self, request: RemotingCommand, pending: Awaitable[Answer | None]) -> None:
        try:
            response = await pending
        except asyncio.CancelledError:
            raise
        except TidemqError as exc:
            response = request.make_response(response_code_for(exc), str(exc))
        except Exception as exc:  # as in _settle: answer with the error, keep the connection
            log.exception("handler for request code %d failed", request.code)
            response = request.make_response(ResponseCode.SYSTEM_ERROR, f"{type(exc).__name__}: {exc}")
        if response is not None:
            self._answer(request, response)

    def _answer(self, request: RemotingCommand, response: Answer) -> None:
        if request.flag & 2:  # oneway: the peer expects nothing
            return
        self.send(response)

    # -- our requests ----------------------------------------------------------------------------------

    def send(self, command: RemotingCommand | bytes) -> None:
        """Queue one command; frames queued in one pass of the loop leave in one ``writelines`` (writev).

        The flush runs at the end of ``data_received`` for inline replies, or from ``call_soon`` for frames
        sent elsewhere (held pulls, notifications, client requests), or at once past :data:`CORK_LIMIT_BYTES` or
        :data:`CORK_LIMIT_COMMANDS`.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body: bytes | memoryview
        if isinstance(command, bytes):
            header, body = command, b""  # a frame encoded already
        else:
            header, body = encode(command)
        corked = self._corked
        if not corked:
            (self._loop or asyncio.get_running_loop()).call_soon(self.flush)
        corked.append(header)
        self._corked_bytes += len(header)
        if body:
            corked.append(body)
            self._corked_bytes += body.nbytes if isinstance(body, memoryview) else len(body)
        self._corked_commands += 1
        if self._corked_bytes > CORK_LIMIT_BYTES or self._corked_commands >= CORK_LIMIT_COMMANDS:
            self.flush()

    def flush(self) -> None:
        """Write every queued frame now."""
        corked = self._corked
        if not corked:
            return
        self._corked = []
        self._corked_bytes = 0
        self._corked_commands = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.writelines(corked)

    def request(self, command: RemotingCommand, timeout_s: float) -> asyncio.Future[RemotingCommand]:
        """Send a request; the returned future completes with its response.

        A plain function returning the future rather than a coroutine: a sync send awaits through several
        frames already, and each one more is paid again on every resume.

        Raises (from awaiting the future, except the first):
            ConnectionError: the connection is closed already (raised at once), or closed before the response.
            TimeoutError: no response within ``timeout_s`` (found by a sweep, up to :data:`TIMEOUT_SWEEP_S` late).
        """
        if self.is_closed:
            raise ConnectionError(f"connection to {self.remote_address} is closed")
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[RemotingCommand] = loop.create_future()
        self._pending[command.opaque] = (future, loop.time() + timeout_s, timeout_s)
        # One sweep timer per channel rather than a timer per request (or ``asyncio.timeout``, whose context
        # manager and task cancellation cost ~13% of a client's CPU per sync send), as the Java client scans its
        # response table.
        if self._sweeper is None:
            self._sweeper = loop.call_later(min(TIMEOUT_SWEEP_S, timeout_s), self._sweep)
        self.send(command)
        return future

    def _sweep(self) -> None:
        """Fail the requests whose deadline passed and forget those nobody awaits; come back while any remain."""
        self._sweeper = None
        pending = self._pending
        if not pending:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for opaque, (future, deadline, timeout_s) in list(pending.items()):
            if future.done():  # cancelled by its waiter
                del pending[opaque]
            elif deadline <= now:
                del pending[opaque]
                future.set_exception(TimeoutError(f"no response from {self.remote_address} within {timeout_s:g} s"))
        if pending:
            self._sweeper = loop.call_later(TIMEOUT_SWEEP_S, self._sweep)

    def _complete(self, response: RemotingCommand) -> None:
        waiting = self._pending.pop(response.opaque, None)
        if waiting is None or waiting[0].done():
            log.debug("dropping a response nobody waits for (opaque %d) from %s", response.opaque, self.remote_address)
            return
        waiting[0].set_result(response)

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._transport is None or self._transport.is_closing() or self._closed.is_set()

    def close(self) -> None:
        self.flush()  # the transport writes out what it holds before it closes
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()


def _address_text(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class RemotingServer:
    """A listening socket whose connections are ``RemotingChannel`` s sharing one handler.

    Use ``async with RemotingServer(handler, port=0) as server: server.port``.
    """

    def __init__(
        self,
        handler: RequestHandler,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        max_frame: int = DEFAULT_MAX_FRAME,
        on_close: Callable[[RemotingChannel], None] | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self._handler = handler
        self._batch_handler = batch_handler
        self._host = host
        self._requested_port = port
        self._max_frame = max_frame
        self._on_close = on_close
        self._server: asyncio.Server | None = None
        self._channels: set[RemotingChannel] = set()
        self.port = 0

    def _make_channel(self) -> RemotingChannel:
        channel = RemotingChannel(
            self._handler, max_frame=self._max_frame, on_close=self._forget, batch_handler=self._batch_handler
        )
        self._channels.add(channel)
        return channel

    def _forget(self, channel: RemotingChannel) -> None:
        self._channels.discard(channel)
        if self._on_close is not None:
            self._on_close(channel)

    async def start(self, *, serving: bool = True) -> None:
        """Bind the port; with ``serving=False`` connections are refused until :meth:`start_serving`."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_channel,
            self._host,
            self._requested_port,
            reuse_address=True,
            backlog=1024,
            start_serving=serving,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def start_serving(self) -> None:
        """Listen and accept connections (after ``start(serving=False)``)."""
        if self._server is None:
            raise RuntimeError("start_serving before start")
        await self._server.start_serving()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for channel in list(self._channels):
            channel.close()
        for channel in list(self._channels):
            await channel.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def channels(self) -> set[RemotingChannel]:
        return self._channels

    async def __aenter__(self) -> RemotingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def connect(
    host: str,
    port: int,
    handler: RequestHandler | None = None,
    *,
    timeout_s: float = 3.0,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> RemotingChannel:
    """Open a client connection; ``handler`` answers requests the server sends us (e.g. notifications)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        _, channel = await loop.create_connection(lambda: RemotingChannel(handler, max_frame=max_frame), host, port)
    return channel
