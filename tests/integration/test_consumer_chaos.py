"""Chaos for a consumer group of tidemq's PushConsumer: 100,000 messages flow while a member is killed with SIGKILL
and another joins.

Three consumers (separate processes, ``tests/chaos_consumer.py``) start in one group on an 8-queue topic; a producer
sends 100,000 messages over 64 sharding keys (key k always on queue k % 8, ``seq`` counting up per key) at a paced
rate. At 30 % of the flow one consumer is SIGKILLed (no offset commit, no unlock, no unregister), at 60 % a fourth
joins. Each consumer logs every delivery (wall-clock time, queue, offset, key, seq) before acknowledging it.

Invariants, on the merged logs:

* at least once: every (queue, offset) sent is in some log;
* nothing made up: every logged (queue, offset) carries the key and seq that were sent there;
* order per sharding key (orderly group): take the key's deliveries in time order. A delivery *continues a run* when
  it comes from the same consumer as the key's previous delivery and carries the next seq; otherwise it *starts a
  run*, which must begin at a seq already delivered or the very next one (a new owner resumes from the committed
  offset, so it may repeat a suffix of what the dead or former owner did, but never skips or overtakes). Hence the
  first deliveries of each key come in seq order. A key may change hands only when its queue does: at most 4 runs
  (first owner, the take-over from the killed member, the move to the new member, one spare for a rebalance).

The orderly run is long by design, not by tidemq: the killed member's queue locks are held on the broker until they
expire, 60 s after their last renewal (RocketMQ's rebalanceLockMaxLiveTime), and only then can the survivors take
those queues over. The concurrent group takes them over as soon as the broker drops the dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest

from tests.server_process import ServerProcess, consumer_ids, start_server, wait_until
from tidemq.client import Admin, Message, Producer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCRIPT = Path(__file__).resolve().parents[1] / "chaos_consumer.py"
TOTAL = 100_000
KEYS = 64
QUEUES = 8
BATCH = 64
RATE = 8_000  # messages/s: about 12 s of flow
MAX_RUNS_PER_KEY = 4


@dataclass
class Member:
    name: str
    process: subprocess.Popen[str]
    log: Path
    stderr: TextIO
    client_id: str = ""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path / "data")
    try:
        yield server
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"


def _start_member(server: ServerProcess, topic: str, group: str, name: str, tmp: Path, *, orderly: bool) -> Member:
    log = tmp / f"{name}.log"
    command = [sys.executable, str(SCRIPT), "--namesrv", server.namesrv_addr, "--topic", topic, "--group", group]
    command += ["--out", str(log), *(["--orderly"] if orderly else [])]
    stderr = (tmp / f"{name}.stderr").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, stdin=subprocess.DEVNULL)
    member = Member(name, process, log, stderr)
    assert process.stdout is not None
    line = process.stdout.readline()  # "started <client id>", or "" if it died
    assert line.startswith("started "), f"{name} did not start; see {tmp / f'{name}.stderr'}"
    member.client_id = line.split()[1]
    return member


def _stop(member: Member) -> None:
    if member.process.poll() is None:
        member.process.send_signal(signal.SIGTERM)
        try:
            member.process.wait(30)
        except subprocess.TimeoutExpired:
            member.process.kill()
            member.process.wait(10)
    if member.process.stdout is not None:
        member.process.stdout.close()
    member.stderr.close()


class Flow:
    """Sends TOTAL messages from a thread: per queue, batches in seq order (one in flight per queue), paced."""

    def __init__(self, namesrv: str, topic: str) -> None:
        self.namesrv, self.topic = namesrv, topic
        self.sent = 0
        self.placed: dict[tuple[int, int], tuple[int, int]] = {}
        """(queue, offset) -> (key, seq), from the send results."""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def progress(self) -> float:
        """The share of TOTAL sent so far; raises what stopped the producer, if anything did."""
        if self.error is not None:
            raise self.error
        return self.sent / TOTAL

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # reported by join()
            self.error = exc

    async def _produce(self) -> None:
        started = time.monotonic()
        async with Producer("PG_chaos", self.namesrv) as producer:

            async def one_queue(queue_id: int) -> None:
                indexes = range(queue_id, TOTAL, QUEUES)  # message i: key i % KEYS, seq i // KEYS, queue key % 8
                for start in range(0, len(indexes), BATCH):
                    chunk = indexes[start : start + BATCH]
                    ahead = self.sent / RATE - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    batch = [Message(f"{i % KEYS} {i // KEYS}".encode()) for i in chunk]
                    result = await producer.send_batch(self.topic, batch, queue_id=queue_id)
                    for n, i in enumerate(chunk):
                        self.placed[(queue_id, result.queue_offset + n)] = (i % KEYS, i // KEYS)
                    self.sent += len(chunk)

            await asyncio.gather(*(one_queue(q) for q in range(QUEUES)))


@dataclass(frozen=True, slots=True)
class Delivery:
    time_ns: int
    member: str
    queue: int
    offset: int
    key: int
    seq: int


def _read_logs(members: list[Member]) -> list[Delivery]:
    found = []
    for member in members:
        with contextlib.suppress(FileNotFoundError):
            for line in member.log.read_text().splitlines():
                parts = line.split()
                if len(parts) == 5:  # a SIGKILL cannot cut a line (one write each), but be safe
                    t, q, o, k, s = map(int, parts)
                    found.append(Delivery(t, member.name, q, o, k, s))
    return found


def _covered(members: list[Member]) -> set[tuple[int, int]]:
    return {(d.queue, d.offset) for d in _read_logs(members)}


def _runs_per_key(deliveries: list[Delivery]) -> dict[int, int]:
    """Check the per-key order invariant (module docstring); returns the number of runs of each key."""
    by_key: dict[int, list[Delivery]] = defaultdict(list)
    for d in sorted(deliveries, key=lambda d: d.time_ns):
        by_key[d.key].append(d)
    runs: dict[int, int] = {}
    for key, events in by_key.items():
        high, owner, last, count = -1, "", -2, 0
        for d in events:
            if d.member == owner and d.seq == last + 1:
                pass  # the run goes on
            else:
                assert d.seq <= high + 1, f"key {key}: {d.member} delivered seq {d.seq} before seq {high + 1}"
                owner, count = d.member, count + 1
            last, high = d.seq, max(high, d.seq)
        runs[key] = count
    return runs


@pytest.mark.parametrize("orderly", [True, False], ids=["orderly", "concurrent"])
def test_kill_and_add_members_while_messages_flow(server: ServerProcess, tmp_path: Path, orderly: bool) -> None:
    topic, group = f"Chaos_{'orderly' if orderly else 'concurrent'}", "CG_chaos"

    async def create() -> None:
        async with Admin(server.namesrv_addr) as admin:
            await admin.create_topic(topic, QUEUES)

    asyncio.run(create())
    members = [_start_member(server, topic, group, f"c{n}", tmp_path, orderly=orderly) for n in (1, 2, 3)]
    try:
        wait_until(lambda: len(consumer_ids(server.broker_addr, group)) == 3, 30, "three members in the group")
        flow = Flow(server.namesrv_addr, topic)
        t0 = time.monotonic()
        flow.start()
        victim = members[1]
        wait_until(lambda: flow.progress() >= 0.3 and victim.log.exists() and victim.log.stat().st_size, 60, "30 %")
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        killed_at = time.monotonic() - t0
        wait_until(lambda: flow.progress() >= 0.6, 60, "60 % of the flow")
        members.append(_start_member(server, topic, group, "c4", tmp_path, orderly=orderly))
        added_at = time.monotonic() - t0
        flow.join(60)
        sent_in = time.monotonic() - t0
        wanted = set(flow.placed)
        assert len(wanted) == TOTAL
        wait_until(lambda: wanted <= _covered(members), 120, "every message consumed at least once", interval_s=1.0)
        drained_in = time.monotonic() - t0
    finally:
        for member in members:
            _stop(member)
    deliveries = _read_logs(members)
    print(
        f"\nchaos ({'orderly' if orderly else 'concurrent'}): killed c2 at {killed_at:.1f}s, added c4 at "
        f"{added_at:.1f}s, sent in {sent_in:.1f}s, all consumed at {drained_in:.1f}s; {len(deliveries)} deliveries "
        f"for {TOTAL} messages; per member: "
        + ", ".join(f"{m.name} {sum(d.member == m.name for d in deliveries)}" for m in members)
    )
    for d in deliveries:
        assert flow.placed[(d.queue, d.offset)] == (d.key, d.seq), d
    assert {(d.queue, d.offset) for d in deliveries} == wanted
    assert all(sum(d.member == m.name for d in deliveries) for m in members), "every member consumed something"
    if orderly:
        runs = _runs_per_key(deliveries)
        assert len(runs) == KEYS
        assert max(runs.values()) <= MAX_RUNS_PER_KEY, sorted(runs.items(), key=lambda kv: -kv[1])[:5]
