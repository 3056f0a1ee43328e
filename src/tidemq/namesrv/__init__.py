"""The name server: where brokers register their topics and clients look up routes (RocketMQ's namesrv).

* :mod:`.route_table` - the tables and their rules (RouteInfoManager), pure and synchronous.
* :mod:`.handlers` - request codes mapped onto the route table, replies in fastjson's shapes.
* :mod:`.server` - :class:`NameServer`, the asyncio server with the broker expiry scan.
* :mod:`.config` - :class:`NamesrvConfig`, loaded from a namesrv.conf properties file.

Imports ``tidemq.protocol``, ``tidemq.transport``, ``tidemq.properties`` and ``tidemq.errors`` only; never the
broker, gateways or cli.
"""

from tidemq.namesrv.config import NamesrvConfig, load_namesrv_config
from tidemq.namesrv.handlers import NamesrvHandlers
from tidemq.namesrv.route_table import (
    BrokerData,
    ClusterInfo,
    DataVersion,
    QueueData,
    RegisterResult,
    RemovedBroker,
    RouteTable,
    TopicConfig,
    TopicRouteData,
)
from tidemq.namesrv.server import NameServer

__all__ = [
    "NameServer",
    "NamesrvConfig",
    "load_namesrv_config",
    "NamesrvHandlers",
    "RouteTable",
    "TopicConfig",
    "DataVersion",
    "QueueData",
    "BrokerData",
    "TopicRouteData",
    "ClusterInfo",
    "RegisterResult",
    "RemovedBroker",
]
