"""Administration: topics, cluster layout, consumer progress, message lookups, offset resets
(the parts of Java's ``DefaultMQAdminExt`` that ``mqadmin`` users reach for first).

::

    async with Admin("127.0.0.1:9876") as admin:
        await admin.create_topic("Orders", queue_nums=8)
        for row in await admin.consumer_progress("CG_orders"):
            print(row.queue, row.broker_offset, row.consumer_offset, row.lag)

Requests go to the name servers (GET_BROKER_CLUSTER_INFO, GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
GET_ROUTEINFO_BY_TOPIC, DELETE_TOPIC_IN_NAMESRV; the next one is tried when one fails) and to every master
broker concerned (UPDATE_AND_CREATE_TOPIC, DELETE_TOPIC_IN_BROKER, GET_TOPIC_STATS_INFO, GET_CONSUME_STATS,
VIEW_MESSAGE_BY_ID, QUERY_MESSAGE, SEARCH_OFFSET_BY_TIMESTAMP, UPDATE_CONSUMER_OFFSET,
INVOKE_BROKER_TO_RESET_OFFSET).

:meth:`Admin.reset_offset_by_timestamp` first asks each broker to reset the group (INVOKE_BROKER_TO_RESET_OFFSET,
which also tells online consumers); a broker that does not support it, or has no consumer of the group
online, gets the offsets computed here (SEARCH_OFFSET_BY_TIMESTAMP per queue) and stored with
UPDATE_CONSUMER_OFFSET, as ``mqadmin resetOffsetByTime`` falls back to ``resetOffsetByTimeOld``. Running
consumers of the group overwrite such offsets with their own: stop them first. Without ``force`` (offsets only
move back) the offsets are computed here and each queue that moves is reset on its own (5.x ``queueId`` and
``offset``): Apache 5.x resets on the broker side by default (``useServerSideResetOffset``) and ignores
``isForce`` there.

State: the client instance (connections, routes); nothing else. Imports nothing from the broker or name server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self

from tidemq.client._consumer_api import ConsumerApi
from tidemq.client._instance import ClientConfig, ClientInstance
from tidemq.client._message import ReceivedMessage, decode_message, decode_messages
from tidemq.client._routes import AUTO_CREATE_TOPIC, MessageQueue, TopicRoute, parse_namesrv_addrs, subscribe_queues
from tidemq.client.errors import (
    BrokerError,
    ClientError,
    ConnectionFailedError,
    MessageNotFoundError,
    NoRouteError,
    RequestTimeoutError,
)
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, loads_lenient
from tidemq.store import record as rec
from tidemq.store.names import validate_group, validate_topic

log = logging.getLogger(__name__)

PERM_READ_WRITE: Final = 6
ROUTE_POLL_S: Final = 0.1
_FALLBACK_RESET_CODES: Final = frozenset({ResponseCode.REQUEST_CODE_NOT_SUPPORTED, ResponseCode.CONSUMER_NOT_ONLINE})


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """One broker name of the cluster (``BrokerData``).

    Attributes:
        broker_name: e.g. ``broker-a``.
        cluster: the cluster it belongs to.
        addrs: addresses by broker id, 0 the master.
    """

    broker_name: str
    cluster: str
    addrs: Mapping[int, str]

    @property
    def master_addr(self) -> str | None:
        return self.addrs.get(0)


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """GET_BROKER_CLUSTER_INFO's answer.

    Attributes:
        brokers: broker name -> its addresses.
        clusters: cluster name -> its broker names, sorted.
    """

    brokers: Mapping[str, BrokerInfo]
    clusters: Mapping[str, list[str]]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue of a topic (GET_TOPIC_STATS_INFO)."""

    queue: MessageQueue
    min_offset: int
    max_offset: int
    last_update_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class QueueProgress:
    """A group's progress on one queue (GET_CONSUME_STATS).

    Attributes:
        queue: the queue.
        broker_offset: the queue's next offset to be written.
        consumer_offset: the group's committed offset.
        last_timestamp_ms: store time of the last consumed message (0 if none).
    """

    queue: MessageQueue
    broker_offset: int
    consumer_offset: int
    last_timestamp_ms: int

    @property
    def lag(self) -> int:
        """Messages stored but not yet consumed by the group."""
        return max(0, self.broker_offset - self.consumer_offset)


def _queue_from_key(key: Any) -> MessageQueue:
    """A ``MessageQueue`` map key as fastjson writes it (an object), parsed by ``loads_lenient``."""
    fields = dict(key)
    return MessageQueue(str(fields["topic"]), str(fields["brokerName"]), int(fields["queueId"]))


class Admin:
    """Administrative requests against a cluster (see the module docstring).

    Args:
        namesrv_addr: name servers, ``"host:port;host:port"``.
        config: timeouts and connection settings.
    """

    def __init__(self, namesrv_addr: str, *, config: ClientConfig | None = None) -> None:
        self._namesrv_addrs = parse_namesrv_addrs(namesrv_addr)
        self._instance = ClientInstance(namesrv_addr, config)
        self._timeout_s = self._instance.config.request_timeout_s

    async def start(self) -> None:
        await self._instance.start()

    async def close(self) -> None:
        await self._instance.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing --------------------------------------------------------------------------------------------

    async def _invoke(
        self, addr: str, code: int, fields: dict[str, str], *, ok: frozenset[int] | None = None
    ) -> RemotingCommand:
        """One request; codes outside ``ok`` (default SUCCESS) raise BrokerError."""
        self._instance.check_running()
        request = self._instance.make_request(code, fields)
        response = await self._instance.pool.invoke(addr, request, self._timeout_s)
        if response.code not in (ok or {ResponseCode.SUCCESS}):
            raise BrokerError(response.code, response.remark, addr)
        return response

    async def _namesrv(self, code: int, fields: dict[str, str], *, addr: str | None = None) -> RemotingCommand:
        """A request to a name server (``addr``, or each in turn until one answers)."""
        last_error: ClientError | None = None
        for namesrv in [addr] if addr else self._namesrv_addrs:
            try:
                return await self._invoke(namesrv, code, fields)
            except (ConnectionFailedError, RequestTimeoutError) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _route(self, topic: str) -> TopicRoute:
        self._instance.check_running()
        return await self._instance.routes.route(topic, refresh=True)

    async def _topic_masters(self, topic: str) -> dict[str, str]:
        """Broker name -> master address, for the brokers of ``topic``'s route."""
        route = await self._route(topic)
        return {b.broker_name: b.master_addr for b in route.broker_datas if b.master_addr}

    # -- cluster and topics ----------------------------------------------------------------------------------

    async def cluster_info(self) -> ClusterInfo:
        """The brokers and clusters the name server knows (GET_BROKER_CLUSTER_INFO)."""
        data = loads_lenient((await self._namesrv(RequestCode.GET_BROKER_CLUSTER_INFO, {})).body) or {}
        brokers = {
            str(name): BrokerInfo(
                str(name),
                str(entry.get("cluster") or ""),
                {int(broker_id): str(addr) for broker_id, addr in (entry.get("brokerAddrs") or {}).items()},
            )
            for name, entry in (data.get("brokerAddrTable") or {}).items()
        }
        clusters = {str(name): sorted(map(str, names)) for name, names in (data.get("clusterAddrTable") or {}).items()}
        return ClusterInfo(brokers, clusters)

    async def list_topics(self) -> list[str]:
        """Every topic the name server knows, system and retry topics included, sorted."""
        body = (await self._namesrv(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, {})).body
        data = loads_lenient(body) if body else {}
        return sorted(str(topic) for topic in data.get("topicList") or [])

    async def topic_route(self, topic: str) -> TopicRoute:
        """The topic's route (GET_ROUTEINFO_BY_TOPIC).

        Raises:
            NoRouteError: no name server knows the topic.
        """
        return await self._route(topic)

    async def _target_brokers(self, cluster: str | None, broker_name: str | None) -> dict[str, str]:
        info = await self.cluster_info()
        if broker_name is not None:
            names = [broker_name]
        elif cluster is not None:
            if cluster not in info.clusters:
                raise ValueError(f"no cluster named {cluster!r}; known: {', '.join(info.clusters) or 'none'}")
            names = info.clusters[cluster]
        elif len(info.clusters) == 1:
            names = next(iter(info.clusters.values()))
        else:
            raise ValueError(f"say which cluster or broker: the name server knows {len(info.clusters)} clusters")
        targets: dict[str, str] = {}
        for name in names:
            broker = info.brokers.get(name)
            if broker is None or broker.master_addr is None:
                raise ValueError(f"no master broker named {name!r} is registered")
            targets[name] = broker.master_addr
        return targets

    async def create_topic(
        self,
        topic: str,
        queue_nums: int = 8,
        *,
        cluster: str | None = None,
        broker_name: str | None = None,
        perm: int = PERM_READ_WRITE,
        order: bool = False,
        wait_s: float = 5.0,
    ) -> list[str]:
        """Create (or update) ``topic`` with ``queue_nums`` read and write queues on the master brokers of
        ``cluster``, or on ``broker_name`` (UPDATE_AND_CREATE_TOPIC); with one cluster, naming it is optional.

        Args:
            wait_s: wait this long for the name servers' route to show the topic on every broker (0: no wait).

        Returns:
            The broker names the topic was created on.

        Raises:
            IllegalNameError: a bad topic name.
            ValueError: an unknown cluster or broker, or several clusters and none named.
            BrokerError: a broker refused.
            RequestTimeoutError: the route did not show the topic within ``wait_s``.
        """
        validate_topic(topic)
        if topic == AUTO_CREATE_TOPIC:
            raise ValueError(f"{AUTO_CREATE_TOPIC} is the auto-create template")
        targets = await self._target_brokers(cluster, broker_name)
        fields = {
            "topic": topic,
            "defaultTopic": AUTO_CREATE_TOPIC,
            "readQueueNums": str(queue_nums),
            "writeQueueNums": str(queue_nums),
            "perm": str(perm),
            "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": "0",
            "order": "true" if order else "false",
        }
        for addr in targets.values():
            await self._invoke(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, dict(fields))
        if wait_s > 0:
            await self._wait_for_route(topic, set(targets), queue_nums, wait_s)
        return sorted(targets)

    async def _wait_for_route(self, topic: str, brokers: set[str], queue_nums: int, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                route = await self._route(topic)
                shown = {qd.broker_name for qd in route.queue_datas if qd.read_queue_nums == queue_nums}
                if brokers <= shown:
                    return
            except NoRouteError:
                pass
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(self._namesrv_addrs[0], wait_s, f"route of new topic {topic}")
            await asyncio.sleep(ROUTE_POLL_S)

    async def delete_topic(self, topic: str, *, cluster: str | None = None) -> None:
        """Delete ``topic`` from its brokers (DELETE_TOPIC_IN_BROKER), then from every name server.

        Raises:
            BrokerError: a broker or name server refused.
        """
        validate_topic(topic)
        try:
            masters = await self._topic_masters(topic)
        except NoRouteError:
            masters = {}
        if cluster is not None:
            masters |= await self._target_brokers(cluster, None)
        for addr in masters.values():
            await self._invoke(addr, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": topic})
        fields = {"topic": topic, **({"clusterName": cluster} if cluster else {})}
        for namesrv in self._namesrv_addrs:
            await self._namesrv(RequestCode.DELETE_TOPIC_IN_NAMESRV, dict(fields), addr=namesrv)

    async def topic_stats(self, topic: str) -> list[QueueStats]:
        """Min and max offset and last store time of every queue of ``topic`` (GET_TOPIC_STATS_INFO)."""
        rows: list[QueueStats] = []
        for addr in (await self._topic_masters(topic)).values():
            body = (await self._invoke(addr, RequestCode.GET_TOPIC_STATS_INFO, {"topic": topic})).body
            for key, stats in ((loads_lenient(body) or {}).get("offsetTable") or {}).items():
                rows.append(
                    QueueStats(
                        _queue_from_key(key),
                        int(stats.get("minOffset", 0)),
                        int(stats.get("maxOffset", 0)),
                        int(stats.get("lastUpdateTimestamp", 0)),
                    )
                )
        return sorted(rows, key=lambda row: row.queue)

    # -- consumers -------------------------------------------------------------------------------------------

    async def consumer_progress(self, group: str, topic: str | None = None) -> list[QueueProgress]:
        """Per queue: the broker's max offset, the group's committed offset and the lag (GET_CONSUME_STATS to
        every master broker), for ``topic`` or every topic the group consumes (its retry topic included)."""
        validate_group(group)
        fields = {"consumerGroup": group, **({"topic": topic} if topic else {})}
        rows: list[QueueProgress] = []
        for broker in (await self.cluster_info()).brokers.values():
            if broker.master_addr is None:
                continue
            body = (await self._invoke(broker.master_addr, RequestCode.GET_CONSUME_STATS, dict(fields))).body
            for key, stats in ((loads_lenient(body) if body else {}).get("offsetTable") or {}).items():
                rows.append(
                    QueueProgress(
                        _queue_from_key(key),
                        int(stats.get("brokerOffset", 0)),
                        int(stats.get("consumerOffset", 0)),
                        int(stats.get("lastTimestamp", 0)),
                    )
                )
        return sorted(rows, key=lambda row: row.queue)

    async def reset_offset_by_timestamp(
        self, group: str, topic: str, timestamp_ms: int, *, force: bool = True
    ) -> dict[MessageQueue, int]:
        """Move ``group``'s offsets on every queue of ``topic`` to the first message stored at or after
        ``timestamp_ms`` (see the module docstring for how).

        Args:
            force: also move offsets forward (``False``: only move back, as ``isForce=false``).

        Returns:
            The new offset of each queue.
        """
        validate_group(group)
        if not force:
            return await self._reset_back_only(group, topic, timestamp_ms)
        result: dict[MessageQueue, int] = {}
        fields = {"topic": topic, "group": group, "timestamp": str(timestamp_ms), "isForce": "true"}
        for broker_name, addr in (await self._topic_masters(topic)).items():
            table = await self._invoke_reset(addr, fields)
            if table is None:
                table = await self._reset_directly(group, topic, broker_name, timestamp_ms)
            result |= table
        return result

    async def _invoke_reset(self, addr: str, fields: dict[str, str]) -> dict[MessageQueue, int] | None:
        """INVOKE_BROKER_TO_RESET_OFFSET: the broker's new offsets, or ``None`` when it cannot (fall back)."""
        response = await self._invoke(
            addr,
            RequestCode.INVOKE_BROKER_TO_RESET_OFFSET,
            dict(fields),
            ok=frozenset({ResponseCode.SUCCESS, *_FALLBACK_RESET_CODES}),
        )
        if response.code != ResponseCode.SUCCESS:
            log.info(
                "%s answered %d to INVOKE_BROKER_TO_RESET_OFFSET; setting the offsets directly", addr, response.code
            )
            return None
        table = (loads_lenient(response.body) if response.body else {}).get("offsetTable") or {}
        return {_queue_from_key(key): int(offset) for key, offset in table.items()}

    async def _reset_back_only(self, group: str, topic: str, timestamp_ms: int) -> dict[MessageQueue, int]:
        """``force=False``: each queue whose committed offset is past the timestamp's offset is moved back."""
        api = ConsumerApi(self._instance, group)
        masters = await self._topic_masters(topic)
        result: dict[MessageQueue, int] = {}
        for queue in subscribe_queues(topic, await self._route(topic)):
            addr = masters.get(queue.broker_name)
            if addr is None:
                continue
            offset = await api.search_offset(queue, timestamp_ms)
            current = await api.query_offset(queue)
            if current is not None and current <= offset:
                result[queue] = current
                continue
            fields = {
                "topic": topic,
                "group": group,
                "timestamp": str(timestamp_ms),
                "isForce": "false",
                "queueId": str(queue.queue_id),  # 5.x: this queue only, to this offset
                "offset": str(offset),
            }
            table = await self._invoke_reset(addr, fields)
            if table is None:
                await api.update_offset(queue, offset)
                table = {queue: offset}
            result[queue] = table.get(queue, offset)
        return result

    async def _reset_directly(
        self, group: str, topic: str, broker_name: str, timestamp_ms: int
    ) -> dict[MessageQueue, int]:
        api = ConsumerApi(self._instance, group)
        route = await self._route(topic)
        result: dict[MessageQueue, int] = {}
        for queue in subscribe_queues(topic, route):
            if queue.broker_name != broker_name:
                continue
            offset = await api.search_offset(queue, timestamp_ms)
            await api.update_offset(queue, offset)
            result[queue] = offset
        return result

    # -- messages --------------------------------------------------------------------------------------------

    async def query_message_by_id(self, offset_msg_id: str) -> ReceivedMessage:
        """The message with this broker id (``offset_msg_id``: store host, port and commit-log offset).

        Raises:
            ValueError: not an offset message id (32 hex characters).
            MessageNotFoundError: the broker has no record there.
        """
        host, port, physical_offset = rec.decode_offset_msg_id(offset_msg_id.strip().upper())
        addr = f"{host}:{port}"
        response = await self._invoke(
            addr,
            RequestCode.VIEW_MESSAGE_BY_ID,
            {"offset": str(physical_offset)},
            ok=frozenset({ResponseCode.SUCCESS, ResponseCode.SYSTEM_ERROR}),
        )
        if response.code != ResponseCode.SUCCESS or not response.body:
            raise MessageNotFoundError(offset_msg_id, response.remark or "")
        broker_name = next(
            (b.broker_name for b in (await self.cluster_info()).brokers.values() if addr in b.addrs.values()), ""
        )
        return decode_message(response.body, 0, broker_name)

    async def query_messages_by_key(
        self, topic: str, key: str, *, max_num: int = 32, begin_ms: int = 0, end_ms: int | None = None
    ) -> list[ReceivedMessage]:
        """Messages of ``topic`` whose KEYS (or UNIQ_KEY) include ``key``, stored in ``[begin_ms, end_ms]``,
        from every broker of the topic (QUERY_MESSAGE on the key index), oldest first."""
        end_ms = time.time_ns() // 1_000_000 + 1000 if end_ms is None else end_ms
        fields = {
            "topic": topic,
            "key": key,
            "maxNum": str(max_num),
            "beginTimestamp": str(begin_ms),
            "endTimestamp": str(end_ms),
        }
        found: list[ReceivedMessage] = []
        for broker_name, addr in (await self._topic_masters(topic)).items():
            response = await self._invoke(
                addr,
                RequestCode.QUERY_MESSAGE,
                dict(fields),
                ok=frozenset({ResponseCode.SUCCESS, ResponseCode.QUERY_NOT_FOUND}),
            )
            if response.code == ResponseCode.SUCCESS and response.body:
                found += decode_messages(response.body, broker_name)
        # The index is a hash table: keep only real matches, as Java's queryMessage does.
        matches = [m for m in found if m.topic == topic and (key in m.keys or m.properties.get("UNIQ_KEY") == key)]
        return sorted(matches, key=lambda m: (m.store_timestamp, m.commitlog_offset))[:max_num]
