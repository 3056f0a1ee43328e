"""The official RocketMQ C++ client (PyPI ``rocketmq==0.4.4``), unchanged, against tidemq.

Same driver (``cpp_driver.py``) and the same kinds of assertions as ``test_cpp_go_drivers_against_apache.py``,
with ``tidemq dev`` in Apache's place. One server serves the module (every test has its own topics and groups);
the broker-restart tests start their own. Nothing here sleeps blindly: every wait is on a condition with a
deadline, and "nothing else arrives" is proven with fence messages (a message sent last on every queue: once a
consumer has it, it has pulled past everything before it on that queue).
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` as a package, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

import cpp_driver as cpp  # noqa: E402
from tests.server_process import ServerProcess, committed_offset, consumer_ids, start_server, wait_until  # noqa: E402

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(  # only looked up, never imported here: the native client runs in driver subprocesses
        importlib.util.find_spec("rocketmq") is None, reason="the C++ client (PyPI rocketmq==0.4.4) is not installed"
    ),
]

BODY = "héllo wörld 日本 🌊 {i}"  # non-ASCII incl. a 4-byte UTF-8 char; no NUL (the wrapper's bodies are C strings)
BIG = "大きい" * 1200  # 10.8 kB of UTF-8: over the clients' 4 kB threshold, so the body travels zlib-compressed
PROPS = {"color": "blue", "note": "välue 日本"}
QUEUES = 4  # auto-created topics get min(defaultTopicQueueNums 4, broker default)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("tidemq-cpp") / "data")
    try:
        yield server
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"
        assert not server.log_errors(), server.log_errors()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME for the client processes: the C++ client's log files land under it, not in the real home."""
    return tmp_path / "client-home"


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A fresh topic/group stem per test (and per run: the module server's data dir is per run anyway)."""
    return f"{request.node.name.removeprefix('test_')[:40]}_{uuid.uuid4().hex[:6]}"


def _template(label: str) -> str:
    """The ``--body`` for a send plan entry; ``{i}`` is the index."""
    return (BIG if label == "big" else "") + BODY.replace("{i}", label + "-{i}")


def _body(label: str, index: int) -> str:
    return _template(label).replace("{i}", str(index))


def _by_body(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Messages keyed by body, asserting no body arrived twice (one delivery each: ids would repeat otherwise)."""
    counts = Counter(m["body"] for m in messages)
    assert all(n == 1 for n in counts.values()), {b: n for b, n in counts.items() if n > 1}
    return {m["body"]: m for m in messages}


def _fence(namesrv: str, topic: str, label: str, home: Path) -> set[str]:
    """One message on every queue (orderly send, selector arg = index = queue id); returns their bodies."""
    result = cpp.produce(
        namesrv, topic, f"PG_{topic}", count=QUEUES, mode="orderly", tag="TagA", body=f"{label}-fence-{{i}}", home=home
    )
    assert [line["queue_id"] for line in result.sent] == list(range(QUEUES)), result.describe()
    return {f"{label}-fence-{i}" for i in range(QUEUES)}


def _bodies(messages: list[dict[str, Any]]) -> set[str]:
    return {m["body"] for m in messages}


def test_send_modes_fields_tag_filter_and_pull_from_zero(server: ServerProcess, home: Path, name: str) -> None:
    """send_sync / send_oneway / send_orderly; everything intact on receipt; TagA || TagB filter; pull all queues."""
    namesrv, topic = server.namesrv_addr, f"CppSend_{name}"
    plan = [  # label, mode, tag, count, shard: TagC first, so every queue starts with a message the filter must skip
        ("skip", "sync", "TagC", 4, None),
        ("sync", "sync", "TagA", 4, None),
        ("oneway", "oneway", "TagB", 3, None),
        ("orderly", "orderly", "TagA", 4, None),  # selector arg = index: lands on queue index % 4
        ("pinned", "orderly", "TagB", 3, 2),  # selector arg 2 for every message: all on queue 2, in order
        ("big", "sync", "TagB", 2, None),  # compressed by the client (sysFlag bit 0), stored and delivered as is
    ]
    sent: dict[str, list[dict[str, Any]]] = {}
    for label, mode, tag, count, shard in plan:
        result = cpp.produce(
            namesrv,
            topic,
            f"PG_{topic}",
            count=count,
            mode=mode,
            tag=tag,
            shard=shard,
            keys=f"{label}-{{i}} shared-key",
            props={**PROPS, "mode": label},
            body=_template(label),
            home=home,
        )
        assert result.summary["sent"] == count, result.describe()
        assert all(line["status"] == "SEND_OK" for line in result.sent), result.describe()
        sent[label] = result.sent
    for line in sent["orderly"]:
        assert line["queue_count"] == QUEUES
        assert line["queue_id"] == line["index"] % QUEUES
    assert [line["queue_id"] for line in sent["pinned"]] == [2, 2, 2]
    pinned_offsets = [line["offset"] for line in sent["pinned"]]
    assert pinned_offsets == list(range(pinned_offsets[0], pinned_offsets[0] + 3)), sent["pinned"]
    send_results = {
        line["msg_id"]: line for label in ("skip", "sync", "orderly", "pinned", "big") for line in sent[label]
    }

    wanted = {label: (tag, count) for label, _, tag, count, _ in plan if label != "skip"}
    expected = {_body(label, i): label for label, (_, count) in wanted.items() for i in range(count)}
    consumed = cpp.push_consume(
        namesrv,
        topic,
        f"CG_{topic}",
        expr="TagA || TagB",
        expect=len(expected),
        timeout_s=90,
        prop_names=[*PROPS, "mode"],
        home=home,
    )
    messages = _by_body(consumed.messages)
    assert set(messages) == set(expected), consumed.describe()  # exactly the TagA/TagB ones: no TagC
    for body, label in expected.items():
        message = messages[body]
        index = body.rsplit("-", 1)[1]
        assert message["topic"] == topic
        assert message["tags"] == wanted[label][0]
        assert message["keys"] == f"{label}-{index} shared-key"
        assert message["body_hex"] == body.encode().hex()
        assert message["properties"]["color"] == PROPS["color"]
        assert message["properties"]["note"] == PROPS["note"]
        assert message["properties"]["mode"] == label
        assert message["properties"]["UNIQ_KEY"] == message["id"]
        assert message["reconsume_times"] == 0
        assert message["ack"] is True
        result = send_results.get(message["id"])  # the C++ client reports UNIQ_KEY as the send's msg_id
        if result is not None:
            assert message["queue_offset"] == result["offset"], (message, result)
            if "queue_id" in result:
                assert message["queue_id"] == result["queue_id"], (message, result)
    assert {line["msg_id"] for label in ("sync", "orderly", "pinned", "big") for line in sent[label]} <= {
        m["id"] for m in messages.values()
    }
    assert not [m for m in consumed.messages if m["tags"] == "TagC"]

    total = sum(count for _, _, _, count, _ in plan)
    pulled = cpp.pull(namesrv, topic, f"PULL_{topic}", expect=total, timeout_s=60, prop_names=["mode"], home=home)
    assert pulled.summary["received"] == total, pulled.describe()
    per_queue: dict[int, list[int]] = {}
    for message in pulled.messages:
        per_queue.setdefault(message["queue_id"], []).append(message["queue_offset"])
    assert set(per_queue) == set(range(QUEUES)), per_queue  # round robin put something on every queue
    assert all(offsets == list(range(len(offsets))) for offsets in per_queue.values()), per_queue
    assert pulled.summary["next_offsets"] == {f"broker-a:{q}": len(per_queue[q]) for q in range(QUEUES)}
    for queue in pulled.events("queue"):
        assert queue["status"] == "NO_NEW_MSG"
        assert (queue["min_offset"], queue["max_offset"]) == (0, len(per_queue[queue["queue_id"]]))
    by_body = _by_body(pulled.messages)
    assert set(by_body) == set(expected) | {_body("skip", i) for i in range(4)}
    for message in pulled.messages:
        assert message["body_hex"] == message["body"].encode().hex()  # the raw bytes were valid UTF-8
        assert message["properties"]["mode"] == message["body"].rsplit(" ", 1)[1].rsplit("-", 1)[0]
    for line in sent["orderly"] + sent["pinned"]:
        message = next(m for m in pulled.messages if m["properties"]["UNIQ_KEY"] == line["msg_id"])
        assert (message["queue_id"], message["queue_offset"]) == (line["queue_id"], line["offset"])

    filtered = cpp.pull(
        namesrv, topic, f"PULLF_{topic}", expr="TagA || TagB", expect=len(expected), timeout_s=60, home=home
    )
    assert _bodies(filtered.messages) == set(expected), filtered.describe()


def test_two_push_consumers_split_the_queues(server: ServerProcess, home: Path, name: str) -> None:
    """Two consumers of one group: each owns half the queues; together every message exactly once.

    Then one leaves (clean shutdown: offsets committed, UNREGISTER_CLIENT): the other is told, takes its queues
    over from the committed offsets and gets everything sent afterwards, again exactly once.
    """
    namesrv, topic, group = server.namesrv_addr, f"CppSplit_{name}", f"CG_{name}"
    cpp.produce(namesrv, topic, f"PG_{topic}", count=QUEUES, body="create-{i}", home=home)  # the topic, 4 queues
    with (
        cpp.start_push_consumer(namesrv, topic, group, instance="c1", home=home / "c1") as first,
        cpp.start_push_consumer(namesrv, topic, group, instance="c2", home=home / "c2") as second,
    ):
        first.wait_started()
        second.wait_started()
        wait_until(lambda: len(consumer_ids(server.broker_addr, group)) == 2, 30, "both consumers in the group")

        def union() -> set[str]:
            return _bodies(first.messages) | _bodies(second.messages)

        # Warm-up: while the group rebalances, a queue can move between consumers and a few messages may be
        # delivered twice (at-least-once). Send a fence on every queue until one round comes back split 2/2
        # with no fence delivered twice: both consumers then work from the same two-member allocation.
        for round_no in range(5):
            warm = _fence(namesrv, topic, f"warm{round_no}", home)
            wait_until(lambda: warm <= union(), 60, f"warm-up round {round_no} consumed")  # noqa: B023
            got = [_bodies(consumer.messages) & warm for consumer in (first, second)]
            if len(got[0]) == len(got[1]) == QUEUES // 2 and not got[0] & got[1]:
                break
        else:
            raise AssertionError("the two consumers never settled on a 2/2 split of the queues")

        count = 200  # several pulls of up to 32 per queue
        steady = cpp.produce(namesrv, topic, f"PG_{topic}", count=count, tag="TagA", body="steady-{i}", home=home)
        assert steady.summary["sent"] == count, steady.describe()
        expected = {f"steady-{i}" for i in range(count)} | _fence(namesrv, topic, "end", home)
        wait_until(lambda: expected <= union(), 60, "every steady-state message consumed")
        second_result = second.stop()
        assert second_result.summary["shutdown_error"] is None, second_result.describe()

        wait_until(lambda: len(consumer_ids(server.broker_addr, group)) == 1, 10, "the second consumer gone")
        solo = {f"solo-{i}" for i in range(40)}
        cpp.produce(namesrv, topic, f"PG_{topic}", count=40, tag="TagA", body="solo-{i}", home=home)
        solo |= _fence(namesrv, topic, "solo", home)
        first.wait_for(lambda _: solo <= _bodies(first.messages), 60, "the first consumer takes every queue over")
        first_result = first.stop()

    # Steady state: only what was sent after the warm-up; a late warm-up redelivery is not counted against it.
    shares = [[m for m in result.messages if m["body"] in expected] for result in (first_result, second_result)]
    assert all(shares), "each consumer gets a non-empty share"
    bodies = [m["body"] for share in shares for m in share]
    # (first_result includes the take-over: a queue resumed below what the other consumer committed shows here)
    assert Counter(bodies) == Counter(expected), "no message twice, none missing"
    queues = [{m["queue_id"] for m in share} for share in shares]
    assert not queues[0] & queues[1], f"a queue was consumed by both: {queues}"
    assert queues[0] | queues[1] == set(range(QUEUES))
    assert sorted(len(q) for q in queues) == [2, 2], queues  # averaging: 4 queues over 2 clients

    alone = [m for m in first_result.messages if m["body"] in solo]
    assert Counter(m["body"] for m in alone) == Counter(solo), "after the take-over: all, and each once"
    assert {m["queue_id"] for m in alone} == set(range(QUEUES))


def test_restarted_consumer_resumes_from_committed_offset(server: ServerProcess, home: Path, name: str) -> None:
    """Produce N, consume N, stop cleanly; produce M; a new consumer of the group gets exactly the M."""
    namesrv, topic, group = server.namesrv_addr, f"CppResume_{name}", f"CG_{name}"
    first_batch = {f"first-{i}" for i in range(12)}
    cpp.produce(namesrv, topic, f"PG_{topic}", count=12, tag="TagA", body="first-{i}", home=home)
    done = cpp.push_consume(namesrv, topic, group, expect=12, timeout_s=60, home=home)
    assert _bodies(done.messages) == first_batch, done.describe()
    assert done.summary["shutdown_error"] is None, done.describe()
    # The clean shutdown committed every queue's offset: 12 messages over the 4 queues.
    offsets = [committed_offset(server.broker_addr, group, topic, q) for q in range(QUEUES)]
    assert sum(o or 0 for o in offsets) == 12, offsets

    second_batch = {f"second-{i}" for i in range(8)}
    cpp.produce(namesrv, topic, f"PG_{topic}", count=8, tag="TagA", body="second-{i}", home=home)
    with cpp.start_push_consumer(namesrv, topic, group, home=home) as consumer:
        consumer.wait_started()
        consumer.wait_for(lambda _: second_batch <= _bodies(consumer.messages), 60, "the new messages")
        fences = _fence(namesrv, topic, "resume", home)
        consumer.wait_for(lambda _: fences <= _bodies(consumer.messages), 60, "the fences")
        result = consumer.stop()
    assert Counter(m["body"] for m in result.messages) == Counter(second_batch | fences), result.describe()


def test_broker_restart_keeps_messages_and_committed_offsets(tmp_path: Path, home: Path, name: str) -> None:
    """Stop tidemq, start it again on the same data dir: committed offsets and messages survive; no loss."""
    topic, group = f"CppRestart_{name}", f"CG_{name}"
    server = start_server(tmp_path / "data")
    try:
        namesrv = server.namesrv_addr
        cpp.produce(namesrv, topic, f"PG_{topic}", count=10, tag="TagA", body="before-{i}", home=home)
        done = cpp.push_consume(namesrv, topic, group, expect=10, timeout_s=60, home=home)
        assert _bodies(done.messages) == {f"before-{i}" for i in range(10)}, done.describe()
        cpp.produce(namesrv, topic, f"PG_{topic}", count=6, tag="TagA", body="pending-{i}", home=home)
        offsets = [committed_offset(server.broker_addr, group, topic, q) for q in range(QUEUES)]

        server = server.restart()
        assert server.namesrv_addr == namesrv
        assert [committed_offset(server.broker_addr, group, topic, q) for q in range(QUEUES)] == offsets

        pending = {f"pending-{i}" for i in range(6)}
        with cpp.start_push_consumer(namesrv, topic, group, home=home) as consumer:
            consumer.wait_started()
            consumer.wait_for(lambda _: pending <= _bodies(consumer.messages), 90, "messages sent before restart")
            after = cpp.produce(namesrv, topic, f"PG_{topic}", count=6, tag="TagA", body="after-{i}", home=home)
            assert after.summary["sent"] == 6, after.describe()
            fences = _fence(namesrv, topic, "restart", home)
            wanted = pending | {f"after-{i}" for i in range(6)} | fences
            consumer.wait_for(lambda _: wanted <= _bodies(consumer.messages), 60, "messages sent after restart")
            result = consumer.stop()
        assert Counter(m["body"] for m in result.messages) == Counter(wanted), result.describe()

        everything = {f"before-{i}" for i in range(10)} | wanted
        pulled = cpp.pull(namesrv, topic, f"PULL_{topic}", expect=len(everything), timeout_s=60, home=home)
        assert Counter(m["body"] for m in pulled.messages) == Counter(everything), pulled.describe()
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"
        assert not server.log_errors(), server.log_errors()


@pytest.mark.slow  # about 30 s, the client's pull timeout
def test_running_consumer_rides_out_a_broker_restart(tmp_path: Path, home: Path, name: str) -> None:
    """A push consumer that stays up while tidemq restarts gets everything sent after it, each message once.

    Slow by the client's design, not ours: a pull in flight when the connection drops is given up only when the
    client's own 30 s request timeout fires (same with Apache's broker, which also answers no held pull when it
    stops); then the client pulls again from its in-memory offsets.
    """
    topic, group = f"CppLive_{name}", f"CG_{name}"
    server = start_server(tmp_path / "data")
    try:
        namesrv = server.namesrv_addr
        cpp.produce(namesrv, topic, f"PG_{topic}", count=8, tag="TagA", body="before-{i}", home=home)
        before = {f"before-{i}" for i in range(8)}
        with cpp.start_push_consumer(namesrv, topic, group, home=home) as consumer:
            consumer.wait_for(lambda _: before <= _bodies(consumer.messages), 60, "messages before the restart")
            server = server.restart()
            after = cpp.produce(namesrv, topic, f"PG_{topic}", count=8, tag="TagA", body="after-{i}", home=home)
            assert after.summary["sent"] == 8, after.describe()
            wanted = before | {f"after-{i}" for i in range(8)} | _fence(namesrv, topic, "live", home)
            consumer.wait_for(lambda _: wanted <= _bodies(consumer.messages), 120, "messages after the restart")
            result = consumer.stop()
        assert Counter(m["body"] for m in result.messages) == Counter(wanted), result.describe()
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"
        assert not server.log_errors(), server.log_errors()
