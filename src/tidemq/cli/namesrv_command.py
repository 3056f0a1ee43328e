"""``tidemq namesrv [-c namesrv.conf] [--port N] [--host H]``: run a name server in the foreground, as ``mqnamesrv``.

Prints ``tidemq namesrv ready on <host>:<port>`` to stdout once listening (the port is the bound one, useful
with ``--port 0``); logs go to stderr. SIGINT or SIGTERM stops it cleanly. Flags override the file's
``listenPort`` and ``bindAddress``.

Also runnable on its own: ``python -m tidemq.cli.namesrv_command --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from tidemq.errors import ConfigError
from tidemq.namesrv.config import DEFAULT_PORT, NamesrvConfig, load_namesrv_config
from tidemq.namesrv.server import NameServer

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_parser(commands: Any) -> None:
    """Register the ``namesrv`` sub-command on the ``tidemq`` parser's sub-parsers."""
    parser = commands.add_parser("namesrv", help="run a name server (brokers register, clients look up routes)")
    _add_arguments(parser)
    parser.set_defaults(handler=run)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", dest="config_file", type=Path, help="namesrv.conf (Java properties)")
    parser.add_argument(
        "--port", type=int, help=f"listen port, 0 for any free one (default listenPort, {DEFAULT_PORT})"
    )
    parser.add_argument("--host", help="address to listen on (default bindAddress, 0.0.0.0)")


def build_config(args: argparse.Namespace) -> NamesrvConfig:
    """The config file's settings, with ``--port`` and ``--host`` on top.

    Raises:
        ConfigError: unreadable file or bad value.
    """
    config = load_namesrv_config(args.config_file) if args.config_file else NamesrvConfig()
    overrides: dict[str, str] = {}
    if args.port is not None:
        overrides["listenPort"] = str(args.port)
    if args.host is not None:
        overrides["bindAddress"] = args.host
    return config.updated(overrides, source="command line") if overrides else config


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status (2 for a bad config, 1 if the port cannot be bound)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        _run_event_loop(serve(config))
    except OSError as exc:
        print(f"error: cannot listen on {config.bind_address}:{config.listen_port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(config: NamesrvConfig, stop: asyncio.Event | None = None) -> None:
    """Run a name server until ``stop`` is set or SIGINT/SIGTERM arrives; prints the ready line."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            log.debug("cannot install a handler for %s here", signum)
    try:
        async with NameServer(config) as namesrv:
            print(f"tidemq namesrv ready on {namesrv.host}:{namesrv.port}", flush=True)
            await stop.wait()
            log.info("stopping the name server")
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    if sys.platform == "win32":  # uvloop does not exist there
        asyncio.run(main)
        return
    import uvloop  # imported here so that `tidemq --help` does not pay for it

    uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: the same flags as ``tidemq namesrv``."""
    parser = argparse.ArgumentParser(prog="tidemq namesrv", description="Run a RocketMQ-compatible name server.")
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
