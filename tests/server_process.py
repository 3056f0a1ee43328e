"""Start a real ``tidemq dev`` (name server + broker) as a subprocess on free loopback ports.

Interop tests drive official clients in subprocesses with blocking calls, so the server runs in its own
process rather than on the test's event loop; this also exercises the command line a user runs.

``ServerProcess.restart()`` stops the server and starts a new one on the same data directory and the same
ports, so clients that know the old addresses (and records that carry the broker's address) still fit.
:func:`remoting_call` is a small blocking remoting client, for tests that need to ask the broker something
(group membership, committed offsets) while official clients run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tidemq.protocol.remoting import (
    RemotingCommand,
    RequestCode,
    ResponseCode,
    decode_frame,
    encode_bytes,
    loads_lenient,
)

T = TypeVar("T")


def free_port(*, with_vip: bool = False, avoid: Collection[int] = ()) -> int:
    """A free loopback port; with ``with_vip`` also port-2 is free (the broker's VIP channel).

    ``avoid``: ports already picked but not bound yet (a name server's), which neither the port nor its port-2
    may be: the kernel can hand a just-released port out again.
    """
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 1030 or port in avoid or (with_vip and port - 2 in avoid):
            continue
        if not with_vip:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port - 2))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def free_ports() -> tuple[int, int]:
    """A name server port and a broker port (with its VIP port-2 free) that do not collide."""
    namesrv_port = free_port()
    return namesrv_port, free_port(with_vip=True, avoid={namesrv_port})


class ServerNotReady(RuntimeError):
    """``tidemq dev`` exited or stayed silent before printing its ready line."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    namesrv_addr: str
    broker_addr: str
    data_dir: Path
    lines: list[str]
    options: dict[str, object] = field(default_factory=dict)
    """The keyword arguments it was started with (broker_conf, extra, ready_timeout_s), for :meth:`restart`."""

    @property
    def broker_port(self) -> int:
        return int(self.broker_addr.rsplit(":", 1)[1])

    @property
    def namesrv_port(self) -> int:
        return int(self.namesrv_addr.rsplit(":", 1)[1])

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def log_errors(self) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks the server logged (every start on this data dir appends)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [line for line in lines if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")]

    def stop(self, timeout_s: float = 20) -> int:
        """SIGTERM and wait: the clean stop users get with Ctrl-C."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def restart(self, *, bind_timeout_s: float = 15) -> ServerProcess:
        """Stop cleanly (the exit status must be 0), then start a new server on the same data dir and ports.

        A port of ours may briefly be taken by someone else's connection; the start is retried until
        ``bind_timeout_s``.
        """
        code = self.stop()
        if code != 0:
            raise RuntimeError(f"tidemq dev exited {code} on SIGTERM; see {self.log_path}")
        deadline = time.monotonic() + bind_timeout_s
        while True:
            try:
                return start_server(
                    self.data_dir,
                    namesrv_port=self.namesrv_port,
                    broker_port=self.broker_port,
                    **self.options,  # type: ignore[arg-type]
                )
            except ServerNotReady as exc:
                if time.monotonic() > deadline or not any(_is_bind_failure(line) for line in exc.lines):
                    raise
                time.sleep(0.2)  # the port is held by a socket we do not own; try again shortly


def _is_bind_failure(line: str) -> bool:
    return "cannot listen" in line or "address already in use" in line.lower()


def start_server(
    data_dir: Path,
    *,
    broker_conf: Path | None = None,
    extra: list[str] | None = None,
    ready_timeout_s: float = 30,
    namesrv_port: int | None = None,
    broker_port: int | None = None,
) -> ServerProcess:
    """Start ``tidemq dev`` on ``data_dir``; free ports unless ``namesrv_port``/``broker_port`` are given."""
    namesrv_port = namesrv_port or free_port(avoid={broker_port} if broker_port else ())
    broker_port = broker_port or free_port(with_vip=True, avoid={namesrv_port})
    command = [
        sys.executable,
        "-m",
        "tidemq.cli.main",
        "dev",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--namesrv-port",
        str(namesrv_port),
        "--broker-port",
        str(broker_port),
        *(["-c", str(broker_conf)] if broker_conf else []),
        *(extra or []),
    ]
    log_path = data_dir.parent / f"{data_dir.name}.log"
    with log_path.open("a") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    lines: list[str] = []
    deadline = time.monotonic() + ready_timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("tidemq dev ready"):
            options: dict[str, object] = {
                "broker_conf": broker_conf,
                "extra": extra,
                "ready_timeout_s": ready_timeout_s,
            }
            return ServerProcess(
                process, f"127.0.0.1:{namesrv_port}", f"127.0.0.1:{broker_port}", data_dir, lines, options
            )
    with contextlib.suppress(Exception):
        process.kill()
        process.wait(5)
    process.stdout.close()  # else its pipe is only closed by the garbage collector: a ResourceWarning later
    with contextlib.suppress(OSError):
        lines += [line.rstrip() for line in log_path.read_text().splitlines()[-20:]]
    raise ServerNotReady(f"tidemq dev did not become ready: {lines}; see {log_path}", lines)


@contextlib.contextmanager
def running_server(data_dir: Path, **kwargs: object) -> Iterator[ServerProcess]:
    server = start_server(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------------------------
# A blocking remoting client, to ask the server things while official clients run.
# --------------------------------------------------------------------------------------------------------------

_opaques = itertools.count(1)


def remoting_call(
    addr: str, code: int, fields: Mapping[str, str] | None = None, body: bytes = b"", *, timeout_s: float = 5
) -> RemotingCommand:
    """Send one request to ``addr`` ("host:port") on a fresh connection and return the response."""
    host, _, port = addr.rpartition(":")
    request = RemotingCommand.request(code, dict(fields or {}), body, opaque=next(_opaques))
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(encode_bytes(request))
        head = _read_exactly(sock, 4)
        frame = head + _read_exactly(sock, int.from_bytes(head, "big"))
    response = decode_frame(frame)
    assert response.opaque == request.opaque, (request, response)
    return response


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks: list[bytes] = []
    while count:
        chunk = sock.recv(min(count, 1 << 20))
        if not chunk:
            raise ConnectionError("the server closed the connection mid-frame")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def consumer_ids(broker_addr: str, group: str) -> list[str]:
    """The client ids the broker has for a consumer group (GET_CONSUMER_LIST_BY_GROUP); [] when none."""
    response = remoting_call(broker_addr, RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group})
    if response.code != ResponseCode.SUCCESS:
        return []
    return [str(cid) for cid in loads_lenient(bytes(response.body)).get("consumerIdList", [])]


def committed_offset(broker_addr: str, group: str, topic: str, queue_id: int) -> int | None:
    """QUERY_CONSUMER_OFFSET: the group's committed offset on a queue, or None (QUERY_NOT_FOUND)."""
    response = remoting_call(
        broker_addr,
        RequestCode.QUERY_CONSUMER_OFFSET,
        {"consumerGroup": group, "topic": topic, "queueId": str(queue_id)},
    )
    if response.code != ResponseCode.SUCCESS:
        return None
    return int(response.ext_fields["offset"])


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; raise AssertionError with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s}s (last: {last!r})")
        time.sleep(interval_s)
