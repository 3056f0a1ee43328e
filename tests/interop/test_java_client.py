"""The official Java clients (rocketmq-client 4.9.8 and 5.5.0), unchanged, against tidemq.

Same driver (``java_driver.py``) and the same kinds of assertions as ``test_java_driver_against_apache.py``, with
``tidemq dev`` in Apache's place. One server serves the module; every test has its own topic and groups.

Per client version, one topic gets four kinds of sends from DefaultMQProducer (sync, async, batch, oneway), then
four consumers read it at the same time: a clustering DefaultMQPushConsumer filtering ``TagA || TagB`` (the oneway
messages are TagC), two broadcasting push consumers of one group, and a DefaultLitePullConsumer (5.x: it pulls with
LITE_PULL_MESSAGE 361). JVMs that do not depend on each other run concurrently: a JVM start is most of the cost.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` as a package, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

from tests.interop import java_driver as jd  # noqa: E402
from tests.server_process import ServerProcess, start_server  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

VERSIONS = ["4", "5"]  # rocketmq-client 4.9.x and 5.x (java_driver.CLIENT_VERSIONS)
SYNC_COUNT = 10
MODE_COUNT = 5  # async, batch and oneway each
BODY = "héllo wörld — 你好, RocketMQ 🌊 {mode}#{i}"
KEYS = "鍵-{mode}-{i}"
COLOR = "深蓝-{i}"
TAG_OF = {"sync": "TagA", "async": "TagB", "batch": "TagA", "oneway": "TagC"}
QUEUES = 4  # auto-created topics: min(the client's 4, the broker's defaultTopicQueueNums 8)

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    t0 = time.monotonic()
    for version in VERSIONS:
        jd.ensure_built(version)  # outside the timings: the first build resolves Maven artifacts
    TIMINGS["driver_builds_s"] = round(time.monotonic() - t0, 2)
    server = start_server(tmp_path_factory.mktemp("tidemq-java") / "data")
    try:
        yield server
    finally:
        print("\njava client timings (s):", json.dumps(TIMINGS, sort_keys=True))
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"


def _body(mode: str, i: int) -> str:
    return BODY.replace("{mode}", mode).replace("{i}", str(i))


def _produce_args(namesrv: str, topic: str, mode: str, count: int) -> list[str]:
    template = BODY.replace("{mode}", mode)
    args = ["--namesrv", namesrv, "--topic", topic, "--count", str(count), "--mode", mode, "--body", template]
    args += ["--tag", TAG_OF[mode], "--keys", KEYS.replace("{mode}", mode), "--prop", f"color={COLOR}"]
    return [*args, "--group", f"PG_{topic}"]


def _check_intact(message: dict[str, Any], sent: dict[str, Any] | None, topic: str, broker_addr: str) -> None:
    """Body, tags, keys and user properties as sent (non-ASCII included); ids and positions as the send reported."""
    mode, i = message["body"].rsplit(" ", 1)[1].split("#")
    index = int(i)
    assert message["body"] == _body(mode, index)
    assert base64.b64decode(message["bodyB64"]) == _body(mode, index).encode()
    assert message["topic"] == topic
    assert message["tags"] == TAG_OF[mode] == message["properties"]["TAGS"]
    assert message["keys"] == KEYS.replace("{mode}", mode).replace("{i}", i) == message["properties"]["KEYS"]
    assert message["properties"]["color"] == COLOR.replace("{i}", i)
    assert message["properties"]["UNIQ_KEY"] == message["msgId"]
    assert message["reconsumeTimes"] == 0
    assert message["storeHost"] == broker_addr
    assert message["bornHost"].startswith("127.0.0.1:")
    if sent is not None:  # oneway sends report nothing
        assert message["msgId"] == sent["msgId"]
        assert message["offsetMsgId"] == sent["offsetMsgId"]
        assert (message["queueId"], message["queueOffset"]) == (sent["queueId"], sent["queueOffset"])


def _by_body(result: jd.DriverResult) -> dict[str, dict[str, Any]]:
    counts = Counter(m["body"] for m in result.received)
    duplicates = {b: n for b, n in counts.items() if n > 1}
    assert not duplicates, f"delivered more than once: {duplicates}\n{result.describe()}"
    return {m["body"]: m for m in result.received}


@pytest.mark.parametrize("version", VERSIONS)
def test_producer_modes_then_push_broadcast_and_lite_pull(server: ServerProcess, version: str) -> None:
    v = jd.resolve_version(version)
    stem = f"{v.replace('.', '_')}_{uuid.uuid4().hex[:6]}"
    topic, namesrv = f"JavaModes_{stem}", server.namesrv_addr
    counts = {"sync": SYNC_COUNT, "async": MODE_COUNT, "batch": MODE_COUNT, "oneway": MODE_COUNT}

    # Four producers at once (the first sends auto-create the topic from TBW102).
    t0 = time.monotonic()
    producers = {
        mode: jd.start_driver(version, "produce", _produce_args(namesrv, topic, mode, n)) for mode, n in counts.items()
    }
    produced = {mode: proc.wait() for mode, proc in producers.items()}
    TIMINGS[f"{v}_produce_4_modes_s"] = round(time.monotonic() - t0, 2)
    sent_by_body: dict[str, dict[str, Any]] = {}
    for mode, result in produced.items():
        assert result.summary["sent"] == counts[mode], result.describe()
        assert result.summary["clientVersion"] == "V" + v.replace(".", "_")
        assert len(result.sent) == (0 if mode == "oneway" else counts[mode]), result.describe()
        for line in result.sent:
            assert line["status"] == "SEND_OK"
            assert line["brokerName"] == "broker-a"
            assert 0 <= line["queueId"] < QUEUES
            assert line["offsetMsgId"].startswith(f"7F000001{server.broker_port:08X}"), line  # store host + offset
            sent_by_body[_body(mode, line["index"])] = line
    assert len({line["msgId"] for line in sent_by_body.values()}) == len(sent_by_body)
    batch = produced["batch"].sent  # one batch: one queue, consecutive offsets
    assert len({line["queueId"] for line in batch}) == 1
    assert [line["queueOffset"] for line in batch] == list(range(batch[0]["queueOffset"], batch[0]["queueOffset"] + 5))

    everything = {_body(mode, i) for mode, n in counts.items() for i in range(n)}
    tag_a_or_b = {b for b in everything if " oneway#" not in b}
    linger = ["--linger-ms", "1500"]  # after the last expected message: time for duplicates or filtered ones
    # 90 s: now and then a Java consumer stalls ~30 s at start, against Apache's broker too. Its first rebalance
    # bumps its subVersion and sends a heartbeat with tryLock, which is skipped when its own periodic heartbeat
    # (first run 1 s after start) holds the lock; pulls then get SUBSCRIPTION_NOT_LATEST until the next one.
    timeout = 90.0
    t0 = time.monotonic()
    consumers = {
        "push": jd.start_push_consume(
            version, namesrv, topic, f"CG_{stem}", len(tag_a_or_b), expr="TagA || TagB", extra=linger, timeout_s=timeout
        ),
        "broadcast_1": jd.start_push_consume(
            version,
            namesrv,
            topic,
            f"BG_{stem}",
            len(everything),
            model="BROADCASTING",
            extra=linger,
            timeout_s=timeout,
        ),
        "broadcast_2": jd.start_push_consume(
            version,
            namesrv,
            topic,
            f"BG_{stem}",
            len(everything),
            model="BROADCASTING",
            extra=linger,
            timeout_s=timeout,
        ),
        "lite_pull": jd.start_driver(
            version,
            "lite-pull",
            ["--namesrv", namesrv, "--topic", topic, "--group", f"LG_{stem}", "--expect", str(len(everything))],
            timeout_s=timeout,
        ),
    }
    got = {name: proc.wait() for name, proc in consumers.items()}
    TIMINGS[f"{v}_consume_4_consumers_s"] = round(time.monotonic() - t0, 2)
    TIMINGS.update({f"{v}_{name}_s": round(result.elapsed_s, 2) for name, result in got.items()})

    push = _by_body(got["push"])  # clustering: every TagA/TagB message exactly once, no TagC
    assert set(push) == tag_a_or_b, got["push"].describe()
    for name in ("broadcast_1", "broadcast_2", "lite_pull"):
        received = _by_body(got[name])
        assert set(received) == everything, got[name].describe()
    for name, result in got.items():
        for message in result.received:
            _check_intact(message, sent_by_body.get(message["body"]), topic, server.broker_addr)
            assert message["consumer"] == ("lite-pull" if name == "lite_pull" else "push")
