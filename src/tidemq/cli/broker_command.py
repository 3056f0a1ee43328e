"""``tidemq broker -c broker.conf -n "host1:9876;host2:9876"``: a standalone broker, as RocketMQ's mqbroker."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tidemq.broker.config import BrokerConfig, broker_config_from_properties
from tidemq.cli._runtime import announce, run, setup_logging, stop_event
from tidemq.errors import ConfigError, StoreError
from tidemq.properties import load_properties


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("broker", help="run a broker (reads RocketMQ's broker.conf)")
    parser.add_argument("-c", "--config", type=Path, help="broker.conf (Java properties, RocketMQ's keys)")
    parser.add_argument("-n", "--namesrv-addr", help='name servers, "host:port;host:port" (else NAMESRV_ADDR)')
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default all, as RocketMQ)")
    parser.add_argument("--port", type=int, help="listenPort (overrides the file)")
    parser.add_argument("--data-dir", type=Path, help="storePathRootDir (overrides the file)")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=main)


def load_broker_config(
    config_file: Path | None, *, namesrv_addr: str | None = None, port: int | None = None, data_dir: Path | None = None
) -> BrokerConfig:
    """broker.conf + flags (+ NAMESRV_ADDR, read here at the edge).

    Raises:
        ConfigError: unreadable file or a bad value.
    """
    properties: dict[str, str] = {}
    if config_file is not None:
        try:
            properties = load_properties(config_file)
        except OSError as exc:
            raise ConfigError(f"cannot read {config_file}: {exc.strerror}") from None
    namesrv = namesrv_addr or properties.get("namesrvAddr") or os.environ.get("NAMESRV_ADDR")
    return broker_config_from_properties(
        properties, namesrv_addr=namesrv, listen_port=port, store_path_root_dir=data_dir
    )


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config = load_broker_config(args.config, namesrv_addr=args.namesrv_addr, port=args.port, data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"tidemq broker: {exc}", file=sys.stderr)
        return 2
    return run(lambda: serve(config, args.host))


async def serve(config: BrokerConfig, host: str) -> int:
    from tidemq.broker.runtime import BrokerRuntime

    stop = stop_event()
    runtime = BrokerRuntime(config, host=host)
    try:
        await runtime.start()
    except (StoreError, OSError) as exc:
        print(f"tidemq broker: cannot start: {exc}", file=sys.stderr)
        await runtime.close()
        return 1
    announce(
        f"tidemq broker ready on {host}:{runtime.port} (cluster {config.broker_cluster_name}, "
        f"broker {config.broker_name}, data {config.store_path_root_dir})"
    )
    await stop.wait()
    await runtime.close()
    return 0
