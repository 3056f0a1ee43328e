"""The load generator behind ``tidemq bench produce|consume|e2e``.

* :func:`run_produce` - ``concurrency`` coroutines share one :class:`~tidemq.client.Producer` (so one
  connection per broker) and send ``size``-byte bodies, one by one or in batches, synchronously or oneway, for a
  count or a duration, at full speed or at a fixed ``rate``. At a fixed rate each request has a scheduled start
  time and its latency is measured from that time, so a stalled broker shows up in the percentiles instead of
  silently lowering the rate (no coordinated omission). A oneway "latency" is only the time to hand the frame
  to the connection (it waits while the socket's buffer is full).
* :func:`run_consume` - one coroutine per queue of the topic pulls with long polling, counts records from the
  size words only, and carries its offset in the pull (commit flag); final offsets are committed at the end.
  Its ``seconds`` run from the first pull to the last message received, so waiting out an idle tail does not
  dilute the rate.
* :func:`run_e2e` - a fixed-rate producer whose bodies start with the send time (ns since the epoch) and a
  consumer in the same process; the latency is receive time minus send time, per message.

Every run stops by itself: at ``count`` messages, after ``duration_s`` (10 s when neither is given), or, for
consumers, after ``idle_timeout_s`` without a message. Latencies go into an ``array('d')`` (8 bytes a sample),
sorted once at the end. A progress line (rate over the last second, total, errors) is rewritten on a text
stream about once a second.

State: each run owns its clients and tasks (one TaskGroup); counters are plain attributes on the loop thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
import time
from array import array
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from tidemq.client._message import Message
from tidemq.client._routes import MessageQueue
from tidemq.client.errors import BrokerError, NoRouteError
from tidemq.client.producer import Producer, ProducerConfig
from tidemq.client.pull import PullClient, PullStatus
from tidemq.errors import TidemqError

DEFAULT_DURATION_S: Final = 10.0
LONG_POLL_S: Final = 2.0
"""How long a consumer's pull may be held: short enough to notice the end of a run quickly."""
_TIMESTAMP: Final = struct.Struct(">q")
PERCENTILES: Final = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


# --- statistics -------------------------------------------------------------------------------------------------


class LatencyRecorder:
    """Latency samples in milliseconds, 8 bytes each."""

    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples = array("d")

    def add(self, milliseconds: float) -> None:
        self.samples.append(milliseconds)

    def summary(self) -> dict[str, float] | None:
        """p50/p90/p99/p999/max/mean in ms (nearest rank), or ``None`` without samples."""
        count = len(self.samples)
        if not count:
            return None
        ordered = sorted(self.samples)
        result = {name: round(ordered[min(count - 1, math.ceil(q * count) - 1)], 3) for name, q in PERCENTILES}
        result["max"] = round(ordered[-1], 3)
        result["mean"] = round(math.fsum(ordered) / count, 3)
        return result


@dataclass
class Counters:
    """What the workers have done so far; read by the progress line."""

    messages: int = 0
    bytes: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)

    def fail(self, exc: TidemqError, messages: int) -> None:
        self.errors += messages
        kind = type(exc).__name__
        if isinstance(exc, BrokerError):
            kind = f"{kind}({exc.code})"
        self.error_kinds[kind] += 1


@dataclass
class BenchReport:
    """The result of one run; :meth:`to_json` is what ``--json`` writes."""

    command: str
    messages: int
    errors: int
    seconds: float
    bytes: int
    latency_ms: dict[str, float] | None
    error_kinds: dict[str, int]
    settings: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Body bytes per second, in MB (10**6 bytes)."""
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "count": self.messages,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 3),
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "latency_ms": self.latency_ms,
            **self.extra,
            "settings": self.settings,
        }

    def summary_line(self) -> str:
        line = (
            f"{self.command}: {self.messages:,} msgs in {self.seconds:.2f} s = {self.msgs_per_s:,.0f} msgs/s, "
            f"{self.mb_per_s:.2f} MB/s, {self.errors:,} errors"
        )
        if self.latency_ms:
            lat = self.latency_ms
            line += (
                f"; latency ms p50 {lat['p50']:.2f} p90 {lat['p90']:.2f} p99 {lat['p99']:.2f} "
                f"p999 {lat['p999']:.2f} max {lat['max']:.2f}"
            )
        return line


class Progress:
    """Rewrites one status line (``\\r``) about once a second while a run lasts, and once more at its end."""

    def __init__(self, label: str, counters: Counters, out: TextIO | None, interval_s: float = 1.0) -> None:
        self._label = label
        self._counters = counters
        self._out = out
        self._interval_s = interval_s
        self._started = self._last_time = time.monotonic()
        self._last_count = 0

    async def run(self) -> None:
        if self._out is None:
            return
        while True:
            await asyncio.sleep(self._interval_s)
            self._write()

    def finish(self) -> None:
        if self._out is not None:
            self._write()
            self._out.write("\n")
            self._out.flush()

    def _write(self) -> None:
        assert self._out is not None
        now = time.monotonic()
        count = self._counters.messages
        rate = (count - self._last_count) / max(now - self._last_time, 1e-9)
        self._last_count, self._last_time = count, now
        self._out.write(
            f"\r{self._label} {now - self._started:6.1f} s  {rate:>10,.0f} msgs/s  "
            f"total {count:>12,}  errors {self._counters.errors:,}   "
        )
        self._out.flush()


# --- produce ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProduceOptions:
    """``tidemq bench produce`` settings.

    Attributes:
        namesrv_addr: name servers.
        topic: where to send (auto-created through TBW102 when the broker allows).
        concurrency: coroutines sending at once over the shared connection.
        size: body size in bytes.
        batch: messages per request (SEND_BATCH_MESSAGE when above 1).
        mode: ``"sync"`` or ``"oneway"``.
        count: stop after this many messages (sent or failed).
        duration_s: stop after this long (10 s when neither limit is given).
        rate: messages per second in total; ``None`` for as fast as possible.
        group: the producer group.
        send_timeout_s: per-send budget.
        queue_nums: queues to create the topic with, when the send creates it.
        timestamp_body: start each body with the send time in ns (e2e latency).
    """

    namesrv_addr: str
    topic: str
    concurrency: int = 64
    size: int = 128
    batch: int = 1
    mode: str = "sync"
    count: int | None = None
    duration_s: float | None = None
    rate: float | None = None
    group: str = "BenchProducer"
    send_timeout_s: float = 3.0
    queue_nums: int = 4
    timestamp_body: bool = False


class _Plan:
    """Hands out work: up to ``count`` messages, until the deadline, at the requested rate."""

    def __init__(self, count: int | None, deadline: float, rate: float | None, batch: int) -> None:
        self.remaining = count
        self.deadline = deadline
        self._batch = batch
        self.interval_s = batch / rate if rate else 0.0
        """Seconds between request starts at a fixed rate; 0 for as fast as possible."""
        self._next_start = time.perf_counter()

    def claim(self, stop: asyncio.Event) -> tuple[int, float]:
        """``(messages, scheduled start)`` of the next request; ``(0, 0)`` when the run is over."""
        if stop.is_set() or time.monotonic() >= self.deadline:
            return 0, 0.0
        messages = self._batch
        if self.remaining is not None:
            messages = min(messages, self.remaining)
            if messages <= 0:
                return 0, 0.0
            self.remaining -= messages
        start = self._next_start
        if self.interval_s:
            self._next_start += self.interval_s
        return messages, start


def _deadline(started: float, count: int | None, duration_s: float | None) -> float:
    """When a run ends at the latest: after ``duration_s``; without one, never if a count bounds it, else 10 s."""
    if duration_s is not None:
        return started + duration_s
    return math.inf if count else started + DEFAULT_DURATION_S


def _body(size: int, timestamp: bool) -> bytes:
    if not timestamp:
        return b"x" * size
    return _TIMESTAMP.pack(time.time_ns()) + b"x" * max(0, size - _TIMESTAMP.size)


async def _produce_worker(
    producer: Producer,
    options: ProduceOptions,
    plan: _Plan,
    counters: Counters,
    latency: LatencyRecorder,
    stop: asyncio.Event,
) -> None:
    topic, size, stamp = options.topic, options.size, options.timestamp_body
    body = _body(size, False)
    is_oneway = options.mode == "oneway"
    while True:
        messages, scheduled = plan.claim(stop)
        if not messages:
            return
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        started = scheduled if plan.interval_s else time.perf_counter()
        try:
            if options.batch > 1:
                await producer.send_batch(
                    topic, [Message(_body(size, stamp) if stamp else body) for _ in range(messages)]
                )
            elif is_oneway:
                await producer.send_oneway(topic, _body(size, stamp) if stamp else body)
                await asyncio.sleep(0)  # a oneway send rarely suspends: let the other workers and the socket run
            else:
                await producer.send(topic, _body(size, stamp) if stamp else body)
        except TidemqError as exc:
            counters.fail(exc, messages)
            continue
        latency.add((time.perf_counter() - started) * 1000)
        counters.messages += messages
        counters.bytes += messages * size


async def run_produce(
    options: ProduceOptions, *, progress_out: TextIO | None = None, stop: asyncio.Event | None = None
) -> BenchReport:
    """Run a produce benchmark and return its report (errors are counted, not raised).

    Raises:
        TidemqError: the producer cannot start, or the topic has no route at all.
    """
    stop = stop or asyncio.Event()
    counters, latency = Counters(), LatencyRecorder()
    config = ProducerConfig(send_timeout_s=options.send_timeout_s, default_topic_queue_nums=options.queue_nums)
    async with Producer(options.group, options.namesrv_addr, config=config) as producer:
        await producer.queues(options.topic)  # the route lookup is not part of the measurement
        started = time.monotonic()
        deadline = _deadline(started, options.count, options.duration_s)
        plan = _Plan(options.count, deadline, options.rate, max(1, options.batch))
        workers = [
            _produce_worker(producer, options, plan, counters, latency, stop) for _ in range(options.concurrency)
        ]
        await _run_all(workers, Progress("produce", counters, progress_out))
        seconds = time.monotonic() - started
    return BenchReport(
        "produce",
        counters.messages,
        counters.errors,
        seconds,
        counters.bytes,
        latency.summary(),
        dict(counters.error_kinds),
        _settings(options),
    )


async def _run_all(workers: list[Coroutine[Any, Any, None]], progress: Progress) -> None:
    """Run ``workers`` to completion with a progress line."""
    try:
        async with asyncio.TaskGroup() as group:
            reporter = group.create_task(progress.run())
            async with asyncio.TaskGroup() as work:
                for worker in workers:
                    work.create_task(worker)
            reporter.cancel()
    finally:
        progress.finish()


def _settings(options: object) -> dict[str, Any]:
    return {key: value for key, value in vars(options).items() if key != "namesrv_addr"}


# --- consume ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumeOptions:
    """``tidemq bench consume`` settings.

    Attributes:
        namesrv_addr: name servers.
        topic: the topic to read, every queue of it.
        group: the consumer group (offsets are committed for it).
        count: stop after this many messages.
        duration_s: stop after this long (10 s when no count is given).
        from_start: begin at each queue's first offset instead of the group's committed one.
        idle_timeout_s: stop after this long without a message (a count that never fills still ends).
        pull_batch: messages per pull (``maxMsgNums``).
    """

    namesrv_addr: str
    topic: str
    group: str = "BenchConsumer"
    count: int | None = None
    duration_s: float | None = None
    from_start: bool = False
    idle_timeout_s: float = 10.0
    pull_batch: int = 32


@dataclass
class _ConsumeState:
    """Shared by the queue workers of one run."""

    counters: Counters
    offsets: dict[MessageQueue, int]
    count: int | None
    latency: LatencyRecorder | None
    started: float = field(default_factory=time.monotonic)
    last_message_at: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def _consume_worker(client: PullClient, queue: MessageQueue, state: _ConsumeState, pull_batch: int) -> None:
    counters, latency = state.counters, state.latency
    offset = state.offsets[queue]
    while True:
        try:
            result = await client.pull(queue, offset, max_count=pull_batch, suspend_s=LONG_POLL_S, commit_offset=offset)
        except TidemqError as exc:
            counters.fail(exc, 1)
            await asyncio.sleep(0.5)  # Java waits 3 s after a failed pull; a benchmark wants to see recovery
            continue
        if result.status is PullStatus.FOUND:
            body_bytes = 0
            messages = 0
            if latency is None:
                for body in result.bodies():
                    body_bytes += len(body)
                    messages += 1
            else:
                now_ns = time.time_ns()
                for body in result.bodies():
                    body_bytes += len(body)
                    messages += 1
                    if len(body) >= _TIMESTAMP.size:
                        latency.add((now_ns - _TIMESTAMP.unpack_from(body)[0]) / 1e6)
            counters.messages += messages
            counters.bytes += body_bytes
            state.last_message_at = time.monotonic()
            if state.count is not None and counters.messages >= state.count:
                state.done.set()
        state.offsets[queue] = offset = result.next_begin_offset


async def _start_offsets(client: PullClient, queues: list[MessageQueue], where: str) -> dict[MessageQueue, int]:
    """Where each queue begins: ``"first"``, ``"last"`` or ``"committed"`` (the last offset when none is)."""
    offsets: dict[MessageQueue, int] = {}
    for queue in queues:
        if where == "first":
            offsets[queue] = await client.min_offset(queue)
        elif where == "last":
            offsets[queue] = await client.max_offset(queue)
        else:
            committed = await client.query_offset(queue)
            offsets[queue] = committed if committed is not None else await client.max_offset(queue)
    return offsets


async def _commit_all(client: PullClient, offsets: dict[MessageQueue, int]) -> int:
    """Commit every queue's offset; the number of failures (logged by the caller's report)."""
    failures = 0
    for queue, offset in offsets.items():
        try:
            await client.commit_offset(queue, offset)
        except TidemqError:
            failures += 1
    return failures


async def _watch(state: _ConsumeState, deadline: float, idle_timeout_s: float, stop: asyncio.Event) -> str:
    """Wait until the run should end; why it ended."""
    while True:
        if state.done.is_set():
            return "count"
        if stop.is_set():
            return "stopped"
        now = time.monotonic()
        if now >= deadline:
            return "duration"
        if idle_timeout_s > 0 and now - state.last_message_at >= idle_timeout_s:
            return "idle"
        try:
            async with asyncio.timeout(0.05):
                await state.done.wait()
        except TimeoutError:
            pass


async def _consume(
    client: PullClient,
    queues: list[MessageQueue],
    state: _ConsumeState,
    options: ConsumeOptions,
    extra_work: list[Coroutine[Any, Any, None]],
    progress: Progress,
    stop: asyncio.Event,
) -> tuple[str, float]:
    """Pull every queue until :func:`_watch` says stop; (reason, seconds until the last message arrived)."""
    state.started = state.last_message_at = time.monotonic()
    deadline = _deadline(state.started, options.count, options.duration_s)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_consume_worker(client, q, state, options.pull_batch)) for q in queues]
            tasks += [group.create_task(work) for work in extra_work]
            tasks.append(group.create_task(progress.run()))
            reason = await _watch(state, deadline, options.idle_timeout_s, stop)
            ended = time.monotonic()
            for task in tasks:
                task.cancel()
    finally:
        progress.finish()
    if state.counters.messages:
        ended = state.last_message_at  # an idle tail (drained backlog, waiting out the duration) is not throughput
    return reason, max(ended - state.started, 1e-9)


async def run_consume(
    options: ConsumeOptions, *, progress_out: TextIO | None = None, stop: asyncio.Event | None = None
) -> BenchReport:
    """Run a consume benchmark and return its report (pull errors are counted, not raised).

    Raises:
        NoRouteError: the topic does not exist.
        TidemqError: the client cannot start, or the start offsets cannot be read.
    """
    stop = stop or asyncio.Event()
    counters = Counters()
    async with PullClient(options.group, options.namesrv_addr) as client:
        queues = await client.queues(options.topic)
        offsets = await _start_offsets(client, queues, "first" if options.from_start else "committed")
        state = _ConsumeState(counters, offsets, options.count, None)
        reason, seconds = await _consume(
            client, queues, state, options, [], Progress("consume", counters, progress_out), stop
        )
        commit_failures = await _commit_all(client, state.offsets)
    return BenchReport(
        "consume",
        counters.messages,
        counters.errors,
        seconds,
        counters.bytes,
        None,
        dict(counters.error_kinds),
        _settings(options),
        {"stopped_by": reason, "queues": len(queues), "commit_failures": commit_failures},
    )


# --- end to end -------------------------------------------------------------------------------------------------


async def _queues_when_routed(client: PullClient, topic: str, timeout_s: float) -> list[MessageQueue]:
    """The topic's queues, waiting for the broker to register a topic it has just created."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await client.queues(topic, refresh=True)
        except NoRouteError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)


async def run_e2e(
    produce: ProduceOptions,
    consume: ConsumeOptions,
    *,
    progress_out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> BenchReport:
    """Produce at ``produce.rate`` and consume at once; latency = receive time - send time, per message.

    The consumer starts at each queue's end, so only this run's messages count. The run ends when the
    producer is done and every sent message arrived, or ``consume.idle_timeout_s`` after the last one.
    """
    stop = stop or asyncio.Event()
    produce = dataclasses.replace(produce, timestamp_body=True)
    send_counters, send_latency = Counters(), LatencyRecorder()
    counters, e2e_latency = Counters(), LatencyRecorder()
    config = ProducerConfig(send_timeout_s=produce.send_timeout_s, default_topic_queue_nums=produce.queue_nums)
    async with (
        Producer(produce.group, produce.namesrv_addr, config=config) as producer,
        PullClient(consume.group, consume.namesrv_addr) as client,
    ):
        await producer.send(produce.topic, b"warm-up")  # creates the topic if needed
        queues = await _queues_when_routed(client, produce.topic, 10.0)
        offsets = await _start_offsets(client, queues, "last")
        deadline = _deadline(time.monotonic(), produce.count, produce.duration_s)
        plan = _Plan(produce.count, deadline, produce.rate, max(1, produce.batch))
        state = _ConsumeState(counters, offsets, None, e2e_latency)

        async def producers() -> None:
            async with asyncio.TaskGroup() as group:
                for _ in range(produce.concurrency):
                    group.create_task(_produce_worker(producer, produce, plan, send_counters, send_latency, stop))
            state.count = send_counters.messages  # now the consumer knows how many to wait for
            if counters.messages >= state.count:
                state.done.set()

        consume = dataclasses.replace(consume, count=None, duration_s=math.inf)
        reason, seconds = await _consume(
            client, queues, state, consume, [producers()], Progress("e2e", counters, progress_out), stop
        )
    return BenchReport(
        "e2e",
        counters.messages,
        send_counters.errors + counters.errors,
        seconds,
        counters.bytes,
        e2e_latency.summary(),
        dict(send_counters.error_kinds + counters.error_kinds),
        {**_settings(produce), "group": consume.group, "producer_group": produce.group},
        {"stopped_by": reason, "produced": send_counters.messages, "send_latency_ms": send_latency.summary()},
    )
