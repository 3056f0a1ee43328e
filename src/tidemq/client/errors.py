"""The client SDK's exceptions, a branch of tidemq's one tree (:mod:`tidemq.errors`).

::

    TidemqError
    ├── IllegalNameError             (tidemq.errors) a topic or group name breaks RocketMQ's rules
    ├── MessageIllegalError          (tidemq.errors) empty or oversized body, reserved property...
    └── ClientError                  the client could not get an answer it can use
        ├── ClientStateError         the client is not started, or already closed
        ├── NoRouteError             no name server knows the topic, and TBW102 is not there to fall back on
        ├── ConnectionFailedError    cannot connect to a broker or name server, or the connection dropped
        ├── RequestTimeoutError      no reply within the timeout
        ├── BrokerError              a broker or name server answered with an error code (``code``, ``remark``)
        ├── SubscriptionError        a subscription the consumer cannot take (bad expression, no listener...)
        ├── QueueNotAssignedError    a lite pull consumer was asked about a queue it does not hold
        ├── IllegalOffsetError       a seek outside the queue's ``[min_offset, max_offset]``
        └── MessageNotFoundError     no message has the id asked for (Admin.query_message_by_id)

Client-side validation raises the shared :class:`~tidemq.errors.IllegalNameError` and
:class:`~tidemq.errors.MessageIllegalError`, the same classes the broker maps to MESSAGE_ILLEGAL.
A failed send that was retried raises the last attempt's error, with a note saying how many attempts were made.
"""

from __future__ import annotations

from tidemq.errors import TidemqError


class ClientError(TidemqError):
    """Root of the client's own errors."""


class ClientStateError(ClientError):
    """The client was used before ``start()`` or after ``close()``."""


class NoRouteError(ClientError):
    """No route for a topic: the name servers do not know it, and no TBW102 route allows auto-creation.

    Attributes:
        topic: the topic asked for.
    """

    def __init__(self, topic: str, detail: str = "") -> None:
        message = f"no route info of topic {topic!r}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.topic = topic


class ConnectionFailedError(ClientError):
    """A connection to ``addr`` could not be opened, or closed while a request was in flight.

    Attributes:
        addr: the peer, ``"host:port"``.
    """

    def __init__(self, addr: str, reason: str) -> None:
        super().__init__(f"connection to {addr} failed: {reason}")
        self.addr = addr


class RequestTimeoutError(ClientError):
    """No reply from ``addr`` within ``timeout_s`` (Java's ``RemotingTimeoutException``).

    Attributes:
        addr: the peer, ``"host:port"``.
        timeout_s: how long we waited.
    """

    def __init__(self, addr: str, timeout_s: float, what: str = "request") -> None:
        super().__init__(f"{what} to {addr} timed out after {timeout_s * 1000:.0f} ms")
        self.addr = addr
        self.timeout_s = timeout_s


class BrokerError(ClientError):
    """A broker or name server answered with a RocketMQ response code other than success.

    Attributes:
        code: the response code (compare with :class:`~tidemq.protocol.remoting.ResponseCode`).
        remark: the peer's reason, ``""`` when it gave none.
        addr: the peer that answered, ``"host:port"``.
    """

    def __init__(self, code: int, remark: str | None, addr: str = "") -> None:
        self.code = code
        self.remark = remark or ""
        self.addr = addr
        where = f" from {addr}" if addr else ""
        super().__init__(f"error code {code}{where}: {self.remark or '(no remark)'}")


class SubscriptionError(ClientError):
    """A subscription the consumer cannot take: a bad expression, a missing listener, a change after start."""


class QueueNotAssignedError(ClientError):
    """A lite pull consumer was asked to seek or commit a queue it does not hold.

    Attributes:
        queue: the queue asked about (a :class:`~tidemq.client.MessageQueue`).
    """

    def __init__(self, queue: object) -> None:
        super().__init__(f"{queue} is not assigned to this consumer")
        self.queue = queue


class IllegalOffsetError(ClientError):
    """A seek to an offset outside ``[min_offset, max_offset]`` of the queue.

    Attributes:
        offset: the offset asked for.
        min_offset: the queue's first offset still stored.
        max_offset: the queue's next offset to be written.
    """

    def __init__(self, queue: object, offset: int, min_offset: int, max_offset: int) -> None:
        super().__init__(f"offset {offset} of {queue} is outside [{min_offset}, {max_offset}]")
        self.offset = offset
        self.min_offset = min_offset
        self.max_offset = max_offset


class MessageNotFoundError(ClientError):
    """No broker holds a message with the id asked for (or it aged out of the commit log).

    Attributes:
        msg_id: the id asked for.
    """

    def __init__(self, msg_id: str, detail: str = "") -> None:
        super().__init__(f"message {msg_id} not found" + (f": {detail}" if detail else ""))
        self.msg_id = msg_id
