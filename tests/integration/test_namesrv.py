"""The name server over real sockets: brokers register through BrokerRegistrar, clients query with raw requests."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tidemq.broker.registration import BrokerIdentity, BrokerRegistrar
from tidemq.cli.namesrv_command import build_config
from tidemq.errors import ConfigError
from tidemq.namesrv import NameServer, NamesrvConfig
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode, dumps_compact, loads_lenient
from tidemq.transport import RemotingChannel, connect, next_opaque

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
CLUSTER = "DefaultCluster"


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms


class Topics:
    """A broker's topic table and data version, as BrokerRegistrar's body provider wants them."""

    def __init__(self, *names: str, queues: int = 4) -> None:
        self.table: dict[str, Any] = {}
        self.counter = 0
        for name in names:
            self.add(name, queues)

    def add(self, name: str, queues: int = 4) -> None:
        self.table[name] = {"topicName": name, "readQueueNums": queues, "writeQueueNums": queues, "perm": 6}
        self.counter += 1

    def __call__(self) -> tuple[dict[str, Any], dict[str, int]]:
        return dict(self.table), {"counter": self.counter, "stateVersion": 0, "timestamp": 1_700_000_000_000}


def identity(name: str = "broker-a", broker_id: int = 0, port: int = 10911) -> BrokerIdentity:
    return BrokerIdentity(CLUSTER, name, broker_id, f"{HOST}:{port}", f"{HOST}:{port + 1}")


def registrar(
    servers: list[NameServer] | list[str], ident: BrokerIdentity, topics: Topics, **kwargs: Any
) -> BrokerRegistrar:
    addrs = [s if isinstance(s, str) else f"{HOST}:{s.port}" for s in servers]
    return BrokerRegistrar(addrs, ident, topics, **kwargs)


@pytest.fixture
async def namesrv() -> AsyncIterator[NameServer]:
    async with NameServer(NamesrvConfig(listen_port=0, bind_address=HOST)) as server:
        yield server


@pytest.fixture
async def client(namesrv: NameServer) -> AsyncIterator[RemotingChannel]:
    channel = await connect(HOST, namesrv.port)
    yield channel
    channel.close()
    await channel.wait_closed()


async def call(
    channel: RemotingChannel, code: int, ext: dict[str, str] | None = None, body: bytes = b""
) -> RemotingCommand:
    return await channel.request(RemotingCommand.request(code, ext, body, opaque=next_opaque()), timeout_s=5)


async def route(channel: RemotingChannel, topic: str) -> Any:
    response = await call(channel, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    return loads_lenient(response.body) if response.code == ResponseCode.SUCCESS else response.code


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll server-side state (a peer's close, a background re-registration) that exposes no event to await."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110  # the state lives in the server; there is no event to wait on
            await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --- registration ---------------------------------------------------------------------------------------------------


async def test_two_brokers_and_a_slave_register_and_clients_see_the_route(
    namesrv: NameServer, client: RemotingChannel
) -> None:
    async with (
        registrar([namesrv], identity("broker-a", port=10911), Topics("Orders", "OnlyA")),
        registrar([namesrv], identity("broker-b", port=20911), Topics("Orders")),
        registrar([namesrv], identity("broker-a", 1, port=30911), Topics("Orders")) as slave,
    ):
        assert slave.master_addr == f"{HOST}:10911"
        assert slave.master_ha_server_addr == f"{HOST}:10912"
        orders = await route(client, "Orders")
        assert [b["brokerName"] for b in orders["brokerDatas"]] == ["broker-a", "broker-b"]
        assert orders["brokerDatas"][0]["brokerAddrs"] == {0: f"{HOST}:10911", 1: f"{HOST}:30911"}
        assert [(q["brokerName"], q["writeQueueNums"], q["perm"]) for q in orders["queueDatas"]] == [
            ("broker-a", 4, 6),
            ("broker-b", 4, 6),
        ]
        assert [q["brokerName"] for q in (await route(client, "OnlyA"))["queueDatas"]] == ["broker-a"]
        info = loads_lenient((await call(client, RequestCode.GET_BROKER_CLUSTER_INFO)).body)
        assert info["clusterAddrTable"] == {CLUSTER: ["broker-a", "broker-b"]}
        topics = loads_lenient((await call(client, RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).body)
        assert topics == {"topicList": ["OnlyA", "Orders"]}
    # Each registrar unregistered on close.
    assert await route(client, "Orders") == ResponseCode.TOPIC_NOT_EXIST
    assert namesrv.route_table.broker_names() == []


async def test_register_now_after_a_topic_change(namesrv: NameServer, client: RemotingChannel) -> None:
    topics = Topics("First")
    async with registrar([namesrv], identity(), topics) as broker:
        assert await route(client, "Second") == ResponseCode.TOPIC_NOT_EXIST
        topics.add("Second", queues=2)
        results = await broker.register_now()
        assert list(results) == [f"{HOST}:{namesrv.port}"]
        second = await route(client, "Second")
        assert second["queueDatas"][0]["readQueueNums"] == 2


async def test_a_closed_broker_channel_removes_the_broker_at_once(namesrv: NameServer, client: RemotingChannel) -> None:
    broker = await connect(HOST, namesrv.port)
    body = dumps_compact(
        {
            "topicConfigSerializeWrapper": {
                "topicConfigTable": {"Raw": {"topicName": "Raw", "readQueueNums": 1, "writeQueueNums": 1, "perm": 6}},
                "dataVersion": {"counter": 1, "stateVersion": 0, "timestamp": 1},
            },
            "filterServerList": [],
        }
    )
    ext = {
        "brokerName": "raw-broker",
        "brokerAddr": f"{HOST}:40911",
        "clusterName": CLUSTER,
        "haServerAddr": f"{HOST}:40912",
        "brokerId": "0",
        "compressed": "false",
        "bodyCrc32": str(zlib.crc32(body) & 0x7FFFFFFF),
    }
    assert (await call(broker, RequestCode.REGISTER_BROKER, ext, body)).code == ResponseCode.SUCCESS
    assert (await route(client, "Raw"))["brokerDatas"][0]["brokerName"] == "raw-broker"
    broker.close()
    await wait_until(lambda: namesrv.route_table.broker_names() == [])
    assert await route(client, "Raw") == ResponseCode.TOPIC_NOT_EXIST


async def test_expired_broker_is_dropped_and_the_registrar_comes_back() -> None:
    clock = FakeClock()
    config = NamesrvConfig(listen_port=0, bind_address=HOST)
    async with (
        NameServer(config, clock_ms=clock) as server,
        registrar([server], identity(), Topics("T"), retry_delay_s=0.05) as broker,
    ):
        clock.now_ms += 120_001  # silent for longer than 120 s
        removed = server.scan_now()
        assert [b.broker_name for b in removed] == ["broker-a"]
        assert server.route_table.topic_route("T") is None
        expired_channel = removed[0].channel_key
        assert isinstance(expired_channel, RemotingChannel)
        await expired_channel.wait_closed()  # the name server closed the expired broker's channel
        # The registrar saw its connection drop, reconnected and registered again.
        await wait_until(lambda: server.route_table.topic_route("T") is not None)
        assert broker.results[f"{HOST}:{server.port}"].master_addr is None


async def test_the_expiry_scan_runs_by_itself() -> None:
    clock = FakeClock()
    config = NamesrvConfig(listen_port=0, bind_address=HOST, scan_not_active_broker_interval_ms=20)
    async with (
        NameServer(config, clock_ms=clock) as server,
        registrar([server], identity(), Topics("T"), retry_delay_s=30) as broker,
    ):
        assert server.route_table.broker_names() == ["broker-a"]
        clock.now_ms += 120_001
        await wait_until(lambda: server.route_table.broker_names() == [])
        del broker


async def test_registers_with_every_name_server_and_survives_a_dead_one() -> None:
    config = NamesrvConfig(listen_port=0, bind_address=HOST)
    dead = f"{HOST}:{free_port()}"
    async with (
        NameServer(config) as one,
        NameServer(config) as two,
        NameServer(config) as three,
    ):
        servers = [one, two, three]
        addrs = [f"{HOST}:{s.port}" for s in servers]
        async with registrar([addrs[0], dead, addrs[1], addrs[2]], identity(), Topics("T"), connect_timeout_s=1) as b:
            assert sorted(b.results) == sorted(addrs)
            for server in servers:
                assert server.route_table.broker_names() == ["broker-a"]
                assert server.route_table.all_topics() == ["T"]
            results = await b.register_now()
            assert results[dead] is None
            assert all(results[addr] is not None for addr in addrs)
        for server in servers:
            assert server.route_table.broker_names() == []


def test_registrar_refuses_a_malformed_name_server_address() -> None:
    with pytest.raises(ConfigError, match="namesrvAddr"):
        BrokerRegistrar(["no-port-here"], identity(), Topics())


async def test_registrar_with_no_reachable_name_server_does_not_fail() -> None:
    async with registrar([f"{HOST}:{free_port()}"], identity(), Topics("T"), connect_timeout_s=1) as broker:
        assert broker.results == {}
        assert broker.master_addr is None


# --- robustness -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x01\x00",  # a frame shorter than its own header word
        b"\x00\x00\x00\x0a\x00\x00\x00\x06{nope}",  # a header that is not JSON
        b"\x00\x00\x00\x06\x05\x00\x00\x00xx",  # serialize type 5
        b"\x7f\xff\xff\xff" + b"x" * 64,  # a 2 GiB frame
    ],
)
async def test_garbage_closes_that_connection_only(
    namesrv: NameServer, client: RemotingChannel, garbage: bytes
) -> None:
    reader, writer = await asyncio.open_connection(HOST, namesrv.port)
    try:
        writer.write(garbage)
        await writer.drain()
        assert await reader.read() == b""  # the name server closed it
    finally:
        writer.close()
        await writer.wait_closed()
    response = await call(client, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "Anything"})
    assert response.code == ResponseCode.TOPIC_NOT_EXIST


async def test_bad_requests_get_error_responses_and_the_connection_stays(client: RemotingChannel) -> None:
    response = await call(client, RequestCode.REGISTER_BROKER, {"brokerName": "x"}, b"{garbage")
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark is not None
    assert "<" in response.remark
    response = await call(client, 12345)
    assert (response.code, response.remark) == (
        ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
        "request type 12345 not supported",
    )
    assert (await call(client, RequestCode.GET_BROKER_CLUSTER_INFO)).code == ResponseCode.SUCCESS


# --- the command line -----------------------------------------------------------------------------------------------


async def test_cli_starts_answers_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidemq.cli.namesrv_command",
        "--host",
        HOST,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            line = (await process.stdout.readline()).decode()
        assert line.startswith(f"tidemq namesrv ready on {HOST}:"), line
        port = int(line.rsplit(":", 1)[1])
        async with registrar([f"{HOST}:{port}"], identity(), Topics("CliTopic")):
            channel = await connect(HOST, port)
            try:
                assert (await route(channel, "CliTopic"))["queueDatas"][0]["brokerName"] == "broker-a"
            finally:
                channel.close()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_refuses_a_bad_config(tmp_path: Path) -> None:
    conf = tmp_path / "namesrv.conf"
    conf.write_text("listenPort=not-a-port\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidemq.cli.namesrv_command",
        "-c",
        str(conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        stdout, stderr = await process.communicate()
    assert process.returncode == 2
    assert stdout == b""
    assert "listenPort" in stderr.decode()


def test_cli_flags_override_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "namesrv.conf"
    conf.write_text("listenPort=19876\nbindAddress=10.1.1.1\norderMessageEnable=true\n", encoding="utf-8")
    args = argparse.Namespace(config_file=conf, port=0, host=HOST)
    config = build_config(args)
    assert (config.listen_port, config.bind_address, config.order_message_enable) == (0, HOST, True)
    defaults = build_config(argparse.Namespace(config_file=None, port=None, host=None))
    assert (defaults.listen_port, defaults.bind_address) == (9876, "0.0.0.0")


def test_cli_help_lists_the_flags() -> None:
    from tidemq.cli import namesrv_command

    parser = argparse.ArgumentParser(prog="tidemq")
    namesrv_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["namesrv", "-c", "x.conf", "--port", "1", "--host", "h"])
    assert (args.config_file, args.port, args.host, args.handler) == (Path("x.conf"), 1, "h", namesrv_command.run)
