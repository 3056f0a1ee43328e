"""Apache RocketMQ (name server + broker) as a peer, run from the jars that Apache publishes on Maven Central.

Nothing of Apache's is vendored: the server jars and their dependencies are resolved with Maven into a cache
directory outside the repository (``$TIDEMQ_CACHE`` or ``~/.cache/tidemq``), exactly as a user of the published
artifacts would, and run with ``java -cp``.

Python API::

    with ApacheRocketMQ(tmp_path, flush="ASYNC_FLUSH") as peer:
        print(peer.namesrv_addr, peer.broker_addr, peer.cluster)

CLI (``python -m bench.peers.apache_rocketmq`` or ``python bench/peers/apache_rocketmq.py``)::

    fetch                         resolve the jars into the cache (needs Maven once; later runs are offline)
    start  --data-dir D [...]     start detached; prints one JSON line with the addresses and PIDs
    status --data-dir D           prints that JSON line again if both processes still run (exit 1 if not)
    stop   --data-dir D           SIGTERM, then SIGKILL, both processes started by ``start``
    run    --data-dir D [...]     start in the foreground; Ctrl-C stops it

Every server socket listens on 127.0.0.1 only: the name server and the broker's two remoting ports through
``bindAddress``, and the broker's HA (replication) port, which Apache always binds to the wildcard address,
through a small service-provider class of ours (:data:`_SHIM_SOURCE`) compiled with ``javac`` into the cache.

Data-dir layout: ``store/`` is the broker's ``storePathRootDir``; ``namesrv/`` and ``broker/`` hold each
process's config file, ``stdout.log`` and ``home/logs/rocketmqlogs/*.log``; ``peer.json`` records what ``start``
started.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "APACHE_ROCKETMQ_VERSION",
    "SERVER_ARTIFACTS",
    "JVM_FLAGS",
    "ApacheRocketMQ",
    "PeerError",
    "cache_root",
    "ensure_server_jars",
    "ensure_shim",
    "server_classpath",
    "java_executable",
]

# The newest 5.x release whose namesrv, broker and proxy artifacts are all on Maven Central with their dependencies
# (5.5.1 has only some modules published: rocketmq-broker 5.5.1 is there, rocketmq-namesrv/-proxy/-client are not).
APACHE_ROCKETMQ_VERSION = "5.5.0"
SERVER_ARTIFACTS = ("rocketmq-namesrv", "rocketmq-broker", "rocketmq-proxy")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

# Flags for Java 17. None of them is needed for the server to start and serve (5.x unmaps files through Netty's
# PlatformDependent, which uses sun.misc.Unsafe); they let Netty and the store use the fast paths they would have on
# Java 8 (reflective DirectByteBuffer construction and cleaner access), which is fairer for benchmarks.
JVM_FLAGS = (
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-XX:+UseG1GC",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1ReservePercent=25",
    "-XX:InitiatingHeapOccupancyPercent=30",
    "-XX:SoftRefLRUPolicyMSPerMB=0",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:-UseLargePages",
    "-Djava.net.preferIPv4Stack=true",
)

NAMESRV_MAIN = "org.apache.rocketmq.namesrv.NamesrvStartup"
BROKER_MAIN = "org.apache.rocketmq.broker.BrokerStartup"
FLUSH_TYPES = ("ASYNC_FLUSH", "SYNC_FLUSH")

# Apache's DefaultHAService binds its replication listener (listenPort + 1) to the wildcard address and offers no
# setting for it; DefaultMessageStore loads an HAService implementation named in META-INF/service/ if there is one.
# This one is the default service with its listener moved to 127.0.0.1 (or -Dtidemq.haBindAddress).
_SHIM_CLASS = "tidemq.peer.LoopbackHAService"
_SHIM_SOURCE = """\
package tidemq.peer;

import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import org.apache.rocketmq.store.DefaultMessageStore;
import org.apache.rocketmq.store.ha.DefaultHAService;

/** tidemq test shim: Apache's default HA service, with its listener bound to loopback instead of 0.0.0.0. */
public class LoopbackHAService extends DefaultHAService {
    @Override
    public void init(DefaultMessageStore store) throws IOException {
        super.init(store);
        String host = System.getProperty("tidemq.haBindAddress", "127.0.0.1");
        int port = store.getMessageStoreConfig().getHaListenPort();
        try {
            Field f = DefaultHAService.AcceptSocketService.class.getDeclaredField("socketAddressListen");
            f.setAccessible(true);
            f.set(this.acceptSocketService, new InetSocketAddress(host, port));
        } catch (ReflectiveOperationException e) {
            throw new IOException("tidemq LoopbackHAService: cannot rebind the HA listener", e);
        }
    }
}
"""


class PeerError(RuntimeError):
    """The peer could not be resolved, started or stopped; the message says why (with log tails)."""


# ---------------------------------------------------------------------------------------------------------------------
# Resolving the jars


def cache_root() -> Path:
    """``$TIDEMQ_CACHE`` or ``~/.cache/tidemq``: outside the repository, shared by every checkout."""
    env = os.environ.get("TIDEMQ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tidemq"


def dist_dir(version: str = APACHE_ROCKETMQ_VERSION) -> Path:
    return cache_root() / f"apache-rocketmq-{version}"


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerError(f"{name!r} was not found on PATH; {hint}")
    return path


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH (clear error if neither)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return _require_tool("java", "install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)")


def _javac_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "javac").is_file():
        return str(Path(home) / "bin" / "javac")
    return _require_tool("javac", "install a JDK 17, not only a JRE (Debian: apt-get install openjdk-17-jdk-headless)")


def _mvn_executable() -> str:
    return _require_tool("mvn", "install Maven 3.6.3+ (Debian: apt-get install maven)")


def _server_pom(version: str) -> str:
    deps = "\n".join(
        "    <dependency><groupId>org.apache.rocketmq</groupId>"
        f"<artifactId>{artifact}</artifactId><version>{version}</version></dependency>"
        for artifact in SERVER_ARTIFACTS
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by tidemq bench/peers/apache_rocketmq.py: resolves Apache RocketMQ's published server jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tidemq.peers</groupId>
  <artifactId>apache-rocketmq-server</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _run_mvn(pom: Path, lib: Path, *, offline: bool, timeout_s: float) -> subprocess.CompletedProcess[str]:
    cmd = [_mvn_executable(), "-B", "-q"]
    if offline:
        cmd.append("-o")
    cmd += [
        "-f",
        str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)


def ensure_server_jars(version: str = APACHE_ROCKETMQ_VERSION, *, timeout_s: float = 900.0) -> Path:
    """Resolve the server jars into ``<cache>/apache-rocketmq-<version>/lib`` (once) and return that directory.

    Tries Maven offline first (everything already in ~/.m2), then online (Maven Central). Safe to call from
    several processes at once (file lock).
    """
    root = dist_dir(version)
    lib = root / "lib"
    stamp = root / "lib.complete"
    pom_text = _server_pom(version)
    want = _digest(pom_text, DEPENDENCY_PLUGIN)
    with _file_lock(root / ".lock"):
        if stamp.is_file() and stamp.read_text() == want and lib.is_dir():
            return lib
        pom = root / "pom.xml"
        pom.write_text(pom_text)
        shutil.rmtree(lib, ignore_errors=True)
        result = _run_mvn(pom, lib, offline=True, timeout_s=timeout_s)
        if result.returncode != 0:
            shutil.rmtree(lib, ignore_errors=True)
            result = _run_mvn(pom, lib, offline=False, timeout_s=timeout_s)
        if result.returncode != 0:
            raise PeerError(
                f"Maven could not resolve Apache RocketMQ {version} ({', '.join(SERVER_ARTIFACTS)}) "
                f"with {pom}:\n{_tail_text(result.stdout + result.stderr, 40)}"
            )
        missing = [a for a in SERVER_ARTIFACTS if not (lib / f"{a}-{version}.jar").is_file()]
        if missing:
            raise PeerError(f"Maven finished but {lib} lacks {missing}")
        stamp.write_text(want)
    return lib


def ensure_shim(version: str = APACHE_ROCKETMQ_VERSION) -> Path:
    """Compile the loopback HA-service shim against the server jars; returns a classpath directory."""
    lib = ensure_server_jars(version)
    root = dist_dir(version)
    shim = root / "shim"
    stamp = root / "shim.complete"
    want = _digest(_SHIM_SOURCE, version)
    with _file_lock(root / ".lock"):
        if stamp.is_file() and stamp.read_text() == want and shim.is_dir():
            return shim
        shutil.rmtree(shim, ignore_errors=True)
        src = root / "shim-src" / "tidemq" / "peer" / "LoopbackHAService.java"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(_SHIM_SOURCE)
        cmd = [_javac_executable(), "-nowarn", "-cp", f"{lib}/*", "-d", str(shim), str(src)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            raise PeerError(f"javac failed on {src}:\n{_tail_text(result.stdout + result.stderr, 40)}")
        services = shim / "META-INF" / "service"
        services.mkdir(parents=True, exist_ok=True)
        (services / "org.apache.rocketmq.store.ha.HAService").write_text(_SHIM_CLASS + "\n")
        stamp.write_text(want)
    return shim


def server_classpath(version: str = APACHE_ROCKETMQ_VERSION) -> str:
    """``<shim>:<lib>/*``: what the name server and broker run with."""
    shim = ensure_shim(version)
    return f"{shim}{os.pathsep}{dist_dir(version) / 'lib'}/*"


# ---------------------------------------------------------------------------------------------------------------------
# Ports, logs, the remoting probe

_handed_out: set[int] = set()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(offsets: Sequence[int], *, low: int = 20000, high: int = 32000) -> int:
    """A base port ``p`` with ``p + o`` free on 127.0.0.1 for every offset (below the Linux ephemeral range)."""
    rng = random.SystemRandom()
    for _ in range(500):
        base = rng.randrange(low, high)
        ports = [base + o for o in offsets]
        if any(p in _handed_out for p in ports):
            continue
        if all(_port_free(p) for p in ports):
            _handed_out.update(ports)
            return base
    raise PeerError(f"no free loopback ports with offsets {list(offsets)} in [{low}, {high})")


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return f"({path}: missing)"
    return _tail_text(data.decode("utf-8", "replace"), lines)


def remoting_request(addr: str, code: int, *, timeout_s: float = 3.0, ext: Mapping[str, str] | None = None) -> bytes:
    """One RocketMQ remoting request (JSON header, no body) to ``host:port``; returns the response body.

    Raises :class:`PeerError` on a non-zero response code. Used here for readiness (GET_BROKER_CLUSTER_INFO = 106).
    """
    host, port = addr.rsplit(":", 1)
    header: dict[str, Any] = {
        "code": code,
        "flag": 0,
        "language": "PYTHON",
        "opaque": random.randrange(1, 1 << 30),
        "serializeTypeCurrentRPC": "JSON",
        "version": 0,
    }
    if ext:
        header["extFields"] = dict(ext)
    raw = json.dumps(header).encode()
    frame = struct.pack(">iI", 4 + len(raw), len(raw)) + raw  # header-length high byte 0 = JSON
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(frame)
        (length,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, length)
    header_len = struct.unpack(">I", payload[:4])[0] & 0xFFFFFF
    resp = json.loads(payload[4 : 4 + header_len])
    if resp.get("code") != 0:
        raise PeerError(f"remoting request {code} to {addr} answered code {resp.get('code')}: {resp.get('remark')}")
    return payload[4 + header_len :]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        buf += chunk
    return bytes(buf)


def _pid_alive(pid: int, main_class: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if main_class is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the PID
    if not cmdline:
        return False  # zombie
    return main_class.encode() in cmdline


def _terminate(pid: int, main_class: str, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL (at once if 0): only a process we started (by main class)."""
    if not _pid_alive(pid, main_class):
        if proc is not None:
            proc.wait(timeout=5)
        return
    if timeout_s > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not _pid_alive(pid, main_class):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)
    else:
        end = time.monotonic() + 10
        while _pid_alive(pid, main_class) and time.monotonic() < end:
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------------------
# The peer


class ApacheRocketMQ:
    """Apache RocketMQ's name server and one master broker, on free 127.0.0.1 ports, data under ``data_dir``.

    ``flush`` is the broker's ``flushDiskType``. ``extra_broker_conf`` adds or overrides broker.conf keys (e.g.
    ``{"enablePropertyFilter": "true"}`` for SQL92 filters). ``timings`` holds how long each phase took (s).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        flush: str = "ASYNC_FLUSH",
        *,
        version: str = APACHE_ROCKETMQ_VERSION,
        broker_heap: str = "2g",
        namesrv_heap: str = "512m",
        cluster: str = "DefaultCluster",
        broker_name: str = "broker-a",
        queue_nums: int = 4,
        extra_broker_conf: Mapping[str, str] | None = None,
        jvm_args: Sequence[str] = (),
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        if flush not in FLUSH_TYPES:
            raise ValueError(f"flush must be one of {FLUSH_TYPES}, not {flush!r}")
        self.data_dir = Path(data_dir).resolve()
        self.flush = flush
        self.version = version
        self.broker_heap = broker_heap
        self.namesrv_heap = namesrv_heap
        self.cluster = cluster
        self.broker_name = broker_name
        self.queue_nums = queue_nums
        self.extra_broker_conf = dict(extra_broker_conf or {})
        self.jvm_args = tuple(jvm_args)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.timings: dict[str, float] = {}
        self.namesrv_port = 0
        self.broker_port = 0
        self.namesrv_pid = 0
        self.broker_pid = 0
        self._namesrv_proc: subprocess.Popen[bytes] | None = None
        self._broker_proc: subprocess.Popen[bytes] | None = None

    # -- addresses and paths

    @property
    def namesrv_addr(self) -> str:
        return f"127.0.0.1:{self.namesrv_port}"

    @property
    def broker_addr(self) -> str:
        """The address the broker registers with the name server (``brokerIP1``, 127.0.0.1 unless overridden)."""
        return f"{self.extra_broker_conf.get('brokerIP1', '127.0.0.1')}:{self.broker_port}"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def namesrv_dir(self) -> Path:
        return self.data_dir / "namesrv"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "peer.json"

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "namesrv_addr": self.namesrv_addr,
            "broker_addr": self.broker_addr,
            "cluster": self.cluster,
            "broker_name": self.broker_name,
            "flush": self.flush,
            "namesrv_pid": self.namesrv_pid,
            "broker_pid": self.broker_pid,
            "data_dir": str(self.data_dir),
            "timings": self.timings,
        }

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (
            self.namesrv_dir / "stdout.log",
            self.namesrv_dir / "home" / "logs" / "rocketmqlogs" / "namesrv.log",
            self.broker_dir / "stdout.log",
            self.broker_dir / "home" / "logs" / "rocketmqlogs" / "broker.log",
        ):
            if path.exists():
                parts.append(f"--- {path} (last {lines} lines)\n{_tail_file(path, lines)}")
        return "\n".join(parts)

    # -- lifecycle

    def __enter__(self) -> ApacheRocketMQ:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ApacheRocketMQ:
        t0 = time.monotonic()
        classpath = server_classpath(self.version)
        self.timings["resolve_s"] = round(time.monotonic() - t0, 3)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last: PeerError | None = None
        for _attempt in range(3):
            try:
                self._start_once(classpath)
            except PeerError as e:
                self._kill_all()
                if "Address already in use" not in str(e) and "Failed to bind" not in str(e):
                    raise
                last = e  # a port was taken between the check and the bind: pick new ports
            except BaseException:  # Ctrl-C, an OSError...: leave no JVM behind
                self._kill_all()
                raise
            else:
                self.timings["start_total_s"] = round(time.monotonic() - t0, 3)
                self._write_state()
                return self
        assert last is not None
        raise last

    def _java_cmd(self, heap: str, home: Path, classpath: str) -> list[str]:
        return [
            java_executable(),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            *JVM_FLAGS,
            f"-Duser.home={home}",
            f"-Drocketmq.home.dir={home}",
            *self.jvm_args,
            "-cp",
            classpath,
        ]

    def _spawn(self, cmd: list[str], cwd: Path, home: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, ROCKETMQ_HOME=str(home))
        with (cwd / "stdout.log").open("ab") as out:
            return subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in a test run does not reach the JVMs; stop() does
            )

    def _start_once(self, classpath: str) -> None:
        self.namesrv_port = _pick_ports((0,))
        self.broker_port = _pick_ports((-2, 0, 1))  # fast remoting port, remoting port, HA port

        # Name server
        ns_home = self.namesrv_dir / "home"
        ns_home.mkdir(parents=True, exist_ok=True)
        ns_conf = self.namesrv_dir / "namesrv.conf"
        ns_conf.write_text(f"listenPort={self.namesrv_port}\nbindAddress=127.0.0.1\n")
        (self.namesrv_dir / "stdout.log").write_bytes(b"")
        t = time.monotonic()
        cmd = [*self._java_cmd(self.namesrv_heap, ns_home, classpath), NAMESRV_MAIN, "-c", str(ns_conf)]
        self._namesrv_proc = self._spawn(cmd, self.namesrv_dir, ns_home)
        self.namesrv_pid = self._namesrv_proc.pid
        self._wait_for(
            "name server",
            self._namesrv_proc,
            self.namesrv_dir / "stdout.log",
            b"boot success",
            lambda: self._port_accepts(self.namesrv_port),
        )
        self.timings["namesrv_start_s"] = round(time.monotonic() - t, 3)

        # Broker
        br_home = self.broker_dir / "home"
        br_home.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = {
            "brokerClusterName": self.cluster,
            "brokerName": self.broker_name,
            "brokerId": "0",
            "brokerRole": "ASYNC_MASTER",
            "listenPort": str(self.broker_port),
            "bindAddress": "127.0.0.1",
            "namesrvAddr": self.namesrv_addr,
            "brokerIP1": "127.0.0.1",
            "brokerIP2": "127.0.0.1",
            "storePathRootDir": str(self.store_dir),
            "storePathCommitLog": str(self.store_dir / "commitlog"),
            "flushDiskType": self.flush,
            "autoCreateTopicEnable": "true",
            "autoCreateSubscriptionGroup": "true",
            "defaultTopicQueueNums": str(self.queue_nums),
            **self.extra_broker_conf,
        }
        br_conf = self.broker_dir / "broker.conf"
        br_conf.write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
        (self.broker_dir / "stdout.log").write_bytes(b"")
        t = time.monotonic()
        cmd = [*self._java_cmd(self.broker_heap, br_home, classpath), BROKER_MAIN, "-c", str(br_conf)]
        self._broker_proc = self._spawn(cmd, self.broker_dir, br_home)
        self.broker_pid = self._broker_proc.pid
        self._wait_for(
            "broker",
            self._broker_proc,
            self.broker_dir / "stdout.log",
            b"boot success",
            self._broker_registered,
        )
        self.timings["broker_start_s"] = round(time.monotonic() - t, 3)

    @staticmethod
    def _port_accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    def _broker_registered(self) -> bool:
        """The name server's cluster info lists this broker at its address."""
        try:
            body = remoting_request(self.namesrv_addr, 106, timeout_s=2.0)  # GET_BROKER_CLUSTER_INFO
        except (OSError, PeerError, ValueError):
            return False
        return self.broker_addr.encode() in body and self.broker_name.encode() in body

    def _wait_for(
        self,
        what: str,
        proc: subprocess.Popen[bytes],
        log: Path,
        marker: bytes,
        ready: Callable[[], bool],
    ) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        seen_marker = False
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise PeerError(
                    f"Apache RocketMQ {what} exited with code {code} while starting "
                    f"(data dir {self.data_dir}):\n{self.log_tail()}"
                )
            if not seen_marker:
                try:
                    seen_marker = marker in log.read_bytes()
                except OSError:
                    seen_marker = False
            if seen_marker and ready():
                return
            time.sleep(0.1)
        raise PeerError(
            f"Apache RocketMQ {what} not ready after {self.start_timeout_s:.0f}s "
            f"(log line {marker.decode()!r} seen: {seen_marker}; data dir {self.data_dir}):\n{self.log_tail()}"
        )

    def stop(self, *, graceful: bool = True) -> None:
        """Stop the broker (it unregisters from the name server), then the name server. Idempotent.

        Graceful (SIGTERM; Apache's shutdown hooks take about 10 s, SIGKILL after ``stop_timeout_s``) or not (SIGKILL
        at once: a crash, and a quick teardown when the data does not matter).
        """
        t = time.monotonic()
        self._kill_all(timeout_s=self.stop_timeout_s if graceful else 0.0)
        self.timings["stop_s"] = round(time.monotonic() - t, 3)
        with contextlib.suppress(OSError):
            self.state_file.unlink()

    def _kill_all(self, timeout_s: float = 0.0) -> None:
        if self.broker_pid:
            _terminate(self.broker_pid, BROKER_MAIN, self._broker_proc, timeout_s)
            self.broker_pid, self._broker_proc = 0, None
        if self.namesrv_pid:
            _terminate(self.namesrv_pid, NAMESRV_MAIN, self._namesrv_proc, timeout_s)
            self.namesrv_pid, self._namesrv_proc = 0, None

    def _write_state(self) -> None:
        self.state_file.write_text(json.dumps(self.describe(), sort_keys=True) + "\n")

    def broker_running(self) -> bool:
        return self._broker_proc is not None and self._broker_proc.poll() is None

    def forget_processes(self) -> None:
        """For a detached CLI ``start``: leave the JVMs running after this Python process exits."""
        for proc in (self._namesrv_proc, self._broker_proc):
            if proc is not None:
                proc.returncode = 0  # we never wait() for them here; silence Popen's "still running" warning
        self._namesrv_proc = self._broker_proc = None


def _load_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir.resolve() / "peer.json"
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PeerError(f"no peer started with --data-dir {data_dir} ({path}: {e})") from e
    return state


# ---------------------------------------------------------------------------------------------------------------------
# CLI


def _add_start_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--flush", choices=FLUSH_TYPES, default="ASYNC_FLUSH")
    p.add_argument("--version", default=APACHE_ROCKETMQ_VERSION)
    p.add_argument("--broker-heap", default="2g")
    p.add_argument("--namesrv-heap", default="512m")
    p.add_argument("--queue-nums", type=int, default=4)
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra broker.conf entry")
    p.add_argument("--timeout", type=float, default=120.0, help="start timeout in seconds")


def _peer_from_args(args: argparse.Namespace) -> ApacheRocketMQ:
    extra = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--conf wants KEY=VALUE, got {item!r}")
        extra[key] = value
    return ApacheRocketMQ(
        args.data_dir,
        flush=args.flush,
        version=args.version,
        broker_heap=args.broker_heap,
        namesrv_heap=args.namesrv_heap,
        queue_nums=args.queue_nums,
        extra_broker_conf=extra,
        start_timeout_s=args.timeout,
    )


def _cli(args: argparse.Namespace) -> int:
    if args.cmd == "fetch":
        t = time.monotonic()
        cp = server_classpath(args.version)
        print(json.dumps({"version": args.version, "classpath": cp, "seconds": round(time.monotonic() - t, 3)}))
        return 0
    if args.cmd in ("start", "run"):
        peer = _peer_from_args(args)
        if peer.state_file.exists():
            state = _load_state(args.data_dir)
            if _pid_alive(int(state["broker_pid"]), BROKER_MAIN) or _pid_alive(int(state["namesrv_pid"]), NAMESRV_MAIN):
                print(f"error: a peer already runs with --data-dir {args.data_dir}: {state}", file=sys.stderr)
                return 1
        if args.cmd == "start":
            peer.start()
            peer.forget_processes()
            print(json.dumps(peer.describe()))
            return 0
        with peer:
            print(json.dumps(peer.describe()), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while peer.broker_running():
                    time.sleep(0.5)
        return 0
    state = _load_state(args.data_dir)
    ns_pid, br_pid = int(state["namesrv_pid"]), int(state["broker_pid"])
    if args.cmd == "status":
        alive = {"namesrv": _pid_alive(ns_pid, NAMESRV_MAIN), "broker": _pid_alive(br_pid, BROKER_MAIN)}
        print(json.dumps({**state, "alive": alive}))
        return 0 if all(alive.values()) else 1
    # stop: the broker first (it unregisters from the name server), each by its recorded PID
    _terminate(br_pid, BROKER_MAIN, None, 30.0)
    _terminate(ns_pid, NAMESRV_MAIN, None, 30.0)
    with contextlib.suppress(OSError):
        (args.data_dir.resolve() / "peer.json").unlink()
    print(json.dumps({"stopped": [ns_pid, br_pid]}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apache_rocketmq", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_fetch = sub.add_parser("fetch", help="resolve the server jars (and compile the shim) into the cache")
    p_fetch.add_argument("--version", default=APACHE_ROCKETMQ_VERSION)
    _add_start_args(sub.add_parser("start", help="start detached, print JSON, exit"))
    _add_start_args(sub.add_parser("run", help="start in the foreground until Ctrl-C"))
    for name in ("stop", "status"):
        sub.add_parser(name).add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        return _cli(args)
    except PeerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
