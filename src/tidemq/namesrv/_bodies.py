"""The JSON bodies of the name server's requests and replies, in the shapes Java's fastjson reads and writes.

Writing (spec 1.5, 3.3, 3.16): bean fields in alphabetical order (fastjson's default), null fields left out,
``Set`` as an array, and ``Map<Long, String>`` (``brokerAddrs``) with **unquoted** integer keys,
``{0:"127.0.0.1:10911"}``, which fastjson, the Java clients and the C++ client (jsoncpp, ``atoi`` on each key)
all read. :func:`dumps_fastjson` writes that; :func:`dumps_standard` writes strict JSON with quoted keys and
``\\uXXXX`` escapes, what ``TopicRouteData.encode(BrowserCompatible, QuoteFieldNames, MapSortField)`` gives to
clients that ask for it.

Reading: bodies go through ``loads_lenient`` (fastjson's unquoted keys accepted), and every field is checked
and coerced the way fastjson would (``"4"`` for an int). A body that does not fit raises
``RemoteProtocolError`` naming the field; the handlers answer it with SYSTEM_ERROR.

Pure: no I/O. Imports ``tidemq.protocol.remoting`` and the route table's types only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tidemq.errors import LocalProtocolError, RemoteProtocolError
from tidemq.namesrv.route_table import (
    BrokerData,
    ClusterInfo,
    DataVersion,
    QueueData,
    TopicConfig,
    TopicRouteData,
)
from tidemq.protocol.remoting import loads_lenient

__all__ = [
    "RegisterBrokerBody",
    "broker_data_json",
    "cluster_info_json",
    "data_version_from_json",
    "data_version_json",
    "dumps_fastjson",
    "dumps_standard",
    "parse_data_version",
    "parse_register_broker_body",
    "parse_topic_route_queue_datas",
    "topic_route_json",
]

_COMPACT: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_STANDARD: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False, sort_keys=True)


# --- writing ----------------------------------------------------------------------------------------------------


def dumps_fastjson(obj: object) -> bytes:
    """Compact UTF-8 JSON as fastjson writes it: integer map keys unquoted, everything else standard.

    Raises:
        LocalProtocolError: ``obj`` holds something JSON cannot carry.
    """
    parts: list[str] = []
    try:
        _write(obj, parts)
        return "".join(parts).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"cannot encode body as JSON: {exc}") from exc


def dumps_standard(obj: object) -> bytes:
    """Strict JSON: keys quoted and sorted, non-ASCII escaped (fastjson's BrowserCompatible + MapSortField)."""
    try:
        return _STANDARD.encode(obj).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"cannot encode body as JSON: {exc}") from exc


def _write(obj: object, parts: list[str]) -> None:
    if isinstance(obj, dict):
        parts.append("{")
        for index, (key, value) in enumerate(obj.items()):
            if index:
                parts.append(",")
            if isinstance(key, int) and not isinstance(key, bool):
                parts.append(str(key))
            elif isinstance(key, str):
                parts.append(_COMPACT.encode(key))
            else:
                raise TypeError(f"map key {key!r} is neither an int nor a str")
            parts.append(":")
            _write(value, parts)
        parts.append("}")
    elif isinstance(obj, list | tuple):
        parts.append("[")
        for index, value in enumerate(obj):
            if index:
                parts.append(",")
            _write(value, parts)
        parts.append("]")
    else:
        parts.append(_COMPACT.encode(obj))


def broker_data_json(broker: BrokerData) -> dict[str, Any]:
    """``BrokerData``: brokerAddrs keyed by int broker id; 5.x fields only when they say something."""
    result: dict[str, Any] = {
        "brokerAddrs": dict(sorted(broker.broker_addrs.items())),
        "brokerName": broker.broker_name,
        "cluster": broker.cluster,
    }
    if broker.enable_acting_master:
        result["enableActingMaster"] = True
    if broker.zone_name is not None:
        result["zoneName"] = broker.zone_name
    return result


def _queue_data_json(queue: QueueData) -> dict[str, Any]:
    return {
        "brokerName": queue.broker_name,
        "perm": queue.perm,
        "readQueueNums": queue.read_queue_nums,
        "topicSysFlag": queue.topic_sys_flag,
        "writeQueueNums": queue.write_queue_nums,
    }


def topic_route_json(route: TopicRouteData) -> dict[str, Any]:
    """``TopicRouteData`` as the spec's vector shows it (``orderTopicConf`` only when set)."""
    result: dict[str, Any] = {
        "brokerDatas": [broker_data_json(broker) for broker in route.broker_datas],
        "filterServerTable": {addr: list(servers) for addr, servers in sorted(route.filter_server_table.items())},
    }
    if route.order_topic_conf is not None:
        result["orderTopicConf"] = route.order_topic_conf
    result["queueDatas"] = [_queue_data_json(queue) for queue in route.queue_datas]
    return result


def cluster_info_json(info: ClusterInfo) -> dict[str, Any]:
    """``ClusterInfo``: ``brokerAddrTable`` {name: BrokerData}, ``clusterAddrTable`` {cluster: [names]}."""
    return {
        "brokerAddrTable": {name: broker_data_json(broker) for name, broker in info.broker_addr_table.items()},
        "clusterAddrTable": {cluster: list(names) for cluster, names in info.cluster_addr_table.items()},
    }


def data_version_json(version: DataVersion) -> dict[str, int]:
    """``DataVersion``: ``{"counter":..,"stateVersion":..,"timestamp":..}``."""
    return {"counter": version.counter, "stateVersion": version.state_version, "timestamp": version.timestamp}


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterBrokerBody:
    """The parts of a REGISTER_BROKER body (``RegisterBrokerBody``) the name server uses."""

    topic_configs: Mapping[str, TopicConfig]
    data_version: DataVersion
    filter_server_list: tuple[str, ...] | None


def parse_register_broker_body(body: bytes) -> RegisterBrokerBody:
    """Parse an uncompressed REGISTER_BROKER body; an empty body registers no topics with version 0.

    Brokers older than V3_0_11 send a bare ``TopicConfigSerializeWrapper``; DefaultRequestProcessor tells the two
    apart by the broker's version, we by the shape (a missing or wrong ``version`` cannot mislead us).

    Raises:
        RemoteProtocolError: not JSON, or a field of the wrong type (named in the message).
    """
    if not body:
        return RegisterBrokerBody({}, DataVersion(), None)
    root = _object(loads_lenient(body), "body")
    is_wrapper_only = "topicConfigSerializeWrapper" not in root and "topicConfigTable" in root
    wrapper = (
        root if is_wrapper_only else _object(root.get("topicConfigSerializeWrapper"), "topicConfigSerializeWrapper")
    )
    table = _object(wrapper.get("topicConfigTable"), "topicConfigTable")
    configs = {str(name): _topic_config(str(name), value) for name, value in table.items()}
    version = data_version_from_json(wrapper.get("dataVersion"))
    servers = None if is_wrapper_only else root.get("filterServerList")
    if servers is not None:
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise RemoteProtocolError("filterServerList is not a list of addresses")
        servers = tuple(servers)
    return RegisterBrokerBody(configs, version, servers)


def parse_data_version(body: bytes) -> DataVersion | None:
    """The DataVersion body of QUERY_DATA_VERSION; ``None`` for an empty body."""
    return data_version_from_json(loads_lenient(body)) if body else None


def data_version_from_json(value: object) -> DataVersion:
    """A ``DataVersion`` object; absent (``None``) gives all zeros, as DefaultRequestProcessor uses for no body."""
    if value is None:
        return DataVersion()
    fields = _object(value, "dataVersion")
    return DataVersion(
        counter=_int(fields, "counter", 0, "dataVersion"),
        state_version=_int(fields, "stateVersion", 0, "dataVersion"),
        timestamp=_int(fields, "timestamp", 0, "dataVersion"),
    )


def parse_topic_route_queue_datas(body: bytes) -> list[QueueData]:
    """The ``queueDatas`` of a REGISTER_TOPIC_IN_NAMESRV body (a ``TopicRouteData``); empty when absent."""
    if not body:
        return []
    root = _object(loads_lenient(body), "body")
    items = root.get("queueDatas")
    if items is None:
        return []
    if not isinstance(items, list):
        raise RemoteProtocolError("queueDatas is not a list")
    queues = []
    for item in items:
        fields = _object(item, "queueDatas[]")
        name = fields.get("brokerName")
        if not isinstance(name, str) or not name:
            raise RemoteProtocolError("queueDatas[].brokerName is missing")
        queues.append(
            QueueData(
                name,
                _int(fields, "readQueueNums", 0, "queueDatas[]"),
                _int(fields, "writeQueueNums", 0, "queueDatas[]"),
                _int(fields, "perm", 6, "queueDatas[]"),
                _int(fields, "topicSysFlag", 0, "queueDatas[]"),
            )
        )
    return queues


def _topic_config(name: str, value: object) -> TopicConfig:
    where = f"topicConfigTable[{name!r}]"
    fields = _object(value, where)
    topic_name = fields.get("topicName", name)
    if not isinstance(topic_name, str) or not topic_name:
        raise RemoteProtocolError(f"{where}.topicName is not a topic name")
    attributes = fields.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise RemoteProtocolError(f"{where}.attributes is not an object")
    filter_type = fields.get("topicFilterType", "SINGLE_TAG")
    return TopicConfig(
        topic_name=topic_name,
        read_queue_nums=_int(fields, "readQueueNums", 16, where),
        write_queue_nums=_int(fields, "writeQueueNums", 16, where),
        perm=_int(fields, "perm", 6, where),
        topic_filter_type=str(filter_type),
        topic_sys_flag=_int(fields, "topicSysFlag", 0, where),
        order=_bool(fields, "order", where),
        attributes={str(k): str(v) for k, v in attributes.items()},
    )


def _object(value: object, where: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        kind = "missing" if value is None else f"a {type(value).__name__}, not an object"
        raise RemoteProtocolError(f"{where} is {kind}")
    return value


def _int(fields: Mapping[Any, Any], name: str, default: int, where: str) -> int:
    """An int field as fastjson reads it: a number, or a string of digits."""
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise RemoteProtocolError(f"{where}.{name} is not an integer: {value!r}")


def _bool(fields: Mapping[Any, Any], name: str, where: str) -> bool:
    value = fields.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RemoteProtocolError(f"{where}.{name} is not a boolean: {value!r}")
