"""asyncio transports for the remoting protocol: the server, the client connection, shared by every role.

Only I/O lives here; frames are parsed by :mod:`tidemq.protocol.remoting`.
"""

from tidemq.transport.remoting import (
    RemotingChannel,
    RemotingServer,
    RequestHandler,
    connect,
    next_opaque,
)

__all__ = ["RemotingChannel", "RemotingServer", "RequestHandler", "connect", "next_opaque"]
