"""Topic routes: asked of the name servers, parsed, cached, refreshed, turned into queue lists.

* :func:`parse_topic_route` reads a GET_ROUTEINFO_BY_TOPIC body (spec 3.3), fastjson's unquoted integer
  ``brokerAddrs`` keys included, into a :class:`TopicRoute`.
* :func:`publish_queues` and :func:`subscribe_queues` are Java's ``topicRouteData2TopicPublishInfo`` and
  ``topicRouteData2TopicSubscribeInfo``: writable queues of brokers that have a master (``brokerAddrs`` key 0)
  for producers, readable queues for consumers.
* :class:`PublishInfo` picks a producer's queue: round robin, or by sharding key as Java's
  ``SelectMessageQueueByHash`` does (:func:`java_string_hash` of the key modulo the writable queues).
* :class:`RouteCache` asks one name server of the ``"host:port;host:port"`` list, picked at random and kept
  until it fails, then the next one (Java's ``namesrvAddrChoosed``). It remembers every topic asked for and
  :meth:`RouteCache.refresh_all` (run every 30 s by the client instance, Java's ``pollNameServerInterval``)
  asks again. A topic no name server knows is sent to with TBW102's route, queue counts capped at the
  producer's ``defaultTopicQueueNums``: the broker creates the topic on the first send and registers it, and
  the next refresh finds the real route (Java's ``tryToFindTopicPublishInfo``).

State: the route and publish-info tables and per-topic fetch locks, on the event loop thread. The round-robin
counter of a :class:`PublishInfo` survives refreshes that do not change the route.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from tidemq.client._connections import ConnectionPool
from tidemq.client.errors import BrokerError, ClientError, ConnectionFailedError, NoRouteError, RequestTimeoutError
from tidemq.errors import RemoteProtocolError
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, loads_lenient

log = logging.getLogger(__name__)

AUTO_CREATE_TOPIC: Final = "TBW102"
"""The template topic brokers auto-create new topics from (``TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC``)."""
MASTER_ID: Final = 0
PERM_WRITE: Final = 2
PERM_READ: Final = 4


@dataclass(frozen=True, slots=True, order=True)
class MessageQueue:
    """One queue of a topic on one broker (Java's ``MessageQueue``); orders by topic, broker, queue id."""

    topic: str
    broker_name: str
    queue_id: int


@dataclass(frozen=True, slots=True)
class QueueData:
    """A topic's queues on one broker name (``QueueData``)."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    @property
    def is_writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    @property
    def is_readable(self) -> bool:
        return bool(self.perm & PERM_READ)


@dataclass(frozen=True, slots=True)
class BrokerData:
    """One broker name's addresses by broker id, 0 the master (``BrokerData``). Compared, never hashed."""

    cluster: str
    broker_name: str
    broker_addrs: Mapping[int, str]

    @property
    def master_addr(self) -> str | None:
        return self.broker_addrs.get(MASTER_ID)


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """A GET_ROUTEINFO_BY_TOPIC answer (``TopicRouteData``), lists sorted by broker name as Java compares them."""

    queue_datas: tuple[QueueData, ...]
    broker_datas: tuple[BrokerData, ...]
    order_topic_conf: str = ""

    def broker(self, broker_name: str) -> BrokerData | None:
        for data in self.broker_datas:
            if data.broker_name == broker_name:
                return data
        return None


def parse_topic_route(body: bytes | memoryview) -> TopicRoute:
    """Parse a TopicRouteData body, in fastjson's form (``{0:"ip:port"}``) or standard JSON (``{"0":...}``).

    Raises:
        RemoteProtocolError: the body is not JSON or lacks the route's fields.
    """
    data = loads_lenient(body)
    if not isinstance(data, dict):
        raise RemoteProtocolError("the topic route body is not a JSON object")
    try:
        queue_datas = sorted(
            (
                QueueData(
                    str(qd["brokerName"]),
                    int(qd.get("readQueueNums", 0)),
                    int(qd.get("writeQueueNums", 0)),
                    int(qd.get("perm", 0)),
                    int(qd.get("topicSysFlag", 0)),
                )
                for qd in data.get("queueDatas") or []
            ),
            key=lambda qd: qd.broker_name,
        )
        broker_datas = sorted(
            (
                BrokerData(
                    str(bd.get("cluster") or ""),
                    str(bd["brokerName"]),
                    {int(broker_id): str(addr) for broker_id, addr in (bd.get("brokerAddrs") or {}).items()},
                )
                for bd in data.get("brokerDatas") or []
            ),
            key=lambda bd: bd.broker_name,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RemoteProtocolError(f"malformed topic route body: {type(exc).__name__}: {exc}") from None
    return TopicRoute(tuple(queue_datas), tuple(broker_datas), str(data.get("orderTopicConf") or ""))


def publish_queues(topic: str, route: TopicRoute) -> list[tuple[MessageQueue, str]]:
    """Producer targets ``(queue, master address)``: writable queues of brokers with a master.

    An ``orderTopicConf`` (``"broker-a:4;broker-b:4"``, global-order topics) lists the queues instead.
    """
    targets: list[tuple[MessageQueue, str]] = []
    if route.order_topic_conf:
        for item in route.order_topic_conf.split(";"):
            name, _, count = item.partition(":")
            broker = route.broker(name)
            if broker is not None and broker.master_addr and count.isdigit():
                targets += ((MessageQueue(topic, name, i), broker.master_addr) for i in range(int(count)))
        return targets
    for queue_data in route.queue_datas:
        if not queue_data.is_writable:
            continue
        broker = route.broker(queue_data.broker_name)
        if broker is None or broker.master_addr is None:
            continue  # a slave alone cannot take writes
        addr = broker.master_addr
        targets += ((MessageQueue(topic, queue_data.broker_name, i), addr) for i in range(queue_data.write_queue_nums))
    return targets


def subscribe_queues(topic: str, route: TopicRoute) -> list[MessageQueue]:
    """Consumer queues: every readable queue, in broker-name then queue-id order."""
    return [
        MessageQueue(topic, queue_data.broker_name, i)
        for queue_data in route.queue_datas
        if queue_data.is_readable
        for i in range(queue_data.read_queue_nums)
    ]


def default_route_for(route: TopicRoute, queue_nums: int) -> TopicRoute:
    """TBW102's route with each broker's queue counts capped at ``queue_nums`` (the producer's default)."""
    capped = tuple(
        QueueData(
            qd.broker_name,
            min(queue_nums, qd.read_queue_nums),
            min(queue_nums, qd.read_queue_nums),
            qd.perm,
            qd.topic_sys_flag,
        )
        for qd in route.queue_datas
    )
    return TopicRoute(capped, route.broker_datas)


class PublishInfo:
    """Where a producer sends one topic: the targets and the round-robin position.

    Attributes:
        topic: the topic.
        targets: ``(queue, broker address)`` pairs, built once per route change.
        is_default_route: built from TBW102's route (the topic is unknown to the name servers yet).
    """

    __slots__ = ("_counter", "is_default_route", "route", "targets", "topic")

    def __init__(self, topic: str, route: TopicRoute, *, is_default_route: bool = False) -> None:
        self.topic = topic
        self.route = route
        self.targets = tuple(publish_queues(topic, route))
        self.is_default_route = is_default_route
        # Java starts each topic's index at a random value so that producers do not all begin on queue 0.
        self._counter = itertools.count(random.randrange(1 << 16))  # noqa: S311  # load spreading, not security

    def select(self, avoid_broker: str | None = None) -> tuple[MessageQueue, str]:
        """The next target round robin; with ``avoid_broker``, the next one on another broker if there is one.

        Raises:
            NoRouteError: the route has no writable queue.
        """
        targets = self.targets
        count = len(targets)
        if not count:
            raise NoRouteError(self.topic, "the route has no writable queue on a master broker")
        if avoid_broker is None:
            return targets[next(self._counter) % count]
        for _ in range(count):
            target = targets[next(self._counter) % count]
            if target[0].broker_name != avoid_broker:
                return target
        return targets[next(self._counter) % count]

    def select_by_key(self, sharding_key: str) -> tuple[MessageQueue, str]:
        """The target of ``sharding_key``: the queue Java's ``SelectMessageQueueByHash`` picks for it
        (``abs(key.hashCode()) % queue count``), the same for every producer while the route stays.

        Raises:
            NoRouteError: the route has no writable queue.
        """
        targets = self.targets
        if not targets:
            raise NoRouteError(self.topic, "the route has no writable queue on a master broker")
        return targets[abs(java_string_hash(sharding_key)) % len(targets)]

    def target(self, queue_id: int, broker_name: str | None = None) -> tuple[MessageQueue, str]:
        """The target of one queue id (on ``broker_name``, or on the first broker that has it).

        Raises:
            NoRouteError: no such writable queue.
        """
        for queue, addr in self.targets:
            if queue.queue_id == queue_id and (broker_name is None or queue.broker_name == broker_name):
                return queue, addr
        where = f" on broker {broker_name}" if broker_name else ""
        raise NoRouteError(self.topic, f"no writable queue {queue_id}{where}")


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, signed 32-bit), for cross-language queue selection."""
    value = 0
    data = text.encode("utf-16-be")
    for index in range(0, len(data), 2):
        value = (31 * value + (data[index] << 8 | data[index + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def parse_namesrv_addrs(namesrv_addr: str) -> list[str]:
    """``"host:port;host:port"`` (Java's separator; commas and spaces tolerated) to a list.

    Raises:
        ValueError: the list is empty.
    """
    addrs = [part.strip() for part in namesrv_addr.replace(",", ";").replace(" ", ";").split(";") if part.strip()]
    if not addrs:
        raise ValueError(f"no name server address in {namesrv_addr!r}")
    return addrs


class RouteCache:
    """Topic routes from the name servers, cached per topic.

    Args:
        pool: the connections to use.
        namesrv_addrs: the name servers.
        request_timeout_s: timeout of one GET_ROUTEINFO_BY_TOPIC.
        on_new_broker: called with each broker address the first time a route mentions it (the client instance
            heartbeats it at once).
        make_request: builds a request command (the client instance's language, version and opaque counter).
    """

    def __init__(
        self,
        pool: ConnectionPool,
        namesrv_addrs: Iterable[str],
        *,
        request_timeout_s: float,
        make_request: Callable[[int, dict[str, str]], RemotingCommand],
        on_new_broker: Callable[[str], None] | None = None,
    ) -> None:
        self._pool = pool
        self._namesrv_addrs = list(namesrv_addrs)
        if not self._namesrv_addrs:
            raise ValueError("no name server address")
        self._namesrv_index = random.randrange(len(self._namesrv_addrs))  # noqa: S311  # spreading load
        self._timeout_s = request_timeout_s
        self._make_request = make_request
        self._on_new_broker = on_new_broker
        self._routes: dict[str, TopicRoute] = {}
        self._publish: dict[str, PublishInfo] = {}
        self._default_queue_nums: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._brokers: dict[str, str] = {}  # broker address -> broker name
        self._broker_addrs: dict[str, dict[int, str]] = {}  # broker name -> addresses by id

    # -- lookups ---------------------------------------------------------------------------------------------

    @property
    def broker_addresses(self) -> list[str]:
        """Every broker address a route has mentioned (the heartbeat targets)."""
        return list(self._brokers)

    def find_broker_addr(self, broker_name: str, broker_id: int = MASTER_ID) -> str | None:
        """The address of one broker of ``broker_name`` from the routes seen so far, or ``None``."""
        addrs = self._broker_addrs.get(broker_name)
        return None if addrs is None else addrs.get(broker_id)

    def cached_publish_info(self, topic: str) -> PublishInfo | None:
        """The producer's targets for ``topic`` if already known (no I/O: the send fast path)."""
        return self._publish.get(topic)

    async def publish_info(self, topic: str, default_queue_nums: int) -> PublishInfo:
        """Where to send ``topic``, asking the name servers if it is not cached; TBW102's route if unknown.

        Raises:
            NoRouteError: neither the topic nor TBW102 has a route.
            ClientError: no name server answered.
        """
        info = self._publish.get(topic)
        if info is not None:
            return info
        async with self._lock(topic):
            info = self._publish.get(topic)
            if info is None:
                self._default_queue_nums[topic] = default_queue_nums
                info = await self._load_publish_info(topic)
        return info

    async def route(self, topic: str, *, refresh: bool = False) -> TopicRoute:
        """The topic's own route (consumers, admin), cached unless ``refresh``.

        Raises:
            NoRouteError: no name server knows the topic.
            ClientError: no name server answered.
        """
        route = self._routes.get(topic)
        if route is not None and not refresh:
            return route
        async with self._lock(topic):
            route = self._routes.get(topic)
            if route is None or refresh:
                route = await self.fetch_route(topic)
                if route is None:
                    raise NoRouteError(topic, "no name server knows the topic")
                self._update(topic, route)
        return route

    # -- name server calls -----------------------------------------------------------------------------------

    async def fetch_route(self, topic: str) -> TopicRoute | None:
        """Ask the name servers for ``topic``'s route, ``None`` if they do not know it (no caching).

        The chosen name server is asked first; on a connection failure, timeout or error code the next one is
        tried, and it becomes the chosen one if it answers.

        Raises:
            ClientError: every name server failed (the last failure).
        """
        last_error: ClientError | None = None
        count = len(self._namesrv_addrs)
        for step in range(count):
            index = (self._namesrv_index + step) % count
            addr = self._namesrv_addrs[index]
            request = self._make_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
            try:
                response = await self._pool.invoke(addr, request, self._timeout_s)
            except (ConnectionFailedError, RequestTimeoutError) as exc:
                last_error = exc
                continue
            if response.code == ResponseCode.SUCCESS:
                self._namesrv_index = index
                try:
                    return parse_topic_route(response.body)
                except RemoteProtocolError as exc:
                    last_error = BrokerError(ResponseCode.SYSTEM_ERROR, str(exc), addr)
                    continue
            if response.code == ResponseCode.TOPIC_NOT_EXIST:
                self._namesrv_index = index
                return None
            last_error = BrokerError(response.code, response.remark, addr)
        assert last_error is not None
        raise last_error

    async def refresh_all(self) -> None:
        """Ask again for every topic seen; a failure keeps the old route (and is logged)."""
        for topic in list(self._routes.keys() | self._publish.keys()):
            try:
                async with self._lock(topic):
                    route = await self.fetch_route(topic)
                    if route is not None:
                        self._update(topic, route)
                    elif topic in self._publish and self._publish[topic].is_default_route:
                        await self._load_default_route(topic)
            except ClientError as exc:
                log.warning("cannot refresh the route of %s: %s", topic, exc)

    # -- internals -------------------------------------------------------------------------------------------

    def _lock(self, topic: str) -> asyncio.Lock:
        lock = self._locks.get(topic)
        if lock is None:
            lock = self._locks[topic] = asyncio.Lock()
        return lock

    async def _load_publish_info(self, topic: str) -> PublishInfo:
        route = await self.fetch_route(topic)
        if route is not None:
            self._update(topic, route)
            info = self._publish[topic]
            if info.targets:
                return info
        return await self._load_default_route(topic)

    async def _load_default_route(self, topic: str) -> PublishInfo:
        template = await self.fetch_route(AUTO_CREATE_TOPIC)
        if template is None:
            raise NoRouteError(topic, f"no name server knows it, nor {AUTO_CREATE_TOPIC} to auto-create it from")
        self._note_brokers(template)
        route = default_route_for(template, self._default_queue_nums.get(topic, 4))
        info = PublishInfo(topic, route, is_default_route=True)
        if not info.targets:
            raise NoRouteError(topic, f"the {AUTO_CREATE_TOPIC} route has no writable queue on a master broker")
        self._publish[topic] = info
        return info

    def _update(self, topic: str, route: TopicRoute) -> None:
        self._note_brokers(route)
        old = self._routes.get(topic)
        self._routes[topic] = route
        info = self._publish.get(topic)
        if info is None and topic not in self._default_queue_nums:
            return  # nobody sends to this topic
        if info is not None and not info.is_default_route and old == route:
            return  # unchanged: keep the round-robin position
        new_info = PublishInfo(topic, route)
        if new_info.targets or (info is not None and not info.is_default_route):
            self._publish[topic] = new_info
        # else: no writable queue yet; the sender keeps (or falls back to) TBW102's route

    def _note_brokers(self, route: TopicRoute) -> None:
        for broker in route.broker_datas:
            self._broker_addrs[broker.broker_name] = dict(broker.broker_addrs)
            for addr in broker.broker_addrs.values():
                if addr not in self._brokers:
                    self._brokers[addr] = broker.broker_name
                    if self._on_new_broker is not None:
                        self._on_new_broker(addr)
