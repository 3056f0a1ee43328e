"""NamesrvConfig: the name server's settings, with RocketMQ's keys (``NamesrvConfig`` + ``NettyServerConfig``).

Loaded once at the edge, from a ``namesrv.conf`` properties file (``tidemq namesrv -c namesrv.conf``, as
``mqnamesrv -c``) and flags, then passed down. UPDATE_NAMESRV_CONFIG replaces the running copy with
:meth:`NamesrvConfig.updated`.

* Keys RocketMQ knows and we implement map to fields below.
* Keys RocketMQ knows that mean nothing here (thread pools, Netty buffers, ``kvConfigPath``...) are accepted and
  ignored, so a namesrv.conf written for the Java name server loads unchanged.
* Any other key is logged once, as one warning listing them all; it is not an error (Java ignores them too).
* A value that does not parse raises :class:`~tidemq.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tidemq.errors import ConfigError
from tidemq.properties import load_properties

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 9876


@dataclass(frozen=True, slots=True)
class NamesrvConfig:
    """Name server settings; each field's RocketMQ key is in brackets.

    Attributes:
        listen_port: TCP port (``listenPort``, 9876); 0 picks a free one.
        bind_address: address to listen on (``bindAddress``, all interfaces, as RocketMQ).
        scan_not_active_broker_interval_ms: how often silent brokers are looked for
            (``scanNotActiveBrokerInterval``, 5 s as in 5.x; 4.x scanned every 10 s).
        broker_channel_expired_time_ms: a broker that has not registered for this long is removed, unless it sent
            its own ``heartbeatTimeoutMillis`` (RouteInfoManager's fixed 120 s; no key in RocketMQ).
        order_message_enable: put ``orderTopicConf`` from the ORDER_TOPIC_CONFIG KV namespace into routes
            (``orderMessageEnable``, off).
        return_order_topic_config_to_broker: answer REGISTER_BROKER with that namespace
            (``returnOrderTopicConfigToBroker``, on).
        enable_all_topic_list: answer GET_ALL_TOPIC_LIST_FROM_NAMESERVER (``enableAllTopicList``, on).
        enable_topic_list: answer GET_TOPICS_BY_CLUSTER and the unit topic lists (``enableTopicList``, on).
        delete_topic_with_broker_registration: forget a broker's topics missing from its latest registration
            (``deleteTopicWithBrokerRegistration``, off).
        need_wait_for_service: refuse route queries for ``wait_seconds_for_service`` after start, so brokers can
            register first (``needWaitForService``, off; ``waitSecondsForService``, 45).
        config_black_list: keys UPDATE_NAMESRV_CONFIG may not change, ``;``-separated (``configBlackList``).
        kv_config_path, config_store_path, rocketmq_home, product_env_name: accepted and shown by
            GET_NAMESRV_CONFIG; nothing is persisted.
        cluster_test, support_acting_master, notify_min_broker_id_changed: accepted; no effect here.
    """

    listen_port: int = DEFAULT_PORT
    bind_address: str = "0.0.0.0"
    scan_not_active_broker_interval_ms: int = 5_000
    broker_channel_expired_time_ms: int = 120_000
    order_message_enable: bool = False
    return_order_topic_config_to_broker: bool = True
    enable_all_topic_list: bool = True
    enable_topic_list: bool = True
    delete_topic_with_broker_registration: bool = False
    need_wait_for_service: bool = False
    wait_seconds_for_service: int = 45
    config_black_list: str = "configBlackList;configStorePath;kvConfigPath"
    kv_config_path: str = "~/namesrv/kvConfig.json"
    config_store_path: str = "~/namesrv/namesrv.properties"
    rocketmq_home: str = ""
    product_env_name: str = "center"
    cluster_test: bool = False
    support_acting_master: bool = False
    notify_min_broker_id_changed: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"listenPort must be 0..65535, got {self.listen_port}")
        if self.scan_not_active_broker_interval_ms <= 0:
            raise ConfigError("scanNotActiveBrokerInterval must be positive")
        if self.broker_channel_expired_time_ms <= 0:
            raise ConfigError("broker_channel_expired_time_ms must be positive")
        if self.wait_seconds_for_service < 0:
            raise ConfigError("waitSecondsForService must not be negative")

    @classmethod
    def from_properties(cls, properties: Mapping[str, str], *, source: str = "namesrv config") -> NamesrvConfig:
        """Build a config from properties; unknown keys are warned about once, bad values raise ConfigError."""
        return cls().updated(properties, source=source)

    def updated(self, properties: Mapping[str, str], *, source: str = "namesrv config") -> NamesrvConfig:
        """A copy with ``properties`` applied (UPDATE_NAMESRV_CONFIG, or loading a file).

        Raises:
            ConfigError: a value does not parse; the message names the key.
        """
        changes: dict[str, Any] = {}  # each value's type matches its field, by construction of _KEYS
        unknown = []
        for key, text in properties.items():
            spec = _KEYS.get(key)
            if spec is not None:
                field_name, parse = spec
                changes[field_name] = parse(key, text.strip())
            elif key not in IGNORED_KEYS:
                unknown.append(key)
        if unknown:
            log.warning("%s: unknown keys ignored: %s", source, ", ".join(sorted(unknown)))
        return dataclasses.replace(self, **changes)

    def to_properties(self) -> dict[str, str]:
        """Every key and its value as Java would print it (GET_NAMESRV_CONFIG)."""
        result = {}
        for key, (field_name, _) in _KEYS.items():
            value = getattr(self, field_name)
            result[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return result


def load_namesrv_config(path: str | Path) -> NamesrvConfig:
    """Read a namesrv.conf properties file.

    Raises:
        ConfigError: unreadable file, malformed escape, or a bad value (the message names the file and key).
    """
    properties = load_properties(path)
    try:
        return NamesrvConfig.from_properties(properties, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse_int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not an integer") from None


def _parse_bool(key: str, text: str) -> bool:
    # Stricter than Java's Boolean.parseBoolean, which reads any typo as false.
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ConfigError(f"{key}: {text!r} is not true or false")
    return lowered == "true"


def _parse_text(key: str, text: str) -> str:
    del key
    return text


_KEYS: Final[dict[str, tuple[str, Callable[[str, str], object]]]] = {
    "listenPort": ("listen_port", _parse_int),
    "bindAddress": ("bind_address", _parse_text),
    "scanNotActiveBrokerInterval": ("scan_not_active_broker_interval_ms", _parse_int),
    "orderMessageEnable": ("order_message_enable", _parse_bool),
    "returnOrderTopicConfigToBroker": ("return_order_topic_config_to_broker", _parse_bool),
    "enableAllTopicList": ("enable_all_topic_list", _parse_bool),
    "enableTopicList": ("enable_topic_list", _parse_bool),
    "deleteTopicWithBrokerRegistration": ("delete_topic_with_broker_registration", _parse_bool),
    "needWaitForService": ("need_wait_for_service", _parse_bool),
    "waitSecondsForService": ("wait_seconds_for_service", _parse_int),
    "configBlackList": ("config_black_list", _parse_text),
    "kvConfigPath": ("kv_config_path", _parse_text),
    "configStorePath": ("config_store_path", _parse_text),
    "rocketmqHome": ("rocketmq_home", _parse_text),
    "productEnvName": ("product_env_name", _parse_text),
    "clusterTest": ("cluster_test", _parse_bool),
    "supportActingMaster": ("support_acting_master", _parse_bool),
    "notifyMinBrokerIdChanged": ("notify_min_broker_id_changed", _parse_bool),
}

IGNORED_KEYS: Final = frozenset(
    {
        # NamesrvConfig: Java thread pools and queues; one event loop here.
        "clientRequestThreadPoolNums",
        "defaultThreadPoolNums",
        "clientRequestThreadPoolQueueCapacity",
        "defaultThreadPoolQueueCapacity",
        "unRegisterBrokerQueueCapacity",
        "enableControllerInNamesrv",
        # NettyServerConfig / NettyClientConfig.
        "serverWorkerThreads",
        "serverCallbackExecutorThreads",
        "serverSelectorThreads",
        "serverOnewaySemaphoreValue",
        "serverAsyncSemaphoreValue",
        "serverChannelMaxIdleTimeSeconds",
        "serverSocketSndBufSize",
        "serverSocketRcvBufSize",
        "serverSocketBacklog",
        "writeBufferHighWaterMark",
        "writeBufferLowWaterMark",
        "serverPooledByteBufAllocatorEnable",
        "enableShutdownGracefully",
        "shutdownWaitTimeSeconds",
        "useEpollNativeSelector",
        "clientWorkerThreads",
        "clientCallbackExecutorThreads",
        "clientOnewaySemaphoreValue",
        "clientAsyncSemaphoreValue",
        "connectTimeoutMillis",
        "channelNotActiveInterval",
        "clientChannelMaxIdleTimeSeconds",
        "clientSocketSndBufSize",
        "clientSocketRcvBufSize",
        "clientPooledByteBufAllocatorEnable",
        "clientCloseSocketIfTimeout",
        "useTLS",
        # ControllerConfig keys a combined namesrv.conf may carry.
        "controllerType",
        "controllerStorePath",
        "controllerDLegerGroup",
        "controllerDLegerPeers",
        "controllerDLegerSelfId",
    }
)
