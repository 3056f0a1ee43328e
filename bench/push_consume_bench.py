"""How fast tidemq's own PushConsumer drains a backlog (issue 4: ≥ 200,000 msgs/s from a backlog).

``tidemq bench consume`` drains with the lower-level PullClient; this measures the SDK's ``PushConsumer`` itself,
listener calls included: a listener that counts (with ``--read-properties`` it also reads each msg_id, which
parses the message's properties; ``--listener async`` makes it a coroutine function, awaited on the loop),
against a ``tidemq dev`` started here on free loopback ports. The backlog is filled with batched sends
(``tidemq bench produce --batch 32``) first; each drain uses a new consumer group from the first offset. The
Java push consumer's figure on the same broker is scenario 4 of ``make bench`` (docs/benchmarks.md).

Run: ``.venv/bin/python bench/push_consume_bench.py [--messages 1000000] [--runs 3] [--listener sync|async]``;
prints one JSON line per run and a summary with the median.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_process import free_ports  # noqa: E402  # the repo root is put on the path just above

from bench.side_by_side.limits import loopback  # noqa: E402
from bench.side_by_side.loads import ensure_built, run_java  # noqa: E402
from tidemq.client import ConsumeFromWhere, ConsumeResult, PushConsumer, ReceivedMessage  # noqa: E402

TOPIC = "PushDrain"


async def drain(
    namesrv: str,
    group: str,
    expected: int,
    concurrency: int,
    batch: int,
    read_properties: bool = False,
    coroutine_listener: bool = False,
) -> dict[str, float]:
    """Consume ``expected`` messages with a new group; rate = messages ÷ (last arrival - first arrival)."""
    received = 0
    first = last = 0.0
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_message(message: ReceivedMessage) -> ConsumeResult:
        """The sync listener: runs in the consumer's threads, so it wakes the loop thread-safely."""
        nonlocal received, first, last
        if read_properties:
            message.msg_id  # noqa: B018  # reads the properties: UNIQ_KEY
        now = time.monotonic()
        if not received:
            first = now
        received += 1
        last = now
        if received == expected:
            loop.call_soon_threadsafe(done.set)
        return ConsumeResult.CONSUME_SUCCESS

    async def on_message_async(message: ReceivedMessage) -> ConsumeResult:
        """The same as a coroutine, awaited on the loop (its own body: a call into on_message would be timed too)."""
        nonlocal received, first, last
        if read_properties:
            message.msg_id  # noqa: B018  # reads the properties: UNIQ_KEY
        now = time.monotonic()
        if not received:
            first = now
        received += 1
        last = now
        if received == expected:
            done.set()
        return ConsumeResult.CONSUME_SUCCESS

    consumer = PushConsumer(
        group,
        namesrv,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        consume_concurrency=concurrency,
        pull_batch_size=batch,
    )
    consumer.subscribe(TOPIC, "*", on_message_async if coroutine_listener else on_message)
    cpu_started, started = time.process_time(), time.monotonic()
    async with consumer:
        await asyncio.wait_for(done.wait(), timeout=600)
    cpu = time.process_time() - cpu_started
    return {
        "messages": received,
        "msgs_per_s": received / max(last - first, 1e-9),
        "first_message_after_s": first - started,
        "client_cpu_us_per_msg": cpu / max(received, 1) * 1e6,
    }


def _java_figures(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result.get(key) for key in ("msgs_per_s", "received", "duplicates", "seconds")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pull-batch", type=int, default=32)
    parser.add_argument(
        "--queues", type=int, default=8, help="queues of the backlog's topic (8, as the Java drain of make bench)"
    )
    parser.add_argument(
        "--read-properties", action="store_true", help="the listener reads each message's msg_id (its properties)"
    )
    parser.add_argument(
        "--listener",
        choices=("sync", "async"),
        default="sync",
        help="a plain function (run in the consumer's thread pool) or a coroutine function (awaited on the loop)",
    )
    parser.add_argument(
        "--java",
        action="store_true",
        help="after tidemq's drains, drain the same backlog as often with the official Java push consumer "
        "(bench/java, DefaultMQPushConsumer with its defaults) for its figure on the same broker in the same run",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first drain; print the top functions")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the consumer's event loop (tidemq's own tools use uvloop)",
    )
    args = parser.parse_args()
    if args.java:
        ensure_built()  # before the broker starts: a Maven build is no part of any figure
    limits = loopback() if args.java else {}  # the raw limits of this run, with the Java echo
    work = Path(tempfile.mkdtemp(prefix="tidemq-push-bench-"))
    namesrv_port, broker_port = free_ports()
    namesrv = f"127.0.0.1:{namesrv_port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tidemq.cli.main", "dev", "--data-dir", str(work / "data")),
            *("--host", "127.0.0.1", "--namesrv-port", str(namesrv_port), "--broker-port", str(broker_port)),
            *("--log-level", "WARNING"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.stdout.readline().startswith("tidemq dev ready"):
            pass
        report = work / "fill.json"
        subprocess.run(
            [
                *(sys.executable, "-m", "tidemq.cli.main", "bench", "produce", "--namesrv", namesrv, "--topic", TOPIC),
                *("--batch", "32", "--concurrency", "16", "--size", "128", "--count", str(args.messages)),
                *("--queues", str(args.queues), "--json", str(report), "--no-progress"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        filled = int(json.loads(report.read_text())["count"])
        results = []
        for run in range(args.runs):
            coroutine = drain(
                namesrv,
                f"PushDrain_{run}",
                filled,
                args.concurrency,
                args.pull_batch,
                args.read_properties,
                args.listener == "async",
            )
            run_loop = uvloop.run if args.loop == "uvloop" else asyncio.run
            if args.profile and run == 0:
                profile = cProfile.Profile(time.process_time)
                result = profile.runcall(run_loop, coroutine)
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
            else:
                result = run_loop(coroutine)
            results.append(result)
            print(json.dumps({"run": run, **result}), flush=True)
        java_rates: list[float] = []
        if args.java:
            for run in range(args.runs):
                java = run_java(
                    "consume",
                    [
                        "--namesrv",
                        namesrv,
                        "--topic",
                        TOPIC,
                        "--group",
                        f"PushDrainJava_{run}",
                        "--expect",
                        str(filled),
                    ],
                    timeout_s=900,
                    progress="off",
                )
                print(json.dumps({"run": run, "load": "java", "ok": java.get("ok"), **_java_figures(java)}), flush=True)
                if not java.get("ok") or not java.get("msgs_per_s"):
                    raise SystemExit(f"the Java push consumer failed: {java.get('error')}")
                java_rates.append(float(java["msgs_per_s"]))
        rates = [r["msgs_per_s"] for r in results]
        cpu = [r["client_cpu_us_per_msg"] for r in results]
        summary = {
            "backlog": filled,
            "median_msgs_per_s": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "median_client_cpu_us_per_msg": statistics.median(cpu),
            "loop": args.loop,
            "read_properties": args.read_properties,
            "listener": args.listener,
            "queues": args.queues,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            **limits,
        }
        if java_rates:
            summary["java_median_msgs_per_s"] = statistics.median(java_rates)
            summary["ratio_to_java"] = round(statistics.median(rates) / statistics.median(java_rates), 3)
        print(json.dumps(summary))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        if server.stdout is not None:
            server.stdout.close()
        shutil.rmtree(work, ignore_errors=True)  # the backlog: ~330 MB for a million messages
    return 0


if __name__ == "__main__":
    sys.exit(main())
