"""Who is connected: producer and consumer groups, their clients and subscriptions (RocketMQ's
ConsumerManager / ProducerManager), fed by heartbeats and dropped on unregister, close or expiry.

Protocol-neutral: a client's ``channel`` is whatever object its gateway uses to reach it; when a consumer
group's membership or subscriptions change the manager calls ``on_ids_changed(group, channels)`` and the
gateway sends NOTIFY_CONSUMER_IDS_CHANGED to each member. All state is owned by the event loop thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tidemq.broker.filters import MessageFilter, TagFilter, build_filter


@dataclass(slots=True)
class ClientInfo:
    client_id: str
    channel: object
    remote_address: str
    language: str
    version: int
    last_update_ms: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscribed topic of a consumer group (RocketMQ SubscriptionData)."""

    topic: str
    expression: str
    expression_type: str
    sub_version: int
    tag_filter: MessageFilter

    def to_json(self) -> dict[str, object]:
        return {
            "classFilterMode": False,
            "topic": self.topic,
            "subString": self.expression,
            "tagsSet": sorted(self.tag_filter.tags) if isinstance(self.tag_filter, TagFilter) else [],
            "codeSet": sorted(self.tag_filter.codes) if isinstance(self.tag_filter, TagFilter) else [],
            "subVersion": self.sub_version,
            "expressionType": self.expression_type,
        }


def make_subscription(topic: str, expression: str, expression_type: str = "TAG", sub_version: int = 0) -> Subscription:
    """Build a subscription; TAG expressions are parsed here (tag hashes are always computed by us).

    Raises:
        SqlFilterError: a malformed SQL92 expression.
    """
    kind = expression_type.upper() or "TAG"
    return Subscription(topic, expression or "*", kind, sub_version, build_filter(expression, kind))


@dataclass(slots=True)
class ConsumerGroupInfo:
    group: str
    consume_type: str = "CONSUME_PASSIVELY"
    message_model: str = "CLUSTERING"
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    clients: dict[str, ClientInfo] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def client_ids(self) -> list[str]:
        return sorted(self.clients)

    def channels(self) -> list[object]:
        return [c.channel for c in self.clients.values()]


IdsChangedListener = Callable[[str, list[object]], None]


class ConsumerManager:
    def __init__(self, *, expiry_ms: int = 120_000) -> None:
        self.groups: dict[str, ConsumerGroupInfo] = {}
        self.expiry_ms = expiry_ms
        self.on_ids_changed: IdsChangedListener | None = None

    def register(
        self,
        group: str,
        client: ClientInfo,
        *,
        consume_type: str,
        message_model: str,
        consume_from_where: str,
        subscriptions: Iterable[Subscription],
        notify: bool = True,
    ) -> bool:
        """Record a heartbeat; returns True when the member set or the subscriptions changed."""
        info = self.groups.get(group)
        if info is None:
            info = self.groups[group] = ConsumerGroupInfo(group)
        info.consume_type, info.message_model, info.consume_from_where = consume_type, message_model, consume_from_where
        existing = info.clients.get(client.client_id)
        is_new_member = existing is None or existing.channel is not client.channel
        info.clients[client.client_id] = client
        new_subscriptions = {s.topic: s for s in subscriptions}
        changed_subscriptions = False
        if consume_type != "CONSUME_ACTIVELY" or new_subscriptions:
            old = {t: (s.expression, s.expression_type) for t, s in info.subscriptions.items()}
            new = {t: (s.expression, s.expression_type) for t, s in new_subscriptions.items()}
            changed_subscriptions = old != new
            if changed_subscriptions or not info.subscriptions:
                info.subscriptions = new_subscriptions
            else:
                for topic, sub in new_subscriptions.items():  # keep the newest sub versions
                    if sub.sub_version > info.subscriptions[topic].sub_version:
                        info.subscriptions[topic] = sub
        changed = is_new_member or changed_subscriptions
        if changed and notify:
            self._notify(info)
        return changed

    def unregister(self, group: str, client_id: str) -> bool:
        info = self.groups.get(group)
        if info is None or info.clients.pop(client_id, None) is None:
            return False
        if not info.clients:
            del self.groups[group]
        else:
            self._notify(info)
        return True

    def channel_closed(self, channel: object) -> list[str]:
        """Drop every client on ``channel``; returns the groups that lost a member."""
        affected: list[str] = []
        for group, info in list(self.groups.items()):
            gone = [cid for cid, c in info.clients.items() if c.channel is channel]
            for cid in gone:
                del info.clients[cid]
            if gone:
                affected.append(group)
                if not info.clients:
                    del self.groups[group]
                else:
                    self._notify(info)
        return affected

    def scan_expired(self, now_ms: int | None = None) -> list[str]:
        """Drop clients silent for longer than the channel expiry (RocketMQ: 120 s)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        affected: list[str] = []
        for group, info in list(self.groups.items()):
            gone = [cid for cid, c in info.clients.items() if now_ms - c.last_update_ms > self.expiry_ms]
            for cid in gone:
                del info.clients[cid]
            if gone:
                affected.append(group)
                if not info.clients:
                    del self.groups[group]
                else:
                    self._notify(info)
        return affected

    def find(self, group: str) -> ConsumerGroupInfo | None:
        return self.groups.get(group)

    def find_subscription(self, group: str, topic: str) -> Subscription | None:
        info = self.groups.get(group)
        return info.subscriptions.get(topic) if info else None

    def groups_subscribing(self, topic: str) -> list[str]:
        return sorted(g for g, info in self.groups.items() if topic in info.subscriptions)

    def _notify(self, info: ConsumerGroupInfo) -> None:
        # Not for broadcasting groups (RocketMQ 5.x does the same): every member reads every queue, so a member
        # change cannot change an allocation, and the rebalance it triggers makes the Java client bump its
        # subVersion and send a heartbeat that it skips if another one holds its heartbeat lock. Its pulls then
        # get SUBSCRIPTION_NOT_LATEST until the next periodic heartbeat, 30 s later.
        if self.on_ids_changed is not None and info.clients and info.message_model != "BROADCASTING":
            self.on_ids_changed(info.group, info.channels())


class ProducerManager:
    def __init__(self, *, expiry_ms: int = 120_000) -> None:
        self.groups: dict[str, dict[str, ClientInfo]] = {}
        self.expiry_ms = expiry_ms

    def register(self, group: str, client: ClientInfo) -> None:
        self.groups.setdefault(group, {})[client.client_id] = client

    def unregister(self, group: str, client_id: str) -> None:
        clients = self.groups.get(group)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self.groups[group]

    def channel_closed(self, channel: object) -> None:
        for group, clients in list(self.groups.items()):
            for cid in [cid for cid, c in clients.items() if c.channel is channel]:
                del clients[cid]
            if not clients:
                del self.groups[group]

    def scan_expired(self, now_ms: int | None = None) -> None:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        for group, clients in list(self.groups.items()):
            for cid in [cid for cid, c in clients.items() if now_ms - c.last_update_ms > self.expiry_ms]:
                del clients[cid]
            if not clients:
                del self.groups[group]

    def any_channel(self, group: str) -> object | None:
        clients = self.groups.get(group)
        if not clients:
            return None
        return max(clients.values(), key=lambda c: c.last_update_ms).channel
