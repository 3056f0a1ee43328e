"""A minimal blocking RocketMQ remoting client (JSON headers), enough to set up and probe either broker.

Self-contained on purpose: the harness must not depend on the code it measures. Used for topic creation
(UPDATE_AND_CREATE_TOPIC), route checks (GET_ROUTEINFO_BY_TOPIC) and the cold-start probe (one SEND_MESSAGE).
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UPDATE_AND_CREATE_TOPIC = 17
GET_ROUTEINFO_BY_TOPIC = 105
GET_BROKER_CLUSTER_INFO = 106
SEND_MESSAGE = 10

_opaque = itertools.count(1)


@dataclass
class Response:
    code: int
    remark: str | None
    ext: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        buf += chunk
    return bytes(buf)


def request(
    addr: str, code: int, ext: Mapping[str, str] | None = None, body: bytes = b"", *, timeout_s: float = 5.0
) -> Response:
    """One request on a fresh connection to ``host:port``; the response (any code)."""
    host, port = addr.rsplit(":", 1)
    header: dict[str, Any] = {
        "code": code,
        "flag": 0,
        "language": "JAVA",
        "opaque": next(_opaque),
        "serializeTypeCurrentRPC": "JSON",
        "version": 453,  # V4_9_8-ish; brokers only use it for feature switches we do not touch
        "extFields": dict(ext or {}),
    }
    raw = json.dumps(header).encode()
    frame = struct.pack(">iI", 4 + len(raw) + len(body), len(raw)) + raw + body
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(frame)
        (length,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, length)
    header_len = struct.unpack(">I", payload[:4])[0] & 0xFFFFFF
    resp = json.loads(payload[4 : 4 + header_len])
    ext_fields = {str(k): str(v) for k, v in (resp.get("extFields") or {}).items()}
    return Response(int(resp.get("code", -1)), resp.get("remark"), ext_fields, payload[4 + header_len :])


def create_topic(broker_addr: str, topic: str, queues: int) -> None:
    """UPDATE_AND_CREATE_TOPIC with ``queues`` read and write queues, perm 6 (RW)."""
    ext = {
        "topic": topic,
        "defaultTopic": "TBW102",
        "readQueueNums": str(queues),
        "writeQueueNums": str(queues),
        "perm": "6",
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": "0",
        "order": "false",
    }
    resp = request(broker_addr, UPDATE_AND_CREATE_TOPIC, ext)
    if resp.code != 0:
        raise RuntimeError(f"creating topic {topic} on {broker_addr}: code {resp.code} {resp.remark}")


def route_write_queues(namesrv_addr: str, topic: str) -> int:
    """The write queues the name server's route for ``topic`` lists (0 when there is no route)."""
    try:
        resp = request(namesrv_addr, GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout_s=3.0)
    except OSError:
        return 0
    if resp.code != 0:
        return 0
    # fastjson writes integer map keys unquoted, so no json.loads: the numbers are all we need
    return sum(int(n) for n in re.findall(rb'"writeQueueNums"\s*:\s*(\d+)', resp.body))


def wait_route(namesrv_addr: str, topic: str, queues: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if route_write_queues(namesrv_addr, topic) >= queues:
            return True
        time.sleep(0.05)
    return False


def broker_registered(namesrv_addr: str, broker_addr: str) -> bool:
    try:
        resp = request(namesrv_addr, GET_BROKER_CLUSTER_INFO, timeout_s=1.0)
    except (OSError, ValueError):
        return False
    return resp.code == 0 and broker_addr.encode() in resp.body


def send_one(broker_addr: str, topic: str, body: bytes = b"cold start", *, timeout_s: float = 2.0) -> bool:
    """SEND_MESSAGE of one message to queue 0 (the broker auto-creates the topic from TBW102); True on SEND_OK."""
    ext = {
        "producerGroup": "tidemq_bench_probe",
        "topic": topic,
        "defaultTopic": "TBW102",
        "defaultTopicQueueNums": "8",
        "queueId": "0",
        "sysFlag": "0",
        "bornTimestamp": str(int(time.time() * 1000)),
        "flag": "0",
        "properties": "WAIT\x01true\x02",
        "reconsumeTimes": "0",
        "unitMode": "false",
        "batch": "false",
        "maxReconsumeTimes": "16",
    }
    try:
        resp = request(broker_addr, SEND_MESSAGE, ext, body, timeout_s=timeout_s)
    except (OSError, ValueError):
        return False
    return resp.code == 0
