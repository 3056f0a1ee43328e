"""``tidemq bench`` run from its module, for while the sub-command is not yet registered in ``tidemq.cli.main``.

Usage is that of ``tidemq bench``: ``python bench/side_by_side/pyload.py produce|consume|e2e [options]``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from tidemq.cli import bench_command

    parser = argparse.ArgumentParser(prog="tidemq")
    bench_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
