"""BrokerConfig: RocketMQ's broker.conf keys, defaults and meaning, loaded once at the edge.

An existing broker.conf works unchanged: keys are RocketMQ's (BrokerConfig, MessageStoreConfig,
NettyServerConfig); keys we do not use are logged once and ignored, never fatal. ``NAMESRV_ADDR`` in the
environment is honoured by the command line (the edge), as RocketMQ's scripts do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from tidemq.errors import ConfigError
from tidemq.store.config import FlushDiskType, StoreConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """One broker's configuration; attribute names are broker.conf keys in snake_case.

    Attributes:
        broker_role: ``ASYNC_MASTER``, ``SYNC_MASTER`` or ``SLAVE`` (replication arrives later; a master
            without slaves behaves the same under all three master roles).
        broker_ip1: the address written into routes and records (``brokerIP1``); default 127.0.0.1.
        listen_port: the client port (10911); the VIP channel listens on ``listen_port - 2``.
        long_polling_enable: hold pulls with nothing new up to the client's suspend timeout.
        short_polling_time_mills: the hold when long polling is off (RocketMQ's 1 s).
        enable_property_filter: accept SQL92 subscriptions (``enablePropertyFilter``). On by default here —
            RocketMQ ships it off — since filtering at the broker is cheap and what SQL92 users expect.
        transaction_time_out / transaction_check_max / transaction_check_interval: when an unresolved half
            message is first checked (6 s), how many checks before it is discarded (15), how often the
            check pass runs (60 s) — RocketMQ's keys and defaults.
        index_worker_enable: tidemq's own key (``indexWorkerEnable``, default true): build the message key
            index in a child process, on another core. False keeps the whole broker in one process (the index
            then takes about a third of a batch append's CPU on the event loop's thread).
    """

    broker_cluster_name: str = "DefaultCluster"
    broker_name: str = "broker-a"
    broker_id: int = 0
    broker_ip1: str = "127.0.0.1"
    listen_port: int = 10911
    namesrv_addr: str = ""
    store_path_root_dir: Path = field(default_factory=lambda: Path.home() / "store")
    store_path_commit_log: Path | None = None
    broker_role: str = "ASYNC_MASTER"
    flush_disk_type: FlushDiskType = FlushDiskType.ASYNC_FLUSH
    auto_create_topic_enable: bool = True
    auto_create_subscription_group: bool = True
    default_topic_queue_nums: int = 8
    cluster_topic_enable: bool = True
    broker_topic_enable: bool = True
    max_message_size: int = 4 * 1024 * 1024
    file_reserved_time: float = 72
    delete_when: str = "04"
    disk_max_used_space_ratio: int = 75
    mapped_file_size_commit_log: int = 1 << 30
    mapped_file_size_consume_queue: int = 300_000 * 20
    flush_interval_commit_log: int = 500
    sync_flush_timeout: int = 5000
    message_index_enable: bool = True
    index_worker_enable: bool = True
    max_hash_slot_num: int = 5_000_000
    max_index_num: int = 20_000_000
    long_polling_enable: bool = True
    short_polling_time_mills: int = 1000
    register_name_server_period: int = 30_000
    flush_consumer_offset_interval: int = 5000
    channel_expired_timeout: int = 120_000
    notify_consumer_ids_changed_enable: bool = True
    broker_permission: int = 6
    enable_property_filter: bool = True
    transaction_time_out: int = 6000
    transaction_check_max: int = 15
    transaction_check_interval: int = 60_000
    max_pull_msgs: int = 32
    vip_channel_enable: bool = True

    @property
    def broker_addr(self) -> str:
        return f"{self.broker_ip1}:{self.listen_port}"

    @property
    def ha_server_addr(self) -> str:
        return f"{self.broker_ip1}:{self.listen_port + 1}"

    @property
    def namesrv_addrs(self) -> list[str]:
        return [a.strip() for a in self.namesrv_addr.replace(",", ";").split(";") if a.strip()]

    def store_config(self) -> StoreConfig:
        return StoreConfig(
            self.store_path_root_dir,
            store_path_commit_log=self.store_path_commit_log,
            mapped_file_size_commit_log=self.mapped_file_size_commit_log,
            mapped_file_size_consume_queue=self.mapped_file_size_consume_queue,
            flush_disk_type=self.flush_disk_type,
            flush_interval_commit_log_ms=self.flush_interval_commit_log,
            sync_flush_timeout_ms=self.sync_flush_timeout,
            max_message_size=self.max_message_size,
            file_reserved_time_h=self.file_reserved_time,
            delete_when=self.delete_when,
            disk_max_used_space_ratio=self.disk_max_used_space_ratio,
            max_hash_slot_num=self.max_hash_slot_num,
            max_index_num=self.max_index_num,
            message_index_enable=self.message_index_enable,
            index_worker_enable=self.index_worker_enable,
            store_host=(self.broker_ip1, self.listen_port),
        )

    def with_overrides(self, **changes: Any) -> BrokerConfig:
        return replace(self, **changes)


_ROLES: Final = ("ASYNC_MASTER", "SYNC_MASTER", "SLAVE")
_KNOWN_IGNORED: Final = frozenset(
    {
        "brokerIP2",
        "haListenPort",
        "storePathConsumeQueue",
        "storePathIndex",
        "storeCheckpoint",
        "abortFile",
        "sendMessageThreadPoolNums",
        "pullMessageThreadPoolNums",
        "useReentrantLockWhenPutMessage",
        "transientStorePoolEnable",
        "warmMapedFileEnable",
        "aclEnable",
        "traceTopicEnable",
        "rocketmqHome",
        "kvConfigPath",
        "configStorePath",
    }
)


def _snake(key: str) -> str:
    out: list[str] = []
    for char in key:
        if char.isupper():
            out.append("_")
            out.append(char.lower())
        else:
            out.append(char)
    return "".join(out)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_FIELDS: Final = {f.name: f for f in fields(BrokerConfig)}
_KEY_TO_FIELD: Final = {_camel(name): name for name in _FIELDS} | {"brokerIP1": "broker_ip1"}


def _convert(key: str, name: str, text: str) -> object:
    value = text.strip()
    kind = _FIELDS[name].type
    try:
        if name == "flush_disk_type":
            return FlushDiskType(value.upper())
        if name in ("store_path_root_dir", "store_path_commit_log"):
            return Path(os.path.expanduser(value))
        if kind == "bool":
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise ConfigError(f"broker config {key}={text!r}: not true or false")
            return lowered == "true"
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        raise ConfigError(f"broker config {key}={text!r}: not a valid {kind} value") from None
    return value


def broker_config_from_properties(properties: Mapping[str, str], **overrides: Any) -> BrokerConfig:
    """Build a BrokerConfig from broker.conf properties; ``overrides`` (flags) win over the file.

    Raises:
        ConfigError: a value of the wrong type, an unknown role, a bad port.
    """
    values: dict[str, object] = {}
    unknown: list[str] = []
    for key, text in properties.items():
        name = _KEY_TO_FIELD.get(key) or (_snake(key) if _snake(key) in _FIELDS else None)
        if name is None:
            if key not in _KNOWN_IGNORED:
                unknown.append(key)
            continue
        values[name] = _convert(key, name, text)
    if unknown:
        log.warning("broker config: ignoring keys tidemq does not use: %s", ", ".join(sorted(unknown)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = BrokerConfig(**values)  # type: ignore[arg-type]  # values were converted per field above
    validate(config)
    return config


def validate(config: BrokerConfig) -> None:
    if config.broker_role not in _ROLES:
        raise ConfigError(f"brokerRole must be one of {', '.join(_ROLES)}, got {config.broker_role!r}")
    if not 0 <= config.listen_port <= 65535 or (config.listen_port and config.listen_port < 3):
        raise ConfigError(f"listenPort {config.listen_port} is out of range")
    if config.broker_id < 0:
        raise ConfigError("brokerId must be 0 (master) or positive (slave)")
    if not 1 <= config.default_topic_queue_nums <= 1024:
        raise ConfigError("defaultTopicQueueNums must be within 1..1024")
    if not config.broker_name or not config.broker_cluster_name:
        raise ConfigError("brokerName and brokerClusterName must not be empty")
