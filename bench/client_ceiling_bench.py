"""How fast the clients can send when the broker costs nothing: a producer's own ceiling (issue 4).

Issue 4 asks that tidemq's client not be the bottleneck: ≥ 50,000 sync sends/s from 64 coroutines over one
connection. Against a real broker on this 2-core machine the broker's loop saturates first (docs/benchmarks.md),
so this runs the senders against a *null responder* instead: one process that answers the name-server route
lookup with a route to itself and every SEND_MESSAGE(_V2) with SUCCESS at once, storing nothing. What limits the
rate then is the client (and the responder's one core, measured beside it). The official Java client sends to
the same responder in the same run, with 64 threads.

This is not a broker and proves nothing about brokers; it answers one question, "how many sync sends a second
can this client drive", the way the raw loopback limits of ``make bench`` answer "how fast is the wire".

Run: ``.venv/bin/python bench/client_ceiling_bench.py [--duration 10] [--runs 3] [--java]``; one JSON line per
run and a summary with medians.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_process import free_port  # noqa: E402  # the repo root is put on the path just above

from bench.side_by_side.limits import loopback  # noqa: E402
from bench.side_by_side.loads import ensure_built, run_java  # noqa: E402
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode  # noqa: E402
from tidemq.transport.remoting import RemotingChannel  # noqa: E402

BROKER_NAME = "null-broker"
QUEUES = 8
SEND_CODES = frozenset({RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE})


def route_body(port: int) -> bytes:
    """GET_ROUTEINFO_BY_TOPIC's answer for any topic: one broker, this process (fastjson's integer map key)."""
    broker = f'{{"brokerAddrs":{{0:"127.0.0.1:{port}"}},"brokerName":"{BROKER_NAME}","cluster":"NullCluster"}}'
    nums = f'"readQueueNums":{QUEUES},"topicSysFlag":0,"writeQueueNums":{QUEUES}'
    queue = f'{{"brokerName":"{BROKER_NAME}","perm":6,{nums}}}'
    return f'{{"brokerDatas":[{broker}],"filterServerTable":{{}},"queueDatas":[{queue}]}}'.encode()


class NullResponder:
    """Answers sends with SUCCESS and made-up offsets, the route lookup with itself, anything else with SUCCESS."""

    def __init__(self, port: int) -> None:
        self.route = route_body(port)
        self.offsets = itertools.count()
        self.answered = 0

    def __call__(self, channel: RemotingChannel, request: RemotingCommand) -> RemotingCommand:
        code = request.code
        if code in SEND_CODES:
            self.answered += 1
            fields = request.ext_fields
            queue_id = fields.get("e" if code == RequestCode.SEND_MESSAGE_V2 else "queueId") or "0"
            offset = next(self.offsets)
            return RemotingCommand(
                ResponseCode.SUCCESS,
                opaque=request.opaque,
                flag=1,
                ext_fields={
                    "msgId": f"7F00000100002A9F{offset:016X}",
                    "queueId": queue_id,
                    "queueOffset": str(offset),
                    "MSG_REGION": "DefaultRegion",
                    "TRACE_ON": "true",
                },
                serialize_type=request.serialize_type,
            )
        if code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return request.make_response(ResponseCode.SUCCESS, body=self.route)
        return request.make_response(ResponseCode.SUCCESS)


async def serve(port: int) -> None:
    responder = NullResponder(port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RemotingChannel(responder), "127.0.0.1", port)
    print("null responder ready", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_python(addr: str, topic: str, duration_s: float) -> dict[str, Any]:
    """``tidemq bench produce``: 64 coroutines, sync single sends of 128 bytes over one connection."""
    with tempfile.TemporaryDirectory(prefix="tidemq-ceiling-") as work:
        report = Path(work) / "report.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [
                *(sys.executable, "-m", "tidemq.cli.main", "bench", "produce", "--namesrv", addr, "--topic", topic),
                *("--concurrency", "64", "--size", "128", "--duration", str(duration_s)),
                *("--json", str(report), "--no-progress"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = json.loads(report.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "load": "python",
        "msgs_per_s": result["msgs_per_s"],
        "errors": result["errors"],
        "p99_ms": result["latency_ms"]["p99"],
        "client_cpu_us_per_msg_with_startup": round(cpu / max(result["count"], 1) * 1e6, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--java", action="store_true", help="also the official Java client, 64 threads, same runs")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the responder process itself
    args = parser.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(args.serve))
        return 0
    if args.java:
        ensure_built()
    limits = loopback() if args.java else {}
    port = free_port()
    addr = f"127.0.0.1:{port}"
    responder = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    results: list[dict[str, Any]] = []
    try:
        assert responder.stdout is not None
        if not responder.stdout.readline().startswith("null responder ready"):
            raise SystemExit("the null responder did not start")
        for run in range(args.runs):
            loads = ["python", "java"] if args.java else ["python"]
            for load in loads:
                cpu_before, started = _cpu_of(responder.pid), time.monotonic()
                if load == "python":
                    result = run_python(addr, f"Ceiling{run}", args.duration)
                else:
                    java = run_java(
                        "produce",
                        [
                            *("--namesrv", addr, "--topic", f"CeilingJava{run}", "--mode", "sync"),
                            *("--threads", "64", "--size", "128", "--queues", str(QUEUES)),
                            *("--warmup-s", "3", "--duration-s", str(int(args.duration))),
                        ],
                        timeout_s=args.duration + 120,
                        progress="off",
                    )
                    if not java.get("ok"):
                        raise SystemExit(f"the Java load failed: {java.get('error')}")
                    result = {"load": "java", "msgs_per_s": java["msgs_per_s"], "errors": java.get("errors")}
                wall = time.monotonic() - started
                result["responder_core_busy"] = round((_cpu_of(responder.pid) - cpu_before) / wall, 2)
                result["run"] = run
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        responder.send_signal(signal.SIGTERM)
        responder.wait(30)
        if responder.stdout is not None:
            responder.stdout.close()
    summary: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": os.getloadavg(), **limits}
    for load in ("python", "java"):
        rates = [r["msgs_per_s"] for r in results if r["load"] == load]
        if rates:
            summary[f"{load}_median_msgs_per_s"] = statistics.median(rates)
            summary[f"{load}_min"], summary[f"{load}_max"] = min(rates), max(rates)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
