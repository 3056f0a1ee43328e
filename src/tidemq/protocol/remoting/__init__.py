"""RocketMQ's remoting protocol, sans-IO: frames and RemotingCommands in, frames out (spec sections 1-3).

* :mod:`.codes` - request, response, language and serialize-type codes, RocketMQ's names and values.
* :mod:`.command` - :class:`RemotingCommand`, its JSON and ROCKETMQ headers, :func:`encode` / :func:`decode_frame`.
* :mod:`.connection` - :class:`RemotingConnection`, a byte stream in, complete commands out.
* :mod:`.json_compat` - bodies: fastjson's non-standard maps in (:func:`loads_lenient`), compact JSON out.

No asyncio, no sockets; nothing from tidemq is imported except ``tidemq.errors``. The gateways own the I/O.
"""

from tidemq.protocol.remoting.codes import (
    DEFAULT_VERSION,
    CommandFlag,
    LanguageCode,
    RequestCode,
    ResponseCode,
    SerializeType,
)
from tidemq.protocol.remoting.command import (
    MAX_HEADER_LENGTH,
    RemotingCommand,
    coerce_ext_value,
    decode_frame,
    encode,
    encode_bytes,
    plain_response_frame,
)
from tidemq.protocol.remoting.connection import DEFAULT_MAX_FRAME, RemotingConnection
from tidemq.protocol.remoting.json_compat import ObjectKey, dumps_compact, loads_lenient, message_queue_key

__all__ = [
    # codes
    "RequestCode",
    "ResponseCode",
    "LanguageCode",
    "SerializeType",
    "CommandFlag",
    "DEFAULT_VERSION",
    # commands and frames
    "RemotingCommand",
    "encode",
    "encode_bytes",
    "plain_response_frame",
    "decode_frame",
    "coerce_ext_value",
    "MAX_HEADER_LENGTH",
    # the receive side of a connection
    "RemotingConnection",
    "DEFAULT_MAX_FRAME",
    # bodies
    "loads_lenient",
    "dumps_compact",
    "ObjectKey",
    "message_queue_key",
]
