"""Where the Python client's time goes per sync send: ``tidemq bench produce`` under cProfile (CPU time) against
a ``tidemq dev`` in another process.

Run: ``.venv/bin/python bench/profile_client.py [--concurrency 64] [--seconds 8]``. Prints the client's rate
(slowed by the profiler) and its top functions by own time; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server_process import free_ports  # noqa: E402  # the repo root is put on the path just above

from tidemq.client._loadgen import ProduceOptions, run_produce  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tidemq-profile-client-"))
    namesrv, broker = free_ports()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "tidemq.cli.main", "dev", "--data-dir", str(work / "data"), "--host", "127.0.0.1"),
            *("--namesrv-port", str(namesrv), "--broker-port", str(broker), "--log-level", "WARNING"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.stdout.readline().startswith("tidemq dev ready"):
            pass
        options = ProduceOptions(
            f"127.0.0.1:{namesrv}", "ProfileClient", concurrency=args.concurrency, duration_s=args.seconds
        )
        profile = cProfile.Profile(time.process_time)
        report = profile.runcall(uvloop.run, run_produce(options))  # as `tidemq bench` runs
        print(f"{report.messages:,} sends in {report.seconds:.1f} s under the profiler")
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
