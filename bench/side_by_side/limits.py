"""Raw limits of this machine, measured in the same run as the brokers: what no broker can beat.

* loopback round trips/s: a ping-pong of 128 bytes on one TCP connection (Java, the load's own runtime): the
  ceiling of one synchronous sender; and the same over 64 connections at once (64 threads): the ceiling of
  request/response traffic from many senders on this machine's cores;
* loopback bulk MB/s: one connection streaming 256 KiB writes;
* disk sequential write MB/s: ``size_mb`` MiB in 1 MiB writes plus the closing fsync, in the data directory;
* fsyncs/s: 4 KiB appends each followed by fdatasync, for ``seconds``: the ceiling of one-message-per-flush
  SYNC_FLUSH (brokers group commits, so they can store more messages per second than this).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.side_by_side.loads import run_java


def disk_sequential_write(directory: Path, size_mb: int) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "seqwrite.tmp"
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.monotonic()
        for _ in range(size_mb):
            os.write(fd, block)
        os.fsync(fd)
        secs = time.monotonic() - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {"bytes": size_mb << 20, "seconds": round(secs, 3), "mb_per_s": round((size_mb << 20) / secs / 1e6, 1)}


def fsyncs_per_second(directory: Path, seconds: float) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync.tmp"
    block = b"x" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    n = 0
    try:
        t0 = time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end and n < 1_000_000:
            os.write(fd, block)
            os.fdatasync(fd)
            n += 1
        secs = time.monotonic() - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {"fsyncs": n, "seconds": round(secs, 3), "fsyncs_per_s": round(n / secs, 1)}


def combine(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Limits measured at the start and at the end of a run: each limit is the better of the two (noise from other
    work on the machine only ever lowers a ceiling); both measurements are kept under "samples"."""
    keys = {"loopback_rtt": "round_trips_per_s", "loopback_rtt64": "round_trips_per_s", "loopback_bulk": "mb_per_s",
            "disk_write": "mb_per_s", "fsync": "fsyncs_per_s"}  # fmt: skip
    out: dict[str, Any] = {}
    for name, key in keys.items():
        a, b = first.get(name) or {}, second.get(name) or {}
        out[name] = dict(max((a, b), key=lambda m: float(m.get(key) or 0)))
        out[name]["samples"] = [a.get(key), b.get(key)]
    return out


def measure(directory: Path, *, quick: bool) -> dict[str, Any]:
    secs = 2.0 if quick else 4.0
    rtt = run_java("echo", ["--kind", "rtt", "--size", "128", "--duration-s", str(secs)], timeout_s=60)
    rtt64 = run_java(
        "echo", ["--kind", "rtt", "--threads", "64", "--size", "128", "--duration-s", str(secs)], timeout_s=60
    )
    bulk = run_java("echo", ["--kind", "bulk", "--duration-s", str(secs)], timeout_s=60)
    return {
        "loopback_rtt": rtt,
        "loopback_rtt64": rtt64,
        "loopback_bulk": bulk,
        "disk_write": disk_sequential_write(directory, 256 if quick else 1024),
        "fsync": fsyncs_per_second(directory, secs),
    }


def loopback(seconds: float = 3.0) -> dict[str, Any]:
    """The two loopback ceilings that bound a client's figures: round trips/s over 64 connections and bulk MB/s
    (the standalone client benches report them beside their results, as ``make bench`` does)."""
    rtt64 = run_java(
        "echo", ["--kind", "rtt", "--threads", "64", "--size", "128", "--duration-s", str(seconds)], timeout_s=60
    )
    bulk = run_java("echo", ["--kind", "bulk", "--duration-s", str(seconds)], timeout_s=60)
    return {
        "loopback_round_trips_per_s_64": rtt64.get("round_trips_per_s"),
        "loopback_bulk_mb_per_s": bulk.get("mb_per_s"),
    }
