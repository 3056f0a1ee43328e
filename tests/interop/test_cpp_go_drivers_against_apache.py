"""The C++ and Go interop drivers, checked against the real Apache RocketMQ (``bench/peers/apache_rocketmq.py``).

These tests validate the drivers themselves (and record how the official clients behave with the reference broker)
before the same drivers are pointed at tidemq. One Apache name server + broker serves the whole module; every test
uses its own topics and groups. Skipped when Java or the peer module is missing; the Go tests also need ``go``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cpp_driver as cpp
import java_driver
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.interop, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_PATH = REPO_ROOT / "bench" / "peers" / "apache_rocketmq.py"
HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
BODY = "héllo wörld 日本 {i}"  # non-ASCII, and no NUL: the C++ wrapper's bodies are C strings
PROPS = {"color": "blue", "note": "välue 日本"}


def _load_peer() -> ModuleType:
    if not PEER_PATH.exists():
        pytest.skip(f"{PEER_PATH} is not there")
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH")
    name = "tidemq_bench_peer_apache_rocketmq"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, PEER_PATH)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def apache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    peer_module = _load_peer()
    with peer_module.ApacheRocketMQ(tmp_path_factory.mktemp("apache"), flush="ASYNC_FLUSH", broker_heap="1g") as peer:
        yield peer


@pytest.fixture(scope="module")
def go() -> ModuleType:
    import go_driver

    if not go_driver.go_available():
        pytest.skip("the Go toolchain is not on PATH")
    go_driver.build()  # first build resolves modules and compiles (~30 s); later runs hit the cache
    return go_driver


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME for the client processes: the C++ client's log files land under it, not in the real home."""
    return tmp_path / "client-home"


def _body(index: int, label: str) -> str:
    return BODY.replace("{i}", f"{label}-{index}")


def _by_body(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Messages keyed by body, asserting no body arrived twice with different ids."""
    out: dict[str, dict[str, Any]] = {}
    for message in messages:
        previous = out.setdefault(message["body"], message)
        assert previous["id"] == message["id"], (previous, message)
    return out


def _cpp_send_all(namesrv: str, topic: str, home: Path) -> dict[str, list[dict[str, Any]]]:
    """C++ sends: 4 sync TagA, 3 oneway TagB, 4 orderly TagA (selector arg = index), 3 sync TagC (filtered out)."""
    plan = {
        "skip": {"mode": "sync", "tag": "TagC", "count": 3},
        "sync": {"mode": "sync", "tag": "TagA", "count": 4},
        "oneway": {"mode": "oneway", "tag": "TagB", "count": 3},
        "orderly": {"mode": "orderly", "tag": "TagA", "count": 4},
    }
    sent = {}
    for label, spec in plan.items():
        result = cpp.produce(
            namesrv,
            topic,
            f"PG_{topic}",
            count=spec["count"],
            mode=spec["mode"],
            tag=spec["tag"],
            keys=f"{label}-{{i}} shared-key",
            props={**PROPS, "mode": label},
            body=BODY.replace("{i}", label + "-{i}"),
            home=home,
        )
        assert result.summary["sent"] == spec["count"], result.describe()
        sent[label] = result.sent
    return sent


def test_cpp_sends_are_push_consumed_and_pulled_intact(apache: Any, home: Path) -> None:
    topic = "InteropCppRoundTrip"
    sent = _cpp_send_all(apache.namesrv_addr, topic, home)
    for label in ("skip", "sync", "orderly"):
        for line in sent[label]:
            assert line["status"] == "SEND_OK"
            assert HEX32.match(line["msg_id"]), line  # the C++ client reports UNIQ_KEY, not the broker's msgId
    for line in sent["orderly"]:
        assert line["queue_id"] == line["index"] % line["queue_count"]
    send_ids = {line["msg_id"] for label in ("sync", "orderly") for line in sent[label]}

    consumed = cpp.push_consume(
        apache.namesrv_addr,
        topic,
        f"CG_{topic}",
        expr="TagA || TagB",
        expect=11,
        timeout_s=90,
        prop_names=[*PROPS, "mode"],
        home=home,
    )
    messages = _by_body(consumed.messages)
    expected = {
        _body(i, label): label for label, count in (("sync", 4), ("oneway", 3), ("orderly", 4)) for i in range(count)
    }
    assert set(messages) == set(expected), consumed.describe()
    for body, label in expected.items():
        message = messages[body]
        assert message["topic"] == topic
        assert message["tags"] == ("TagB" if label == "oneway" else "TagA")
        assert message["keys"] == f"{label}-{body.rsplit('-', 1)[1]} shared-key"
        assert message["properties"]["color"] == PROPS["color"]
        assert message["properties"]["note"] == PROPS["note"]
        assert message["properties"]["mode"] == label
        assert message["properties"]["UNIQ_KEY"] == message["id"]
        assert message["reconsume_times"] == 0
        assert message["ack"] is True
    assert send_ids <= {m["id"] for m in messages.values()}
    orderly = sorted((m for m in messages.values() if m["properties"]["mode"] == "orderly"), key=lambda m: m["body"])
    queue_count = sent["orderly"][0]["queue_count"]
    assert [m["queue_id"] for m in orderly] == [i % queue_count for i in range(4)]

    pulled = cpp.pull(
        apache.namesrv_addr, topic, f"PULL_{topic}", expect=14, timeout_s=60, prop_names=["mode"], home=home
    )
    assert pulled.summary["received"] == 14
    assert sum(pulled.summary["next_offsets"].values()) == 14
    per_queue: dict[int, list[int]] = {}
    for message in pulled.messages:
        per_queue.setdefault(message["queue_id"], []).append(message["queue_offset"])
    assert all(offsets == list(range(len(offsets))) for offsets in per_queue.values()), per_queue
    assert {m["body"] for m in pulled.messages} == set(expected) | {_body(i, "skip") for i in range(3)}

    filtered = cpp.pull(
        apache.namesrv_addr, topic, f"PULLF_{topic}", expr="TagA || TagB", expect=11, timeout_s=60, home=home
    )
    assert {m["body"] for m in filtered.messages} == set(expected)


def test_cpp_push_consumer_retries_on_reconsume_later(apache: Any, home: Path) -> None:
    """Returning 1 from the raw callback sends the message back; it returns via %RETRY% with reconsume_times 1."""
    topic = "InteropCppRetry"
    # The C++ client's first send to a topic the name server does not know yet sometimes fails with
    # "No route info" against Apache (a race in its TBW102 fallback): create the topic first, as a user would.
    java_driver.run_mqadmin("5.5.0", apache.namesrv_addr, ["updateTopic", "-t", topic, "-c", apache.cluster])
    cpp.produce(apache.namesrv_addr, topic, f"PG_{topic}", count=2, tag="TagA", body="retry-{i}", home=home)
    result = cpp.push_consume(
        apache.namesrv_addr, topic, f"CG_{topic}", expect=2, fail_times=1, timeout_s=90, home=home
    )
    first = [m for m in result.messages if not m["ack"]]
    again = [m for m in result.messages if m["ack"]]
    # Seen once (2026-11-26, CI): retry-1 only came back acked, its first delivery missing from the output; the
    # listener's own errors and each delivery's fields say why, next time.
    seen = [(m["body"], m["reconsume_times"], m["ack"], m["topic"]) for m in result.messages]
    assert {m["body"] for m in first} == {m["body"] for m in again} == {"retry-0", "retry-1"}, (
        seen,
        result.events("error"),
    )
    assert all(m["reconsume_times"] == 0 for m in first)
    assert all(m["reconsume_times"] == 1 for m in again)
    assert all(m["topic"] == topic for m in again)  # the client restores RETRY_TOPIC
    assert all(m["properties"]["REAL_TOPIC"] == f"%RETRY%CG_{topic}" for m in again)


def test_go_producer_to_go_push_consumer(apache: Any, go: ModuleType, home: Path) -> None:
    topic = "InteropGoRoundTrip"
    sends = {
        "TagA": go.produce(
            apache.namesrv_addr,
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
            apache.namesrv_addr,
            topic,
            f"PG_{topic}",
            count=2,
            tag="TagB",
            keys="gb-{i}",
            props=PROPS,
            body=BODY.replace("{i}", "b-{i}"),
            home=home,
        ),
        "TagX": go.produce(apache.namesrv_addr, topic, f"PG_{topic}", count=2, tag="TagX", body="x-{i}", home=home),
    }
    for result in sends.values():
        for line in result.sent:
            assert line["status"] == "SEND_OK"
            assert HEX32.match(line["msg_id"]), line
            assert HEX32.match(line["offset_msg_id"]), line  # the broker's id: store host + commit log offset
    sent_by_id = {line["msg_id"]: line for tag in ("TagA", "TagB") for line in sends[tag].sent}

    consumed = go.push_consume(
        apache.namesrv_addr, topic, f"CG_{topic}", expr="TagA || TagB", expect=7, timeout_s=90, home=home
    )
    messages = _by_body(consumed.messages)
    expected = {_body(i, "a") for i in range(5)} | {_body(i, "b") for i in range(2)}
    assert set(messages) == expected, consumed.describe()
    for message in messages.values():
        sent_line = sent_by_id[message["id"]]
        assert message["offset_msg_id"] == sent_line["offset_msg_id"]
        assert (message["queue_id"], message["queue_offset"]) == (sent_line["queue_id"], sent_line["offset"])
        assert message["topic"] == topic
        assert message["tags"] in {"TagA", "TagB"}
        assert message["properties"]["color"] == PROPS["color"]
        assert message["properties"]["note"] == PROPS["note"]
        assert message["properties"]["UNIQ_KEY"] == message["id"]
        expected_keys = "ga-{} shared" if message["tags"] == "TagA" else "gb-{}"
        assert message["keys"] == expected_keys.format(message["body"].rsplit("-", 1)[1])


def test_cross_language_cpp_to_go_and_go_to_cpp(apache: Any, go: ModuleType, home: Path) -> None:
    namesrv = apache.namesrv_addr
    cpp.produce(
        namesrv,
        "InteropCppToGo",
        "PG_c2g",
        count=3,
        tag="TagA",
        keys="c2g-{i}",
        props=PROPS,
        body=BODY.replace("{i}", "c2g-{i}"),
        home=home,
    )
    go_side = go.push_consume(namesrv, "InteropCppToGo", "CG_c2g", expect=3, timeout_s=90, home=home)
    assert {m["body"] for m in go_side.messages} == {_body(i, "c2g") for i in range(3)}
    assert all(m["properties"]["note"] == PROPS["note"] and m["properties"]["WAIT"] == "true" for m in go_side.messages)

    go.produce(
        namesrv,
        "InteropGoToCpp",
        "PG_g2c",
        count=3,
        tag="TagB",
        keys="g2c-{i}",
        props=PROPS,
        body=BODY.replace("{i}", "g2c-{i}"),
        home=home,
    )
    cpp_side = cpp.push_consume(
        namesrv,
        "InteropGoToCpp",
        "CG_g2c",
        expr="TagA || TagB",
        expect=3,
        timeout_s=90,
        prop_names=list(PROPS),
        home=home,
    )
    assert {m["body"] for m in cpp_side.messages} == {_body(i, "g2c") for i in range(3)}
    assert all(m["properties"]["note"] == PROPS["note"] and m["keys"].startswith("g2c-") for m in cpp_side.messages)
