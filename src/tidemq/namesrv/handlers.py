"""Name server requests -> route table calls -> responses (RocketMQ's DefaultRequestProcessor and
ClientRequestProcessor).

:class:`NamesrvHandlers` is synchronous and does no I/O: :meth:`~NamesrvHandlers.handle` takes a decoded request
and the key of the channel it came on, and always returns a response. Unknown codes get
REQUEST_CODE_NOT_SUPPORTED; a missing or malformed field or body gets SYSTEM_ERROR with a remark naming it, as
Java's ``decodeCommandCustomHeader`` failures do. Nothing raises out of ``handle``.

Reply shapes follow the Java name server (spec 3.3, 3.16, 7.1); bodies are written by :mod:`._bodies`:

* GET_ROUTEINFO_BY_TOPIC writes ``brokerAddrs`` keys unquoted (``{0:"ip:port"}``, fastjson's form, which the
  C++ client was captured accepting) unless the request carries ``acceptStandardJsonOnly=true`` or comes from a
  client of version V4_9_4 or later: ``ClientRequestProcessor`` quotes the keys for those, and so do we.
* GET_BROKER_CLUSTER_INFO always uses fastjson's form, as ``ClusterInfo.encode()`` does; mqadmin reads it.

State: the route table and the current config belong to the server's event loop; nothing here is thread-safe.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Hashable
from typing import Final

from tidemq.errors import ConfigError, ProtocolError, RemoteProtocolError
from tidemq.namesrv import _bodies
from tidemq.namesrv.config import NamesrvConfig
from tidemq.namesrv.route_table import FLAG_UNIT, FLAG_UNIT_SUB, NAMESPACE_ORDER_TOPIC_CONFIG, RouteTable
from tidemq.properties import format_properties, parse_properties
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode

log = logging.getLogger(__name__)

V4_9_4: Final = 401
"""MQVersion ordinal of V4_9_4: clients from it on get route bodies with quoted keys (ClientRequestProcessor)."""
ALWAYS_BLACKLISTED: Final = ("configBlackList", "configStorePath", "kvConfigPath", "rocketmqHome")
"""Keys UPDATE_NAMESRV_CONFIG may never change (DefaultRequestProcessor.initConfigBlackList)."""

_Handler = Callable[[RemotingCommand, Hashable], RemotingCommand]


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, as ``System.currentTimeMillis``."""
    return time.time_ns() // 1_000_000


class NamesrvHandlers:
    """Answers every name server request code against one :class:`RouteTable`.

    Args:
        route_table: the tables; shared with the server's expiry scan.
        config: the settings in force; UPDATE_NAMESRV_CONFIG replaces :attr:`config`.
        clock_ms: milliseconds since the epoch; tests pass a fake.
    """

    def __init__(
        self, route_table: RouteTable, config: NamesrvConfig, *, clock_ms: Callable[[], int] = wall_clock_ms
    ) -> None:
        self.route_table = route_table
        self.config = config
        self._clock_ms = clock_ms
        self._started_ms = clock_ms()
        self._handlers: dict[int, _Handler] = {
            RequestCode.PUT_KV_CONFIG: self._put_kv_config,
            RequestCode.GET_KV_CONFIG: self._get_kv_config,
            RequestCode.DELETE_KV_CONFIG: self._delete_kv_config,
            RequestCode.GET_KVLIST_BY_NAMESPACE: self._get_kv_list_by_namespace,
            RequestCode.QUERY_DATA_VERSION: self._query_data_version,
            RequestCode.REGISTER_BROKER: self._register_broker,
            RequestCode.UNREGISTER_BROKER: self._unregister_broker,
            RequestCode.GET_ROUTEINFO_BY_TOPIC: self._get_route_info_by_topic,
            RequestCode.GET_BROKER_CLUSTER_INFO: self._get_broker_cluster_info,
            RequestCode.WIPE_WRITE_PERM_OF_BROKER: self._wipe_write_perm_of_broker,
            RequestCode.ADD_WRITE_PERM_OF_BROKER: self._add_write_perm_of_broker,
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self._get_all_topic_list,
            RequestCode.DELETE_TOPIC_IN_NAMESRV: self._delete_topic_in_namesrv,
            RequestCode.REGISTER_TOPIC_IN_NAMESRV: self._register_topic_in_namesrv,
            RequestCode.GET_TOPICS_BY_CLUSTER: self._get_topics_by_cluster,
            RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS: self._get_system_topic_list,
            RequestCode.GET_UNIT_TOPIC_LIST: self._get_unit_topic_list,
            RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST: self._get_has_unit_sub_topic_list,
            RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST: self._get_has_unit_sub_ununit_topic_list,
            RequestCode.UPDATE_NAMESRV_CONFIG: self._update_namesrv_config,
            RequestCode.GET_NAMESRV_CONFIG: self._get_namesrv_config,
        }

    def handle(self, request: RemotingCommand, channel_key: Hashable = None) -> RemotingCommand:
        """Answer one request; ``channel_key`` identifies the connection (brokers leave when it closes)."""
        handler = self._handlers.get(request.code)
        if handler is None:
            return request.make_response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {request.code} not supported"
            )
        try:
            return handler(request, channel_key)
        except (ProtocolError, ConfigError) as exc:
            log.debug("request code %d refused: %s", request.code, exc)
            return request.make_response(ResponseCode.SYSTEM_ERROR, str(exc))

    # --- brokers ------------------------------------------------------------------------------------------------

    def _register_broker(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        cluster = _required(request, "clusterName")
        broker_name = _required(request, "brokerName")
        broker_addr = _required(request, "brokerAddr")
        ha_server_addr = _required(request, "haServerAddr")
        broker_id = _required_int(request, "brokerId")
        if _optional_bool(request, "compressed"):
            return request.make_response(
                ResponseCode.SYSTEM_ERROR,
                "compressed REGISTER_BROKER bodies are not supported by this name server; send compressed=false",
            )
        body = bytes(request.body)
        crc = _optional_int(request, "bodyCrc32") or 0
        if crc and not _crc_matches(body, crc):
            log.warning("REGISTER_BROKER from %s: body crc32 does not match %d", broker_addr, crc)
            return request.make_response(ResponseCode.SYSTEM_ERROR, "crc32 not match")
        try:
            parsed = _bodies.parse_register_broker_body(body)
        except ProtocolError as exc:
            raise RemoteProtocolError(f"bad REGISTER_BROKER body: {exc}") from None
        result = self.route_table.register_broker(
            cluster,
            broker_name,
            broker_addr,
            broker_id,
            ha_server_addr,
            parsed.topic_configs,
            parsed.data_version,
            channel_key,
            self._clock_ms(),
            heartbeat_timeout_ms=_optional_int(request, "heartbeatTimeoutMillis"),
            enable_acting_master=_optional_bool(request, "enableActingMaster"),
            zone_name=request.ext_fields.get("__ZONE_NAME"),  # MixAll.ZONE_NAME, set by a zone-aware broker
            filter_server_list=parsed.filter_server_list,
        )
        ext_fields = {}
        if result.master_addr:
            ext_fields["masterAddr"] = result.master_addr
        if result.ha_server_addr:
            ext_fields["haServerAddr"] = result.ha_server_addr
        response_body = b""
        if self.config.return_order_topic_config_to_broker:
            table = self.route_table.kv_list(NAMESPACE_ORDER_TOPIC_CONFIG)
            if table is not None:
                response_body = _bodies.dumps_fastjson({"table": table})
        return request.make_response(ResponseCode.SUCCESS, ext_fields=ext_fields, body=response_body)

    def _unregister_broker(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        self.route_table.unregister_broker(
            _required(request, "clusterName"),
            _required(request, "brokerAddr"),
            _required(request, "brokerName"),
            _required_int(request, "brokerId"),
        )
        return request.make_response(ResponseCode.SUCCESS)

    def _query_data_version(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        cluster = _required(request, "clusterName")
        broker_addr = _required(request, "brokerAddr")
        try:
            version = _bodies.parse_data_version(bytes(request.body))
        except ProtocolError as exc:
            raise RemoteProtocolError(f"bad QUERY_DATA_VERSION body: {exc}") from None
        table = self.route_table
        is_changed = version is None or table.is_broker_topic_config_changed(cluster, broker_addr, version)
        table.touch_broker(cluster, broker_addr, self._clock_ms())
        stored = table.broker_data_version(cluster, broker_addr)
        body = b"" if stored is None else _bodies.dumps_fastjson(_bodies.data_version_json(stored))
        return request.make_response(
            ResponseCode.SUCCESS, ext_fields={"changed": "true" if is_changed else "false"}, body=body
        )

    def _wipe_write_perm_of_broker(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        broker_name = _required(request, "brokerName")
        count = self.route_table.wipe_write_perm(broker_name)
        log.info("wiped write perm of broker %s: %d topics", broker_name, count)
        return request.make_response(ResponseCode.SUCCESS, ext_fields={"wipeTopicCount": str(count)})

    def _add_write_perm_of_broker(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        broker_name = _required(request, "brokerName")
        count = self.route_table.add_write_perm(broker_name)
        log.info("added write perm of broker %s: %d topics", broker_name, count)
        return request.make_response(ResponseCode.SUCCESS, ext_fields={"addTopicCount": str(count)})

    # --- routes and topics --------------------------------------------------------------------------------------

    def _get_route_info_by_topic(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        topic = _required(request, "topic")
        config = self.config
        if config.need_wait_for_service and (
            self._clock_ms() - self._started_ms < config.wait_seconds_for_service * 1000
        ):
            return request.make_response(ResponseCode.SYSTEM_ERROR, "name server not ready")
        route = self.route_table.topic_route(topic, include_order_topic_conf=config.order_message_enable)
        if route is None:
            return request.make_response(
                ResponseCode.TOPIC_NOT_EXIST, f"No topic route info in name server for the topic: {topic}"
            )
        shape = _bodies.topic_route_json(route)
        is_standard = _optional_bool(request, "acceptStandardJsonOnly") or request.version >= V4_9_4
        body = _bodies.dumps_standard(shape) if is_standard else _bodies.dumps_fastjson(shape)
        return request.make_response(ResponseCode.SUCCESS, body=body)

    def _get_broker_cluster_info(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        body = _bodies.dumps_fastjson(_bodies.cluster_info_json(self.route_table.cluster_info()))
        return request.make_response(ResponseCode.SUCCESS, body=body)

    def _get_all_topic_list(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        if not self.config.enable_all_topic_list:
            return request.make_response(ResponseCode.SYSTEM_ERROR, "disable")
        return _topic_list_response(request, self.route_table.all_topics())

    def _get_topics_by_cluster(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        if not self.config.enable_topic_list:
            return request.make_response(ResponseCode.SYSTEM_ERROR, "disable")
        return _topic_list_response(request, self.route_table.topics_by_cluster(_required(request, "cluster")))

    def _get_system_topic_list(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        topics, broker_addr = self.route_table.system_topics()
        return _topic_list_response(request, topics, broker_addr)

    def _get_unit_topic_list(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        return self._sys_flag_topics(request, has=FLAG_UNIT)

    def _get_has_unit_sub_topic_list(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        return self._sys_flag_topics(request, has=FLAG_UNIT_SUB)

    def _get_has_unit_sub_ununit_topic_list(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        return self._sys_flag_topics(request, has=FLAG_UNIT_SUB, lacks=FLAG_UNIT)

    def _sys_flag_topics(self, request: RemotingCommand, *, has: int, lacks: int = 0) -> RemotingCommand:
        if not self.config.enable_topic_list:
            return request.make_response(ResponseCode.SYSTEM_ERROR, "disable")
        return _topic_list_response(request, self.route_table.topics_with_sys_flag(has=has, lacks=lacks))

    def _delete_topic_in_namesrv(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        topic = _required(request, "topic")
        cluster = request.ext_fields.get("clusterName") or None
        self.route_table.delete_topic(topic, cluster)
        log.info("deleted topic %s from the name server (cluster %s)", topic, cluster or "all")
        return request.make_response(ResponseCode.SUCCESS)

    def _register_topic_in_namesrv(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        topic = _required(request, "topic")
        try:
            queue_datas = _bodies.parse_topic_route_queue_datas(bytes(request.body))
        except ProtocolError as exc:
            raise RemoteProtocolError(f"bad REGISTER_TOPIC_IN_NAMESRV body: {exc}") from None
        self.route_table.register_topic(topic, queue_datas)
        return request.make_response(ResponseCode.SUCCESS)

    # --- KV config ----------------------------------------------------------------------------------------------

    def _put_kv_config(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        namespace = _required(request, "namespace")
        key = _required(request, "key")
        self.route_table.put_kv_config(namespace, key, _required(request, "value"))
        return request.make_response(ResponseCode.SUCCESS)

    def _get_kv_config(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        namespace = _required(request, "namespace")
        key = _required(request, "key")
        value = self.route_table.get_kv_config(namespace, key)
        if value is None:
            return request.make_response(
                ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {namespace} Key: {key}"
            )
        return request.make_response(ResponseCode.SUCCESS, ext_fields={"value": value})

    def _delete_kv_config(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        self.route_table.delete_kv_config(_required(request, "namespace"), _required(request, "key"))
        return request.make_response(ResponseCode.SUCCESS)

    def _get_kv_list_by_namespace(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        namespace = _required(request, "namespace")
        table = self.route_table.kv_list(namespace)
        if table is None:
            return request.make_response(ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {namespace}")
        return request.make_response(ResponseCode.SUCCESS, body=_bodies.dumps_fastjson({"table": table}))

    # --- name server config -------------------------------------------------------------------------------------

    def _get_namesrv_config(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        text = format_properties(self.config.to_properties())
        return request.make_response(ResponseCode.SUCCESS, body=text.encode("utf-8"))

    def _update_namesrv_config(self, request: RemotingCommand, channel_key: Hashable) -> RemotingCommand:
        if not request.body:
            return request.make_response(ResponseCode.SUCCESS)
        try:
            properties = parse_properties(bytes(request.body).decode("utf-8"))
        except (UnicodeDecodeError, ConfigError) as exc:
            return request.make_response(ResponseCode.SYSTEM_ERROR, f"string2Properties error: {exc}")
        blacklist = {*ALWAYS_BLACKLISTED, *filter(None, self.config.config_black_list.split(";"))}
        if not blacklist.isdisjoint(properties):
            return request.make_response(ResponseCode.NO_PERMISSION, "Can not update config in black list.")
        self.config = self.config.updated(properties, source="UPDATE_NAMESRV_CONFIG")
        self.route_table.delete_topic_with_broker_registration = self.config.delete_topic_with_broker_registration
        log.info("name server config updated: %s", ", ".join(sorted(properties)))
        return request.make_response(ResponseCode.SUCCESS)


# --- helpers ------------------------------------------------------------------------------------------------------


def _topic_list_response(
    request: RemotingCommand, topics: list[str], broker_addr: str | None = None
) -> RemotingCommand:
    """A ``TopicList`` body: ``{"brokerAddr":..,"topicList":[...]}``, brokerAddr only when known."""
    shape: dict[str, object] = {}
    if broker_addr is not None:
        shape["brokerAddr"] = broker_addr
    shape["topicList"] = topics
    return request.make_response(ResponseCode.SUCCESS, body=_bodies.dumps_fastjson(shape))


def _crc_matches(body: bytes, expected: int) -> bool:
    """RocketMQ sends ``UtilAll.crc32`` (CRC-32 & 0x7FFFFFFF); the full value, signed or not, is accepted too."""
    crc = zlib.crc32(body)
    return expected in (crc & 0x7FFFFFFF, crc, crc - (1 << 32))


def _required(request: RemotingCommand, name: str) -> str:
    value = request.ext_fields.get(name)
    if value is None:
        raise RemoteProtocolError(f"the custom field <{name}> is null")
    return value


def _required_int(request: RemotingCommand, name: str) -> int:
    value = _optional_int(request, name)
    if value is None:
        raise RemoteProtocolError(f"the custom field <{name}> is null")
    return value


def _optional_int(request: RemotingCommand, name: str) -> int | None:
    text = request.ext_fields.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise RemoteProtocolError(f"the custom field <{name}> is not a number: {text!r}") from None


def _optional_bool(request: RemotingCommand, name: str) -> bool | None:
    """A Boolean field: ``None`` when absent; ``"true"`` (any case) or ``"1"`` is true, as Java and C++ send."""
    text = request.ext_fields.get(name)
    if text is None:
        return None
    return text.strip().lower() in ("true", "1")
