"""One tidemq PushConsumer in a process of its own, for the consumer chaos test (kill -9 needs a process).

    python tests/chaos_consumer.py --namesrv A --topic T --group G --out FILE [--orderly]

Every delivery becomes one line of FILE, ``<time_ns> <queue_id> <queue_offset> <body>``, written with a single
``os.write`` on an O_APPEND descriptor *before* the listener returns: the kernel has the line before the consumer can
acknowledge the message, so a SIGKILL never loses the record of a message the group will not deliver again.
Prints ``started <client id>`` once the consumer runs; SIGTERM closes it cleanly (offsets persisted, queues
unlocked, unregistered).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

from tidemq.client import ConsumeFromWhere, ConsumerTimings, PushConsumer, ReceivedMessage

TIMINGS = ConsumerTimings(pull_suspend_s=2.0, persist_interval_s=1.0, rebalance_retry_s=0.5, shutdown_timeout_s=5.0)
"""Quick offset persistence (fewer redeliveries after a kill) and short pull holds (quick clean stops)."""


async def run(args: argparse.Namespace) -> None:
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def on_message(message: ReceivedMessage) -> None:
        line = f"{time.time_ns()} {message.queue_id} {message.queue_offset} {message.body.decode()}\n"
        os.write(fd, line.encode())

    consumer = PushConsumer(
        args.group,
        args.namesrv,
        consume_from_where=ConsumeFromWhere.FIRST_OFFSET,
        orderly=args.orderly,
        pull_batch_size=64,
        timings=TIMINGS,
    )
    consumer.subscribe(args.topic, "*", on_message)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with consumer:
            print("started", consumer.client_id, flush=True)
            await stop.wait()
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namesrv", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--orderly", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
