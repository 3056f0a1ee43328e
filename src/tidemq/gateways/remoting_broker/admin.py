"""Admin requests (mqadmin, the dashboard): topics, subscription groups, statistics, broker configuration.

``HANDLERS`` maps request codes to handlers; the gateway merges it into its table. Reply shapes are those of
Apache RocketMQ's AdminBrokerProcessor (4.9 and 5.x), checked against the replies of an Apache 5.5.0 broker to
mqadmin 4.9.8 and 5.5.0; where the two versions differ we send the union (fastjson ignores unknown fields).
Bodies that hold ``Map<MessageQueue, ...>`` use fastjson's object keys (``json_compat.message_queue_key``).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields as dataclass_fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tidemq import __version__
from tidemq.broker.broker import Broker
from tidemq.broker.subscription_groups import SubscriptionGroupConfig
from tidemq.broker.topics import SYSTEM_TOPICS, DataVersion, TopicConfig, is_system_topic
from tidemq.errors import IllegalNameError
from tidemq.gateways.remoting_broker.common import boolean, error, integer, ok, text
from tidemq.protocol.remoting import (
    RemotingCommand,
    RequestCode,
    ResponseCode,
    dumps_compact,
    loads_lenient,
    message_queue_key,
)
from tidemq.store import record as rec
from tidemq.store.names import validate_group, validate_topic

if TYPE_CHECKING:
    from tidemq.gateways.remoting_broker.gateway import BrokerGateway
    from tidemq.store.message_store import MessageStore
    from tidemq.transport import RemotingChannel

Handler = Callable[["BrokerGateway", "RemotingChannel", RemotingCommand], RemotingCommand]

BROKER_VERSION: Final = 399
BROKER_VERSION_DESC: Final = "V4_9_3"
"""What GET_BROKER_RUNTIME_INFO reports: the MQVersion we claim in every command (codes.DEFAULT_VERSION)."""


# ---------------------------------------------------------------------------------------------------------------------
# Topics


def handle_update_and_create_topic(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    fields = request.ext_fields
    topic = text(fields, "topic")
    try:
        validate_topic(topic)
    except IllegalNameError as exc:
        return error(request, ResponseCode.SYSTEM_ERROR, str(exc))
    if topic == gateway.broker.config.broker_cluster_name:
        return error(request, ResponseCode.SYSTEM_ERROR, f"the topic[{topic}] is conflict with system reserved words.")
    read_queues = integer(fields, "readQueueNums", 16)
    write_queues = integer(fields, "writeQueueNums", 16)
    if not (0 < read_queues <= 1024 and 0 < write_queues <= 1024):
        return error(request, ResponseCode.SYSTEM_ERROR, "readQueueNums and writeQueueNums must be within 1..1024")
    config = TopicConfig(
        topic,
        read_queues,
        write_queues,
        integer(fields, "perm", 6),
        fields.get("topicFilterType", "SINGLE_TAG"),
        integer(fields, "topicSysFlag", 0),
        boolean(fields, "order"),
    )
    gateway.broker.topics.put(config)
    return ok(request)


def handle_get_all_topic_config(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    return ok(request, body=dumps_compact(gateway.broker.topics.serialize_wrapper()))


def handle_get_topic_config(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_TOPIC_CONFIG (351, 5.x): one TopicConfig (TopicConfigAndQueueMapping without a static-topic mapping)."""
    topic = text(request.ext_fields, "topic")
    config = gateway.broker.topics.get(topic)
    if config is None:
        return error(request, ResponseCode.TOPIC_NOT_EXIST, f"No topic in this broker. topic: {topic}")
    return ok(request, body=dumps_compact(config.to_json()))


def _system_topics(broker: Broker) -> set[str]:
    """RocketMQ's system topic set plus the cluster- and broker-named topics and other rmq_sys_ topics we host."""
    config = broker.config
    found = set(SYSTEM_TOPICS) | {config.broker_cluster_name, config.broker_name}
    return found | {t for t in broker.topics.topics if is_system_topic(t)}


def handle_get_system_topic_list(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305): TopicList ``{"topicList":[...]}``."""
    return ok(request, body=dumps_compact({"topicList": sorted(_system_topics(gateway.broker))}))


def handle_delete_topic(gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
    """DELETE_TOPIC_IN_BROKER (215): the topic's config, committed offsets and consume queues.

    The records stay in the commit log (they age out with it) and in the key index, as in RocketMQ. mqadmin then
    deletes the topic from every name server (DELETE_TOPIC_IN_NAMESRV).
    """
    broker = gateway.broker
    topic = text(request.ext_fields, "topic")
    if not topic.strip():
        return error(request, ResponseCode.INVALID_PARAMETER, "The specified topic is blank.")
    if topic in _system_topics(broker):
        return error(request, ResponseCode.INVALID_PARAMETER, f"The topic[{topic}] is conflict with system topic.")
    broker.topics.delete(topic)
    broker.offsets.remove_topic(topic)
    broker.stats.forget_topic(topic)
    _delete_consume_queues(broker.store, topic)
    return ok(request)


def _delete_consume_queues(store: MessageStore, topic: str) -> None:
    """Close and remove the topic's consume queues. Under the store lock, as retention does: the cleaner thread
    walks the queues with it held. A queue is synced first so that the flusher finds it clean."""
    with store.lock():
        for queue_id in store.queue_ids(topic):
            queue = store.consume_queue(topic, queue_id)
            if queue is not None:
                with contextlib.suppress(OSError, ValueError):
                    queue.sync()
            store.drop_queue(topic, queue_id)
    directory = store.config.consume_queue_dir / topic
    if directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)


def _store_timestamp(store: MessageStore, topic: str, queue_id: int, queue_offset: int) -> int:
    """The store timestamp of the message at ``queue_offset`` (0 if gone or unknown)."""
    queue = store.consume_queue(topic, queue_id)
    if queue is None or not queue.min_offset <= queue_offset < queue.max_offset:
        return 0
    entry = queue.entry_at(queue_offset)
    if entry is None or entry[0] < store.commit_log.min_offset:
        return 0
    data = store.commit_log.read(entry[0] + rec.OFFSET_STORE_TIMESTAMP, 8)
    return int(rec.LONG.unpack(data)[0]) if len(data) == 8 else 0


def handle_get_topic_stats(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_TOPIC_STATS_INFO (202): TopicStatsTable, min/max offset and last store time per queue."""
    broker = gateway.broker
    topic = text(request.ext_fields, "topic")
    config = broker.topics.get(topic)
    if config is None:
        return error(request, ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
    store = broker.store
    table: dict[Any, dict[str, int]] = {}
    for queue_id in range(max(config.read_queue_nums, config.write_queue_nums)):
        max_offset = max(store.get_max_offset(topic, queue_id), 0)
        table[message_queue_key(topic, broker.config.broker_name, queue_id)] = {
            "lastUpdateTimestamp": _store_timestamp(store, topic, queue_id, max_offset - 1) if max_offset else 0,
            "maxOffset": max_offset,
            "minOffset": max(store.get_min_offset(topic, queue_id), 0),
        }
    return ok(request, body=dumps_compact({"offsetTable": table, "topicPutTps": broker.stats.topic_put_tps(topic)}))


def handle_query_consume_queue(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """QUERY_CONSUME_QUEUE (321, ``mqadmin queryCq``): raw consume-queue entries from ``index``."""
    broker = gateway.broker
    fields = request.ext_fields
    topic, queue_id = text(fields, "topic"), integer(fields, "queueId")
    index, count = integer(fields, "index"), max(0, min(integer(fields, "count", 10), 1024))
    queue = broker.store.consume_queue(topic, queue_id)
    if queue is None:
        return error(request, ResponseCode.SYSTEM_ERROR, f"{queue_id}@{topic} is not exist!")
    body: dict[str, Any] = {"maxQueueIndex": queue.max_offset, "minQueueIndex": queue.min_offset}
    group = fields.get("consumerGroup")
    if group:
        subscription = broker.consumers.find_subscription(group, topic)
        if subscription is None:
            body["filterData"] = f"{group}@{topic} is not online!"
        else:
            body["subscriptionData"] = subscription.to_json()
            body["filterData"] = "null"  # a TAG subscription has no ConsumerFilterData
    if not queue.min_offset <= index < queue.max_offset:
        return request.make_response(ResponseCode.SUCCESS, f"Index {index} of {queue_id}@{topic} is not exist!")
    entries = []
    for offset in range(index, min(index + count, queue.max_offset)):
        entry = queue.entry_at(offset)
        if entry is None:
            break
        physical, size, tags_code = entry
        entries.append({"eval": False, "physicOffset": physical, "physicSize": size, "tagsCode": tags_code})
    body["queueData"] = entries
    return ok(request, body=dumps_compact(body))


# ---------------------------------------------------------------------------------------------------------------------
# Subscription groups and consumers


def _group_json(config: SubscriptionGroupConfig) -> dict[str, Any]:
    data = config.to_json()
    data.setdefault("groupRetryPolicy", {"type": "CUSTOMIZED"})  # 5.x's default; 4.x ignores it
    return data


def handle_update_and_create_subscription_group(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): the body is a SubscriptionGroupConfig."""
    try:
        data = loads_lenient(bytes(request.body))
    except ValueError as exc:
        return error(request, ResponseCode.SYSTEM_ERROR, f"the request body is not valid JSON: {exc}")
    if not isinstance(data, dict) or "groupName" not in data:
        return error(request, ResponseCode.SYSTEM_ERROR, "the body is not a SubscriptionGroupConfig")
    try:
        validate_group(str(data["groupName"]))
        config = SubscriptionGroupConfig.from_json(data)
    except IllegalNameError as exc:
        return error(request, ResponseCode.INVALID_PARAMETER, str(exc))
    except (TypeError, ValueError) as exc:
        return error(request, ResponseCode.SYSTEM_ERROR, f"bad SubscriptionGroupConfig: {exc}")
    gateway.broker.subscription_groups.put(config)
    return ok(request)


def handle_get_all_subscription_groups(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201): SubscriptionGroupWrapper.

    5.x clients page with ``groupSeq``/``maxGroupNum`` and read ``totalGroupNum``; older ones get everything.
    """
    manager = gateway.broker.subscription_groups
    names = sorted(manager.groups)
    fields = request.ext_fields
    ext: dict[str, str] = {}
    if fields.get("maxGroupNum"):
        start = max(integer(fields, "groupSeq", 0), 0)
        names = names[start : start + max(integer(fields, "maxGroupNum"), 1)]
        ext["totalGroupNum"] = str(len(manager.groups))
    body = {
        "dataVersion": manager.data_version.to_json(),
        "forbiddenTable": {},
        "subscriptionGroupTable": {name: _group_json(manager.groups[name]) for name in names},
    }
    return ok(request, ext, dumps_compact(body))


def handle_get_subscription_group(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_SUBSCRIPTIONGROUP_CONFIG (352, 5.x): one SubscriptionGroupConfig; never auto-creates."""
    group = text(request.ext_fields, "group")
    config = gateway.broker.subscription_groups.groups.get(group)
    if config is None:
        return error(request, ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, "No group in this broker")
    return ok(request, body=dumps_compact(_group_json(config)))


def handle_delete_subscription_group(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """DELETE_SUBSCRIPTIONGROUP (207): ``groupName``; offsets go too with ``cleanOffset`` (5.x) / ``removeOffset``."""
    broker = gateway.broker
    fields = request.ext_fields
    group = text(fields, "groupName")
    broker.subscription_groups.delete(group)
    if boolean(fields, "cleanOffset") or boolean(fields, "removeOffset"):
        broker.offsets.remove_group(group)
        broker.stats.forget_group(group)
    return ok(request)


def _connection(client: Any) -> dict[str, Any]:
    return {
        "clientAddr": client.remote_address,
        "clientId": client.client_id,
        "language": client.language,
        "version": client.version,
    }


def handle_get_consumer_connections(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_CONSUMER_CONNECTION_LIST (203): ConsumerConnection; CONSUMER_NOT_ONLINE when nobody is connected."""
    group = text(request.ext_fields, "consumerGroup")
    info = gateway.broker.consumers.find(group)
    if info is None or not info.clients:
        return error(request, ResponseCode.CONSUMER_NOT_ONLINE, f"the consumer group[{group}] not online")
    body = {
        "connectionSet": [_connection(c) for _, c in sorted(info.clients.items())],
        "consumeFromWhere": info.consume_from_where,
        "consumeType": info.consume_type,
        "messageModel": info.message_model,
        "subscriptionTable": {topic: sub.to_json() for topic, sub in sorted(info.subscriptions.items())},
    }
    return ok(request, body=dumps_compact(body))


def handle_get_producer_connections(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_PRODUCER_CONNECTION_LIST (204): ProducerConnection ``{"connectionSet":[...]}``."""
    group = text(request.ext_fields, "producerGroup")
    clients = gateway.broker.producers.groups.get(group)
    if not clients:
        return error(request, ResponseCode.SYSTEM_ERROR, f"the producer group[{group}] not exist")
    return ok(request, body=dumps_compact({"connectionSet": [_connection(c) for _, c in sorted(clients.items())]}))


def handle_query_topic_consume_by_who(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """QUERY_TOPIC_CONSUME_BY_WHO (300): groups subscribed now, plus groups with committed offsets on the topic."""
    broker = gateway.broker
    topic = text(request.ext_fields, "topic")
    groups = set(broker.consumers.groups_subscribing(topic)) | broker.offsets.groups_of_topic(topic)
    return ok(request, body=dumps_compact({"groupList": sorted(groups)}))


def _consume_stats_topics(broker: Broker, group: str, fields: Mapping[str, str]) -> Iterable[str]:
    listed = [t for t in (fields.get("topicList") or "").split(";") if t.strip()]
    if listed:  # 5.x: an explicit list skips the subscription check
        return sorted(set(listed))
    topic = fields.get("topic") or ""
    topics = {topic} if topic.strip() else broker.offsets.topics_of_group(group)
    info = broker.consumers.find(group)
    if info is not None and info.subscriptions:  # an online group: only what it subscribes to
        topics = {t for t in topics if t in info.subscriptions}
    return sorted(topics)


def handle_get_consume_stats(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_CONSUME_STATS (208): ConsumeStats, per queue the broker's max offset, the group's committed offset,
    its pull position (5.x ``pullOffset``) and the store time of the last consumed message."""
    broker = gateway.broker
    fields = request.ext_fields
    group = text(fields, "consumerGroup")
    store, stats = broker.store, broker.stats
    table: dict[Any, dict[str, int]] = {}
    consume_tps = 0.0
    for topic in _consume_stats_topics(broker, group, fields):
        config = broker.topics.get(topic)
        if config is None:
            continue
        for queue_id in range(config.read_queue_nums):
            consumer_offset = max(broker.offsets.query(group, topic, queue_id), 0)
            table[message_queue_key(topic, broker.config.broker_name, queue_id)] = {
                "brokerOffset": max(store.get_max_offset(topic, queue_id), 0),
                "consumerOffset": consumer_offset,
                "lastTimestamp": _store_timestamp(store, topic, queue_id, consumer_offset - 1)
                if consumer_offset
                else 0,
                "pullOffset": max(consumer_offset, stats.pull_offset(group, topic, queue_id)),
            }
        consume_tps += stats.group_get_tps(group, topic)
    return ok(request, body=dumps_compact({"consumeTps": consume_tps, "offsetTable": table}))


# ---------------------------------------------------------------------------------------------------------------------
# Broker runtime information and configuration


def human_readable_bytes(count: int) -> str:
    """Java's MixAll.humanReadableByteCount(bytes, false): ``"512 B"``, ``"1.5 KiB"``, ``"252.0 GiB"``."""
    if count < 1024:
        return f"{count} B"
    exponent = 0
    value = float(count)
    while value >= 1024 and exponent < 6:
        value /= 1024
        exponent += 1
    return f"{value:.1f} {'KMGTPE'[exponent - 1]}iB"


def _disk_used_ratio(path: Path) -> float:
    """The used fraction of the file system holding ``path`` (RocketMQ's getDiskPartitionSpaceUsedPercent)."""
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(path)
        if usage.total > 0:
            return round((usage.total - usage.free) / usage.total, 2)
    return -1.0


def _tps(rates: list[float]) -> str:
    return " ".join(repr(rate) for rate in rates)


def _runtime(boot_ms: int) -> str:
    seconds = max(0, int(time.time() * 1000 - boot_ms) // 1000)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"[ {days} days, {hours} hours, {minutes} minutes, {seconds} seconds ]"


def _earliest_message_time(store: MessageStore) -> int:
    """Store time of the oldest record in the commit log; -1 when it is empty (RocketMQ's value then too)."""
    data = store.commit_log.read(store.min_physical_offset + rec.OFFSET_STORE_TIMESTAMP, 8)
    if len(data) != 8 or store.write_offset <= store.min_physical_offset:
        return -1
    return int(rec.LONG.unpack(data)[0])


def runtime_info(broker: Broker) -> dict[str, str]:
    """The KVTable of GET_BROKER_RUNTIME_INFO, with RocketMQ's key names.

    Thread-pool keys are zero: requests run on the event loop, there is no queue to wait in. Both spellings of
    the pull rate are given: 4.9 tools read ``getTransferedTps`` (and fail without it), 5.x ``getTransferredTps``.
    """
    store, stats = broker.store, broker.stats
    stats.roll_days()
    commit_log_dir = store.config.commit_log_dir
    disk_ratio = _disk_used_ratio(commit_log_dir)
    put_tps, get_tps = stats.put_tps(), stats.get_transferred_tps()
    found_tps, miss_tps = stats.get_found_tps(), stats.get_miss_tps()
    info: dict[str, str] = {
        "brokerVersionDesc": BROKER_VERSION_DESC,
        "brokerVersion": str(BROKER_VERSION),
        "tidemqVersion": __version__,
        "brokerActive": "true",
        "bootTimestamp": str(stats.boot_timestamp_ms),
        "runtime": _runtime(stats.boot_timestamp_ms),
        "msgPutTotalYesterdayMorning": str(stats.puts.yesterday_morning),
        "msgPutTotalTodayMorning": str(stats.puts.today_morning),
        "msgPutTotalTodayNow": str(stats.puts.now),
        "msgGetTotalYesterdayMorning": str(stats.gets.yesterday_morning),
        "msgGetTotalTodayMorning": str(stats.gets.today_morning),
        "msgGetTotalTodayNow": str(stats.gets.now),
        "putMessageTimesTotal": str(stats.puts.now),
        "putTps": _tps(put_tps),
        "getTransferredTps": _tps(get_tps),
        "getTransferedTps": _tps(get_tps),
        "getFoundTps": _tps(found_tps),
        "getMissTps": _tps(miss_tps),
        "getTotalTps": _tps([f + m for f, m in zip(found_tps, miss_tps, strict=True)]),
        "sendThreadPoolQueueSize": "0",
        "sendThreadPoolQueueHeadWaitTimeMills": "0",
        "pullThreadPoolQueueSize": "0",
        "pullThreadPoolQueueHeadWaitTimeMills": "0",
        "queryThreadPoolQueueSize": "0",
        "queryThreadPoolQueueHeadWaitTimeMills": "0",
        "ackThreadPoolQueueSize": "0",
        "ackThreadPoolQueueHeadWaitTimeMills": "0",
        "pageCacheLockTimeMills": "0",
        "dispatchBehindBytes": "0",
        "earliestMessageTimeStamp": str(_earliest_message_time(store)),
        "startAcceptSendRequestTimeStamp": "0",
        "commitLogMinOffset": str(store.min_physical_offset),
        "commitLogMaxOffset": str(store.write_offset),
        "remainHowManyDataToFlush": human_readable_bytes(max(0, store.write_offset - store.durable_offset)),
        "commitLogDiskRatio": repr(disk_ratio),
        f"commitLogDiskRatio_{commit_log_dir}": repr(disk_ratio),
        "consumeQueueDiskRatio": repr(_disk_used_ratio(store.config.consume_queue_dir)),
        "timerReadBehind": "0",
        "timerOffsetBehind": "0",
        "timerCongestNum": "0",
        "timerEnqueueTps": "0.0",
        "timerDequeueTps": "0.0",
    }
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(commit_log_dir)
        info["commitLogDirCapacity"] = (
            f"Total : {human_readable_bytes(usage.total)}, Free : {human_readable_bytes(usage.free)}."
        )
    return info


def handle_get_runtime_info(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_BROKER_RUNTIME_INFO (28): KVTable ``{"table":{...}}`` (mqadmin clusterList, brokerStatus)."""
    return ok(request, body=dumps_compact({"table": runtime_info(gateway.broker)}))


def _key(name: str) -> str:
    """broker.conf spelling of a BrokerConfig field."""
    if name == "broker_ip1":
        return "brokerIP1"
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _property_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def broker_properties(broker: Broker) -> dict[str, str]:
    """The broker's configuration as broker.conf key/values (what GET_BROKER_CONFIG returns)."""
    config = broker.config
    properties = {_key(f.name): _property_value(getattr(config, f.name)) for f in dataclass_fields(config)}
    properties["storePathCommitLog"] = str(config.store_config().commit_log_dir)
    return dict(sorted(properties.items()))


_CONFIG_VERSIONS: weakref.WeakKeyDictionary[Broker, DataVersion] = weakref.WeakKeyDictionary()


def _config_version(broker: Broker) -> DataVersion:
    version = _CONFIG_VERSIONS.get(broker)
    if version is None:
        version = _CONFIG_VERSIONS[broker] = DataVersion(counter=0)
    return version


def handle_get_broker_config(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """GET_BROKER_CONFIG (26): properties text; ext ``version`` = the config's DataVersion as JSON."""
    escaped = {k: v.replace("\\", "\\\\") for k, v in broker_properties(gateway.broker).items()}
    content = "".join(f"{k}={v}\n" for k, v in escaped.items())
    version = dumps_compact(_config_version(gateway.broker).to_json()).decode()
    return ok(request, {"version": version}, content.encode())


RUNTIME_CHANGEABLE: Final[dict[str, str]] = {
    "brokerPermission": "broker_permission",
    "longPollingEnable": "long_polling_enable",
    "shortPollingTimeMills": "short_polling_time_mills",
    "notifyConsumerIdsChangedEnable": "notify_consumer_ids_changed_enable",
    "syncFlushTimeout": "sync_flush_timeout",
    "channelExpiredTimeout": "channel_expired_timeout",
}
"""broker.conf keys UPDATE_BROKER_CONFIG applies to a running broker: the request paths read them per request.
Everything else (ports, names, store layout, flush mode, ...) is fixed at start and refused."""


def parse_properties(content: str) -> dict[str, str]:
    """Java ``Properties.load`` for what mqadmin sends: ``key=value`` (or ``key:value``) lines, # and ! comments."""
    found: dict[str, str] = {}
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        key, value = (line[:cut], line[cut + 1 :]) if cut >= 0 else (line, "")
        found[key.strip()] = value.strip().replace("\\\\", "\\")
    return found


def _convert_changeable(key: str, value: str, current: object) -> object:
    if isinstance(current, bool):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{key}={value!r}: not true or false")
        return value.lower() == "true"
    number = int(value)
    if key == "brokerPermission" and not 0 <= number <= 15:
        raise ValueError(f"brokerPermission={value!r}: not a permission (0..15)")
    if number < 0:
        raise ValueError(f"{key}={value!r}: must not be negative")
    return number


def handle_update_broker_config(
    gateway: BrokerGateway, channel: RemotingChannel, request: RemotingCommand
) -> RemotingCommand:
    """UPDATE_BROKER_CONFIG (25): body = properties text. All or nothing: a request naming any key that cannot
    change while the broker runs (see RUNTIME_CHANGEABLE) is refused whole, naming those keys. Applied changes
    last until the broker restarts (broker.conf is not rewritten)."""
    broker = gateway.broker
    try:
        updates = parse_properties(bytes(request.body).decode("utf-8"))
    except UnicodeDecodeError:
        return error(request, ResponseCode.SYSTEM_ERROR, "string2Properties error: the body is not UTF-8")
    current = broker_properties(broker)
    fixed = sorted(k for k, v in updates.items() if k not in RUNTIME_CHANGEABLE and current.get(k) != v)
    if fixed:
        return error(
            request,
            ResponseCode.NO_PERMISSION,
            f"tidemq cannot change {', '.join(fixed)} while the broker runs (set it in broker.conf and restart); "
            f"changeable at runtime: {', '.join(sorted(RUNTIME_CHANGEABLE))}",
        )
    changes: dict[str, object] = {}
    try:
        for key, value in updates.items():
            if key in RUNTIME_CHANGEABLE:
                name = RUNTIME_CHANGEABLE[key]
                changes[name] = _convert_changeable(key, value, getattr(broker.config, name))
    except ValueError as exc:
        return error(request, ResponseCode.INVALID_PARAMETER, f"bad broker config value: {exc}")
    changes = {name: value for name, value in changes.items() if getattr(broker.config, name) != value}
    if changes:
        broker.config = broker.config.with_overrides(**changes)
        if "channel_expired_timeout" in changes:
            broker.consumers.expiry_ms = broker.producers.expiry_ms = broker.config.channel_expired_timeout
        if "broker_permission" in changes:  # routes carry the permission: register again at once
            broker.topics.data_version.next()
            if broker.topics.on_change is not None:
                broker.topics.on_change()
        _config_version(broker).next()
    return ok(request)


HANDLERS: Final[dict[int, Handler]] = {
    RequestCode.UPDATE_AND_CREATE_TOPIC: handle_update_and_create_topic,
    RequestCode.GET_ALL_TOPIC_CONFIG: handle_get_all_topic_config,
    RequestCode.GET_TOPIC_CONFIG: handle_get_topic_config,
    RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_BROKER: handle_get_system_topic_list,
    RequestCode.DELETE_TOPIC_IN_BROKER: handle_delete_topic,
    RequestCode.GET_TOPIC_STATS_INFO: handle_get_topic_stats,
    RequestCode.QUERY_CONSUME_QUEUE: handle_query_consume_queue,
    RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: handle_update_and_create_subscription_group,
    RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: handle_get_all_subscription_groups,
    RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG: handle_get_subscription_group,
    RequestCode.DELETE_SUBSCRIPTIONGROUP: handle_delete_subscription_group,
    RequestCode.GET_CONSUMER_CONNECTION_LIST: handle_get_consumer_connections,
    RequestCode.GET_PRODUCER_CONNECTION_LIST: handle_get_producer_connections,
    RequestCode.QUERY_TOPIC_CONSUME_BY_WHO: handle_query_topic_consume_by_who,
    RequestCode.GET_CONSUME_STATS: handle_get_consume_stats,
    RequestCode.GET_BROKER_RUNTIME_INFO: handle_get_runtime_info,
    RequestCode.GET_BROKER_CONFIG: handle_get_broker_config,
    RequestCode.UPDATE_BROKER_CONFIG: handle_update_broker_config,
}
