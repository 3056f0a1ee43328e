"""Consumer group configurations: RocketMQ's SubscriptionGroupManager (``config/subscriptionGroup.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidemq.broker.persistence import load_json, save_json
from tidemq.broker.topics import DataVersion

SYSTEM_GROUPS = frozenset(
    {
        "TOOLS_CONSUMER",
        "FILTERSRV_CONSUMER",
        "__MONITOR_CONSUMER",
        "CLIENT_INNER_PRODUCER",
        "SELF_TEST_P_GROUP",
        "SELF_TEST_C_GROUP",
        "CID_ONS-HTTP-PROXY",
        "CID_ONSAPI_PERMISSION",
        "CID_ONSAPI_OWNER",
        "CID_ONSAPI_PULL",
        "CID_RMQ_SYS_TRANS",
    }
)


@dataclass(slots=True)
class SubscriptionGroupConfig:
    """RocketMQ's SubscriptionGroupConfig with its defaults."""

    group_name: str
    consume_enable: bool = True
    consume_from_min_enable: bool = True
    consume_broadcast_enable: bool = True
    consume_message_orderly: bool = False
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    broker_id: int = 0
    which_broker_when_consume_slowly: int = 1
    notify_consumer_ids_changed_enable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "groupName": self.group_name,
            "consumeEnable": self.consume_enable,
            "consumeFromMinEnable": self.consume_from_min_enable,
            "consumeBroadcastEnable": self.consume_broadcast_enable,
            "consumeMessageOrderly": self.consume_message_orderly,
            "retryQueueNums": self.retry_queue_nums,
            "retryMaxTimes": self.retry_max_times,
            "brokerId": self.broker_id,
            "whichBrokerWhenConsumeSlowly": self.which_broker_when_consume_slowly,
            "notifyConsumerIdsChangedEnable": self.notify_consumer_ids_changed_enable,
            "groupSysFlag": 0,
            "consumeTimeoutMinute": 15,
            "attributes": {},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubscriptionGroupConfig:
        def flag(key: str, default: bool) -> bool:
            value = data.get(key, default)
            return value if isinstance(value, bool) else str(value).lower() == "true"

        return cls(
            group_name=str(data["groupName"]),
            consume_enable=flag("consumeEnable", True),
            consume_from_min_enable=flag("consumeFromMinEnable", True),
            consume_broadcast_enable=flag("consumeBroadcastEnable", True),
            consume_message_orderly=flag("consumeMessageOrderly", False),
            retry_queue_nums=int(data.get("retryQueueNums", 1)),
            retry_max_times=int(data.get("retryMaxTimes", 16)),
            broker_id=int(data.get("brokerId", 0)),
            which_broker_when_consume_slowly=int(data.get("whichBrokerWhenConsumeSlowly", 1)),
            notify_consumer_ids_changed_enable=flag("notifyConsumerIdsChangedEnable", True),
        )


class SubscriptionGroupManager:
    def __init__(self, config_dir: Path, *, auto_create: bool) -> None:
        self._path = config_dir / "subscriptionGroup.json"
        self._auto_create = auto_create
        self.groups: dict[str, SubscriptionGroupConfig] = {}
        self.data_version = DataVersion()

    def load(self) -> None:
        data = load_json(self._path)
        if data is None:
            for name in SYSTEM_GROUPS:
                self.groups[name] = SubscriptionGroupConfig(name)
            return
        for name, raw in (data.get("subscriptionGroupTable") or {}).items():
            self.groups[name] = SubscriptionGroupConfig.from_json(raw)

    def persist(self) -> None:
        save_json(
            self._path,
            {
                "subscriptionGroupTable": {n: g.to_json() for n, g in sorted(self.groups.items())},
                "dataVersion": self.data_version.to_json(),
            },
        )

    def find(self, group: str) -> SubscriptionGroupConfig | None:
        """The group's config, auto-created when ``autoCreateSubscriptionGroup`` is on."""
        found = self.groups.get(group)
        if found is None and self._auto_create:
            found = SubscriptionGroupConfig(group)
            self.groups[group] = found
            self.data_version.next()
            self.persist()
        return found

    def put(self, config: SubscriptionGroupConfig) -> None:
        self.groups[config.group_name] = config
        self.data_version.next()
        self.persist()

    def delete(self, group: str) -> bool:
        if self.groups.pop(group, None) is None:
            return False
        self.data_version.next()
        self.persist()
        return True

    def serialize_wrapper(self) -> dict[str, Any]:
        return {
            "subscriptionGroupTable": {n: g.to_json() for n, g in self.groups.items()},
            "dataVersion": self.data_version.to_json(),
        }
