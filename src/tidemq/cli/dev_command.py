"""``tidemq dev`` (and ``make dev``): a name server and a broker in one process, ready in about a second.

Data lives under ``~/.tidemq`` unless ``--data-dir`` says otherwise; ``-c broker.conf`` takes the same file
a standalone broker does. Each endpoint prints one ready line; Ctrl-C / SIGTERM stops everything cleanly,
with the store flushed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tidemq.cli._runtime import announce, run, setup_logging, stop_event
from tidemq.cli.broker_command import load_broker_config
from tidemq.errors import ConfigError, TidemqError

DEFAULT_DATA_DIR = Path.home() / ".tidemq"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("dev", help="name server + broker in one process, for development and tests")
    parser.add_argument("--data-dir", type=Path, default=None, help=f"data directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--namesrv-port", type=int, default=9876)
    parser.add_argument("--broker-port", type=int, default=10911)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("-c", "--config", type=Path, help="broker.conf, as `tidemq broker -c` takes")
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    setup_logging(args.log_level)
    data_dir: Path = args.data_dir or DEFAULT_DATA_DIR
    try:
        config = load_broker_config(args.config, port=args.broker_port, data_dir=data_dir / "store")
    except ConfigError as exc:
        print(f"tidemq dev: {exc}", file=sys.stderr)
        return 2
    return run(lambda: serve(args, config, started))


async def serve(args: argparse.Namespace, config: Any, started: float) -> int:
    from tidemq.broker.runtime import BrokerRuntime
    from tidemq.namesrv.config import NamesrvConfig
    from tidemq.namesrv.server import NameServer

    stop = stop_event()
    namesrv = NameServer(NamesrvConfig(listen_port=args.namesrv_port, bind_address=args.host))
    try:
        await namesrv.start()
    except OSError as exc:
        print(f"tidemq dev: cannot listen on {args.host}:{args.namesrv_port}: {exc.strerror}", file=sys.stderr)
        return 1
    namesrv_addr = f"{args.host}:{namesrv.port}"
    announce(f"tidemq namesrv ready on {namesrv_addr}")
    runtime = BrokerRuntime(config.with_overrides(namesrv_addr=namesrv_addr), host=args.host)
    try:
        await runtime.start()
    except (TidemqError, OSError) as exc:
        print(f"tidemq dev: broker cannot start: {exc}", file=sys.stderr)
        await runtime.close()
        await namesrv.close()
        return 1
    announce(f"tidemq broker ready on {args.host}:{runtime.port} (data {config.store_path_root_dir})")
    announce(f"tidemq dev ready in {time.monotonic() - started:.2f}s; NAMESRV_ADDR={namesrv_addr}")
    await stop.wait()
    await runtime.close()
    await namesrv.close()
    return 0
