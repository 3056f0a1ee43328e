"""Where the broker's time goes per single send: ``tidemq dev`` under cProfile, driven by ``tidemq bench``.

Run: ``.venv/bin/python bench/profile_broker.py [--concurrency 64] [--seconds 8] [--batch 32]``. Prints the broker's top
functions by own time and the share of ``handle_send`` spent in the store append, request decoding and the
response. The figures quoted in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_process import free_ports  # noqa: E402  # the repo root is put on the path just above

SERVER = """
import cProfile, sys, time
from tidemq.cli.main import main
profile = cProfile.Profile(time.process_time)  # CPU time: waits in epoll and preemption by the load are not costs
profile.enable()
try:
    main(sys.argv[2:])
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--batch", type=int, default=1, help="messages per request (SEND_BATCH_MESSAGE above 1)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tidemq-profile-"))
    stats_file = work / "broker.prof"
    namesrv, broker = free_ports()
    command = [
        sys.executable,
        "-c",
        SERVER,
        str(stats_file),
        "dev",
        "--data-dir",
        str(work / "data"),
        "--host",
        "127.0.0.1",
        "--namesrv-port",
        str(namesrv),
        "--broker-port",
        str(broker),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.stdout.readline().startswith("tidemq dev ready"):
        pass
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tidemq.cli.main",
            "bench",
            "produce",
            "--namesrv",
            f"127.0.0.1:{namesrv}",
            "--topic",
            "Profile",
            "--concurrency",
            str(args.concurrency),
            "--size",
            "128",
            "--duration",
            str(args.seconds),
            "--batch",
            str(args.batch),
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    server.send_signal(signal.SIGINT)
    server.wait(60)
    server.stdout.close()
    stats = pstats.Stats(str(stats_file))
    totals = {func[2]: (value[3], value[1]) for func, value in stats.stats.items()}  # name -> (cumulative s, calls)
    send = totals.get("handle_send", (0.0, 0))[0] or 1.0
    for name in ("append_messages", "decode_payload", "_response", "send"):
        cumulative, calls = totals.get(name, (0.0, 0))
        print(f"{name:>18}: {cumulative / send:6.1%} of handle_send ({calls} calls)")
    stats.sort_stats("tottime").print_stats(15)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
