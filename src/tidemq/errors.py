"""The one exception tree of tidemq, and its mapping to RocketMQ response codes.

::

    TidemqError
    ├── ConfigError                  bad configuration file, flag or value
    ├── StoreError                   the message store refused or failed an operation
    │   ├── StoreFormatError         a directory written by a newer format or another program
    │   ├── StoreCorruptionError     a record or file failed its checks (magic, CRC, size); carries the offset
    │   ├── StoreFullError           disk full / diskMaxUsedSpaceRatio passed: appends refused, reads go on
    │   └── StoreClosedError         the store was closed (shutdown) while the call was in flight
    ├── IllegalNameError             topic or group name breaks RocketMQ's rules
    ├── MessageIllegalError          message too large, properties too long, empty body...
    └── ProtocolError                a wire protocol was broken
        ├── RemoteProtocolError      the peer broke the protocol (close the connection, log once)
        └── LocalProtocolError       we tried to send something the protocol cannot carry

Hot store paths do not raise for expected outcomes: they return status enums (``PutStatus``,
``GetStatus``); exceptions are for what the caller cannot plan around.
"""

from __future__ import annotations

from typing import Final


class TidemqError(Exception):
    """Root of every error tidemq raises on purpose."""


class ConfigError(TidemqError):
    """A configuration file, flag or value is wrong; the message names the key."""


class StoreError(TidemqError):
    """The message store refused or failed an operation."""


class StoreFormatError(StoreError):
    """A store directory was written by a newer format version or by another program."""


class StoreCorruptionError(StoreError):
    """A record or file failed its integrity checks.

    Attributes:
        offset: the byte offset (in the commit log or the named file) where the damage starts.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.offset = offset


class StoreFullError(StoreError):
    """The disk is full or above diskMaxUsedSpaceRatio: appends are refused, reads still work."""


class StoreClosedError(StoreError):
    """The store was closed while the call was in flight."""


class IllegalNameError(TidemqError):
    """A topic or group name breaks RocketMQ's naming rules."""


class MessageIllegalError(TidemqError):
    """A message cannot be stored as given (too large, properties too long, ...)."""


class ProtocolError(TidemqError):
    """A wire protocol was broken."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: log once and close the connection."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol cannot carry."""


# RocketMQ ResponseCode values for the errors above (org.apache.rocketmq.remoting.protocol.ResponseCode).
SYSTEM_ERROR: Final = 1
SERVICE_NOT_AVAILABLE: Final = 14
MESSAGE_ILLEGAL: Final = 13

RESPONSE_CODE_BY_ERROR: Final[dict[type[TidemqError], int]] = {
    IllegalNameError: MESSAGE_ILLEGAL,
    MessageIllegalError: MESSAGE_ILLEGAL,
    StoreFullError: SERVICE_NOT_AVAILABLE,
    StoreClosedError: SERVICE_NOT_AVAILABLE,
    StoreError: SYSTEM_ERROR,
    TidemqError: SYSTEM_ERROR,
}


def response_code_for(error: TidemqError) -> int:
    """Return the RocketMQ response code for ``error``: the entry of its nearest class in the table."""
    for cls in type(error).__mro__:
        code = RESPONSE_CODE_BY_ERROR.get(cls)
        if code is not None:
            return code
    return SYSTEM_ERROR
