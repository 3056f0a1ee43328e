"""``tidemq store verify|dump``: operator tools over a store directory (filled in by the store work)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    store = commands.add_parser("store", help="inspect a store directory offline")
    sub = store.add_subparsers(dest="store_command", required=True)
    verify = sub.add_parser("verify", help="check every record's CRC and the consume queues")
    verify.add_argument("directory")
    verify.set_defaults(handler=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    raise SystemExit("not implemented yet")
