"""Committed consumer offsets: RocketMQ's ConsumerOffsetManager (``config/consumerOffset.json``).

Kept in memory as ``"topic@group" -> {queue_id: offset}`` (RocketMQ's own key and file shape, so its tools
read it), persisted every ``flushConsumerOffsetInterval`` and at shutdown. Updates are dict writes on the
event loop, cheap enough to run on every pull that carries a commit offset.
"""

from __future__ import annotations

from pathlib import Path

from tidemq.broker.persistence import load_json, save_json

TOPIC_GROUP_SEPARATOR = "@"


class ConsumerOffsetManager:
    def __init__(self, config_dir: Path) -> None:
        self._path = config_dir / "consumerOffset.json"
        self.table: dict[str, dict[int, int]] = {}
        self._dirty = False

    def load(self) -> None:
        data = load_json(self._path)
        if data is None:
            return
        for key, queues in (data.get("offsetTable") or {}).items():
            self.table[key] = {int(q): int(o) for q, o in queues.items()}

    def persist(self, *, force: bool = False) -> None:
        if not self._dirty and not force:
            return
        self._dirty = False
        save_json(
            self._path,
            {
                "offsetTable": {
                    key: {str(q): o for q, o in sorted(queues.items())} for key, queues in self.table.items()
                }
            },
        )

    def commit(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        key = topic + TOPIC_GROUP_SEPARATOR + group
        queues = self.table.get(key)
        if queues is None:
            queues = self.table[key] = {}
        queues[queue_id] = offset
        self._dirty = True

    def query(self, group: str, topic: str, queue_id: int) -> int:
        """The committed offset, or -1 when the group never committed one for that queue."""
        return self.table.get(topic + TOPIC_GROUP_SEPARATOR + group, {}).get(queue_id, -1)

    def groups_of_topic(self, topic: str) -> set[str]:
        return {
            key.split(TOPIC_GROUP_SEPARATOR, 1)[1]
            for key in self.table
            if key.split(TOPIC_GROUP_SEPARATOR, 1)[0] == topic
        }

    def topics_of_group(self, group: str) -> set[str]:
        return {
            key.split(TOPIC_GROUP_SEPARATOR, 1)[0]
            for key in self.table
            if key.split(TOPIC_GROUP_SEPARATOR, 1)[1] == group
        }

    def offsets(self, group: str, topic: str) -> dict[int, int]:
        return dict(self.table.get(topic + TOPIC_GROUP_SEPARATOR + group, {}))

    def remove_group(self, group: str) -> None:
        for key in [k for k in self.table if k.split(TOPIC_GROUP_SEPARATOR, 1)[1] == group]:
            del self.table[key]
        self._dirty = True

    def remove_topic(self, topic: str) -> None:
        for key in [k for k in self.table if k.split(TOPIC_GROUP_SEPARATOR, 1)[0] == topic]:
            del self.table[key]
        self._dirty = True
