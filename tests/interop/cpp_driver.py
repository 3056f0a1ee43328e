"""Drive the official RocketMQ C++ client (PyPI ``rocketmq==0.4.4``) in a subprocess, for interop tests.

The C++ client runs its own threads inside the process and can crash it, so tests never load it in the pytest
process. They run this file as a script, one sub-command per process::

    python tests/interop/cpp_driver.py produce --namesrv A --topic T --group G --count N --mode sync|oneway|orderly
        [--tag X] [--keys K] [--prop k=v ...] [--body TEXT] [--shard S | --shard-keys K] [--delay-level L[,L...]]
    python tests/interop/cpp_driver.py push-consume --namesrv A --topic T --group G --expr "TagA || TagB"
        --expect N --timeout-s S [--model CLUSTERING|BROADCASTING] [--instance NAME] [--exit-after-s S]
        [--props NAME ...] [--orderly] [--fail-times K] [--fail-deliveries K] [--fail-prop k=v]
    python tests/interop/cpp_driver.py pull --namesrv A --topic T --group G --expect N --timeout-s S [--expr E]

Each prints JSON objects, one a line, on stdout (flushed per line): ``{"event": "started"}``, then ``sent`` or
``message`` lines, then one ``summary``; failures print ``{"event": "error", ...}``. In ``--body`` and ``--keys``,
``{i}`` becomes the message index. ``--shard-keys K`` (orderly mode): message i carries the sharding key
``key-(i % K)`` and the sequence number ``i // K`` (properties ``shardKey``, ``seq``) and the key picks its queue.
``--delay-level 1,2,3``: message i gets the (i % n)-th level. Each ``message`` line carries ``recv_ms``, the local
time the listener got it. Exit status: 0 success, 1 a failed send or a consume timeout, 2 bad usage,
124 the watchdog fired (a native call hung). Anything the native library writes to fd 1 is sent to stderr, so
stdout stays pure JSON. The C++ client writes its log files under ``$HOME/logs/rocketmq-cpp``; the helpers take
``home=`` to keep them (and broadcasting offset files) out of the real home directory.

The second half of the file is the helper API the tests import (it never imports ``rocketmq``): ``produce``,
``push_consume``, ``pull`` run a sub-command to completion; ``start_push_consumer`` returns a
:class:`BackgroundDriver` that reads lines while it runs and is stopped with SIGTERM. ``go_driver.py`` reuses
``run_driver`` and ``BackgroundDriver``.

Wrapper caveats worked around here (spec section 6.5): bodies are ``c_char_p`` (truncated at NUL, so test bodies
must not contain NUL); a ``RecvMessage`` is read completely inside the callback; the push listener is a raw ctypes
callback that returns 0/1 itself, because raising in a ``PushConsumer.subscribe`` listener does not reliably mean
RECONSUME_LATER.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

DRIVER_PATH = Path(__file__).resolve()
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WATCHDOG = 124

# System properties read from every consumed message (the C++ C API cannot list a message's properties).
SYSTEM_PROPERTIES = (
    "UNIQ_KEY",
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "ORIGIN_MESSAGE_ID",
    "RECONSUME_TIME",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "CLUSTER",
    "MSG_REGION",
    "TRACE_ON",
    "SHARDING_KEY",
)


# --------------------------------------------------------------------------------------------------------------
# Subprocess side: runs the C++ client.
# --------------------------------------------------------------------------------------------------------------


class _Output:
    """JSON-lines writer on a private copy of fd 1; fd 1 itself is pointed at stderr for native chatter."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._file: TextIO = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        self._lock = threading.Lock()

    def emit(self, **fields: Any) -> None:
        line = json.dumps(fields, ensure_ascii=True, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def finish(self, code: int) -> None:
        """Exit now, skipping the wrapper's ``__del__`` methods (a second shutdown of a C++ client can hang)."""
        with self._lock:
            self._file.flush()
        sys.stderr.flush()
        os._exit(code)


def _arm_watchdog(out: _Output, seconds: float, what: str) -> None:
    def fire() -> None:
        out.emit(event="error", error=f"watchdog: {what} still running after {seconds:.0f}s")
        out.finish(EXIT_WATCHDOG)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _read_message(msg: Any, prop_names: Sequence[str]) -> dict[str, Any]:
    """Copy everything out of a ``RecvMessage``; it points into the C++ client's memory only during the call."""
    body = msg.body or b""
    props = {}
    for name in (*SYSTEM_PROPERTIES, *prop_names):
        value = msg.get_property(name)
        if value:  # the C API answers "" for a missing property
            props[name] = value.decode("utf-8", errors="replace")
    return {
        "recv_ms": int(time.time() * 1000),
        "id": msg.id,
        "topic": msg.topic,
        "tags": _text(msg.tags),
        "keys": _text(msg.keys),
        "properties": props,
        "body": body.decode("utf-8", errors="replace"),
        "body_hex": body.hex(),
        "queue_id": msg.queue_id,
        "queue_offset": msg.queue_offset,
        "reconsume_times": msg.reconsume_times,
        "commit_log_offset": msg.commit_log_offset,
        "store_size": msg.store_size,
        "born_timestamp": msg.born_timestamp,
        "store_timestamp": msg.store_timestamp,
        "delay_time_level": msg.delay_time_level,
    }


def _apply_log_settings(dll: Any, kind: str, handle: Any, args: argparse.Namespace) -> None:
    levels = {"fatal": 1, "error": 2, "warn": 3, "info": 4, "debug": 5, "trace": 6}
    getattr(dll, f"Set{kind}LogLevel")(handle, levels[args.log_level])
    if args.log_dir:
        getattr(dll, f"Set{kind}LogPath")(handle, args.log_dir.encode())


def _build_message(args: argparse.Namespace, index: int) -> Any:
    from rocketmq.client import Message

    msg = Message(args.topic)
    msg.set_body(args.body.replace("{i}", str(index)))
    if args.tag:
        msg.set_tags(args.tag)
    if args.keys:
        msg.set_keys(args.keys.replace("{i}", str(index)))
    for key, value in args.prop:
        msg.set_property(key, value.replace("{i}", str(index)))
    if args.shard_keys:
        msg.set_property("shardKey", f"key-{index % args.shard_keys}")
        msg.set_property("seq", str(index // args.shard_keys))
    levels = [int(level) for level in args.delay_level.split(",")]
    if levels[index % len(levels)]:
        msg.set_delay_time_level(levels[index % len(levels)])
    return msg


def _status_name(status: Any) -> str:
    """The wrapper's SendStatus.OK is Java's SEND_OK; the other names already match."""
    return "SEND_OK" if status.name == "OK" else str(status.name)


def _send_one(producer: Any, msg: Any, args: argparse.Namespace, index: int) -> dict[str, Any]:
    if args.mode == "oneway":
        producer.send_oneway(msg)
        return {"status": "SEND_OK"}
    if args.mode == "sync":
        result = producer.send_sync(msg)
        return {"status": _status_name(result.status), "msg_id": result.msg_id, "offset": result.offset}
    chosen: dict[str, int] = {}

    def select(queue_count: int, _msg: Any, _arg: Any) -> int:
        chosen["queue_id"] = shard % queue_count
        chosen["queue_count"] = queue_count
        return chosen["queue_id"]

    shard = index if args.shard is None else args.shard
    if args.shard_keys:
        shard = index % args.shard_keys
    result = producer.send_orderly(msg, shard, retry_times=args.retries, queue_selector=select)
    return {
        "status": _status_name(result.status),
        "msg_id": result.msg_id,
        "offset": result.offset,
        "shard": shard,
        **chosen,
    }


def _cmd_produce(out: _Output, args: argparse.Namespace) -> int:
    from rocketmq.client import Producer
    from rocketmq.ffi import dll

    _arm_watchdog(out, args.timeout_s + 30, "produce")
    producer = Producer(args.group, timeout=args.send_timeout_ms)
    _apply_log_settings(dll, "Producer", producer._handle, args)
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    out.emit(event="started", role="producer")
    deadline = time.monotonic() + args.timeout_s
    started = time.monotonic()
    sent = failed = 0
    for index in range(args.count):
        if time.monotonic() > deadline:
            out.emit(event="error", error="deadline reached", index=index)
            failed += args.count - index
            break
        try:
            fields = _send_one(producer, _build_message(args, index), args, index)
        except Exception as exc:  # a RocketMQException from ffi_check; report it and go on
            failed += 1
            out.emit(event="send_failed", index=index, mode=args.mode, error=f"{type(exc).__name__}: {exc}")
            continue
        sent += 1
        out.emit(event="sent", index=index, mode=args.mode, **fields)
    elapsed_s = time.monotonic() - started
    producer.shutdown()
    out.emit(event="summary", sent=sent, failed=failed, elapsed_s=round(elapsed_s, 3))
    return EXIT_FAILED if failed else 0


@dataclass
class _ConsumeState:
    expect: int
    fail_times: int
    prop_names: Sequence[str]
    out: _Output
    fail_prop: tuple[str, str] | None = None
    fail_deliveries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: Counter[str] = field(default_factory=Counter)
    acked_ids: set[str] = field(default_factory=set)
    deliveries: int = 0
    errors: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def on_message(self, msg: Any) -> int:
        """Return 0 (CONSUME_SUCCESS) or 1 (RECONSUME_LATER / suspend for orderly); never raise into ctypes."""
        try:
            fields = _read_message(msg, self.prop_names)
            msg_id = fields["properties"].get("UNIQ_KEY") or fields["id"]
            with self.lock:
                self.seen[msg_id] += 1
                earlier = self.seen[msg_id] - 1
            status = 1 if fields["reconsume_times"] < self.fail_times or earlier < self.fail_deliveries else 0
            if self.fail_prop is not None and fields["properties"].get(self.fail_prop[0]) != self.fail_prop[1]:
                status = 0
            self.out.emit(event="message", ack=status == 0, **fields)  # before `done`, so it precedes the summary
            with self.lock:
                self.deliveries += 1
                if status == 0:
                    self.acked_ids.add(msg_id)
                if self.expect and len(self.acked_ids) >= self.expect:
                    self.done.set()
        except Exception as exc:
            with self.lock:
                self.errors += 1
            self.out.emit(event="error", error=f"listener: {type(exc).__name__}: {exc}")
            return 1
        return status


def _start_push_consumer(args: argparse.Namespace, state: _ConsumeState) -> Any:
    from rocketmq.client import PushConsumer
    from rocketmq.ffi import MSG_CALLBACK_FUNC, MessageModel, dll

    consumer = PushConsumer(args.group, orderly=args.orderly, message_model=MessageModel[args.model])
    _apply_log_settings(dll, "PushConsumer", consumer._handle, args)
    consumer.set_namesrv_addr(args.namesrv)
    if args.instance:
        consumer.set_instance_name(args.instance)
    if args.threads:
        consumer.set_thread_count(args.threads)

    def callback(_consumer: Any, raw_msg: Any) -> int:
        from rocketmq.client import RecvMessage

        return state.on_message(RecvMessage(raw_msg))

    status = dll.Subscribe(consumer._handle, args.topic.encode(), args.expr.encode())
    if status != 0:
        raise RuntimeError(f"Subscribe returned {status}")
    consumer._register_callback(callback)  # keeps the CFUNCTYPE object alive in consumer._callback_refs
    assert isinstance(consumer._callback_refs[-1], MSG_CALLBACK_FUNC)
    consumer.start()
    return consumer


def _shutdown_within(shutdown: Callable[[], None], seconds: float) -> str | None:
    errors: list[str] = []

    def run() -> None:
        try:
            shutdown()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="shutdown", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return f"shutdown did not finish in {seconds:.0f}s"
    return errors[0] if errors else None


def _cmd_push_consume(out: _Output, args: argparse.Namespace) -> int:
    collect = args.exit_after_s is not None
    limit_s = args.exit_after_s if collect else args.timeout_s
    _arm_watchdog(out, limit_s + 60, "push-consume")
    stop = threading.Event()
    prop_names = [*args.props, *([args.fail_prop[0]] if args.fail_prop else [])]
    state = _ConsumeState(
        expect=args.expect or 0,
        fail_times=args.fail_times,
        prop_names=prop_names,
        out=out,
        fail_prop=args.fail_prop,
        fail_deliveries=args.fail_deliveries,
    )
    consumer = _start_push_consumer(args, state)
    for signum in (signal.SIGTERM, signal.SIGINT):  # after start: the C++ client installs its own handlers
        signal.signal(signum, lambda *_: stop.set())
    out.emit(event="started", role="push_consumer")
    started = time.monotonic()
    deadline = started + limit_s
    while not (state.done.is_set() or stop.is_set()) and time.monotonic() < deadline:
        state.done.wait(0.2)
    reason = (
        "expected" if state.done.is_set() else "signal" if stop.is_set() else "exit_after" if collect else "timeout"
    )
    elapsed_s = time.monotonic() - started
    shutdown_error = _shutdown_within(consumer.shutdown, 30)
    with state.lock:
        summary = {"received": len(state.acked_ids), "deliveries": state.deliveries, "errors": state.errors}
    out.emit(event="summary", reason=reason, elapsed_s=round(elapsed_s, 3), shutdown_error=shutdown_error, **summary)
    return EXIT_FAILED if reason == "timeout" else 0


def _pull_queue(
    out: _Output, handle: Any, mq: Any, offset: int, args: argparse.Namespace, deadline: float
) -> tuple[int, int]:
    """Pull one queue from ``offset`` until NO_NEW_MSG; emit a line per message; return (next offset, count)."""
    import ctypes

    from rocketmq.client import RecvMessage
    from rocketmq.ffi import _CPullStatus, dll

    illegal = count = 0
    while time.monotonic() < deadline:
        result = dll.Pull(handle, ctypes.pointer(mq), args.expr.encode(), offset, args.batch)
        status = _CPullStatus(result.pullStatus)
        try:
            if status != _CPullStatus.BROKER_TIMEOUT:
                offset = result.nextBeginOffset
            for index in range(result.size if status == _CPullStatus.FOUND else 0):
                fields = _read_message(RecvMessage(result.msgFoundList[index]), args.props)
                out.emit(event="message", broker_name=mq.brokerName.decode(), **fields)
                count += 1
        finally:
            dll.ReleasePullResult(result)
        if status == _CPullStatus.OFFSET_ILLEGAL:
            illegal += 1
            out.emit(event="offset_illegal", queue_id=mq.queueId, next_offset=offset)
        if status in (_CPullStatus.NO_NEW_MSG, _CPullStatus.BROKER_TIMEOUT) or illegal > 3:
            out.emit(
                event="queue",
                queue_id=mq.queueId,
                status=status.name,
                next_offset=offset,
                min_offset=result.minOffset,
                max_offset=result.maxOffset,
            )
            break
    return offset, count


def _fetch_queues(handle: Any, topic: str, deadline: float) -> tuple[Any, int]:
    import ctypes

    from rocketmq.exceptions import ffi_check
    from rocketmq.ffi import _CMessageQueue, dll

    while True:
        queues = ctypes.POINTER(_CMessageQueue)()
        size = ctypes.c_int()
        try:
            ffi_check(
                dll.FetchSubscriptionMessageQueues(handle, topic.encode(), ctypes.byref(queues), ctypes.byref(size))
            )
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the topic's route is not there yet
            continue
        return queues, size.value


def _cmd_pull(out: _Output, args: argparse.Namespace) -> int:
    from rocketmq.client import PullConsumer
    from rocketmq.ffi import dll

    _arm_watchdog(out, args.timeout_s + 30, "pull")
    consumer = PullConsumer(args.group)
    _apply_log_settings(dll, "PullConsumer", consumer._handle, args)
    consumer.set_namesrv_addr(args.namesrv)
    consumer.start()
    out.emit(event="started", role="pull_consumer")
    started = time.monotonic()
    deadline = started + args.timeout_s
    queues, size = _fetch_queues(consumer._handle, args.topic, deadline)
    offsets = dict.fromkeys(range(size), 0)
    received = 0
    while received < args.expect and time.monotonic() < deadline:
        for index in range(size):
            offsets[index], count = _pull_queue(out, consumer._handle, queues[index], offsets[index], args, deadline)
            received += count
        if received < args.expect:
            time.sleep(0.3)  # not everything is there yet; pull again from where each queue stopped
    elapsed_s = time.monotonic() - started
    queue_offsets = {f"{queues[i].brokerName.decode()}:{queues[i].queueId}": offset for i, offset in offsets.items()}
    dll.ReleaseSubscriptionMessageQueue(queues)
    ok = received >= args.expect
    consumer.shutdown()
    out.emit(
        event="summary",
        reason="expected" if ok else "timeout",
        received=received,
        next_offsets=queue_offsets,
        elapsed_s=round(elapsed_s, 3),
    )
    return 0 if ok else EXIT_FAILED


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"want k=v, got {text!r}")
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Drive the official RocketMQ C++ client; JSON lines on stdout.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--namesrv", required=True, help="name server address(es), ';'-separated")
    common.add_argument("--topic", required=True)
    common.add_argument("--group", required=True)
    common.add_argument("--log-level", default="warn", choices=["fatal", "error", "warn", "info", "debug", "trace"])
    common.add_argument("--log-dir", help="C++ client log directory (default: $HOME/logs/rocketmq-cpp)")
    produce = sub.add_parser("produce", parents=[common], help="send --count messages")
    produce.add_argument("--count", type=int, default=1)
    produce.add_argument("--mode", choices=["sync", "oneway", "orderly"], default="sync")
    produce.add_argument("--tag")
    produce.add_argument("--keys", help="space-separated keys; {i} is the message index")
    produce.add_argument("--prop", type=_key_value, action="append", default=[], help="user property k=v")
    produce.add_argument("--body", default="msg-{i}", help="body text (no NUL); {i} is the message index")
    produce.add_argument("--shard", type=int, help="orderly: fixed selector arg instead of the message index")
    produce.add_argument("--shard-keys", type=int, help="orderly: K sharding keys (properties shardKey, seq)")
    produce.add_argument("--delay-level", default="0", help="delay level, or levels by index: 1,2,3")
    produce.add_argument("--retries", type=int, default=3, help="orderly send retries")
    produce.add_argument("--send-timeout-ms", type=int, default=3000)
    produce.add_argument("--timeout-s", type=float, default=60)
    push = sub.add_parser("push-consume", parents=[common], help="PushConsumer; one line per message")
    push.add_argument("--expr", default="*", help='tag expression, e.g. "TagA || TagB"')
    push.add_argument("--expect", type=int, help="exit 0 once this many distinct messages were acknowledged")
    push.add_argument("--timeout-s", type=float, default=60, help="exit 1 if --expect is not reached by then")
    push.add_argument("--exit-after-s", type=float, help="collect mode: exit 0 after this long (or at --expect)")
    push.add_argument("--model", choices=["CLUSTERING", "BROADCASTING"], default="CLUSTERING")
    push.add_argument("--instance", help="instance name; distinct per consumer when several share a host")
    push.add_argument("--orderly", action="store_true", help="orderly consumer (locks queues)")
    push.add_argument("--threads", type=int, help="consume thread count")
    push.add_argument("--fail-times", type=int, default=0, help="return RECONSUME_LATER while reconsume_times < K")
    push.add_argument(
        "--fail-deliveries",
        type=int,
        default=0,
        help="return 1 for a message's first K deliveries (the orderly C++ client never raises reconsume_times)",
    )
    push.add_argument("--fail-prop", type=_key_value, help="fail only messages whose property k is v")
    push.add_argument("--props", nargs="*", default=[], help="user property names to read from each message")
    pull = sub.add_parser("pull", parents=[common], help="PullConsumer; every queue from offset 0")
    pull.add_argument("--expr", default="*")
    pull.add_argument("--expect", type=int, required=True, help="messages (queue offsets) to read in total")
    pull.add_argument("--timeout-s", type=float, default=60)
    pull.add_argument("--batch", type=int, default=32, help="max messages per pull")
    pull.add_argument("--props", nargs="*", default=[], help="user property names to read from each message")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "push-consume" and not args.expect and args.exit_after_s is None:
        _parser().error("push-consume needs --expect N and/or --exit-after-s S")
    out = _Output()
    commands = {"produce": _cmd_produce, "push-consume": _cmd_push_consume, "pull": _cmd_pull}
    try:
        code = commands[args.command](out, args)
    except Exception as exc:
        out.emit(event="error", error=f"{type(exc).__name__}: {exc}")
        code = EXIT_FAILED
    out.finish(code)


# --------------------------------------------------------------------------------------------------------------
# Test side: spawn the driver and parse its lines. Never imports rocketmq.
# --------------------------------------------------------------------------------------------------------------


class DriverError(AssertionError):
    """A driver process failed, timed out or printed something unexpected; the message carries its output."""


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Parse JSON lines; anything else is kept as ``{"event": "raw", "text": ...}`` so nothing is lost."""
    lines: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = _parse_line(raw)
        if line is not None:
            lines.append(line)
    return lines


def _parse_line(raw: str) -> dict[str, Any] | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"event": "raw", "text": raw}
    return value if isinstance(value, dict) else {"event": "raw", "text": raw}


@dataclass
class DriverResult:
    """What one driver process printed."""

    argv: list[str]
    returncode: int | None
    lines: list[dict[str, Any]]
    stderr: str
    elapsed_s: float

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.events("message")

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.events("sent")

    @property
    def summary(self) -> dict[str, Any]:
        summaries = self.events("summary")
        return summaries[-1] if summaries else {}

    def describe(self, max_lines: int = 20) -> str:
        shown = "\n".join(json.dumps(line) for line in self.lines[-max_lines:])
        return (
            f"driver {' '.join(self.argv[1:3])} exited {self.returncode} after {self.elapsed_s:.1f}s\n"
            f"argv: {self.argv}\nlast stdout lines:\n{shown}\nstderr tail:\n{self.stderr[-3000:]}"
        )

    def check(self) -> DriverResult:
        if self.returncode != 0:
            raise DriverError(self.describe())
        return self


def driver_env(home: Path | str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a driver process; ``home`` redirects the client's log and offset files."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    env.update(extra or {})
    return env


def run_driver(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None, check: bool = True
) -> DriverResult:
    """Run a driver to completion (killing it after ``timeout_s``) and return its parsed output."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        result = DriverResult(
            list(argv), None, parse_lines(_as_text(exc.stdout)), _as_text(exc.stderr), time.monotonic() - started
        )
        raise DriverError(f"killed after {timeout_s}s\n{result.describe()}") from None
    result = DriverResult(
        list(argv), proc.returncode, parse_lines(proc.stdout), proc.stderr, time.monotonic() - started
    )
    return result.check() if check else result


def _as_text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


class BackgroundDriver:
    """A driver process running in the background (a push consumer); its lines are collected as they come.

    Use as a context manager, or call :meth:`stop`; stopping sends SIGTERM, which makes the driver shut the client
    down cleanly (offsets are committed) and print its summary.
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self._started = time.monotonic()
        self._cond = threading.Condition()
        self._lines: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        self._proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, name="driver-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="driver-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = _parse_line(raw)
            if line is not None:
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr.append(raw)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def lines(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._lines)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == "message"]

    def result(self) -> DriverResult:
        return DriverResult(
            self.argv, self._proc.poll(), self.lines, "".join(self._stderr), time.monotonic() - self._started
        )

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float, what: str = "condition"
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate(lines)`` holds; raise :class:`DriverError` on timeout or if the process ended."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self._lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._proc.poll() is not None and not self._readers[0].is_alive()):
                    break
                self._cond.wait(min(remaining, 0.5))
            else:
                return list(self._lines)
        raise DriverError(f"{what} not reached in {timeout_s}s\n{self.result().describe()}")

    def wait_started(self, timeout_s: float = 30) -> None:
        self.wait_for(lambda lines: any(line.get("event") == "started" for line in lines), timeout_s, "start")

    def wait_messages(self, count: int, timeout_s: float) -> list[dict[str, Any]]:
        lines = self.wait_for(
            lambda lines: sum(line.get("event") == "message" for line in lines) >= count, timeout_s, f"{count} messages"
        )
        return [line for line in lines if line.get("event") == "message"]

    def stop(self, timeout_s: float = 45, check: bool = True) -> DriverResult:
        """SIGTERM the driver (if still running), wait for it, and return everything it printed."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
            raise DriverError(f"did not stop in {timeout_s}s; killed\n{self.result().describe()}") from None
        for reader in self._readers:
            reader.join(10)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()  # the readers hit EOF; an unclosed pipe is a ResourceWarning (an error under pytest)
        result = self.result()
        return result.check() if check else result

    def __enter__(self) -> BackgroundDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(check=False)  # also when it already exited: collects it and closes the pipes


def _flags(options: Mapping[str, Any]) -> list[str]:
    """``{"timeout_s": 5, "orderly": True, "prop": {"a": "1"}, "props": ["a"]}`` -> command-line flags."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                argv += [flag, f"{key}={item}"]
        elif isinstance(value, list | tuple):
            if value:
                argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def cpp_argv(command: str, **options: Any) -> list[str]:
    """The command line running this driver's ``command`` with ``options`` (see :func:`_flags`)."""
    return [sys.executable, str(DRIVER_PATH), command, *_flags(options)]


def produce(
    namesrv: str,
    topic: str,
    group: str,
    *,
    count: int = 1,
    mode: str = "sync",
    tag: str | None = None,
    keys: str | None = None,
    props: Mapping[str, str] | None = None,
    body: str | None = None,
    shard: int | None = None,
    shard_keys: int | None = None,
    delay_level: str | int | None = None,
    timeout_s: float = 60,
    home: Path | str | None = None,
    check: bool = True,
) -> DriverResult:
    """Send ``count`` messages with the C++ Producer; ``{i}`` in ``body``/``keys``/property values is the index."""
    argv = cpp_argv(
        "produce",
        namesrv=namesrv,
        topic=topic,
        group=group,
        count=count,
        mode=mode,
        tag=tag,
        keys=keys,
        prop=props,
        body=body,
        shard=shard,
        shard_keys=shard_keys,
        delay_level=delay_level,
        timeout_s=timeout_s,
    )
    return run_driver(argv, timeout_s=timeout_s + 60, env=driver_env(home), check=check)


def _push_argv(
    namesrv: str,
    topic: str,
    group: str,
    *,
    expect: int | None,
    expr: str,
    timeout_s: float,
    model: str,
    instance: str | None,
    exit_after_s: float | None,
    prop_names: Iterable[str],
    orderly: bool,
    fail_times: int,
    fail_prop: tuple[str, str] | None = None,
    fail_deliveries: int = 0,
) -> list[str]:
    return cpp_argv(
        "push-consume",
        namesrv=namesrv,
        topic=topic,
        group=group,
        expr=expr,
        expect=expect,
        timeout_s=timeout_s,
        model=model,
        instance=instance,
        exit_after_s=exit_after_s,
        orderly=orderly,
        fail_times=fail_times or None,
        fail_prop=None if fail_prop is None else f"{fail_prop[0]}={fail_prop[1]}",
        fail_deliveries=fail_deliveries or None,
        props=list(prop_names),
    )


def push_consume(
    namesrv: str,
    topic: str,
    group: str,
    *,
    expect: int | None = None,
    expr: str = "*",
    timeout_s: float = 60,
    model: str = "CLUSTERING",
    instance: str | None = None,
    exit_after_s: float | None = None,
    prop_names: Iterable[str] = (),
    orderly: bool = False,
    fail_times: int = 0,
    fail_prop: tuple[str, str] | None = None,
    fail_deliveries: int = 0,
    home: Path | str | None = None,
    check: bool = True,
) -> DriverResult:
    """Run a C++ PushConsumer until ``expect`` distinct messages were acknowledged (or ``exit_after_s``)."""
    argv = _push_argv(
        namesrv,
        topic,
        group,
        expect=expect,
        expr=expr,
        timeout_s=timeout_s,
        model=model,
        instance=instance,
        exit_after_s=exit_after_s,
        prop_names=prop_names,
        orderly=orderly,
        fail_times=fail_times,
        fail_prop=fail_prop,
        fail_deliveries=fail_deliveries,
    )
    limit_s = exit_after_s if exit_after_s is not None else timeout_s
    return run_driver(argv, timeout_s=limit_s + 90, env=driver_env(home), check=check)


def start_push_consumer(
    namesrv: str,
    topic: str,
    group: str,
    *,
    expect: int | None = None,
    expr: str = "*",
    timeout_s: float = 600,
    model: str = "CLUSTERING",
    instance: str | None = None,
    exit_after_s: float | None = None,
    prop_names: Iterable[str] = (),
    orderly: bool = False,
    fail_times: int = 0,
    fail_prop: tuple[str, str] | None = None,
    fail_deliveries: int = 0,
    home: Path | str | None = None,
) -> BackgroundDriver:
    """Start a C++ PushConsumer in the background; read ``.messages`` while it runs, ``.stop()`` it at the end.

    Without ``expect`` and ``exit_after_s`` it runs until stopped (at most ``timeout_s``, after which it exits
    with its summary on its own).
    """
    if expect is None and exit_after_s is None:
        exit_after_s = timeout_s
    argv = _push_argv(
        namesrv,
        topic,
        group,
        expect=expect,
        expr=expr,
        timeout_s=timeout_s,
        model=model,
        instance=instance,
        exit_after_s=exit_after_s,
        prop_names=prop_names,
        orderly=orderly,
        fail_times=fail_times,
        fail_prop=fail_prop,
        fail_deliveries=fail_deliveries,
    )
    return BackgroundDriver(argv, env=driver_env(home))


def pull(
    namesrv: str,
    topic: str,
    group: str,
    *,
    expect: int,
    expr: str = "*",
    timeout_s: float = 60,
    prop_names: Iterable[str] = (),
    home: Path | str | None = None,
    check: bool = True,
) -> DriverResult:
    """Read every queue of ``topic`` from offset 0 with the C++ PullConsumer until ``expect`` messages came."""
    argv = cpp_argv(
        "pull",
        namesrv=namesrv,
        topic=topic,
        group=group,
        expect=expect,
        expr=expr,
        timeout_s=timeout_s,
        props=list(prop_names),
    )
    return run_driver(argv, timeout_s=timeout_s + 60, env=driver_env(home), check=check)


if __name__ == "__main__":
    main()
