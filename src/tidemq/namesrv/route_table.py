"""The name server's tables: brokers, their liveness, topic queue data, KV config (RocketMQ's RouteInfoManager).

Pure and synchronous: no I/O, no clock, no asyncio. Every call that depends on time takes ``now_ms``; the
channel a broker registered on is an opaque hashable ``channel_key`` the caller chooses (the server passes the
``RemotingChannel`` itself). The server owns one :class:`RouteTable` and calls it from the event loop only, so
it needs none of RouteInfoManager's locks.

Tables, as in ``RouteInfoManager`` (5.x, branch ``develop``)::

    topic_queue_table   topic -> {broker_name -> QueueData}
    broker_addr_table   broker_name -> BrokerData(cluster, broker_name, {broker_id -> "ip:port"})
    cluster_addr_table  cluster -> {broker_name}
    broker_live_table   (cluster, broker_addr) -> BrokerLiveInfo(last update, data version, channel, HA addr)
    filter_server_table (cluster, broker_addr) -> [filter server addrs]
    kv_config           namespace -> {key -> value}     (KVConfigManager; kept in memory only)

Behaviour kept from RocketMQ:

* Queue data is rebuilt from a broker's topic configs only when the broker is new, its data version changed,
  or the topic has no queue data for it yet; only the master (id 0) and, for 5.x brokers, the lowest-id slave
  when no master is registered ("prime slave") feed the topic table.
* One address lives under one broker id: a slave promoted to master drops its old id.
* A registration from a new address for an id whose current owner has a larger ``stateVersion`` is refused.
* A slave learns the master's address and HA address from its registration result.
* A broker leaves on unregistration, on expiry (no registration for ``heartbeatTimeoutMillis``, 120 s by default)
  and when its channel closes; topics left without queue data go with it.

Not implemented: static topics (topicQueueMappingInfo), acting-master routing and min-broker-id notifications
(5.x controller mode), persistence of the KV config to ``kvConfigPath``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

log = logging.getLogger(__name__)

MASTER_ID: Final = 0
"""``MixAll.MASTER_ID``: broker id 0 is the master of its broker name."""
BROKER_CHANNEL_EXPIRED_TIME_MS: Final = 120_000
"""``RouteInfoManager.DEFAULT_BROKER_CHANNEL_EXPIRED_TIME``: a broker silent this long is removed."""
NAMESPACE_ORDER_TOPIC_CONFIG: Final = "ORDER_TOPIC_CONFIG"
"""``NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG``: topic -> ``"brokerName:queueNum;..."`` for global order."""

# PermName bits.
PERM_PRIORITY: Final = 8
PERM_READ: Final = 4
PERM_WRITE: Final = 2
PERM_INHERIT: Final = 1

# TopicSysFlag bits.
FLAG_UNIT: Final = 0x1
FLAG_UNIT_SUB: Final = 0x2


class TopicConfigLike(Protocol):
    """What registration needs of a broker's topic config (``TopicConfig``); read-only, so frozen classes fit."""

    @property
    def topic_name(self) -> str: ...
    @property
    def read_queue_nums(self) -> int: ...
    @property
    def write_queue_nums(self) -> int: ...
    @property
    def perm(self) -> int: ...
    @property
    def topic_sys_flag(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """A broker's topic config as REGISTER_BROKER carries it (spec 7.2); defaults are RocketMQ's."""

    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = PERM_READ | PERM_WRITE
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataVersion:
    """``DataVersion``: a broker bumps it on every topic config change; equal versions mean nothing changed."""

    counter: int = 0
    state_version: int = 0
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class QueueData:
    """One broker name's queues of a topic (``QueueData``)."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0


@dataclass(frozen=True, slots=True)
class BrokerData:
    """One broker name: its cluster and its addresses by broker id (``BrokerData``); a snapshot."""

    cluster: str
    broker_name: str
    broker_addrs: Mapping[int, str]
    enable_acting_master: bool = False
    zone_name: str | None = None


@dataclass(frozen=True, slots=True)
class TopicRouteData:
    """What GET_ROUTEINFO_BY_TOPIC answers (``TopicRouteData``), sorted by broker name."""

    queue_datas: tuple[QueueData, ...]
    broker_datas: tuple[BrokerData, ...]
    filter_server_table: Mapping[str, tuple[str, ...]]
    order_topic_conf: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What GET_BROKER_CLUSTER_INFO answers (``ClusterInfo``)."""

    broker_addr_table: Mapping[str, BrokerData]
    cluster_addr_table: Mapping[str, tuple[str, ...]]


class RegisterResult(NamedTuple):
    """``RegisterBrokerResult``: for a slave, the master's address and HA address; empty for a master."""

    master_addr: str | None = None
    ha_server_addr: str | None = None


@dataclass(frozen=True, slots=True)
class RemovedBroker:
    """A broker that left the table (expired or its channel closed); ``channel_key`` is the one it registered on."""

    cluster: str
    broker_name: str
    broker_addr: str
    broker_id: int | None
    channel_key: Hashable


@dataclass(slots=True)
class _BrokerName:
    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)
    enable_acting_master: bool = False
    zone_name: str | None = None

    def snapshot(self) -> BrokerData:
        addrs = dict(sorted(self.broker_addrs.items()))
        return BrokerData(self.cluster, self.broker_name, addrs, self.enable_acting_master, self.zone_name)


@dataclass(slots=True)
class _BrokerLive:
    last_update_ms: int
    heartbeat_timeout_ms: int | None
    data_version: DataVersion
    channel_key: Hashable
    ha_server_addr: str


_AddrKey = tuple[str, str]  # (cluster, broker_addr), RouteInfoManager's BrokerAddrInfo


class RouteTable:
    """RocketMQ's RouteInfoManager, single-threaded. See the module docstring for the rules.

    Args:
        delete_topic_with_broker_registration: drop a broker's queue data for topics missing from its latest
            registration (``deleteTopicWithBrokerRegistration``, off by default as in RocketMQ).
    """

    def __init__(self, *, delete_topic_with_broker_registration: bool = False) -> None:
        self.delete_topic_with_broker_registration = delete_topic_with_broker_registration
        self._topic_queue_table: dict[str, dict[str, QueueData]] = {}
        self._broker_addr_table: dict[str, _BrokerName] = {}
        self._cluster_addr_table: dict[str, set[str]] = {}
        self._broker_live_table: dict[_AddrKey, _BrokerLive] = {}
        self._filter_server_table: dict[_AddrKey, list[str]] = {}
        self._kv_config: dict[str, dict[str, str]] = {}

    # --- registration -------------------------------------------------------------------------------------------

    def register_broker(
        self,
        cluster: str,
        broker_name: str,
        broker_addr: str,
        broker_id: int,
        ha_server_addr: str,
        topic_configs: Mapping[str, TopicConfigLike],
        data_version: DataVersion,
        channel_key: Hashable,
        now_ms: int,
        *,
        heartbeat_timeout_ms: int | None = None,
        enable_acting_master: bool | None = None,
        zone_name: str | None = None,
        filter_server_list: Iterable[str] | None = None,
    ) -> RegisterResult:
        """Add or refresh a broker (REGISTER_BROKER); returns the master's addresses for a slave.

        Args:
            enable_acting_master: ``None`` for a 4.x broker, which does not send the field.
        """
        self._cluster_addr_table.setdefault(cluster, set()).add(broker_name)
        entry = self._broker_addr_table.get(broker_name)
        is_first = entry is None
        if entry is None:
            entry = self._broker_addr_table[broker_name] = _BrokerName(cluster, broker_name)
        entry.enable_acting_master = bool(enable_acting_master)
        entry.zone_name = zone_name
        addrs = entry.broker_addrs
        # A slave switched to master re-registers under id 0: one address, one id.
        for stale_id in [i for i, addr in addrs.items() if addr == broker_addr and i != broker_id]:
            del addrs[stale_id]
        if self._is_stale_registration(cluster, addrs.get(broker_id), broker_addr, data_version):
            self._broker_live_table.pop((cluster, broker_addr), None)
            return RegisterResult()
        old_addr = addrs.get(broker_id)
        addrs[broker_id] = broker_addr
        is_first = is_first or not old_addr
        is_master = broker_id == MASTER_ID
        is_prime_slave = enable_acting_master is not None and not is_master and broker_id == min(addrs)
        if is_master or is_prime_slave:
            self._update_topics(entry, broker_addr, topic_configs, data_version, is_first, is_prime_slave)
        key = (cluster, broker_addr)
        if key not in self._broker_live_table:
            log.info("new broker registered: %s %s id %d at %s", cluster, broker_name, broker_id, broker_addr)
        self._broker_live_table[key] = _BrokerLive(
            now_ms, heartbeat_timeout_ms, data_version, channel_key, ha_server_addr
        )
        if filter_server_list is not None:
            servers = list(filter_server_list)
            if servers:
                self._filter_server_table[key] = servers
            else:
                self._filter_server_table.pop(key, None)
        return self._master_of(entry) if not is_master else RegisterResult()

    def _is_stale_registration(
        self, cluster: str, current_addr: str | None, broker_addr: str, data_version: DataVersion
    ) -> bool:
        """A new address for an id whose live owner has a larger stateVersion is refused (5.x)."""
        if current_addr is None or current_addr == broker_addr:
            return False
        current = self._broker_live_table.get((cluster, current_addr))
        if current is None or current.data_version.state_version <= data_version.state_version:
            return False
        log.warning(
            "refusing %s for broker id at %s: stateVersion %d < %d",
            broker_addr,
            current_addr,
            data_version.state_version,
            current.data_version.state_version,
        )
        return True

    def _update_topics(
        self,
        entry: _BrokerName,
        broker_addr: str,
        topic_configs: Mapping[str, TopicConfigLike],
        data_version: DataVersion,
        is_first: bool,
        is_prime_slave: bool,
    ) -> None:
        broker_name = entry.broker_name
        if self.delete_topic_with_broker_registration:
            wanted = {config.topic_name for config in topic_configs.values()}
            for topic in [t for t, queues in self._topic_queue_table.items() if broker_name in queues]:
                if topic not in wanted:
                    self._remove_queue_data(topic, broker_name)
        is_changed = is_first or self.is_broker_topic_config_changed(entry.cluster, broker_addr, data_version)
        for config in topic_configs.values():
            queues = self._topic_queue_table.get(config.topic_name)
            if not (is_changed or not queues or broker_name not in queues):
                continue
            perm = config.perm
            if is_prime_slave and entry.enable_acting_master:
                perm &= ~PERM_WRITE  # an acting master serves reads only
            queue_data = QueueData(
                broker_name, config.read_queue_nums, config.write_queue_nums, perm, config.topic_sys_flag
            )
            self._topic_queue_table.setdefault(config.topic_name, {})[broker_name] = queue_data

    def _master_of(self, entry: _BrokerName) -> RegisterResult:
        master_addr = entry.broker_addrs.get(MASTER_ID)
        if master_addr is None:
            return RegisterResult()
        master = self._broker_live_table.get((entry.cluster, master_addr))
        if master is None:
            return RegisterResult()
        return RegisterResult(master_addr, master.ha_server_addr)

    def register_topic(self, topic: str, queue_datas: Iterable[QueueData]) -> bool:
        """REGISTER_TOPIC_IN_NAMESRV: add queue data for known brokers; nothing changes if one is unknown."""
        incoming = list(queue_datas)
        if not incoming or any(q.broker_name not in self._broker_addr_table for q in incoming):
            return False
        queues = self._topic_queue_table.setdefault(topic, {})
        for queue_data in incoming:
            queues[queue_data.broker_name] = queue_data
        return True

    # --- data versions and liveness -----------------------------------------------------------------------------

    def is_broker_topic_config_changed(self, cluster: str, broker_addr: str, data_version: DataVersion) -> bool:
        """Whether ``data_version`` differs from the one last registered from that address (or it is unknown)."""
        live = self._broker_live_table.get((cluster, broker_addr))
        return live is None or live.data_version != data_version

    def broker_data_version(self, cluster: str, broker_addr: str) -> DataVersion | None:
        """The data version last registered from that address."""
        live = self._broker_live_table.get((cluster, broker_addr))
        return None if live is None else live.data_version

    def touch_broker(self, cluster: str, broker_addr: str, now_ms: int) -> None:
        """Count a QUERY_DATA_VERSION (or heartbeat) as a sign of life."""
        live = self._broker_live_table.get((cluster, broker_addr))
        if live is not None:
            live.last_update_ms = now_ms

    def scan_expired(self, now_ms: int, timeout_ms: int = BROKER_CHANNEL_EXPIRED_TIME_MS) -> list[RemovedBroker]:
        """Remove brokers silent for longer than their heartbeat timeout (``timeout_ms`` unless they sent one).

        Returns the removed brokers; the caller closes their channels, as ``scanNotActiveBroker`` does.
        """
        expired = [
            key
            for key, live in self._broker_live_table.items()
            if live.last_update_ms + (live.heartbeat_timeout_ms or timeout_ms) < now_ms
        ]
        removed = [self._remove_by_addr(key) for key in expired]
        for broker in removed:
            log.warning("broker expired: %s %s at %s", broker.cluster, broker.broker_name, broker.broker_addr)
        return removed

    def channel_closed(self, channel_key: Hashable) -> list[RemovedBroker]:
        """Remove every broker registered on that channel (``onChannelDestroy``); returns them."""
        keys = [key for key, live in self._broker_live_table.items() if live.channel_key == channel_key]
        removed = [self._remove_by_addr(key) for key in keys]
        for broker in removed:
            log.info("broker channel closed: %s %s at %s", broker.cluster, broker.broker_name, broker.broker_addr)
        return removed

    def _remove_by_addr(self, key: _AddrKey) -> RemovedBroker:
        cluster, broker_addr = key
        live = self._broker_live_table.get(key)
        channel_key = None if live is None else live.channel_key
        for entry in self._broker_addr_table.values():
            if entry.cluster != cluster:
                continue
            for broker_id, addr in entry.broker_addrs.items():
                if addr == broker_addr:
                    self.unregister_broker(cluster, broker_addr, entry.broker_name, broker_id)
                    return RemovedBroker(cluster, entry.broker_name, broker_addr, broker_id, channel_key)
        self._broker_live_table.pop(key, None)  # live but not in the address table: a refused registration
        self._filter_server_table.pop(key, None)
        return RemovedBroker(cluster, "", broker_addr, None, channel_key)

    def unregister_broker(self, cluster: str, broker_addr: str, broker_name: str, broker_id: int | None = None) -> None:
        """Remove one broker address (UNREGISTER_BROKER); its broker name goes when its last address does."""
        del broker_id  # RocketMQ matches by address; the id only feeds min-broker-id notifications
        key = (cluster, broker_addr)
        self._broker_live_table.pop(key, None)
        self._filter_server_table.pop(key, None)
        entry = self._broker_addr_table.get(broker_name)
        if entry is None:
            return
        for stale_id in [i for i, addr in entry.broker_addrs.items() if addr == broker_addr]:
            del entry.broker_addrs[stale_id]
        if entry.broker_addrs:
            return
        del self._broker_addr_table[broker_name]
        names = self._cluster_addr_table.get(cluster)
        if names is not None:
            names.discard(broker_name)
            if not names:
                del self._cluster_addr_table[cluster]
        for topic in list(self._topic_queue_table):
            self._remove_queue_data(topic, broker_name)

    def _remove_queue_data(self, topic: str, broker_name: str) -> None:
        queues = self._topic_queue_table.get(topic)
        if queues is None:
            return
        queues.pop(broker_name, None)
        if not queues:
            del self._topic_queue_table[topic]

    # --- queries ------------------------------------------------------------------------------------------------

    def topic_route(self, topic: str, *, include_order_topic_conf: bool = True) -> TopicRouteData | None:
        """The route of ``topic`` (``pickupTopicRouteData``), or ``None`` when no live broker serves it.

        Args:
            include_order_topic_conf: add ``orderTopicConf`` from the ``ORDER_TOPIC_CONFIG`` KV namespace
                (the server passes its ``orderMessageEnable``).
        """
        queues = self._topic_queue_table.get(topic)
        if not queues:
            return None
        broker_datas = tuple(
            self._broker_addr_table[name].snapshot() for name in sorted(queues) if name in self._broker_addr_table
        )
        if not broker_datas:
            return None
        filter_servers: dict[str, tuple[str, ...]] = {}
        if self._filter_server_table:
            for broker in broker_datas:
                for addr in broker.broker_addrs.values():
                    servers = self._filter_server_table.get((broker.cluster, addr))
                    if servers:
                        filter_servers[addr] = tuple(servers)
        order_conf = self.get_kv_config(NAMESPACE_ORDER_TOPIC_CONFIG, topic) if include_order_topic_conf else None
        queue_datas = tuple(queues[name] for name in sorted(queues))
        return TopicRouteData(queue_datas, broker_datas, filter_servers, order_conf)

    def cluster_info(self) -> ClusterInfo:
        """Every broker name with its addresses, and the broker names of every cluster."""
        brokers = {name: self._broker_addr_table[name].snapshot() for name in sorted(self._broker_addr_table)}
        clusters = {name: tuple(sorted(names)) for name, names in sorted(self._cluster_addr_table.items())}
        return ClusterInfo(brokers, clusters)

    def all_topics(self) -> list[str]:
        """Every topic some broker registered, sorted."""
        return sorted(self._topic_queue_table)

    def topics_by_cluster(self, cluster: str) -> list[str]:
        """Topics with queue data on a broker of ``cluster`` (empty for an unknown cluster), sorted."""
        names = self._cluster_addr_table.get(cluster, set())
        return sorted(topic for topic, queues in self._topic_queue_table.items() if not names.isdisjoint(queues))

    def system_topics(self) -> tuple[list[str], str | None]:
        """GET_SYSTEM_TOPIC_LIST_FROM_NS: cluster and broker names (topics of the same names), and one broker addr.

        RocketMQ answers with those names because a broker creates a topic named after its cluster and one after
        itself; the address lets mqadmin ask that broker for the rest of its system topics.
        """
        topics: set[str] = set()
        for cluster, names in self._cluster_addr_table.items():
            topics.add(cluster)
            topics.update(names)
        broker_addr = None
        for entry in self._broker_addr_table.values():
            if entry.broker_addrs:
                broker_addr = entry.broker_addrs[min(entry.broker_addrs)]
                break
        return sorted(topics), broker_addr

    def topics_with_sys_flag(self, *, has: int, lacks: int = 0) -> list[str]:
        """Topics whose first queue data's topicSysFlag has every bit of ``has`` and none of ``lacks`` (unit topics)."""
        found = []
        for topic, queues in self._topic_queue_table.items():
            flag = next(iter(queues.values())).topic_sys_flag
            if flag & has == has and not flag & lacks:
                found.append(topic)
        return sorted(found)

    def broker_names(self) -> list[str]:
        """Every registered broker name, sorted."""
        return sorted(self._broker_addr_table)

    # --- admin changes ------------------------------------------------------------------------------------------

    def delete_topic(self, topic: str, cluster: str | None = None) -> None:
        """DELETE_TOPIC_IN_NAMESRV: the whole topic, or only its queue data on the brokers of ``cluster``."""
        if not cluster:
            self._topic_queue_table.pop(topic, None)
            return
        for broker_name in self._cluster_addr_table.get(cluster, set()):
            self._remove_queue_data(topic, broker_name)

    def wipe_write_perm(self, broker_name: str) -> int:
        """WIPE_WRITE_PERM_OF_BROKER: clear WRITE on every topic of the broker; returns how many topics."""
        return self._change_perm(broker_name, lambda perm: perm & ~PERM_WRITE)

    def add_write_perm(self, broker_name: str) -> int:
        """ADD_WRITE_PERM_OF_BROKER: set the broker's topics to READ|WRITE (as RocketMQ does); returns the count."""
        return self._change_perm(broker_name, lambda perm: PERM_READ | PERM_WRITE)

    def _change_perm(self, broker_name: str, change: Callable[[int], int]) -> int:
        count = 0
        for queues in self._topic_queue_table.values():
            queue_data = queues.get(broker_name)
            if queue_data is not None:
                queues[broker_name] = dataclasses.replace(queue_data, perm=change(queue_data.perm))
                count += 1
        return count

    # --- KV config ----------------------------------------------------------------------------------------------

    def put_kv_config(self, namespace: str, key: str, value: str) -> None:
        """PUT_KV_CONFIG."""
        self._kv_config.setdefault(namespace, {})[key] = value

    def get_kv_config(self, namespace: str, key: str) -> str | None:
        """GET_KV_CONFIG; ``None`` when absent."""
        return self._kv_config.get(namespace, {}).get(key)

    def delete_kv_config(self, namespace: str, key: str) -> None:
        """DELETE_KV_CONFIG; a namespace left empty stays, as in KVConfigManager."""
        table = self._kv_config.get(namespace)
        if table is not None:
            table.pop(key, None)

    def kv_list(self, namespace: str) -> dict[str, str] | None:
        """GET_KVLIST_BY_NAMESPACE: a copy of the namespace, or ``None`` when it never existed."""
        table = self._kv_config.get(namespace)
        return None if table is None else dict(table)
