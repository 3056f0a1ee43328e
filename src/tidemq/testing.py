"""A pytest plugin: a real tidemq (name server + broker) inside your test's event loop.

Enable it with ``pytest -p tidemq.testing``, ``addopts = "-p tidemq.testing"``, or ``pytest_plugins =
["tidemq.testing"]`` in a test module or the root ``conftest.py``. It needs pytest-asyncio. Fixtures:

* ``tidemq_server`` - a :class:`TidemqServer`: a :class:`~tidemq.namesrv.server.NameServer` and a
  :class:`~tidemq.broker.runtime.BrokerRuntime` on free loopback ports, with small store files under the
  test's ``tmp_path``; ``.namesrv_addr`` is what clients need. Stopped (store closed) after the test.
* ``tidemq_producer`` - a started :class:`~tidemq.client.Producer` connected to it.
* ``tidemq_consumer_factory`` - ``factory(group, **settings)`` makes :class:`~tidemq.client.PushConsumer`\\ s
  connected to it (subscribe, then ``await consumer.start()``); all are closed after the test.

::

    async def test_orders(tidemq_producer, tidemq_consumer_factory):
        received = asyncio.Queue()
        consumer = tidemq_consumer_factory("CG_test", consume_from_where=ConsumeFromWhere.FIRST_OFFSET)
        consumer.subscribe("Orders", "*", received.put)
        await consumer.start()
        await tidemq_producer.send("Orders", b"hello")
        assert (await asyncio.wait_for(received.get(), 10)).body == b"hello"

:func:`running_tidemq` is the same server as an async context manager, for code outside pytest.

Everything runs on the test's loop; store I/O is done there too (an embedded broker is meant for tests and
development, not throughput). Imports the broker and name server: this module is an edge, like the CLI.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest_asyncio

from tidemq.broker.config import BrokerConfig
from tidemq.broker.runtime import BrokerRuntime
from tidemq.client import Producer, PushConsumer
from tidemq.namesrv.config import NamesrvConfig
from tidemq.namesrv.server import NameServer

HOST: Final = "127.0.0.1"
SMALL_STORE: Final[dict[str, int | bool]] = {
    "mapped_file_size_commit_log": 8 << 20,
    "mapped_file_size_consume_queue": 20 * 10_000,
    "max_message_size": 4 << 20,
    "max_hash_slot_num": 10_000,
    "max_index_num": 40_000,
    "index_worker_enable": False,
}
"""Store settings for tests: 8 MiB commit-log segments instead of 1 GiB, so a test's directory stays small, and
the key index built in-process: the whole tidemq stays in the test's process and starts in milliseconds."""


@dataclass
class TidemqServer:
    """A running name server and broker.

    Attributes:
        namesrv: the name server.
        broker: the broker runtime (``broker.broker`` is the :class:`~tidemq.broker.broker.Broker`).
        data_dir: the store root.
    """

    namesrv: NameServer
    broker: BrokerRuntime
    data_dir: Path

    @property
    def namesrv_addr(self) -> str:
        return f"{HOST}:{self.namesrv.port}"

    @property
    def broker_addr(self) -> str:
        return f"{HOST}:{self.broker.port}"


@contextlib.asynccontextmanager
async def running_tidemq(data_dir: Path, **broker_settings: object) -> AsyncIterator[TidemqServer]:
    """Start a name server and a broker on free loopback ports, storing under ``data_dir``; stop them after.

    Args:
        data_dir: the store root (created if missing).
        broker_settings: :class:`~tidemq.broker.config.BrokerConfig` fields overriding the small-store defaults.
    """
    namesrv = NameServer(NamesrvConfig(listen_port=0, bind_address=HOST))
    await namesrv.start()
    try:
        settings: dict[str, Any] = {
            **SMALL_STORE,
            "store_path_root_dir": data_dir,
            "broker_ip1": HOST,
            "listen_port": 0,
            "namesrv_addr": f"{HOST}:{namesrv.port}",
            **broker_settings,
        }
        runtime = BrokerRuntime(BrokerConfig(**settings), host=HOST)
        try:
            await runtime.start()
            yield TidemqServer(namesrv, runtime, data_dir)
        finally:
            await runtime.close()
    finally:
        await namesrv.close()


@pytest_asyncio.fixture
async def tidemq_server(tmp_path: Path) -> AsyncIterator[TidemqServer]:
    """A name server and a broker for this test, on its event loop."""
    async with running_tidemq(tmp_path / "tidemq-store") as server:
        yield server


@pytest_asyncio.fixture
async def tidemq_producer(tidemq_server: TidemqServer) -> AsyncIterator[Producer]:
    """A started producer (group ``PG_tidemq_test``) connected to ``tidemq_server``."""
    async with Producer("PG_tidemq_test", tidemq_server.namesrv_addr) as producer:
        yield producer


@pytest_asyncio.fixture
async def tidemq_consumer_factory(tidemq_server: TidemqServer) -> AsyncIterator[Callable[..., PushConsumer]]:
    """``factory(group, **settings)`` -> a new PushConsumer connected to ``tidemq_server``; closed after the test."""
    made: list[PushConsumer] = []

    def factory(group: str, **settings: Any) -> PushConsumer:
        consumer = PushConsumer(group, tidemq_server.namesrv_addr, **settings)
        made.append(consumer)
        return consumer

    try:
        yield factory
    finally:
        for consumer in reversed(made):
            await consumer.close()
