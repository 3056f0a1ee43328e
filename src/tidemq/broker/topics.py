"""Topic configurations: RocketMQ's TopicConfigManager (``config/topics.json``), system topics, auto-creation.

The topic table is small and read on every send and pull, so it lives in memory as a dict; every change bumps
the data version (what the name server compares) and is persisted at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from tidemq.broker.persistence import load_json, save_json

PERM_PRIORITY: Final = 8
PERM_READ: Final = 4
PERM_WRITE: Final = 2
PERM_INHERIT: Final = 1

AUTO_CREATE_TOPIC_KEY: Final = "TBW102"
SELF_TEST_TOPIC: Final = "SELF_TEST_TOPIC"
OFFSET_MOVED_EVENT: Final = "OFFSET_MOVED_EVENT"
SCHEDULE_TOPIC: Final = "SCHEDULE_TOPIC_XXXX"
RETRY_GROUP_TOPIC_PREFIX: Final = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX: Final = "%DLQ%"
SYSTEM_TOPICS: Final = frozenset(
    {
        AUTO_CREATE_TOPIC_KEY,
        SELF_TEST_TOPIC,
        OFFSET_MOVED_EVENT,
        SCHEDULE_TOPIC,
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "RMQ_SYS_TRACE_TOPIC",
        "BenchmarkTest",
    }
)


def is_system_topic(topic: str) -> bool:
    return topic in SYSTEM_TOPICS or topic.startswith("rmq_sys_")


@dataclass(slots=True)
class TopicConfig:
    """RocketMQ's TopicConfig (the JSON field names are its own)."""

    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = PERM_READ | PERM_WRITE
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def is_readable(self) -> bool:
        return bool(self.perm & PERM_READ)

    @property
    def is_writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    def to_json(self) -> dict[str, Any]:
        return {
            "topicName": self.topic_name,
            "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums,
            "perm": self.perm,
            "topicFilterType": self.topic_filter_type,
            "topicSysFlag": self.topic_sys_flag,
            "order": self.order,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicConfig:
        return cls(
            topic_name=str(data["topicName"]),
            read_queue_nums=int(data.get("readQueueNums", 16)),
            write_queue_nums=int(data.get("writeQueueNums", 16)),
            perm=int(data.get("perm", 6)),
            topic_filter_type=str(data.get("topicFilterType", "SINGLE_TAG")),
            topic_sys_flag=int(data.get("topicSysFlag", 0)),
            order=bool(data.get("order", False)),
            attributes={str(k): str(v) for k, v in (data.get("attributes") or {}).items()},
        )


@dataclass(slots=True)
class DataVersion:
    """RocketMQ's DataVersion: the name server re-reads a broker's topics only when this changes."""

    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    counter: int = 0
    state_version: int = 0

    def next(self) -> None:
        self.timestamp = int(time.time() * 1000)
        self.counter += 1

    def to_json(self) -> dict[str, int]:
        return {"counter": self.counter, "stateVersion": self.state_version, "timestamp": self.timestamp}


class TopicConfigManager:
    """The broker's topics. ``on_change`` runs after each change (the broker re-registers with name servers)."""

    def __init__(self, config_dir: Path, *, default_queue_nums: int, broker_permission: int = 6) -> None:
        self._path = config_dir / "topics.json"
        self._default_queue_nums = default_queue_nums
        self._broker_permission = broker_permission
        self.topics: dict[str, TopicConfig] = {}
        self.data_version = DataVersion()
        self.on_change: Callable[[], None] | None = None

    def load(self) -> None:
        data = load_json(self._path)
        if data is None:
            return
        for name, raw in (data.get("topicConfigTable") or {}).items():
            self.topics[name] = TopicConfig.from_json(raw)
        version = data.get("dataVersion") or {}
        self.data_version = DataVersion(
            int(version.get("timestamp", 0)), int(version.get("counter", 0)), int(version.get("stateVersion", 0))
        )

    def persist(self) -> None:
        save_json(
            self._path,
            {
                "topicConfigTable": {name: t.to_json() for name, t in sorted(self.topics.items())},
                "dataVersion": self.data_version.to_json(),
            },
        )

    def ensure_system_topics(
        self, *, cluster_name: str, broker_name: str, auto_create: bool, cluster_topic: bool, broker_topic: bool
    ) -> None:
        """The topics every RocketMQ broker creates at start-up (TopicConfigManager's constructor)."""
        wanted: list[TopicConfig] = [
            TopicConfig(SELF_TEST_TOPIC, 1, 1),
            TopicConfig(OFFSET_MOVED_EVENT, 1, 1),
            TopicConfig(SCHEDULE_TOPIC, 18, 18),
            TopicConfig("RMQ_SYS_TRANS_HALF_TOPIC", 1, 1),
            TopicConfig("TRANS_CHECK_MAX_TIME_TOPIC", 1, 1),
        ]
        if auto_create:
            queues = self._default_queue_nums
            wanted.append(TopicConfig(AUTO_CREATE_TOPIC_KEY, queues, queues, PERM_READ | PERM_WRITE | PERM_INHERIT))
        # As RocketMQ: the cluster- and broker-named topics always exist; readable/writable only when enabled.
        cluster_perm = PERM_INHERIT | (PERM_READ | PERM_WRITE if cluster_topic else 0)
        broker_perm = PERM_INHERIT | (PERM_READ | PERM_WRITE if broker_topic else 0)
        wanted.append(TopicConfig(cluster_name, 16, 16, cluster_perm))
        wanted.append(TopicConfig(broker_name, 1, 1, broker_perm))
        changed = False
        for topic in wanted:
            if topic.topic_name not in self.topics:
                self.topics[topic.topic_name] = topic
                changed = True
        if not auto_create and AUTO_CREATE_TOPIC_KEY in self.topics:
            del self.topics[AUTO_CREATE_TOPIC_KEY]
            changed = True
        if changed:
            self.data_version.next()
            self.persist()

    def get(self, topic: str) -> TopicConfig | None:
        return self.topics.get(topic)

    def put(self, topic: TopicConfig) -> None:
        """Create or replace a topic (UPDATE_AND_CREATE_TOPIC)."""
        self.topics[topic.topic_name] = topic
        self._changed()

    def delete(self, topic: str) -> bool:
        if self.topics.pop(topic, None) is None:
            return False
        self._changed()
        return True

    def create_in_send(self, topic: str, template: str, requested_queue_nums: int) -> TopicConfig | None:
        """Auto-create ``topic`` from ``template`` (TBW102) when the template allows it (PERM_INHERIT).

        RocketMQ's createTopicInSendMessageMethod: queue count = min(requested, template's write queues).
        """
        existing = self.topics.get(topic)
        if existing is not None:
            return existing
        base = self.topics.get(template)
        if base is None or not base.perm & PERM_INHERIT:
            return None
        queues = max(1, min(requested_queue_nums, base.write_queue_nums))
        created = TopicConfig(topic, queues, queues, base.perm & ~PERM_INHERIT)
        self.topics[topic] = created
        self._changed()
        return created

    def create_system_like(self, topic: str, queue_nums: int, perm: int) -> TopicConfig:
        """Create a topic the broker itself needs (``%RETRY%group``, ``%DLQ%group``) if missing."""
        existing = self.topics.get(topic)
        if existing is not None:
            return existing
        created = TopicConfig(topic, queue_nums, queue_nums, perm)
        self.topics[topic] = created
        self._changed()
        return created

    def _changed(self) -> None:
        self.data_version.next()
        self.persist()
        if self.on_change is not None:
            self.on_change()

    def serialize_wrapper(self) -> dict[str, Any]:
        """TopicConfigSerializeWrapper, as REGISTER_BROKER and GET_ALL_TOPIC_CONFIG carry it."""
        return {
            "topicConfigTable": {name: t.to_json() for name, t in self.topics.items()},
            "dataVersion": self.data_version.to_json(),
        }


def topic_as_dict(topic: TopicConfig) -> dict[str, Any]:
    return asdict(topic)
