"""RemotingConnection: the sans-IO receive side of one remoting connection, bytes in and commands out.

The owner (a gateway's protocol object, or a test) feeds whatever the socket delivered and takes the complete
commands out::

    conn = RemotingConnection(max_frame=16 << 20)
    conn.receive_data(chunk)            # b"" means EOF
    for cmd in conn.events():           # complete frames only
        ...                             # replies carry cmd.opaque

Frames may be split anywhere across chunks and a chunk may hold many frames. Sending needs no state:
:func:`~tidemq.protocol.remoting.command.encode` turns a command into buffers for ``transport.writelines``.

State: one ``bytearray`` of received bytes plus the offset of the first unparsed byte. Parsing only moves the
offset; the consumed prefix is dropped once per :meth:`receive_data`, never once per frame. After a protocol
error the connection is failed for good: the peer's framing is lost and the only way on is to close. This module
does no I/O and imports nothing from tidemq except ``tidemq.errors``; one connection belongs to one task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NoReturn

from tidemq.errors import LocalProtocolError, RemoteProtocolError
from tidemq.protocol.remoting.command import LENGTH, MIN_FRAME_LENGTH, RemotingCommand, decode_payload

DEFAULT_MAX_FRAME: Final = 16 << 20
"""Java's ``com.rocketmq.remoting.frameMaxLength`` default (16 MiB): a 4 MiB message with its properties, or a
batch, fits with room to spare, and an owner that drains :meth:`RemotingConnection.events` after each
``receive_data`` never buffers more than one frame plus one read, whatever a broken or hostile peer sends."""


class RemotingConnection:
    """Turns a stream of bytes from one peer into :class:`RemotingCommand` s.

    Args:
        max_frame: the largest ``length`` word accepted, in bytes. Java bounds the frame including the 4-byte
            length word; the 4 bytes make no practical difference.
    """

    __slots__ = ("_buffer", "_error", "_is_eof", "_max_frame", "_offset")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < MIN_FRAME_LENGTH:
            raise ValueError(f"max_frame must be at least {MIN_FRAME_LENGTH}, not {max_frame}")
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._offset = 0
        self._is_eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def is_eof(self) -> bool:
        """The peer closed its side (``receive_data(b"")`` was called)."""
        return self._is_eof

    @property
    def is_failed(self) -> bool:
        """A protocol error was found; :meth:`events` raises it again on every call."""
        return self._error is not None

    @property
    def buffered_size(self) -> int:
        """Bytes received but not yet returned as commands."""
        return len(self._buffer) - self._offset

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed the connection (EOF).

        Bytes fed after a protocol error are dropped: the framing is lost, the owner should close.

        Raises:
            LocalProtocolError: data fed after EOF (a bug of the caller).
        """
        if self._is_eof:
            raise LocalProtocolError("receive_data called after EOF")
        if not data:
            self._is_eof = True
            return
        if self._error is not None:
            return
        if self._offset:
            # CPython drops a bytearray's prefix by moving its start pointer; this is not a copy of the rest.
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def next_event(self) -> RemotingCommand | None:
        """Return the next complete command, or ``None`` if more bytes are needed (or EOF came cleanly).

        Raises:
            RemoteProtocolError: a bad frame (its message says what), or EOF in the middle of a frame. The
                connection stays failed: every later call raises again.
        """
        if self._error is not None:
            raise RemoteProtocolError(f"connection already failed: {self._error}")
        buffer = self._buffer
        start = self._offset
        available = len(buffer) - start
        if available >= 4:
            (length,) = LENGTH.unpack_from(buffer, start)
            if not MIN_FRAME_LENGTH <= length <= self._max_frame:
                self._fail(self._bad_length_message(length))
            if available >= 4 + length:
                try:
                    command = decode_payload(buffer, start + 4, length)
                except RemoteProtocolError as exc:
                    self._fail(str(exc))
                self._offset = start + 4 + length
                return command
        if self._is_eof and available:
            self._fail(f"connection closed mid-frame ({available} bytes of an incomplete frame)")
        return None

    def events(self) -> Iterator[RemotingCommand]:
        """Yield every complete command received so far, in order.

        Each command is parsed when it is asked for, so feeding more data while iterating is fine.

        Raises:
            RemoteProtocolError: as :meth:`next_event`, after the commands before the bad frame were yielded.
        """
        while (command := self.next_event()) is not None:
            yield command

    def _bad_length_message(self, length: int) -> str:
        if length < 0:
            return f"negative frame length {length}"
        if length < MIN_FRAME_LENGTH:
            return f"frame length {length} is below the minimum of {MIN_FRAME_LENGTH}"
        return f"frame length {length} exceeds the limit of {self._max_frame} bytes"

    def _fail(self, message: str) -> NoReturn:
        """Record the error, drop the buffer, raise."""
        error = RemoteProtocolError(message)
        self._error = error
        # A fresh buffer: nothing of the broken stream is kept or parsed again.
        self._buffer = bytearray()
        self._offset = 0
        raise error
