"""Apache's admin tool (mqadmin, rocketmq-tools 4.9.8 and 5.5.0), unchanged, against tidemq.

Every command runs with both tool versions; the expected output is what the same command prints against an Apache
RocketMQ 5.5.0 broker (captured with ``bench/peers/apache_rocketmq.py``): the same columns, and values that follow
from what the module's producer and consumer did. mqadmin exits 0 even when a command fails, so ``run_mqadmin``
looks for "command failed" in the output, and the tests also refuse any stack trace.

One ``tidemq dev`` serves the module. A producer stores MESSAGES messages with keys on one topic and a 4.9.8 push
consumer (clustering) consumes them all and stays online for the whole module, so consumerProgress, the message
track of queryMsgById, consumerConnection and producerConnection all have a live client to show. mqadmin runs are
independent JVMs: they run a few at a time.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` as a package, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

from tests.interop import java_driver as jd  # noqa: E402
from tests.server_process import (  # noqa: E402
    ServerProcess,
    committed_offset,
    consumer_ids,
    remoting_call,
    start_server,
    wait_until,
)

from tidemq.protocol.remoting import RequestCode, ResponseCode, loads_lenient  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

VERSIONS = ("4", "5")
CLUSTER, BROKER = "DefaultCluster", "broker-a"
MESSAGES = 8
KEY = "adm-key-{i}"
PARALLEL = 3  # mqadmin JVMs at a time (2 cores: start-up is CPU-bound)
TIMINGS: dict[str, float] = {}


@dataclass
class World:
    server: ServerProcess
    topic: str
    group: str
    sent: list[dict[str, Any]]
    consumer: jd.DriverProcess

    @property
    def namesrv(self) -> str:
        return self.server.namesrv_addr

    @property
    def broker(self) -> str:
        return self.server.broker_addr

    def per_queue(self) -> dict[int, int]:
        """queue id -> messages stored there (= max offset, the topic being fresh)."""
        counts: dict[int, int] = {}
        for line in self.sent:
            counts[line["queueId"]] = counts.get(line["queueId"], 0) + 1
        return counts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for version in VERSIONS:
        jd.ensure_built(version)
    server = start_server(tmp_path_factory.mktemp("tidemq-mqadmin") / "data")
    stem = uuid.uuid4().hex[:6]
    topic, group = f"AdminTopic_{stem}", f"AdminGroup_{stem}"
    consumer: jd.DriverProcess | None = None
    try:
        t0 = time.monotonic()
        produced = jd.produce("5", server.namesrv_addr, topic, MESSAGES, tag="TagA", keys=KEY, group=f"PG_{stem}")
        assert produced.summary["sent"] == MESSAGES, produced.describe()
        # Consumes everything, then lingers (online) until killed at the end of the module.
        consumer = jd.start_push_consume(
            "4", server.namesrv_addr, topic, group, MESSAGES, expr="TagA || TagB", extra=["--linger-ms", "600000"]
        )
        world = World(server, topic, group, produced.sent, consumer)
        for queue_id, count in world.per_queue().items():  # committed: by the pulls' commitOffset or every 5 s
            wait_until(
                lambda q=queue_id, c=count: committed_offset(server.broker_addr, group, topic, q) == c,
                60,
                f"{group} commits offset {count} on queue {queue_id}",
            )
        assert consumer_ids(server.broker_addr, group)
        TIMINGS["setup_s"] = round(time.monotonic() - t0, 2)
        yield world
    finally:
        if consumer is not None:
            consumer.kill()
        print("\nmqadmin timings (s):", json.dumps(TIMINGS, sort_keys=True))
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"


def _mqadmin(world: World, runs: Sequence[tuple[str, list[str]]], *, check: bool = True) -> list[jd.MQAdminResult]:
    """Run mqadmin commands (version, args) a few at a time; results in order. No run may print a stack trace."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(jd.run_mqadmin, v, world.namesrv, args, check=check) for v, args in runs]
        results = [f.result() for f in futures]
    for (version, args), result in zip(runs, results, strict=True):
        TIMINGS[f"{jd.resolve_version(version)}_{args[0]}"] = round(result.elapsed_s, 2)
        if check:
            trace = re.search(r"^\s+at [\w.$]+\(", result.stdout + result.stderr, re.MULTILINE)
            assert trace is None, f"mqadmin {' '.join(args)} ({version}) printed a stack trace:\n{result.stdout}"
            assert "Exception" not in result.stdout + result.stderr, (version, args, result.stdout, result.stderr)
    TIMINGS.setdefault("total_mqadmin_wall_s", 0.0)
    TIMINGS["total_mqadmin_wall_s"] = round(TIMINGS["total_mqadmin_wall_s"] + time.monotonic() - t0, 2)
    return results


def _rows(stdout: str, first: str) -> list[list[str]]:
    """Whitespace-split output lines that start with ``first``."""
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [first]]


def _fields(stdout: str) -> dict[str, str]:
    """``Name:   value`` lines, names with spaces (queryMsgById: "Queue ID:", "Store Host:")."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^([A-Z][A-Za-z ]*?):\s+(.*?)\s*$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _kv(stdout: str) -> dict[str, str]:
    """``key : value`` lines (brokerStatus) or ``key = value`` lines (getBrokerConfig, getConsumerConfig)."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\S+)\s*[:=]\s+(.*?)\s*$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


# ---------------------------------------------------------------------------------------------------------------------
# The commands of the brief


def test_cluster_list(world: World) -> None:
    """clusterList: one row per broker, with the version and rates from GET_BROKER_RUNTIME_INFO (4.9's tool
    throws a NullPointerException against a 5.x Apache broker, which no longer reports getTransferedTps)."""
    for version, out in zip(VERSIONS, _mqadmin(world, [(v, ["clusterList"]) for v in VERSIONS]), strict=True):
        rows = _rows(out.stdout, CLUSTER)
        assert len(rows) == 1, (version, out.stdout)
        row = rows[0]
        assert row[1:5] == [BROKER, "0", world.broker, "V4_9_3"], (version, out.stdout)
        in_tps = float(row[5].split("(")[0])
        assert in_tps >= 0.0
        if version == "5":
            assert row[-1] == "true"  # #ACTIVATED
        assert re.search(r" 0\.\d{4}\s*(true)?$", out.stdout.splitlines()[1]), out.stdout  # #SPACE: disk ratio


def test_update_topic_then_list_route_and_status(world: World) -> None:
    topics = {v: f"Created_{v}_{uuid.uuid4().hex[:6]}" for v in VERSIONS}
    created = _mqadmin(
        world, [(v, ["updateTopic", "-t", topics[v], "-c", CLUSTER, "-r", "3", "-w", "5"]) for v in VERSIONS]
    )
    for version, out in zip(VERSIONS, created, strict=True):
        assert f"create topic to {world.broker} success." in out.stdout
        assert f"TopicConfig [topicName={topics[version]}, readQueueNums=3, writeQueueNums=5, perm=RW-" in out.stdout
    runs: list[tuple[str, list[str]]] = []
    for v in VERSIONS:
        runs += [(v, ["topicList"]), (v, ["topicRoute", "-t", topics[v]]), (v, ["topicStatus", "-t", world.topic])]
    results = _mqadmin(world, runs)
    for i, version in enumerate(VERSIONS):
        listed, route, status = results[3 * i : 3 * i + 3]
        names = listed.stdout.split()
        assert set(topics.values()) | {world.topic, f"%RETRY%{world.group}", "TBW102", CLUSTER, BROKER} <= set(names)
        # topicRoute prints TopicRouteData as fastjson writes it: unquoted integer keys in brokerAddrs
        assert re.search(r'"brokerAddrs":\{\s*0:"' + re.escape(world.broker) + '"', route.stdout), route.stdout
        for field, value in (("readQueueNums", 3), ("writeQueueNums", 5), ("perm", 6)):
            assert f'"{field}":{value}' in route.stdout, route.stdout
        per_queue = world.per_queue()
        rows = _rows(status.stdout, BROKER)
        assert [int(r[1]) for r in rows] == [0, 1, 2, 3], status.stdout  # #QID, 4 queues (auto-created)
        for row in rows:
            queue_id, min_offset, max_offset = int(row[1]), int(row[2]), int(row[3])
            assert (min_offset, max_offset) == (0, per_queue.get(queue_id, 0)), status.stdout
            assert (len(row) > 4) == (max_offset > 0)  # "#Last Updated": the last message's store time
        if version == "5":
            assert "Topic Put TPS:" in status.stdout


def test_broker_status(world: World) -> None:
    for version, out in zip(
        VERSIONS, _mqadmin(world, [(v, ["brokerStatus", "-b", world.broker]) for v in VERSIONS]), strict=True
    ):
        table = _kv(out.stdout)
        assert table["brokerVersionDesc"] == "V4_9_3", (version, out.stdout)
        assert int(table["msgPutTotalTodayNow"]) >= MESSAGES
        assert int(table["msgGetTotalTodayNow"]) >= MESSAGES
        assert int(table["commitLogMaxOffset"]) > 0
        for key in ("putTps", "getTransferedTps", "getTransferredTps"):
            assert [float(x) for x in table[key].split()], key  # "10 s, 1 min, 10 min"
        assert table["brokerActive"] == "true"
        assert re.fullmatch(r"\[ 0 days, 0 hours, \d+ minutes, \d+ seconds \]", table["runtime"])
        assert 0.0 <= float(table["commitLogDiskRatio"]) <= 1.0


def test_update_sub_group(world: World) -> None:
    groups = {v: f"SubGroup_{v}_{uuid.uuid4().hex[:6]}" for v in VERSIONS}
    results = _mqadmin(
        world, [(v, ["updateSubGroup", "-g", groups[v], "-c", CLUSTER, "-r", "5", "-q", "2"]) for v in VERSIONS]
    )
    for version, out in zip(VERSIONS, results, strict=True):
        assert f"create subscription group to {world.broker} success." in out.stdout, out.stdout
        reply = remoting_call(world.broker, RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG, {"group": groups[version]})
        assert reply.code == ResponseCode.SUCCESS, reply.remark
        config = loads_lenient(bytes(reply.body))
        assert (config["groupName"], config["retryMaxTimes"], config["retryQueueNums"]) == (groups[version], 5, 2)


def test_consumer_progress(world: World) -> None:
    runs = [(v, ["consumerProgress", "-g", world.group]) for v in VERSIONS] + [
        (v, ["consumerProgress"]) for v in VERSIONS
    ]
    results = _mqadmin(world, runs)
    per_queue = world.per_queue()
    for version, out in zip(VERSIONS, results[:2], strict=True):
        rows = _rows(out.stdout, world.topic)
        assert [int(r[2]) for r in rows] == [0, 1, 2, 3], out.stdout
        for row in rows:
            queue_id, broker_offset, consumer_offset, diff = (int(x) for x in row[2:6])
            assert row[1] == BROKER
            assert broker_offset == consumer_offset == per_queue.get(queue_id, 0), out.stdout
            assert diff == 0
            if version == "5":
                assert int(row[6]) == 0  # #Inflight: the pull position is the committed one
            assert (row[-1] == "N/A") == (broker_offset == 0)  # #LastTime: store time of the last consumed one
        assert re.search(r"^(Consume )?Diff Total: 0$", out.stdout, re.MULTILINE), out.stdout
        assert re.search(r"^Consume TPS: \d+\.\d\d$", out.stdout, re.MULTILINE), out.stdout
    for version, out in zip(VERSIONS, results[2:], strict=True):
        rows = _rows(out.stdout, world.group)
        assert rows == [[world.group, "1", "V4_9_8", "PUSH", "CLUSTERING", rows[0][5], "0"]], (version, out.stdout)


def test_query_msg_by_id_and_by_key(world: World) -> None:
    message = world.sent[3]
    by_id = {"4": ["queryMsgById", "-i", message["offsetMsgId"]]}  # 4.9: the offset id alone
    by_id["5"] = ["queryMsgById", "-t", world.topic, "-i", message["offsetMsgId"]]  # 5.x: wants the topic too
    runs = [(v, by_id[v]) for v in VERSIONS] + [
        (v, ["queryMsgByKey", "-t", world.topic, "-k", KEY.format(i=3)]) for v in VERSIONS
    ]
    results = _mqadmin(world, runs)
    for out in results[:2]:
        fields = _fields(out.stdout)
        assert fields["OffsetID"] == message["offsetMsgId"], out.stdout
        assert fields["Topic"] == world.topic
        assert fields["Tags"] == "[TagA]"
        assert fields["Keys"] == f"[{KEY.format(i=3)}]"
        assert (int(fields["Queue ID"]), int(fields["Queue Offset"])) == (message["queueId"], message["queueOffset"])
        assert fields["Store Host"] == world.broker
        assert f"UNIQ_KEY={message['msgId']}" in fields["Properties"]
        # the message track: QUERY_TOPIC_CONSUME_BY_WHO, GET_CONSUMER_CONNECTION_LIST, GET_CONSUME_STATS
        assert f"MessageTrack [consumerGroup={world.group}, trackType=CONSUMED, exceptionDesc=null]" in out.stdout
    for version, out in zip(VERSIONS, results[2:], strict=True):
        rows = _rows(out.stdout, message["msgId"])
        assert [r[:3] for r in rows] == [[message["msgId"], str(message["queueId"]), str(message["queueOffset"])]], (
            version,
            out.stdout,
        )


# ---------------------------------------------------------------------------------------------------------------------
# The other admin requests the broker answers: deleteTopic, deleteSubGroup, getBrokerConfig, updateBrokerConfig,
# consumerConnection, producerConnection, queryCq, getConsumerConfig. Each runs with one tool version (the other
# sends the same request), except deleteSubGroup, whose offset flag is spelled differently by each.


def test_delete_topic_and_sub_group(world: World) -> None:
    stem = uuid.uuid4().hex[:6]
    topic = f"Doomed_{stem}"
    groups = {v: f"DoomedGroup_{v}_{stem}" for v in VERSIONS}
    created = remoting_call(
        world.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {"topic": topic, "readQueueNums": "2", "writeQueueNums": "2"}
    )
    assert created.code == ResponseCode.SUCCESS
    for group in groups.values():
        reply = remoting_call(
            world.broker,
            RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
            body=json.dumps({"groupName": group}).encode(),
        )
        assert reply.code == ResponseCode.SUCCESS
    jd.produce("4", world.namesrv, topic, 2)  # data in its queues, and the route in the name server
    runs = [("5", ["deleteTopic", "-t", topic, "-c", CLUSTER])]
    runs += [(v, ["deleteSubGroup", "-g", groups[v], "-c", CLUSTER]) for v in VERSIONS]
    results = _mqadmin(world, runs)
    assert f"delete topic [{topic}] from cluster [{CLUSTER}] success." in results[0].stdout
    assert f"delete topic [{topic}] from NameServer success." in results[0].stdout
    for out, group in zip(results[1:], groups.values(), strict=True):
        assert f"delete subscription group [{group}] from broker [{world.broker}] in cluster [{CLUSTER}] success." in (
            out.stdout
        )
        reply = remoting_call(world.broker, RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG, {"group": group})
        assert reply.code == ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST
    reply = remoting_call(world.broker, RequestCode.GET_TOPIC_CONFIG, {"topic": topic})
    assert reply.code == ResponseCode.TOPIC_NOT_EXIST
    route = remoting_call(world.namesrv, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    assert route.code == ResponseCode.TOPIC_NOT_EXIST
    queues = list((world.server.data_dir / "store" / "consumequeue").glob(f"{topic}/*"))
    assert queues == []


def test_broker_config(world: World) -> None:
    results = _mqadmin(
        world,
        [
            ("4", ["getBrokerConfig", "-b", world.broker]),
            ("5", ["updateBrokerConfig", "-b", world.broker, "-k", "shortPollingTimeMills", "-v", "1500"]),
        ],
    )
    config = _kv(results[0].stdout)
    assert (config["brokerName"], config["brokerClusterName"], config["brokerIP1"]) == (BROKER, CLUSTER, "127.0.0.1")
    assert config["listenPort"] == str(world.server.broker_port)
    assert f"update broker config success, {world.broker}" in results[1].stdout
    reply = remoting_call(world.broker, RequestCode.GET_BROKER_CONFIG)
    assert "shortPollingTimeMills=1500\n" in bytes(reply.body).decode()
    assert loads_lenient(reply.ext_fields["version"])["counter"] >= 1
    refused = _mqadmin(
        world, [("4", ["updateBrokerConfig", "-b", world.broker, "-k", "brokerName", "-v", "x"])], check=False
    )
    assert refused[0].failed
    assert (
        "CODE: 16  DESC: tidemq cannot change brokerName while the broker runs" in refused[0].stdout + refused[0].stderr
    )
    restore = remoting_call(world.broker, RequestCode.UPDATE_BROKER_CONFIG, body=b"shortPollingTimeMills=1000\n")
    assert restore.code == ResponseCode.SUCCESS


def test_connections_queue_and_group_config(world: World) -> None:
    queue_id = next(iter(world.per_queue()))
    results = _mqadmin(
        world,
        [
            ("5", ["consumerConnection", "-g", world.group]),
            ("4", ["producerConnection", "-g", "CLIENT_INNER_PRODUCER", "-t", world.topic]),
            (
                "5",
                ["queryCq", "-t", world.topic, "-q", str(queue_id), "-i", "0", "-b", world.broker, "-g", world.group],
            ),
            ("5", ["getConsumerConfig", "-g", world.group]),
        ],
    )
    connection, producers, queue, group_config = results
    rows = _rows(connection.stdout, "127.0.0.1@tidemq-driver-" + str(world.consumer.proc.pid))
    assert [row[2:] for row in rows] == [["JAVA", "V4_9_8"]], connection.stdout
    assert re.search(rf"^{re.escape(world.topic)}\s+TagA \|\| TagB$", connection.stdout, re.MULTILINE)
    assert "MessageModel: CLUSTERING" in connection.stdout
    assert "ConsumeType: CONSUME_PASSIVELY" in connection.stdout
    # the push consumer's internal producer group
    assert re.search(
        r"^0001\s+127\.0\.0\.1@tidemq-driver-\d+\s+127\.0\.0\.1:\d+\s+JAVA\s+V4_9_8$", producers.stdout, re.M
    )
    assert f"max: {world.per_queue()[queue_id]}, min: 0" in queue.stdout
    assert re.search(r"ConsumeQueueData\{physicOffset=\d+, physicSize=\d+, tagsCode=2598919,", queue.stdout)  # TagA
    assert '"subString":"TagA || TagB"' in queue.stdout
    config = _kv(group_config.stdout)
    assert (config["groupName"], config["consumeEnable"], config["retryMaxTimes"]) == (world.group, "true", "16")
