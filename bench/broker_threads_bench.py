"""Is the broker the limit? Per-thread CPU of a ``tidemq dev`` under sync sends from ``tidemq bench produce``.

Starts ``tidemq dev`` on free loopback ports, warms it up with a short load, then runs the measured load and
reads the CPU time (user + system, from /proc) of every thread of the broker process and of its children (the
index worker) before and after. A loop thread near 100% busy means the broker is what limits the load; its µs
per message is the broker's cost of one send on this machine, without the load generator's share of the cores.

    .venv/bin/python bench/broker_threads_bench.py [--concurrency 64] [--seconds 10] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_process import free_ports  # noqa: E402  # the repo root is put on the path just above

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` (by thread id) and of each child process (as ``child <pid>``)."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        seconds[task.name] = _stat_cpu_s(task / "stat")
        try:  # a child belongs to the thread that started it
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            seconds[f"child {child}"] = _stat_cpu_s(Path(f"/proc/{child}/stat"))
    return seconds


def _stat_cpu_s(stat: Path) -> float:
    """utime + stime of one stat file. Not ``bench.side_by_side.brokers.cpu_seconds``: that reads
    /proc/<id>/stat, which for any thread id gives the whole process's times, not the thread's."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:  # a thread or child that ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime


def produce(namesrv: int, concurrency: int, seconds: float) -> dict[str, float]:
    """Run ``tidemq bench produce`` (sync sends, 128 B) and return its JSON summary."""
    command = [
        sys.executable,
        "-m",
        "tidemq.cli.main",
        "bench",
        "produce",
        "--namesrv",
        f"127.0.0.1:{namesrv}",
        "--topic",
        "Threads",
        "--mode",
        "sync",
        "--concurrency",
        str(concurrency),
        "--size",
        "128",
        "--duration",
        str(seconds),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    summary: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    namesrv, broker = free_ports()
    with tempfile.TemporaryDirectory(prefix="tidemq-threads-") as work:
        command = [sys.executable, "-m", "tidemq.cli.main", "dev", "--data-dir", f"{work}/data", "--host", "127.0.0.1"]
        command += ["--namesrv-port", str(namesrv), "--broker-port", str(broker)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not server.stdout.readline().startswith("tidemq dev ready"):
                pass
            produce(namesrv, args.concurrency, 3)  # warm-up: topic, connections, store files
            for run in range(args.runs):
                before = thread_cpu_s(server.pid)
                summary = produce(namesrv, args.concurrency, args.seconds)
                after = thread_cpu_s(server.pid)
                count = summary["count"]
                elapsed = summary["seconds"]
                used = {name: after[name] - before.get(name, 0.0) for name in after}
                loop_thread = str(server.pid)  # the main thread runs the event loop
                busiest = {name: cpu for name, cpu in sorted(used.items(), key=lambda kv: -kv[1]) if cpu > 0}
                report = {
                    "run": run,
                    "msgs_per_s": round(summary["msgs_per_s"], 1),
                    "loop_thread_busy": round(used.get(loop_thread, 0.0) / elapsed, 3),
                    "loop_thread_us_per_msg": round(used.get(loop_thread, 0.0) / count * 1e6, 2),
                    "other_threads_and_children_us_per_msg": {
                        name if name.startswith("child") else f"thread {name}": round(cpu / count * 1e6, 2)
                        for name, cpu in busiest.items()
                        if name != loop_thread
                    },
                }
                print(json.dumps(report), flush=True)
        finally:
            server.terminate()
            server.wait(30)
            if server.stdout is not None:
                server.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
