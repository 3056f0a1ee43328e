"""mqadmin (rocketmq-tools 4.9.8 and 5.5.0) commands that go through the broker to a live consumer, against tidemq:
``consumerStatus`` (GET_CONSUMER_RUNNING_INFO), ``queryMsgById -g -d`` (CONSUME_MESSAGE_DIRECTLY),
``consumerProgress -s true`` (running info for the client column) and ``resetOffsetByTime``
(INVOKE_BROKER_TO_RESET_OFFSET, then RESET_CONSUMER_CLIENT_OFFSET to the consumers).

The consumers: a Java 4.9.8 and a Java 5.5.0 push consumer (the driver in ``tests/interop/java``) and our Python
PushConsumer, each in its own group. The expected output is what the same commands printed against Apache
RocketMQ 5.5.0 with the same consumers (run by hand with ``bench/peers/apache_rocketmq.py``): the same tables and
result lines. Apache 5.5.0 resets on the broker side (the next pull answers OFFSET_MOVED) where tidemq sends the
consumers RESET_CONSUMER_CLIENT_OFFSET as Apache 4.x does; either way the Java consumer waits 10 s before it
pulls again (``MQClientInstance.resetOffset``), and a short rebalance interval keeps the wait after that small.

One ``tidemq dev`` serves the module; two messages are stored before a timestamp and two after, one of each per
queue, so every reset moves each queue back by one.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` as a package, whatever pytest's rootdir/import mode
    sys.path.insert(0, str(_ROOT))

from tests.interop import java_driver as jd  # noqa: E402
from tests.server_process import ServerProcess, committed_offset, start_server, wait_until  # noqa: E402

from tidemq.client import (  # noqa: E402
    Admin,
    ConsumeFromWhere,
    ConsumerTimings,
    Producer,
    PushConsumer,
    ReceivedMessage,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(180)]

BROKER = "broker-a"
PARALLEL = 3  # mqadmin JVMs at a time (2 cores)
JAVA_JVM_ARGS = (*jd.DEFAULT_JVM_ARGS, "-Drocketmq.client.rebalance.waitInterval=2000")
"""The Java consumers rebalance every 2 s instead of 20 s: after an offset reset they take their queues back
(and pull from the new offsets) that much sooner."""


class PythonConsumer:
    """Our PushConsumer on its own event loop in a thread: mqadmin runs block the test's thread."""

    def __init__(self, namesrv: str, topic: str, group: str) -> None:
        self.received: list[tuple[int, int, bytes]] = []
        """(queue id, queue offset, body) of every delivery, direct consumption included."""
        self.client_id = ""
        self._namesrv, self._topic, self._group = namesrv, topic, group
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Python consumer did not start")

    async def _main(self) -> None:
        consumer = PushConsumer(
            self._group,
            self._namesrv,
            consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
            timings=ConsumerTimings(pull_suspend_s=2.0, persist_interval_s=1.0, shutdown_timeout_s=5),
        )

        async def listener(message: ReceivedMessage) -> None:
            self.received.append((message.queue_id, message.queue_offset, message.body))

        consumer.subscribe(self._topic, "*", listener)
        await consumer.start()
        self.client_id = consumer.client_id
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await consumer.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)


@dataclass
class Member:
    """A consumer group with its one live consumer."""

    name: str
    group: str
    client_id: str
    version_desc: str
    java: jd.DriverProcess | None = None
    python: PythonConsumer | None = None

    def deliveries(self, topic: str) -> list[tuple[int, int]]:
        """(queue id, queue offset) of every delivery of ``topic`` so far."""
        if self.python is not None:
            return [(q, o) for q, o, _ in self.python.received]
        assert self.java is not None
        lines = self.java.lines_so_far()
        return [(x["queueId"], x["queueOffset"]) for x in lines if x.get("type") == "received" and x["topic"] == topic]


@dataclass
class World:
    server: ServerProcess
    topic: str
    boundary_ms: int
    offset_msg_ids: list[str]
    members: list[Member]


async def _store_messages(namesrv: str, topic: str) -> tuple[int, list[str]]:
    """Two messages, a timestamp, two more; one of each pair per queue. Returns the timestamp and the ids."""
    async with Admin(namesrv) as admin:
        await admin.create_topic(topic, 2)
    ids = []
    async with Producer(f"PG_{topic}", namesrv) as producer:
        for i in range(2):
            ids.append((await producer.send(topic, f"old-{i}", queue_id=i)).offset_msg_id)
        await asyncio.sleep(0.05)
        boundary_ms = time.time_ns() // 1_000_000
        await asyncio.sleep(0.05)
        for i in range(2):
            ids.append((await producer.send(topic, f"new-{i}", queue_id=i)).offset_msg_id)
    return boundary_ms, ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for version in ("4", "5"):
        jd.ensure_built(version)
    server = start_server(tmp_path_factory.mktemp("tidemq-b2c") / "data")
    topic = "B2CTopic"
    members: list[Member] = []
    try:
        boundary_ms, ids = asyncio.run(_store_messages(server.namesrv_addr, topic))
        for version, name in (("4", "java4"), ("5", "java5")):
            group = f"CG_{name}"
            args = ["--namesrv", server.namesrv_addr, "--topic", topic, "--group", group, "--expect", "4"]
            args += ["--model", "CLUSTERING", "--from", "first", "--instance", name, "--linger-ms", "600000"]
            java = jd.start_driver(version, "push-consume", args, timeout_s=170, jvm_args=JAVA_JVM_ARGS)
            desc = "V" + jd.resolve_version(version).replace(".", "_")
            members.append(Member(name, group, f"127.0.0.1@{name}", desc, java=java))
        python = PythonConsumer(server.namesrv_addr, topic, "CG_python")
        members.append(Member("python", "CG_python", python.client_id, "V4_9_3", python=python))
        for member in members:
            for queue_id in (0, 1):
                wait_until(
                    functools.partial(_has_committed, server, member.group, topic, queue_id, 2),
                    60,
                    f"{member.group} consumes and commits queue {queue_id}",
                )
        yield World(server, topic, boundary_ms, ids, members)
    finally:
        for member in members:
            if member.java is not None:
                member.java.kill()
            if member.python is not None:
                member.python.close()
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"


def _has_committed(server: ServerProcess, group: str, topic: str, queue_id: int, offset: int) -> bool:
    return committed_offset(server.broker_addr, group, topic, queue_id) == offset


def _has_deliveries(member: Member, topic: str, count: int) -> bool:
    return len(member.deliveries(topic)) >= count


def _mqadmin(world: World, runs: Sequence[tuple[str, list[str]]]) -> list[str]:
    """stdout of each mqadmin run (version, args), a few at a time; none may fail or print a stack trace."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(jd.run_mqadmin, v, world.server.namesrv_addr, args) for v, args in runs]
        results = [f.result() for f in futures]
    for (version, args), result in zip(runs, results, strict=True):
        text = result.stdout + result.stderr
        assert re.search(r"^\s+at [\w.$]+\(", text, re.MULTILINE) is None, (version, args, text)
        assert re.search(r"\w+Exception(:|$)", text, re.MULTILINE) is None, (version, args, text)
    return [r.stdout for r in results]


def _rows(stdout: str, first: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [first]]


def test_consumer_status_lists_each_client_and_its_running_info(world: World) -> None:
    runs: list[tuple[str, list[str]]] = []
    for index, member in enumerate(world.members):  # each tool version once per member, both once per command
        summary_version, detail_version = ("4", "5") if index % 2 == 0 else ("5", "4")
        runs.append((summary_version, ["consumerStatus", "-g", member.group]))
        runs.append((detail_version, ["consumerStatus", "-g", member.group, "-i", member.client_id]))
    outputs = iter(_mqadmin(world, runs))
    for member in world.members:
        summary = next(outputs)
        assert _rows(summary, "1")[0][1:3] == [member.client_id, member.version_desc], summary
        assert "Same subscription in the same group of consumer" in summary
        assert "Rebalance OK" in summary
        detail = next(outputs)
        properties = dict(re.findall(r"^(PROP_\w+)\s+: (.*)$", detail, re.MULTILINE))
        assert properties["PROP_CONSUME_TYPE"] == "CONSUME_PASSIVELY", detail
        assert properties["PROP_CONSUMEORDERLY"] == "false"
        assert properties["PROP_CLIENT_VERSION"] == member.version_desc
        assert properties["PROP_NAMESERVER_ADDR"].rstrip(";") == world.server.namesrv_addr
        subscribed = {row[2] for row in _rows(detail, "001") + _rows(detail, "002")}
        assert subscribed == {world.topic, f"%RETRY%{member.group}"}
        offsets = {(row[1], int(row[2])): int(row[3]) for row in _rows(detail, world.topic)[:2]}
        assert offsets == {(BROKER, 0): 2, (BROKER, 1): 2}, detail
        assert "#Consumer MQ Detail#" in detail
        assert "ProcessQueueInfo [commitOffset=2" in detail


def test_consumer_progress_shows_the_client_of_each_queue(world: World) -> None:
    java4 = world.members[0]
    (out,) = _mqadmin(world, [("4", ["consumerProgress", "-g", java4.group, "-s", "true"])])
    rows = {int(row[2]): row for row in _rows(out, world.topic)}
    assert sorted(rows) == [0, 1], out
    for row in rows.values():
        assert row[3:6] == ["2", "2", "127.0.0.1"], out  # broker offset, consumer offset, client IP


def test_query_msg_by_id_consumes_it_directly(world: World) -> None:
    msg_id = world.offset_msg_ids[2]  # new-0, queue 0 offset 1
    python = world.members[2].python
    assert python is not None
    before = len(python.received)
    runs = []
    for version, member in zip(("4", "5", "4"), world.members, strict=True):
        args = ["queryMsgById", "-i", msg_id, "-g", member.group, "-d", member.client_id]
        runs.append((version, [*args, "-t", world.topic] if version == "5" else args))  # 5.x requires -t
    for out in _mqadmin(world, runs):
        assert "ConsumeMessageDirectlyResult [order=false, autoCommit=true, consumeResult=CR_SUCCESS" in out, out
    assert python.received[before:] == [(0, 1, b"new-0")]


def test_reset_offset_by_time_moves_live_consumers_back(world: World) -> None:
    seen = {m.name: len(m.deliveries(world.topic)) for m in world.members}
    runs = [
        (version, ["resetOffsetByTime", "-g", m.group, "-t", world.topic, "-s", str(world.boundary_ms)])
        for version, m in zip(("4", "5", "5"), world.members, strict=True)
    ]
    for out in _mqadmin(world, runs):
        table = {int(row[1]): int(row[2]) for row in _rows(out, BROKER)}
        assert table == {0: 1, 1: 1}, out
        assert "#brokerName" in out
    deadline = time.monotonic() + 40
    for member in world.members:
        wait_until(
            functools.partial(_has_deliveries, member, world.topic, seen[member.name] + 2),
            max(1.0, deadline - time.monotonic()),
            f"{member.name} consumes the messages after the timestamp again",
        )
    time.sleep(0.5)  # and nothing else
    for member in world.members:
        again = member.deliveries(world.topic)[seen[member.name] :]
        assert sorted(again) == [(0, 1), (1, 1)], (member.name, again)
        for queue_id in (0, 1):
            wait_until(
                functools.partial(_has_committed, world.server, member.group, world.topic, queue_id, 2),
                10,
                f"{member.group} commits queue {queue_id} again",
            )
