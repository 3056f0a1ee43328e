"""The bodies of the requests brokers send consumers on behalf of admin tools (RocketMQ's
``ClientRemotingProcessor``), as plain data in and JSON out; the consumers own the handlers.

* GET_CONSUMER_RUNNING_INFO (307) → ConsumerRunningInfo: ``properties`` (strings; mqadmin parses
  PROP_CONSUME_TYPE as an enum name, PROP_CONSUMER_START_TIMESTAMP as a long and PROP_CONSUMEORDERLY as a
  boolean), ``subscriptionSet``, ``mqTable`` ``{MessageQueue: ProcessQueueInfo}``, ``statusTable``
  ``{topic: ConsumeStatus}`` (zeros: we keep no rates) and ``jstack`` when asked.
* CONSUME_MESSAGE_DIRECTLY (309) → ConsumeMessageDirectlyResult (``consumeResult`` a ``CMResult`` name).
* RESET_CONSUMER_CLIENT_OFFSET (220) ← ResetOffsetBody ``{"offsetTable":{{MessageQueue}:offset}}``, or the
  list form the broker sends C++ clients (``ResetOffsetBodyForC``).
* GET_CONSUMER_STATUS_FROM_CLIENT (221) → GetConsumerStatusBody ``{"messageQueueTable":{{MessageQueue}:offset}}``.

``MessageQueue`` map keys are JSON objects, as fastjson writes them (spec 1.5). Imports nothing from the broker.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tidemq.client._routes import MessageQueue
from tidemq.errors import RemoteProtocolError
from tidemq.protocol.remoting import dumps_compact, loads_lenient, message_queue_key

PROP_NAMESERVER_ADDR: Final = "PROP_NAMESERVER_ADDR"
PROP_THREADPOOL_CORE_SIZE: Final = "PROP_THREADPOOL_CORE_SIZE"
PROP_CONSUME_ORDERLY: Final = "PROP_CONSUMEORDERLY"
PROP_CONSUME_TYPE: Final = "PROP_CONSUME_TYPE"
PROP_CLIENT_VERSION: Final = "PROP_CLIENT_VERSION"
PROP_CONSUMER_START_TIMESTAMP: Final = "PROP_CONSUMER_START_TIMESTAMP"
CLIENT_VERSION_DESC: Final = "V4_9_3"
"""The MQVersion our requests claim (``DEFAULT_VERSION`` 399); mqadmin prints it next to the client id."""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One held queue as ProcessQueueInfo reports it; times in ms since the epoch, 0 when never."""

    commit_offset: int
    cached_min_offset: int = 0
    cached_max_offset: int = 0
    cached_count: int = 0
    cached_bytes: int = 0
    is_locked: bool = False
    last_lock_ms: int = 0
    last_pull_ms: int = 0
    last_consume_ms: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "commitOffset": self.commit_offset,
            "cachedMsgMinOffset": self.cached_min_offset,
            "cachedMsgMaxOffset": self.cached_max_offset,
            "cachedMsgCount": self.cached_count,
            "cachedMsgSizeInMiB": self.cached_bytes >> 20,
            "transactionMsgMinOffset": 0,
            "transactionMsgMaxOffset": 0,
            "transactionMsgCount": 0,
            "locked": self.is_locked,
            "tryUnlockTimes": 0,
            "lastLockTimestamp": self.last_lock_ms,
            "droped": False,  # sic: Java's field name
            "lastPullTimestamp": self.last_pull_ms,
            "lastConsumeTimestamp": self.last_consume_ms,
        }


def _key(queue: MessageQueue) -> Any:
    return message_queue_key(queue.topic, queue.broker_name, queue.queue_id)


def _jstack() -> str:
    """Every thread's stack, the Python stand-in for the ``jstack`` Java attaches when ``jstackEnable``."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f'"{names.get(ident, ident)}"\n' + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


def running_info_body(
    properties: Mapping[str, str],
    subscriptions: Iterable[Mapping[str, object]],
    queues: Mapping[MessageQueue, QueueInfo],
    topics: Iterable[str],
    *,
    with_jstack: bool,
) -> bytes:
    """ConsumerRunningInfo JSON; ``subscriptions`` are heartbeat SubscriptionData entries."""
    zero_status = {
        "pullRT": 0.0,
        "pullTPS": 0.0,
        "consumeRT": 0.0,
        "consumeOKTPS": 0.0,
        "consumeFailedTPS": 0.0,
        "consumeFailedMsgs": 0,
    }
    body: dict[str, object] = {
        "properties": dict(sorted(properties.items())),
        "subscriptionSet": sorted(subscriptions, key=lambda s: (str(s.get("topic")), str(s.get("subString")))),
        "mqTable": {_key(queue): info.to_json() for queue, info in sorted(queues.items())},
        "mqPopTable": {},
        "statusTable": {topic: dict(zero_status) for topic in sorted(set(topics))},
        "userConsumerInfo": {},
    }
    if with_jstack:
        body["jstack"] = _jstack()
    return dumps_compact(body)


def consume_directly_body(*, result: str, is_orderly: bool, remark: str | None, spent_ms: int) -> bytes:
    """ConsumeMessageDirectlyResult JSON; ``result`` is a CMResult name (CR_SUCCESS, CR_LATER, ...)."""
    body: dict[str, object] = {
        "order": is_orderly,
        "autoCommit": True,
        "consumeResult": result,
        "spentTimeMills": spent_ms,
    }
    if remark is not None:
        body["remark"] = remark
    return dumps_compact(body)


def consumer_status_body(offsets: Mapping[MessageQueue, int]) -> bytes:
    """GetConsumerStatusBody JSON: the in-memory offset of each queue."""
    return dumps_compact({"messageQueueTable": {_key(queue): offset for queue, offset in sorted(offsets.items())}})


def parse_reset_body(body: bytes | memoryview, topic: str) -> dict[MessageQueue, int]:
    """The offsets of ``topic``'s queues in a ResetOffsetBody (map form) or ResetOffsetBodyForC (list form).

    Raises:
        ValueError: not JSON, or entries that are not queues with offsets.
    """
    if not body:
        return {}
    try:
        data = loads_lenient(body)
    except RemoteProtocolError as exc:
        raise ValueError(str(exc)) from None
    table = data.get("offsetTable") if isinstance(data, dict) else None
    if table is None:
        return {}
    if not isinstance(table, dict | list):
        raise ValueError("offsetTable is neither a map nor a list")  # noqa: TRY004  # a bad body, as the rest
    found: dict[MessageQueue, int] = {}
    try:
        if isinstance(table, dict):
            rows = [(dict(key), value) for key, value in table.items()]
        else:
            rows = [(dict(entry), dict(entry).get("offset")) for entry in table]
        for fields, offset in rows:
            queue = MessageQueue(str(fields["topic"]), str(fields["brokerName"]), int(fields["queueId"]))
            if queue.topic == topic:
                found[queue] = int(offset)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a malformed offsetTable entry: {exc}") from None
    return found
