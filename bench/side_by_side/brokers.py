"""The two brokers under test, started the same way: fresh data dir, free loopback ports, same flush policy and
queue count, data on the same filesystem; one at a time (the harness never runs both at once).

* :class:`TidemqBroker`: ``python -m tidemq.cli.main dev`` (name server + broker in one process) with a broker.conf.
* :class:`ApacheBroker`: Apache RocketMQ's name server and broker JVMs (:mod:`bench.peers.apache_rocketmq`).

Both expose the same small surface: ``start()`` (returns seconds to ready), ``cold_start_s`` (spawn to the first
accepted message), ``pids()``, ``rss()``, ``store_bytes()``, ``create_topic()``, ``alive()``, ``stop()``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.peers.apache_rocketmq import APACHE_ROCKETMQ_VERSION, JVM_FLAGS, ApacheRocketMQ, server_classpath
from bench.side_by_side import wire

QUEUES = 8
APACHE_BROKER_HEAP = "2g"
APACHE_NAMESRV_HEAP = "512m"
REPO = Path(__file__).resolve().parents[2]


class BrokerError(RuntimeError):
    pass


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(offsets: tuple[int, ...]) -> int:
    """A base port with base+offset free on 127.0.0.1 for each offset, below the ephemeral range."""
    rng = random.SystemRandom()
    for _ in range(500):
        base = rng.randrange(33000, 60000, 8)
        if all(_port_free(base + o) for o in offsets):
            return base
    raise BrokerError("no free loopback ports")


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out = [pid]
    for tid_dir in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (tid_dir / "children").read_text().split():
                out.extend(proc_tree(int(child)))
    return sorted(set(out))


def rss_of(pids: list[int]) -> dict[str, int]:
    """Summed VmRSS / RssAnon / RssFile / RssShmem of ``pids`` in bytes (from /proc/<pid>/status)."""
    total = {"rss": 0, "anon": 0, "file": 0, "shmem": 0}
    names = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                parts = line.split()
                if parts and parts[0] in names:
                    total[names[parts[0]]] += int(parts[1]) * 1024
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (all their threads), from /proc/<pid>/stat."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def dir_bytes(root: Path) -> dict[str, int]:
    """Allocated (``du``: st_blocks * 512) and apparent (st_size) bytes of every file under ``root``."""
    allocated = apparent = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                allocated += st.st_blocks * 512
                apparent += st.st_size
                files += 1
    return {"allocated": allocated, "apparent": apparent, "files": files}


class Broker:
    """What the harness needs of a broker under test."""

    kind = "?"
    label = "?"

    def __init__(self, data_dir: Path, flush: str) -> None:
        self.data_dir = data_dir
        self.flush = flush
        self.namesrv_addr = ""
        self.broker_addr = ""
        self.ready_s = 0.0
        self.cold_start_s = 0.0

    # -- to implement

    def _start(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def store_dir(self) -> Path:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- shared

    def start(self) -> Broker:
        """Start; ``ready_s`` is spawn to ready, ``cold_start_s`` spawn to the first accepted message."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            self._start()
            self.ready_s = time.monotonic() - t0
            self._first_message(deadline=time.monotonic() + 60)
            self.cold_start_s = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _first_message(self, deadline: float) -> None:
        while not wire.send_one(self.broker_addr, "BenchColdStart"):
            if time.monotonic() > deadline or not self.alive():
                raise BrokerError(f"{self.label}: no message accepted within 60 s of ready")
            time.sleep(0.01)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        return cpu_seconds([p for pid in self.pids() for p in proc_tree(pid)])

    def rss(self) -> dict[str, int]:
        return rss_of([p for pid in self.pids() for p in proc_tree(pid)])

    def store_bytes(self) -> dict[str, int]:
        return dir_bytes(self.store_dir)

    def create_topic(self, topic: str, queues: int = QUEUES) -> float:
        """UPDATE_AND_CREATE_TOPIC, then wait until the name server routes it (a broker that registers only on
        its 30 s heartbeat costs up to 30 s here); returns how long the route took."""
        t0 = time.monotonic()
        wire.create_topic(self.broker_addr, topic, queues)
        if not wire.wait_route(self.namesrv_addr, topic, queues, timeout_s=40):
            raise BrokerError(f"{self.label}: the name server has no route with {queues} queues for {topic} in 40 s")
        return time.monotonic() - t0


def tidemq_version() -> str:
    try:
        from importlib.metadata import version

        return version("tidemq")
    except Exception:
        return "unknown"


class TidemqBroker(Broker):
    kind = "tidemq"

    def __init__(self, data_dir: Path, flush: str, *, python: str = sys.executable, log_level: str = "WARNING") -> None:
        super().__init__(data_dir, flush)
        self.label = f"tidemq {tidemq_version()}"
        self.python = python
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf: dict[str, str] = {
            "brokerClusterName": "DefaultCluster",
            "brokerName": "broker-a",
            "brokerId": "0",
            "brokerRole": "ASYNC_MASTER",
            "flushDiskType": flush,
            "autoCreateTopicEnable": "true",
            "autoCreateSubscriptionGroup": "true",
            "defaultTopicQueueNums": str(QUEUES),
        }

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "tidemq-dev.log"

    def command(self, namesrv_port: int, broker_port: int) -> list[str]:
        return [
            self.python,
            "-m",
            "tidemq.cli.main",
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--namesrv-port",
            str(namesrv_port),
            "--broker-port",
            str(broker_port),
            "-c",
            str(self.data_dir / "broker.conf"),
            "--log-level",
            self.log_level,
        ]

    def _start(self) -> None:
        (self.data_dir / "broker.conf").write_text("".join(f"{k}={v}\n" for k, v in self.conf.items()))
        for _attempt in range(3):
            base = free_ports((0, 8, 6, 9))  # namesrv; broker listen, VIP (listen-2), HA (listen+1)
            ns_port, br_port = base, base + 8
            self.namesrv_addr, self.broker_addr = f"127.0.0.1:{ns_port}", f"127.0.0.1:{br_port}"
            with self.log_path.open("wb") as log:
                self.proc = subprocess.Popen(
                    self.command(ns_port, br_port),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=REPO,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = self.log_path.read_bytes()
                if b"tidemq dev ready" in text:
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.005)
            out = self.log_path.read_text("utf-8", "replace")
            self._kill()
            if "cannot listen" not in out:
                raise BrokerError(f"tidemq dev did not become ready:\n{out[-3000:]}")
        raise BrokerError("tidemq dev: could not bind free ports in 3 attempts")

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None

    def settings(self) -> dict[str, Any]:
        return {
            "command": " ".join(self.command(0, 0)).replace(str(self.data_dir), "<data>").replace(" 0 ", " <port> "),
            "broker_conf": dict(self.conf),
            "python": sys.version.split()[0],
            "python_executable": self.python,
        }


class ApacheBroker(Broker):
    kind = "apache"
    label = f"Apache RocketMQ {APACHE_ROCKETMQ_VERSION}"

    def __init__(self, data_dir: Path, flush: str) -> None:
        super().__init__(data_dir, flush)
        server_classpath()  # resolve (and cache) the jars before any clock starts
        self.peer = ApacheRocketMQ(
            data_dir,
            flush=flush,
            broker_heap=APACHE_BROKER_HEAP,
            namesrv_heap=APACHE_NAMESRV_HEAP,
            queue_nums=QUEUES,
        )

    @property
    def store_dir(self) -> Path:
        return self.peer.store_dir

    def _start(self) -> None:
        self.peer.start()
        self.namesrv_addr, self.broker_addr = self.peer.namesrv_addr, self.peer.broker_addr

    def pids(self) -> list[int]:
        return [p for p in (self.peer.namesrv_pid, self.peer.broker_pid) if p]

    def alive(self) -> bool:
        return self.peer.broker_running()

    def stop(self) -> None:
        self.peer.stop(graceful=False)  # the data is thrown away: SIGKILL at once saves Apache's ~10 s shutdown

    def settings(self) -> dict[str, Any]:
        return {
            "version": APACHE_ROCKETMQ_VERSION,
            "broker_heap": APACHE_BROKER_HEAP,
            "namesrv_heap": APACHE_NAMESRV_HEAP,
            "jvm_flags": list(JVM_FLAGS),
            "broker_conf": {
                "brokerRole": "ASYNC_MASTER",
                "flushDiskType": self.flush,
                "autoCreateTopicEnable": "true",
                "defaultTopicQueueNums": str(QUEUES),
                "bindAddress": "127.0.0.1",
            },
        }


def make_broker(kind: str, data_dir: Path, flush: str) -> Broker:
    if kind == "tidemq":
        return TidemqBroker(data_dir, flush)
    if kind == "apache":
        return ApacheBroker(data_dir, flush)
    raise ValueError(f"unknown broker {kind!r}")
