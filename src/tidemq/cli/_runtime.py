"""What every long-running command shares: logging set-up, uvloop, and a stop event set by SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def stop_event() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM: the command then closes everything cleanly and returns."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main`` on uvloop (asyncio's default loop where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we ship for
        return asyncio.run(main())
    return uvloop.run(main())


def announce(line: str) -> None:
    """A readiness line on stdout, flushed: tests and scripts wait for it."""
    print(line, flush=True)
