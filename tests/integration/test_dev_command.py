"""`tidemq dev` as a user runs it: ready lines, fast start, clean stop on SIGTERM, data kept."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.server_process import free_ports, start_server


def test_dev_starts_fast_prints_ready_lines_and_stops_cleanly(tmp_path: Path) -> None:
    started = time.monotonic()
    server = start_server(tmp_path / "data")
    elapsed = time.monotonic() - started
    try:
        assert server.lines[0] == f"tidemq namesrv ready on {server.namesrv_addr}"
        assert server.lines[1].startswith(f"tidemq broker ready on {server.broker_addr}")
        reported = float(server.lines[2].split(" ready in ")[1].split("s;")[0])
        assert reported < 1.0, f"ready in {reported}s (process start included: {elapsed:.2f}s)"
    finally:
        assert server.stop() == 0
    assert (tmp_path / "data" / "store" / "store.meta").exists()
    assert not (tmp_path / "data" / "store" / "abort").exists(), "a clean stop leaves no abort marker"


def test_a_second_dev_on_the_same_data_directory_is_refused_and_the_first_goes_on(tmp_path: Path) -> None:
    """Two brokers appending to one commit log would interleave records: the second one stops with the reason,
    as RocketMQ's "Lock failed, MQ already started", and the first keeps serving."""
    server = start_server(tmp_path / "data")
    try:
        command = [sys.executable, "-m", "tidemq.cli.main", "dev", "--data-dir", str(tmp_path / "data")]
        namesrv_port, broker_port = free_ports()
        command += ["--host", "127.0.0.1", "--namesrv-port", str(namesrv_port)]
        command += ["--broker-port", str(broker_port), "--log-level", "WARNING"]
        second = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert "already open in another process" in second.stderr
        assert server.process.poll() is None, "the first server is still running"
    finally:
        assert server.stop() == 0
