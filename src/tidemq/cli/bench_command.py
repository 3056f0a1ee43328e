"""``tidemq bench produce|consume|e2e``: a load generator for any RocketMQ remoting broker (tidemq's or Apache's).

::

    tidemq bench produce --namesrv 127.0.0.1:9876 --topic BenchTopic --concurrency 64 --size 128 --duration 10
    tidemq bench consume --namesrv 127.0.0.1:9876 --topic BenchTopic --group BenchConsumer --from-start
    tidemq bench e2e --namesrv 127.0.0.1:9876 --topic BenchE2E --rate 2000 --duration 10

A progress line (rate over the last second, total, errors) is rewritten on stderr about once a second; at the
end a summary line goes to stderr and the JSON report to stdout (and to ``--json FILE``): count, seconds,
msgs/s, MB/s (10**6 bytes of message bodies), errors by kind, latency percentiles in ms. Runs stop by
themselves (``--count``, ``--duration``, 10 s by default; consumers also after ``--idle-timeout``) or on Ctrl-C.
The logic lives in :mod:`tidemq.client._loadgen`; this module parses flags and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tidemq.cli._runtime import run, setup_logging, stop_event
from tidemq.client._loadgen import BenchReport, ConsumeOptions, ProduceOptions, run_consume, run_e2e, run_produce
from tidemq.errors import TidemqError

DEFAULT_NAMESRV = "127.0.0.1:9876"
DEFAULT_TOPIC = "BenchTopic"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def _common(parser: argparse.ArgumentParser, default_topic: str) -> None:
    parser.add_argument("--namesrv", default=DEFAULT_NAMESRV, help=f"name servers, host:port;... ({DEFAULT_NAMESRV})")
    parser.add_argument("--topic", default=default_topic, help=f"topic ({default_topic})")
    parser.add_argument("--count", type=_positive_int, help="stop after this many messages")
    parser.add_argument(
        "--duration", type=_positive_float, help="stop after this many seconds (default 10 without --count)"
    )
    parser.add_argument("--json", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line on stderr")
    parser.add_argument("--log-level", default="WARNING")


def _producing(parser: argparse.ArgumentParser, default_rate: float | None) -> None:
    parser.add_argument("--producer-group", default="BenchProducer")
    parser.add_argument("--concurrency", type=_positive_int, default=64, help="coroutines sending at once (64)")
    parser.add_argument("--size", type=_positive_int, default=128, help="body bytes (128)")
    parser.add_argument("--batch", type=_positive_int, default=1, help="messages per request (1: no batching)")
    parser.add_argument("--rate", type=_positive_float, default=default_rate, help="messages per second in total")
    parser.add_argument("--timeout", type=_positive_float, default=3.0, help="send timeout in seconds (3)")
    parser.add_argument("--queues", type=_positive_int, default=4, help="queues of a topic the run creates (4)")


def add_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="load generator: produce, consume, end-to-end latency")
    sub = bench.add_subparsers(dest="bench_command", required=True)

    produce = sub.add_parser("produce", help="send messages as fast as possible, or at --rate")
    _common(produce, DEFAULT_TOPIC)
    _producing(produce, None)
    produce.add_argument("--mode", choices=("sync", "oneway"), default="sync")
    produce.set_defaults(handler=main)

    consume = sub.add_parser("consume", help="pull every queue of a topic with long polling, commit offsets")
    _common(consume, DEFAULT_TOPIC)
    consume.add_argument("--group", default="BenchConsumer", help="consumer group (BenchConsumer)")
    consume.add_argument("--from-start", action="store_true", help="read from each queue's first offset")
    consume.add_argument("--idle-timeout", type=float, default=10.0, help="stop after this long without a message")
    consume.add_argument("--pull-batch", type=_positive_int, default=32, help="messages per pull (32)")
    consume.set_defaults(handler=main)

    e2e = sub.add_parser("e2e", help="produce at --rate and consume at once; produce-to-consume latency")
    _common(e2e, "BenchE2E")
    _producing(e2e, 1000.0)
    e2e.add_argument("--group", default="BenchE2EConsumer", help="consumer group (BenchE2EConsumer)")
    e2e.add_argument("--idle-timeout", type=float, default=5.0, help="give up waiting for stragglers after this")
    e2e.set_defaults(handler=main, mode="sync", from_start=False, pull_batch=32)


def produce_options(args: argparse.Namespace) -> ProduceOptions:
    return ProduceOptions(
        namesrv_addr=args.namesrv,
        topic=args.topic,
        concurrency=args.concurrency,
        size=args.size,
        batch=args.batch,
        mode=args.mode,
        count=args.count,
        duration_s=args.duration,
        rate=args.rate,
        group=args.producer_group,
        send_timeout_s=args.timeout,
        queue_nums=args.queues,
    )


def consume_options(args: argparse.Namespace) -> ConsumeOptions:
    return ConsumeOptions(
        namesrv_addr=args.namesrv,
        topic=args.topic,
        group=args.group,
        count=args.count,
        duration_s=args.duration,
        from_start=args.from_start,
        idle_timeout_s=args.idle_timeout,
        pull_batch=args.pull_batch,
    )


async def run_bench(args: argparse.Namespace, stop: asyncio.Event | None = None) -> BenchReport:
    """Run the sub-command ``args`` describes and return its report."""
    progress = None if args.no_progress else sys.stderr
    match args.bench_command:
        case "produce":
            return await run_produce(produce_options(args), progress_out=progress, stop=stop)
        case "consume":
            return await run_consume(consume_options(args), progress_out=progress, stop=stop)
        case "e2e":
            return await run_e2e(produce_options(args), consume_options(args), progress_out=progress, stop=stop)
        case other:
            raise ValueError(f"unknown bench command {other!r}")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    if args.bench_command == "e2e" and args.size < 8:
        print("tidemq bench e2e: --size must be at least 8 (the body carries the send time)", file=sys.stderr)
        return 2

    async def bench() -> int:
        try:
            report = await run_bench(args, stop_event())
        except TidemqError as exc:
            print(f"tidemq bench {args.bench_command}: {exc}", file=sys.stderr)
            return 1
        print(report.summary_line(), file=sys.stderr)
        text = json.dumps(report.to_json())
        print(text, flush=True)
        if args.json is not None:
            args.json.write_text(text + "\n", encoding="utf-8")
        return 0

    return run(bench)
