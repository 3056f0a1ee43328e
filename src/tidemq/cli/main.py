"""``tidemq`` console script: one sub-command per role or tool, each in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tidemq import __version__
from tidemq.cli import bench_command, broker_command, dev_command, namesrv_command, store_tool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidemq", description="A RocketMQ-compatible message broker.")
    parser.add_argument("--version", action="version", version=f"tidemq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    dev_command.add_parser(commands)
    namesrv_command.add_parser(commands)
    broker_command.add_parser(commands)
    store_tool.add_parser(commands)
    bench_command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
