"""The official Go client (github.com/apache/rocketmq-client-go/v2 v2.1.2), unchanged, against tidemq.

The driver is ``go_driver.py`` (built once into a cache outside the repository); the scenarios mirror the Go part
of ``test_cpp_go_drivers_against_apache.py``. One ``tidemq dev`` serves the module, the restart test starts its
own. Skipped when ``go`` is not on PATH.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` as a package, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

import cpp_driver as cpp  # noqa: E402
from tests.server_process import ServerProcess, committed_offset, start_server, wait_until  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
BODY = "héllo wörld 日本 🌊 {i}"
PROPS = {"color": "blue", "note": "välue 日本"}
BIG = "大きい" * 1200  # 10.8 kB of UTF-8: over the clients' 4 kB threshold, so the body travels zlib-compressed
QUEUES = 4


@pytest.fixture(scope="module")
def go() -> ModuleType:
    import go_driver

    if not go_driver.go_available():
        pytest.skip("the Go toolchain is not on PATH")
    go_driver.build()  # the first build resolves modules and compiles (~30 s); later runs hit the cache
    return go_driver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("tidemq-go") / "data")
    try:
        yield server
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"
        assert not server.log_errors(), server.log_errors()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "client-home"


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name.removeprefix('test_')[:40]}_{uuid.uuid4().hex[:6]}"


def _body(label: str, index: int) -> str:
    return BODY.replace("{i}", f"{label}-{index}")


def _by_body(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    counts = Counter(m["body"] for m in messages)
    assert all(n == 1 for n in counts.values()), {b: n for b, n in counts.items() if n > 1}
    return {m["body"]: m for m in messages}


def test_go_producer_to_go_push_consumer(server: ServerProcess, go: ModuleType, home: Path, name: str) -> None:
    """Tags, keys, user properties, ids and queue positions survive a Go producer -> Go push consumer trip."""
    namesrv, topic = server.namesrv_addr, f"GoRoundTrip_{name}"
    sends = {  # TagX first: every queue starts with a message the TagA || TagB filter must skip
        "TagX": go.produce(namesrv, topic, f"PG_{topic}", count=4, tag="TagX", body="x-{i}", home=home),
        "TagA": go.produce(
            namesrv,
            topic,
            f"PG_{topic}",
            count=5,
            tag="TagA",
            keys="ga-{i} shared",
            props=PROPS,
            body=BODY.replace("{i}", "a-{i}"),
            home=home,
        ),
        "TagB": go.produce(
            namesrv,
            topic,
            f"PG_{topic}",
            count=2,
            tag="TagB",
            keys="gb-{i}",
            props=PROPS,
            body=BODY.replace("{i}", "b-{i}"),
            home=home,
        ),
    }
    broker_host = server.broker_addr
    for result in sends.values():
        for line in result.sent:
            assert line["status"] == "SEND_OK"
            assert HEX32.match(line["msg_id"]), line  # the client's UNIQ_KEY
            assert HEX32.match(line["offset_msg_id"]), line  # the broker's id: store host + commit log offset
            assert line["broker_name"] == "broker-a"
            assert 0 <= line["queue_id"] < QUEUES
    sent_by_id = {line["msg_id"]: line for tag in ("TagA", "TagB") for line in sends[tag].sent}

    consumed = go.push_consume(namesrv, topic, f"CG_{topic}", expr="TagA || TagB", expect=7, timeout_s=90, home=home)
    messages = _by_body(consumed.messages)
    expected = {_body("a", i) for i in range(5)} | {_body("b", i) for i in range(2)}
    assert set(messages) == expected, consumed.describe()
    for message in messages.values():
        sent_line = sent_by_id[message["id"]]
        assert message["offset_msg_id"] == sent_line["offset_msg_id"]
        assert (message["queue_id"], message["queue_offset"]) == (sent_line["queue_id"], sent_line["offset"])
        assert message["topic"] == topic
        assert message["tags"] in {"TagA", "TagB"}
        assert message["body_hex"] == message["body"].encode().hex()
        assert message["properties"]["color"] == PROPS["color"]
        assert message["properties"]["note"] == PROPS["note"]
        assert message["properties"]["UNIQ_KEY"] == message["id"]
        assert message["store_host"] == broker_host
        assert message["reconsume_times"] == 0
        expected_keys = "ga-{} shared" if message["tags"] == "TagA" else "gb-{}"
        assert message["keys"] == expected_keys.format(message["body"].rsplit("-", 1)[1])


def test_go_orderly_send_lands_on_the_selected_queue(
    server: ServerProcess, go: ModuleType, home: Path, name: str
) -> None:
    namesrv, topic = server.namesrv_addr, f"GoOrderly_{name}"
    spread = go.produce(namesrv, topic, f"PG_{topic}", count=8, mode="orderly", tag="TagA", body="o-{i}", home=home)
    assert [line["queue_id"] for line in spread.sent] == [i % QUEUES for i in range(8)]
    assert [line["offset"] for line in spread.sent] == [i // QUEUES for i in range(8)]
    pinned = go.produce(namesrv, topic, f"PG_{topic}", count=3, mode="orderly", shard=3, body="p-{i}", home=home)
    assert [(line["queue_id"], line["offset"]) for line in pinned.sent] == [(3, 2), (3, 3), (3, 4)]
    consumed = go.push_consume(namesrv, topic, f"CG_{topic}", expect=11, orderly=True, timeout_s=90, home=home)
    by_body = _by_body(consumed.messages)
    for line in spread.sent + pinned.sent:
        message = by_body[("o-" if line in spread.sent else "p-") + str(line["index"])]
        assert (message["queue_id"], message["queue_offset"]) == (line["queue_id"], line["offset"])
    queue3 = [m["body"] for m in consumed.messages if m["queue_id"] == 3]
    assert queue3 == ["o-3", "o-7", "p-0", "p-1", "p-2"], "an orderly consumer sees a queue in order"


@pytest.mark.skipif(importlib.util.find_spec("rocketmq") is None, reason="the C++ client is not installed")
def test_cross_language_cpp_to_go_and_go_to_cpp(server: ServerProcess, go: ModuleType, home: Path, name: str) -> None:
    """Each client reads what the other wrote, compressed bodies (over 4 kB: sysFlag bit 0) included."""
    namesrv = server.namesrv_addr
    c2g, g2c = f"CppToGo_{name}", f"GoToCpp_{name}"
    for label, count, prefix in (("c2g", 3, ""), ("c2gbig", 2, BIG)):
        cpp.produce(
            namesrv,
            c2g,
            f"PG_{c2g}",
            count=count,
            tag="TagA",
            keys=label + "-{i}",
            props=PROPS,
            body=prefix + BODY.replace("{i}", label + "-{i}"),
            home=home,
        )
    go_side = go.push_consume(namesrv, c2g, f"CG_{c2g}", expr="TagA", expect=5, timeout_s=90, home=home)
    wanted = {_body("c2g", i) for i in range(3)} | {BIG + _body("c2gbig", i) for i in range(2)}
    assert set(_by_body(go_side.messages)) == wanted, go_side.describe()
    for message in go_side.messages:
        label, index = message["body"].rsplit(" ", 1)[1].rsplit("-", 1)
        assert message["properties"]["note"] == PROPS["note"]
        assert message["properties"]["WAIT"] == "true"  # the C++ producer's own property
        assert message["keys"] == f"{label}-{index}"
        assert message["tags"] == "TagA"
        assert message["sys_flag"] & 1 == (label == "c2gbig"), message["sys_flag"]  # stored compressed as sent

    for label, count, prefix in (("g2c", 3, ""), ("g2cbig", 2, BIG)):
        go.produce(
            namesrv,
            g2c,
            f"PG_{g2c}",
            count=count,
            tag="TagB",
            keys=label + "-{i}",
            props=PROPS,
            body=prefix + BODY.replace("{i}", label + "-{i}"),
            home=home,
        )
    cpp_side = cpp.push_consume(
        namesrv, g2c, f"CG_{g2c}", expr="TagA || TagB", expect=5, timeout_s=90, prop_names=list(PROPS), home=home
    )
    wanted = {_body("g2c", i) for i in range(3)} | {BIG + _body("g2cbig", i) for i in range(2)}
    assert set(_by_body(cpp_side.messages)) == wanted, cpp_side.describe()
    for message in cpp_side.messages:
        label, index = message["body"].rsplit(" ", 1)[1].rsplit("-", 1)
        assert message["properties"]["note"] == PROPS["note"]
        assert message["keys"] == f"{label}-{index}"
        assert message["tags"] == "TagB"
        assert message["body_hex"] == message["body"].encode().hex()


def test_go_consumer_resumes_after_broker_restart(go: ModuleType, tmp_path: Path, home: Path, name: str) -> None:
    """Consume, stop the consumer; produce; restart tidemq on the same data dir: the consumer gets exactly the rest."""
    topic, group = f"GoRestart_{name}", f"CG_{name}"
    server = start_server(tmp_path / "data")
    try:
        namesrv = server.namesrv_addr
        go.produce(namesrv, topic, f"PG_{topic}", count=8, tag="TagA", body="before-{i}", home=home)
        # The Go client updates a queue's offset only after the listener returned, and Shutdown drops the queues
        # without waiting for listeners in flight: stopping right after the last message can leave its offset
        # uncommitted (at-least-once; the same against Apache). So stop once the broker has all 8 committed
        # (the client commits through pulls and its 5 s offset persist).
        before = {f"before-{i}" for i in range(8)}
        with go.start_push_consumer(namesrv, topic, group, home=home) as consumer:
            consumer.wait_for(lambda _: before <= {m["body"] for m in consumer.messages}, 60, "the first messages")

            def committed() -> list[int | None] | None:
                offsets = [committed_offset(server.broker_addr, group, topic, q) for q in range(QUEUES)]
                return offsets if sum(o or 0 for o in offsets) == 8 else None

            offsets = wait_until(committed, 30, "all 8 offsets committed", interval_s=0.25)
            done = consumer.stop()
        assert Counter(m["body"] for m in done.messages) == Counter(before), done.describe()
        assert "shutdown_error" not in done.summary, done.describe()
        go.produce(namesrv, topic, f"PG_{topic}", count=6, tag="TagA", body="pending-{i}", home=home)

        server = server.restart()
        assert [committed_offset(server.broker_addr, group, topic, q) for q in range(QUEUES)] == offsets
        with go.start_push_consumer(namesrv, topic, group, home=home) as consumer:
            consumer.wait_started()
            pending = {f"pending-{i}" for i in range(6)}
            consumer.wait_for(lambda _: pending <= {m["body"] for m in consumer.messages}, 60, "pending messages")
            # One last message on every queue (orderly, shard = index = queue id): nothing older can still come.
            fence = go.produce(namesrv, topic, f"PG_{topic}", count=QUEUES, mode="orderly", body="fence-{i}", home=home)
            assert [line["queue_id"] for line in fence.sent] == list(range(QUEUES)), fence.describe()
            fences = {f"fence-{i}" for i in range(QUEUES)}
            consumer.wait_for(lambda _: fences <= {m["body"] for m in consumer.messages}, 60, "the fences")
            result = consumer.stop()
        assert Counter(m["body"] for m in result.messages) == Counter(pending | fences), result.describe()
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"
        assert not server.log_errors(), server.log_errors()
