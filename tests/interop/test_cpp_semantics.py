"""Consumption semantics with the official C++ client (PyPI ``rocketmq==0.4.4``) against tidemq.

What the C API allows: a delay level per message (``Message.set_delay_time_level``), an orderly PushConsumer that
keeps each sharding key's order through local retries, RECONSUME_LATER (the raw callback returning 1) coming back
through ``%RETRY%<group>``, and messages crossing between the C++ client and tidemq's Python client both ways.

``TIDEMQ_SEMANTICS_PEER=apache`` runs them against Apache RocketMQ 5.5.0 instead (``semantics_peer.py``).

C++-side behaviour seen here (the same with Apache's broker): the orderly consumer retries a failed message locally
without ever raising its ``reconsume_times`` (spec 6.3), so the driver fails a message for its first K deliveries
(``--fail-deliveries``) rather than by reconsume count; and, like the Java client, it learns a topic's route at start
and then only periodically, so the retry test creates ``%RETRY%<group>`` before the consumer starts.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` as a package, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

import cpp_driver as cpp  # noqa: E402
from tests.interop.semantics_peer import Peer, running_peer  # noqa: E402
from tests.server_process import consumer_ids, wait_until  # noqa: E402

from tidemq.client import ConsumeFromWhere, ReceivedMessage, sync  # noqa: E402
from tidemq.store.record import offset_msg_id  # noqa: E402

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(  # only looked up, never imported here: the native client runs in driver subprocesses
        importlib.util.find_spec("rocketmq") is None, reason="the C++ client (PyPI rocketmq==0.4.4) is not installed"
    ),
]

DELAY_MS = {1: 1000, 2: 5000, 3: 10000}
TEXT = "héllo wörld 日本 🌊 #{i}"  # no NUL: the wrapper's bodies are C strings
BIG = "大きい" * 2000  # 18 kB of UTF-8, compressed by both producers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    with running_peer(tmp_path_factory.mktemp("cpp-semantics")) as peer:
        yield peer


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME for the client processes: the C++ client's log files land under it, not in the real home."""
    return tmp_path / "client-home"


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name.removeprefix('test_')[:30]}_{uuid.uuid4().hex[:6]}"


def _create(server: Peer, *topics: str) -> None:
    with sync.Admin(server.namesrv_addr) as admin:
        for topic in topics:
            admin.create_topic(topic, 1 if topic.startswith("%RETRY%") else 4)


def _registered(server: Peer, consumer: cpp.BackgroundDriver, group: str) -> None:
    consumer.wait_started()
    wait_until(lambda: consumer_ids(server.broker_addr, group), 30, f"{group} registered")


def test_delay_levels_are_never_early(server: Peer, home: Path, name: str) -> None:
    """DELAY 1, 2, 3 (1 s, 5 s, 10 s) set with Message.set_delay_time_level: never early, within a loose window."""
    topic, group = f"CppDelay_{name}", f"CG_{name}"
    _create(server, topic)
    with cpp.start_push_consumer(server.namesrv_addr, topic, group, expect=3, home=home / "c") as consumer:
        _registered(server, consumer, group)
        sent = cpp.produce(
            server.namesrv_addr, topic, f"PG_{name}", count=3, delay_level="1,2,3", body="delay-{i}", home=home
        )
        messages = consumer.wait_messages(3, 60)
    assert Counter(m["id"] for m in messages) == Counter(line["msg_id"] for line in sent.sent)
    for message in messages:
        level = int(message["body"].removeprefix("delay-")) + 1
        delay = DELAY_MS[level]
        assert message["topic"] == topic
        assert message["reconsume_times"] == 0
        assert message["properties"]["DELAY"] == str(level)  # kept in the delivered record, as Apache stores it
        assert message["properties"]["REAL_TOPIC"] == topic
        assert message["recv_ms"] - message["born_timestamp"] >= delay, (level, message)
        lateness = message["store_timestamp"] - message["born_timestamp"] - delay
        assert 0 <= lateness <= 10_000, f"level {level} delivered {lateness} ms late"


def test_orderly_consumer_keeps_each_keys_order(server: Peer, home: Path, name: str) -> None:
    """send_orderly by sharding key; PushConsumer(orderly=True) fails seq 3 of every key twice (returns 1): per key
    the listener sees 0, 1, 2, 3, 3, 3, 4, ... 9."""
    topic, group, keys, per_key = f"CppOrder_{name}", f"CG_{name}", 4, 10
    _create(server, topic)
    with cpp.start_push_consumer(
        server.namesrv_addr,
        topic,
        group,
        orderly=True,
        fail_prop=("seq", "3"),
        fail_deliveries=2,
        prop_names=["shardKey", "seq"],
        home=home / "c",
    ) as consumer:
        _registered(server, consumer, group)
        sent = cpp.produce(
            server.namesrv_addr, topic, f"PG_{name}", count=keys * per_key, mode="orderly", shard_keys=keys, home=home
        )
        consumer.wait_for(lambda _: len({m["id"] for m in consumer.messages if m["ack"]}) >= keys * per_key, 60, "all")
        time.sleep(1)  # room for a wrong extra delivery to show
        result = consumer.stop()
    queue_of = {line["index"] % keys: line["queue_id"] for line in sent.sent}
    seen: dict[str, list[int]] = defaultdict(list)
    for message in result.messages:
        key = message["properties"]["shardKey"]
        seen[key].append(int(message["properties"]["seq"]))
        assert message["queue_id"] == queue_of[int(key.removeprefix("key-"))]
    assert seen == {f"key-{k}": [0, 1, 2, 3, 3, 3, *range(4, per_key)] for k in range(keys)}, seen


def test_reconsume_later_comes_back_through_the_retry_topic(server: Peer, home: Path, name: str) -> None:
    """The raw callback returns 1 once per message: CONSUMER_SEND_MSG_BACK, redelivered ~10 s later (level 3)
    through %RETRY%<group> with reconsume_times 1 and the original topic restored."""
    topic, group = f"CppRetry_{name}", f"CG_{name}"
    _create(server, topic, f"%RETRY%{group}")
    with cpp.start_push_consumer(server.namesrv_addr, topic, group, expect=3, fail_times=1, home=home / "c") as c:
        _registered(server, c, group)
        sent = cpp.produce(server.namesrv_addr, topic, f"PG_{name}", count=3, body="retry-{i}", home=home)
        c.wait_for(lambda _: sum(m["ack"] for m in c.messages) >= 3, 60, "every message acked after its retry")
        result = c.stop()
    port = server.broker_port
    deliveries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in result.messages:
        deliveries[message["properties"]["UNIQ_KEY"]].append(message)
    assert set(deliveries) == {line["msg_id"] for line in sent.sent}
    for msg_id, (first, again) in deliveries.items():
        assert (first["reconsume_times"], first["ack"], again["reconsume_times"], again["ack"]) == (0, False, 1, True)
        assert first["topic"] == again["topic"] == topic  # restored from RETRY_TOPIC
        assert again["properties"]["RETRY_TOPIC"] == topic
        # The C++ client sends no originMsgId: the broker names the original record by its offset id, as Java's does
        assert again["properties"]["ORIGIN_MESSAGE_ID"] == offset_msg_id("127.0.0.1", port, first["commit_log_offset"])
        assert again["properties"]["UNIQ_KEY"] == msg_id
        assert again["body"] == first["body"]
        waited = again["recv_ms"] - first["recv_ms"]
        assert 9_500 <= waited <= 40_000, f"redelivered {waited} ms after the first delivery"


# ---------------------------------------------------------------------------------------------------------------------
# tidemq's Python client <-> the C++ client


def test_python_producer_to_cpp_consumer(server: Peer, home: Path, name: str) -> None:
    """Sent by tidemq.client.Producer (tags, keys, properties, non-ASCII and compressed bodies), received intact
    by the C++ PushConsumer."""
    topic = f"PyToCpp_{name}"
    _create(server, topic)
    plan: list[dict[str, Any]] = [
        {"body": TEXT.replace("{i}", "0"), "tags": "TagA", "keys": ["鍵-0", "k0"], "properties": {"color": "深蓝"}},
        {"body": TEXT.replace("{i}", "1"), "tags": "TagB", "keys": "k1", "properties": {"note": "välue"}},
        {"body": BIG + " #2", "tags": "TagA", "keys": ["big-2"], "properties": {"color": "big"}},
    ]
    with sync.Producer(f"PG_{name}", server.namesrv_addr) as producer:
        results = [producer.send(topic, **spec) for spec in plan]
    got = cpp.push_consume(
        server.namesrv_addr, topic, f"CG_{name}", expect=len(plan), prop_names=["color", "note"], home=home
    )
    by_id = {m["id"]: m for m in got.messages}
    assert len(got.messages) == len(by_id) == len(plan), got.describe()
    for spec, result in zip(plan, results, strict=True):
        message = by_id[result.msg_id]
        assert bytes.fromhex(message["body_hex"]) == spec["body"].encode()
        assert message["tags"] == spec["tags"]
        assert message["keys"] == (" ".join(spec["keys"]) if isinstance(spec["keys"], list) else spec["keys"])
        for prop, value in spec["properties"].items():
            assert message["properties"][prop] == value
        assert (message["queue_id"], message["queue_offset"]) == (result.queue_id, result.queue_offset)
        assert message["topic"] == topic
        assert message["reconsume_times"] == 0


def test_cpp_producer_to_python_push_consumer(server: Peer, home: Path, name: str) -> None:
    """Sent by the C++ Producer (non-ASCII, compressed), received intact by tidemq's PushConsumer."""
    topic = f"CppToPy_{name}"
    _create(server, topic)
    small = cpp.produce(
        server.namesrv_addr,
        topic,
        f"PG_{name}",
        count=4,
        tag="TagA",
        keys="鍵-{i} k{i}",
        props={"color": "深蓝-{i}"},
        body=TEXT,
        home=home,
    )
    big = cpp.produce(server.namesrv_addr, topic, f"PG_{name}", count=2, tag="TagB", body=BIG + " big{i}", home=home)
    sent = {line["msg_id"]: ("small", line) for line in small.sent}
    sent |= {line["msg_id"]: ("big", line) for line in big.sent}
    received: dict[str, ReceivedMessage] = {}

    def on_message(message: ReceivedMessage) -> None:
        received.setdefault(message.msg_id, message)

    consumer = sync.PushConsumer(f"CG_{name}", server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET)
    consumer.subscribe(topic, "*", on_message)
    with consumer:
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert set(received) == set(sent)
    for msg_id, (kind, line) in sent.items():
        message, i = received[msg_id], line["index"]
        assert message.topic == topic
        assert message.queue_offset == line["offset"]
        if kind == "small":
            assert message.tags == "TagA"
            assert message.body == TEXT.replace("{i}", str(i)).encode()
            assert message.keys == [f"鍵-{i}", f"k{i}"]
            assert message.properties["color"] == f"深蓝-{i}"
        else:
            assert message.tags == "TagB"
            assert message.body == f"{BIG} big{i}".encode()
            assert message.sys_flag & 1, "compressed by the C++ producer, inflated by ours"
