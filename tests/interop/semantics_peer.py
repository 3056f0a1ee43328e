"""The server the consumption-semantics interop tests run against: ``tidemq dev`` by default, Apache RocketMQ with
``TIDEMQ_SEMANTICS_PEER=apache`` (``bench/peers/apache_rocketmq.py``), to check that the tests themselves state what
the reference does::

    TIDEMQ_SEMANTICS_PEER=apache pytest tests/interop/test_java_semantics.py tests/interop/test_cpp_semantics.py

Where Apache and tidemq knowingly differ, the tests look at :attr:`Peer.kind`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.server_process import start_server

__all__ = ["Peer", "running_peer"]


@dataclass(frozen=True)
class Peer:
    namesrv_addr: str
    broker_addr: str
    broker_port: int
    kind: str = "tidemq"
    """"tidemq" or "apache"."""


@contextlib.contextmanager
def running_peer(root: Path, broker_conf: Mapping[str, str] | None = None) -> Iterator[Peer]:
    """Start the peer under ``root`` with extra broker.conf keys; stop it (tidemq: cleanly, with no errors logged)."""
    conf = dict(broker_conf or {})
    if os.environ.get("TIDEMQ_SEMANTICS_PEER") == "apache":
        from bench.peers.apache_rocketmq import ApacheRocketMQ, ensure_shim

        ensure_shim()
        extra = conf | {"enablePropertyFilter": "true"}  # on by default in tidemq, off in Apache
        with ApacheRocketMQ(root / "apache", broker_heap="1g", extra_broker_conf=extra) as apache:
            yield Peer(apache.namesrv_addr, apache.broker_addr, apache.broker_port, "apache")
        return
    conf_path = None
    if conf:
        conf_path = root / "broker.conf"
        conf_path.write_text("".join(f"{key}={value}\n" for key, value in conf.items()))
    server = start_server(root / "data", broker_conf=conf_path)
    try:
        yield Peer(server.namesrv_addr, server.broker_addr, server.broker_port)
    finally:
        assert server.stop() == 0, f"unclean stop; see {server.log_path}"
        assert not server.log_errors(), server.log_errors()
