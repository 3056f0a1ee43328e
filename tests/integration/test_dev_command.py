"""`tidemq dev` as a user runs it: ready lines, fast start, clean stop on SIGTERM, data kept."""

from __future__ import annotations

import time
from pathlib import Path

from tests.server_process import start_server


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
