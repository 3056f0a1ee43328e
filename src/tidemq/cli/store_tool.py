"""``tidemq store verify|dump``: offline tools over a store directory, in the spirit of Kafka's dump-log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tidemq.errors import StoreError
from tidemq.store.verify import default_config, dump_queue, verify_store


def add_parser(commands: Any) -> None:
    store = commands.add_parser("store", help="inspect a store directory offline (the broker stopped)")
    sub = store.add_subparsers(dest="store_command", required=True)
    verify = sub.add_parser("verify", help="check every record's CRC and the consume queues against the log")
    verify.add_argument("directory", type=Path, help="the store root (storePathRootDir)")
    verify.set_defaults(handler=run_verify)
    dump = sub.add_parser("dump", help="print the records of one queue readably")
    dump.add_argument("directory", type=Path, help="the store root (storePathRootDir)")
    dump.add_argument("--topic", required=True)
    dump.add_argument("--queue", type=int, default=0)
    dump.add_argument("--from", dest="from_offset", type=int, default=0, help="first queue offset")
    dump.add_argument("--count", type=int, default=100)
    dump.set_defaults(handler=run_dump)


def run_verify(args: argparse.Namespace) -> int:
    try:
        report = verify_store(default_config(args.directory))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"commit log: {report.records} records, {report.bytes} bytes, offsets "
        f"{report.commit_log_min}..{report.commit_log_end}"
    )
    print(f"consume queues: {report.queues} queues, {report.queue_entries} entries")
    for problem in report.problems:
        print(f"DAMAGE: {problem}")
    print("OK" if report.is_ok else f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.is_ok else 1


def run_dump(args: argparse.Namespace) -> int:
    try:
        for line in dump_queue(default_config(args.directory), args.topic, args.queue, args.from_offset, args.count):
            print(line)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
