"""Consumption semantics with the official Java clients (rocketmq-client 5.5.0 and 4.9.8) against tidemq.

Orderly consumption (MessageQueueSelector by sharding key, DefaultMQPushConsumer with MessageListenerOrderly, a
SUSPEND_CURRENT_QUEUE_A_MOMENT retry, and giving up into the DLQ), concurrent RECONSUME_LATER through
``%RETRY%<group>`` and into ``%DLQ%<group>``, delay levels, TransactionMQProducer (commit, rollback, and both
answers after the broker's check-back), SQL92 selectors, and messages crossing between the Java clients and
tidemq's Python client both ways.

Scenarios that mostly wait (retry delays, delay levels, transaction check-backs) run both client versions at once;
the others are parametrized by version. One ``tidemq dev`` serves the module, with transaction checks every second
(``transactionCheckInterval``/``transactionTimeOut`` in its broker.conf); every test has its own topics and groups,
created up front with tidemq's Admin: a Java client learns a topic's route when it starts and then only every 30 s.

``TIDEMQ_SEMANTICS_PEER=apache`` runs the same tests against Apache RocketMQ 5.5.0 (``semantics_peer.py``); they pass
there too. Known differences, where the tests look at the peer: Apache 5.x creates DLQs read-write (tidemq keeps 4.x's
write-only DLQ), and with checks every second Apache 5.x may commit a checked-back transaction twice (its op records
are written in batches every 3 s); tidemq commits it once.

Java-side quirk kept in mind (Apache's broker behaves the same): the broker creates ``%RETRY%<group>`` at the
group's first heartbeat, after the consumer fetched its routes, so a brand-new group would read its retry queue
only from its next route refresh, up to 30 s later. The retry tests create the retry topic first.
"""

from __future__ import annotations

import base64
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

from tests.interop import java_driver as jd  # noqa: E402
from tests.interop.semantics_peer import Peer, running_peer  # noqa: E402
from tests.server_process import consumer_ids, remoting_call, wait_until  # noqa: E402

from tidemq.client import ConsumeFromWhere, ReceivedMessage, sync  # noqa: E402
from tidemq.protocol.remoting import RequestCode, ResponseCode  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

VERSIONS = ["5", "4"]  # rocketmq-client 5.5.0 and 4.9.8
# Halves are checked back once 3 s old, every second. Not 1 s old: a check answered later than the timeout is
# checked again, and both answers commit (at-least-once, as with Apache's broker).
BROKER_CONF = {"transactionCheckInterval": "1000", "transactionTimeOut": "3000"}
DELAY_MS = {1: 1000, 2: 5000, 3: 10000}  # messageDelayLevel's first three levels
PERM_WRITE = 2
TX_MODES = ("commit", "rollback", "unknown-then-commit", "unknown-then-rollback")
TEXT = "héllo wörld — 你好, RocketMQ 🌊 #{i}"
BIG = "大きい" * 2000  # 18 kB of UTF-8: over every client's 4 kB threshold, so it travels zlib-compressed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    for version in VERSIONS:
        jd.ensure_built(version)
    with running_peer(tmp_path_factory.mktemp("java-semantics"), BROKER_CONF) as peer:
        yield peer


_BACKGROUND: list[jd.DriverProcess] = []


@pytest.fixture(autouse=True)
def _no_leftover_jvms() -> Iterator[None]:
    """A test that fails before waiting for its background drivers leaves none running."""
    yield
    while _BACKGROUND:
        process = _BACKGROUND.pop()
        if process.proc.poll() is None:
            process.kill()


def _start(version: str, sub: str, args: list[str], **kwargs: Any) -> jd.DriverProcess:
    process = jd.start_driver(version, sub, args, **kwargs)
    _BACKGROUND.append(process)
    return process


def _opts(text: str) -> list[str]:
    """Driver options written as one string: ``_opts("--count 3 --keys k{i}")``."""
    return text.split()


def _stem(version: str) -> str:
    return f"{jd.resolve_version(version).replace('.', '_')}_{uuid.uuid4().hex[:6]}"


def _create(server: Peer, *topics: str, queues: int = 4) -> None:
    with sync.Admin(server.namesrv_addr) as admin:
        for topic in topics:
            admin.create_topic(topic, 1 if topic.startswith("%RETRY%") else queues)


def _consumer(server: Peer, version: str, topic: str, group: str, expect: int, **kwargs: Any) -> jd.DriverProcess:
    """A push consumer in the background, returned once the broker has it in the group.

    Waiting for that also keeps JVM start-ups apart: on a loaded 2-core machine several at once starve the server
    process (the clients' 3 s name-server timeouts then fire).
    """
    kwargs.setdefault("timeout_s", 90)
    process = jd.start_push_consume(version, server.namesrv_addr, topic, group, expect, **kwargs)
    _BACKGROUND.append(process)
    wait_until(
        lambda: consumer_ids(server.broker_addr, group) or process.proc.poll() is not None,
        60,
        f"the {jd.resolve_version(version)} consumer of {group} registered",
    )
    return process


def _deliveries(result: jd.DriverResult) -> dict[str, list[dict[str, Any]]]:
    """Every delivery, by message id, in arrival order."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in result.received:
        found[message["msgId"]].append(message)
    return found


def _by_key(result: jd.DriverResult) -> dict[str, list[tuple[int, int]]]:
    """Per sharding key, (seq, reconsumeTimes) of each delivery, in the order the listener got them."""
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for message in result.received:
        props = message["properties"]
        found[props["shardKey"]].append((int(props["seq"]), message["reconsumeTimes"]))
    return found


def _dead_letters(server: Peer, group: str, keys: list[str], *, write_only: bool = True) -> dict[str, ReceivedMessage]:
    """What ``%DLQ%<group>`` holds under each key (QUERY_MESSAGE through tidemq's Admin: the DLQ is write-only)."""
    found: dict[str, ReceivedMessage] = {}
    with sync.Admin(server.namesrv_addr) as admin:
        for key in keys:
            matches = admin.query_messages_by_key(f"%DLQ%{group}", key)
            assert len(matches) == 1, (key, matches)
            found[key] = matches[0]
        route = admin.topic_route(f"%DLQ%{group}")
    if not write_only or server.kind == "apache":  # Apache 5.x makes DLQs read-write (6); 4.x and tidemq: 2
        return found
    assert [q.perm for q in route.queue_datas] == [PERM_WRITE], route
    pull = remoting_call(
        server.broker_addr,
        RequestCode.PULL_MESSAGE,
        {
            "consumerGroup": group,
            "topic": f"%DLQ%{group}",
            "queueId": "0",
            "queueOffset": "0",
            "maxMsgNums": "32",
            "sysFlag": "4",
            "commitOffset": "0",
            "suspendTimeoutMillis": "0",
            "subscription": "*",
            "subVersion": "0",
            "expressionType": "TAG",
        },
    )
    assert pull.code == ResponseCode.NO_PERMISSION, (pull.code, pull.remark)
    return found


# ---------------------------------------------------------------------------------------------------------------------
# Orderly


@pytest.mark.parametrize("version", VERSIONS)
def test_orderly_consumer_keeps_each_keys_order_through_a_suspend(server: Peer, version: str) -> None:
    """Sharding keys through a MessageQueueSelector; MessageListenerOrderly suspends seq 3 of every key once.

    Per key the listener sees 0, 1, 2, 3, 3 (reconsumeTimes 1), 4, ... 9: nothing overtakes the suspended message.
    """
    stem = _stem(version)
    topic, keys, per_key = f"JOrder_{stem}", 4, 10
    _create(server, topic)
    consumer = _consumer(
        server,
        version,
        topic,
        f"CG_{topic}",
        keys * per_key + keys,
        orderly=True,
        extra=_opts("--fail-prop seq=3 --reconsume-times 1 --suspend-ms 200 --count-deliveries --linger-ms 1500"),
    )
    sent = jd.produce(
        version, server.namesrv_addr, topic, keys * per_key, group=f"PG_{topic}", extra=["--shard-keys", "4"]
    )
    got = consumer.wait()

    queue_of: dict[str, set[int]] = defaultdict(set)
    for line in sent.sent:
        queue_of[line["shardKey"]].add(line["queueId"])
    assert all(len(queues) == 1 for queues in queue_of.values()), queue_of  # a key sticks to one queue
    expected = [(seq, 0) for seq in range(per_key)]
    expected.insert(4, (3, 1))
    assert _by_key(got) == {f"key-{k}": expected for k in range(keys)}, got.describe()
    for message in got.received:
        assert {message["queueId"]} == queue_of[message["properties"]["shardKey"]]
        assert message["topic"] == topic


@pytest.mark.parametrize("version", VERSIONS)
def test_orderly_consumer_gives_up_into_the_dlq(server: Peer, version: str) -> None:
    """setMaxReconsumeTimes(1) on an orderly consumer: seq 2 fails twice, then the client sends it to
    ``%RETRY%<group>`` with reconsumeTimes 1 (its sendMessageBack), which the broker must put in the DLQ rather
    than redeliver; the key's later messages go on in order."""
    stem = _stem(version)
    topic, group, keys, per_key = f"JOrderDlq_{stem}", f"CG_JOrderDlq_{stem}", 2, 5
    _create(server, topic)
    consumer = _consumer(
        server,
        version,
        topic,
        group,
        keys * per_key + keys,
        orderly=True,
        extra=_opts(
            "--fail-prop seq=2 --reconsume-times 1000 --max-reconsume-times 1 --suspend-ms 200 --count-deliveries"
            " --linger-ms 2500"
        ),
    )
    sent = jd.produce(
        version,
        server.namesrv_addr,
        topic,
        keys * per_key,
        keys="ord-{i}",
        group=f"PG_{topic}",
        extra=["--shard-keys", str(keys)],
    )
    got = consumer.wait()
    expected = [(0, 0), (1, 0), (2, 0), (2, 1), (3, 0), (4, 0)]
    assert _by_key(got) == {f"key-{k}": expected for k in range(keys)}, got.describe()

    given_up = {f"ord-{line['index']}": line for line in sent.sent if line["seq"] == 2}
    # Apache's broker creates a DLQ it first meets on this path read-write (6); tidemq's is write-only either way
    for key, dead in _dead_letters(server, group, list(given_up), write_only=False).items():
        assert dead.topic == f"%DLQ%{group}"
        assert dead.queue_id == 0
        assert dead.msg_id == given_up[key]["msgId"]
        assert dead.properties["RETRY_TOPIC"] == topic
        assert dead.properties["shardKey"] == given_up[key]["shardKey"]
        assert dead.body == f"tidemq message {given_up[key]['index']}".encode()


# ---------------------------------------------------------------------------------------------------------------------
# Concurrent retries, DLQ, delay levels


def test_reconsume_later_comes_back_through_retry_then_dlq(server: Peer) -> None:
    """RECONSUME_LATER once: redelivered ~10 s later (level 3), reconsumeTimes 1, topic and id restored.
    Always RECONSUME_LATER with setMaxReconsumeTimes(2) (retries at level 1): 3 deliveries, then the DLQ."""
    runs: dict[str, dict[str, Any]] = {}
    for version in VERSIONS:
        stem = _stem(version)
        retry_topic, dlq_topic = f"JRetry_{stem}", f"JDlq_{stem}"
        retry_group, dlq_group = f"CG_{retry_topic}", f"CG_{dlq_topic}"
        _create(server, retry_topic, dlq_topic, f"%RETRY%{retry_group}", f"%RETRY%{dlq_group}")
        retry = _consumer(
            server,
            version,
            retry_topic,
            retry_group,
            6,
            extra=["--reconsume-times", "1", "--count-deliveries", "--linger-ms", "1000"],
        )
        dlq = _consumer(
            server,
            version,
            dlq_topic,
            dlq_group,
            9,
            extra=_opts(
                "--reconsume-times 1000 --max-reconsume-times 2 --retry-delay-level 1 --count-deliveries"
                " --linger-ms 3000"
            ),
        )
        runs[version] = {
            "topics": (retry_topic, dlq_topic),
            "dlq_group": dlq_group,
            "retry": retry,
            "dlq": dlq,
            "sent_retry": jd.produce(version, server.namesrv_addr, retry_topic, 3, keys="rt-{i}"),
            "sent_dlq": jd.produce(version, server.namesrv_addr, dlq_topic, 3, keys="dl-{i}"),
        }
    for version, run in runs.items():
        retry_topic, dlq_topic = run["topics"]
        sent_retry, sent_dlq = run["sent_retry"], run["sent_dlq"]
        retried, dead = run["retry"].wait(), run["dlq"].wait()

        deliveries = _deliveries(retried)
        assert set(deliveries) == {line["msgId"] for line in sent_retry.sent}, retried.describe()
        for msg_id, (first, again) in deliveries.items():
            assert (first["reconsumeTimes"], again["reconsumeTimes"]) == (0, 1)
            assert again["msgId"] == msg_id  # UNIQ_KEY kept
            assert first["topic"] == again["topic"] == retry_topic  # the client restores it from RETRY_TOPIC
            assert again["properties"]["RETRY_TOPIC"] == retry_topic
            assert again["properties"]["ORIGIN_MESSAGE_ID"] == first["offsetMsgId"]  # the broker's id of the first
            assert again["body"] == first["body"]
            assert again["keys"] == first["keys"]
            waited = again["recvTimestamp"] - first["recvTimestamp"]
            assert 9_500 <= waited <= 40_000, f"{version}: redelivered {waited} ms after the first delivery"

        deliveries = _deliveries(dead)
        assert set(deliveries) == {line["msgId"] for line in sent_dlq.sent}, dead.describe()
        assert all([m["reconsumeTimes"] for m in d] == [0, 1, 2] for d in deliveries.values()), dead.describe()
        letters = _dead_letters(server, run["dlq_group"], [f"dl-{i}" for i in range(3)])
        for line in sent_dlq.sent:
            letter = letters[f"dl-{line['index']}"]
            assert letter.msg_id == line["msgId"]
            assert letter.reconsume_times == 3
            assert letter.properties["RETRY_TOPIC"] == dlq_topic
            assert letter.properties["ORIGIN_MESSAGE_ID"] == line["offsetMsgId"]
            assert letter.body == f"tidemq message {line['index']}".encode()


def test_delay_levels_are_never_early(server: Peer) -> None:
    """DELAY 1, 2, 3 (1 s, 5 s, 10 s): never delivered before the delay, and within a loose window after it."""
    runs = {}
    for version in VERSIONS:
        topic = f"JDelay_{_stem(version)}"
        _create(server, topic)
        consumer = _consumer(server, version, topic, f"CG_{topic}", 3, extra=["--linger-ms", "1000"])
        sent = jd.produce(version, server.namesrv_addr, topic, 3, keys="delay-{i}", extra=["--delay-level", "1,2,3"])
        runs[version] = (topic, consumer, sent)
    for version, (topic, consumer, sent) in runs.items():
        got = consumer.wait()
        assert Counter(m["msgId"] for m in got.received) == Counter(line["msgId"] for line in sent.sent), got.describe()
        for message in got.received:
            level = int(message["keys"].removeprefix("delay-")) + 1
            delay = DELAY_MS[level]
            assert message["topic"] == topic
            assert message["reconsumeTimes"] == 0
            assert message["delayTimeLevel"] == level  # DELAY stays in the delivered record, as Apache stores it
            assert message["recvTimestamp"] - message["bornTimestamp"] >= delay, (version, level, message)
            lateness = message["storeTimestamp"] - message["bornTimestamp"] - delay
            assert 0 <= lateness <= 10_000, f"{version}: level {level} delivered {lateness} ms late"


# ---------------------------------------------------------------------------------------------------------------------
# Transactions and SQL92


def test_transactional_producer_commit_rollback_and_check_back(server: Peer) -> None:
    """TransactionMQProducer, 8 messages cycling through the four modes: commit and unknown->check->commit are
    consumed, rollback and unknown->check->rollback never; the check-backs name the real topic and the half."""
    runs = {}
    for version in VERSIONS:
        topic = f"JTx_{_stem(version)}"
        _create(server, topic)
        runs[version] = (
            topic,
            _start(
                version,
                "produce",
                [
                    *_opts(f"--namesrv {server.namesrv_addr} --topic {topic} --group PG_{topic} --count 8"),
                    *_opts(f"--keys tx-{{i}} --transaction {','.join(TX_MODES)} --check-linger-ms 1500"),
                ],
                timeout_s=60,
            ),
        )
    consumers = {}
    produced = {}
    for version, (topic, producer) in runs.items():
        produced[version] = producer.wait()
        committed = sum(1 for line in produced[version].sent if line["txMode"].endswith("commit"))
        consumers[version] = _consumer(server, version, topic, f"CG_{topic}", committed, extra=["--linger-ms", "2500"])
    for version, (topic, _) in runs.items():
        result = produced[version]
        states = {line["txMode"]: line["localTransactionState"] for line in result.sent}
        assert states == {
            "commit": "COMMIT_MESSAGE",
            "rollback": "ROLLBACK_MESSAGE",
            "unknown-then-commit": "UNKNOW",
            "unknown-then-rollback": "UNKNOW",
        }, result.describe()
        by_tx = {line["transactionId"]: line for line in result.sent}
        assert all(tx == line["msgId"] for tx, line in by_tx.items())
        checks = result.of_type("check")
        unknown = {tx for tx, line in by_tx.items() if line["txMode"].startswith("unknown")}
        assert {check["transactionId"] for check in checks} == unknown, result.describe()
        for check in checks:
            line = by_tx[check["transactionId"]]
            assert check["topic"] == topic  # Java's broker shows the half in its real topic
            assert check["body"] == f"tidemq message {line['index']}"
            assert check["keys"] == f"tx-{line['index']}"
            assert check["txMode"] == line["txMode"]
            assert check["answer"] == ("COMMIT_MESSAGE" if line["txMode"].endswith("commit") else "ROLLBACK_MESSAGE")
            assert int(check["checkTimes"]) >= 1
        assert len(checks) <= 3 * len(unknown), "checked again and again though answered"

        got = consumers[version].wait()
        visible = {tx for tx, line in by_tx.items() if line["txMode"].endswith("commit")}
        if server.kind == "apache":
            # Apache 5.x writes op records in batches (transactionOpBatchInterval, 3 s): with checks every second a
            # half is checked again before its op lands, and both answers commit. At least once, then.
            assert {m["msgId"] for m in got.received} == visible, got.describe()
        else:
            assert Counter(m["msgId"] for m in got.received) == Counter(visible), got.describe()
        for message in got.received:
            line = by_tx[message["msgId"]]
            assert message["topic"] == topic
            assert message["queueId"] == line["queueId"]
            assert message["body"] == f"tidemq message {line['index']}"
            assert message["sysFlag"] & 0b1100 == 0b1000  # TRANSACTION_COMMIT_TYPE
            # As Apache's broker commits it: REAL_TOPIC / REAL_QID gone, TRAN_MSG and the check count kept
            assert {"REAL_TOPIC", "REAL_QID"}.isdisjoint(message["properties"])
            assert message["properties"]["TRAN_MSG"] == "true"
            assert message["properties"]["PGROUP"] == f"PG_{topic}"
            if line["txMode"].startswith("unknown"):
                assert int(message["properties"]["TRANSACTION_CHECK_TIMES"]) >= 1


@pytest.mark.parametrize("version", VERSIONS)
def test_sql92_selector_filters_at_the_broker(server: Peer, version: str) -> None:
    """MessageSelector.bySql: only matching messages arrive; a malformed expression fails consumer.start()."""
    topic = f"JSql_{_stem(version)}"
    _create(server, topic)
    sent = jd.produce(
        version, server.namesrv_addr, topic, 10, tag="Tag{i}", props={"a": "{i}", "color": "深蓝"}, group=f"PG_{topic}"
    )
    sql = "(a BETWEEN 2 AND 4 OR a = 8) AND TAGS <> 'Tag3' AND color = '深蓝'"
    bad = _start(
        version,
        "push-consume",
        [*_opts(f"--namesrv {server.namesrv_addr} --topic {topic} --group CGbad_{topic} --expect 1"), "--sql", "a >"],
        timeout_s=30,
    )
    good = _consumer(server, version, topic, f"CG_{topic}", 3, sql=sql, extra=["--linger-ms", "1500"])
    got, refused = good.wait(), bad.wait(check=False)
    wanted = {line["msgId"] for line in sent.sent if line["index"] in (2, 4, 8)}
    assert Counter(m["msgId"] for m in got.received) == Counter(wanted), got.describe()
    assert refused.returncode == 1, refused.describe()
    [error] = refused.errors
    assert "CODE: 23" in error["error"], error  # SUBSCRIPTION_PARSE_FAILED
    assert not refused.received


# ---------------------------------------------------------------------------------------------------------------------
# tidemq's Python client <-> the Java clients


def _python_messages() -> list[dict[str, Any]]:
    return [
        {"body": TEXT.replace("{i}", "0"), "tags": "TagA", "keys": ["鍵-0", "k0"], "properties": {"color": "深蓝"}},
        {"body": TEXT.replace("{i}", "1"), "tags": "TagB", "keys": "k1", "properties": {"n": "1", "note": "välue"}},
        {"body": BIG + " #2", "tags": "TagA", "keys": ["big-2"], "properties": {"size": "big"}},
        {"body": "plain ascii #3", "tags": None, "keys": None, "properties": None},
    ]


def test_python_producer_to_java_consumers(server: Peer) -> None:
    """Sent by tidemq.client.Producer (tags, keys, properties, non-ASCII and compressed bodies), received intact
    by DefaultMQPushConsumer 5.5.0 and 4.9.8."""
    topic = f"PyToJava_{uuid.uuid4().hex[:6]}"
    _create(server, topic)
    plan = _python_messages()
    with sync.Producer(f"PG_{topic}", server.namesrv_addr) as producer:
        results = [producer.send(topic, **m) for m in plan]
    consumers = {
        version: _consumer(server, version, topic, f"CG_{topic}_{version}", len(plan), extra=["--linger-ms", "1000"])
        for version in VERSIONS
    }
    for version, consumer in consumers.items():
        got = consumer.wait()
        by_id = {m["msgId"]: m for m in got.received}
        assert len(got.received) == len(plan) == len(by_id), got.describe()
        for spec, result in zip(plan, results, strict=True):
            message = by_id[result.msg_id]
            assert base64.b64decode(message["bodyB64"]) == spec["body"].encode(), version
            assert message["tags"] == spec["tags"]
            keys = spec["keys"]
            assert message["keys"] == (" ".join(keys) if isinstance(keys, list) else keys)
            for name, value in (spec["properties"] or {}).items():
                assert message["properties"][name] == value
            assert (message["queueId"], message["queueOffset"]) == (result.queue_id, result.queue_offset)
            assert message["offsetMsgId"] == result.offset_msg_id
            assert message["topic"] == topic
            assert message["reconsumeTimes"] == 0
    with sync.Admin(server.namesrv_addr) as admin:  # the Java clients clear the flag when they inflate
        assert admin.query_message_by_id(results[2].offset_msg_id).sys_flag & 1, "the big body was stored compressed"


def test_java_producers_to_python_push_consumer(server: Peer) -> None:
    """Sent by DefaultMQProducer 5.5.0 and 4.9.8 (non-ASCII, compressed), received intact by tidemq's PushConsumer."""
    stem = uuid.uuid4().hex[:6]
    topics = {version: f"JavaToPy_{jd.resolve_version(version).replace('.', '_')}_{stem}" for version in VERSIONS}
    _create(server, *topics.values())
    plans = [
        ["--count", "4", "--body", TEXT, "--tag", "TagA", "--keys", "鍵-{i} k{i}", "--prop", "color=深蓝-{i}"],
        ["--count", "2", "--body", BIG + " big{i}", "--tag", "TagB"],
    ]
    sent = []
    for plan in plans:  # both versions at once, two JVMs at a time
        runs = [
            _start(
                version,
                "produce",
                ["--namesrv", server.namesrv_addr, "--topic", topic, "--group", f"PG_{topic}", *plan],
            )
            for version, topic in topics.items()
        ]
        sent += [line for run in runs for line in run.wait().sent]
    received: dict[str, ReceivedMessage] = {}

    def on_message(message: ReceivedMessage) -> None:
        received.setdefault(message.msg_id, message)

    consumer = sync.PushConsumer(
        f"CG_JavaToPy_{stem}", server.namesrv_addr, consume_from_where=ConsumeFromWhere.FIRST_OFFSET
    )
    for topic in topics.values():
        consumer.subscribe(topic, "*", on_message)
    with consumer:
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert set(received) == {line["msgId"] for line in sent}
    for line in sent:
        message = received[line["msgId"]]
        assert message.topic == line["topic"]
        assert (message.queue_id, message.queue_offset) == (line["queueId"], line["queueOffset"])
        assert message.offset_msg_id == line["offsetMsgId"]
        i = line["index"]
        if message.tags == "TagA":
            assert message.body == TEXT.replace("{i}", str(i)).encode()
            assert message.keys == [f"鍵-{i}", f"k{i}"]
            assert message.properties["color"] == f"深蓝-{i}"
        else:
            assert message.tags == "TagB"
            assert message.body == f"{BIG} big{i}".encode()
            assert message.sys_flag & 1, "compressed by the Java producer, inflated by ours"
