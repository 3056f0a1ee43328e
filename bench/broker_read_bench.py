"""The broker's CPU per sync send with no sockets: reads of SEND_MESSAGE_V2 frames fed to a ``RemotingChannel``.

A real broker (store, gateway, index worker) runs in this process; each "read" is ``--per-read`` frames of a
128-byte message with a unique key, as 64 producers on one connection deliver them, and the answers go to a
transport that only counts its writes. The figure is the event loop thread's own CPU time (user and system) per
message, so the index worker, the flusher and other processes on the machine are left out.

"as the broker" is the broker's own channel: a read in passes (decode every frame, run the handlers, encode
the answers), and a run of sends handled in passes of its own (``send.handle_sends``: check and route every
send, append every one, answer every one). ``--frame-by-frame`` also times two older ways, alternating with it:
"one at a time" (a read in passes, but each send whole, as commit 2b20dae did) and "frame by frame" (each frame
decoded, handled and answered before the next is decoded, as the transport did before that). Each line is one
pass over the frames; compare medians, as the machine's speed drifts.

    .venv/bin/python bench/broker_read_bench.py [--messages 100000] [--per-read 40] [--rounds 8] [--frame-by-frame]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import uvloop

from tidemq.broker.config import BrokerConfig
from tidemq.broker.runtime import BrokerRuntime
from tidemq.errors import ProtocolError
from tidemq.protocol.remoting import RemotingCommand, encode_bytes
from tidemq.transport import RemotingChannel


class CountingTransport:
    """Enough of an ``asyncio.Transport`` for a channel: writes are counted, not sent."""

    def __init__(self) -> None:
        self.writes = 0

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes += 1

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


class FrameByFrameChannel(RemotingChannel):
    """The transport's old read loop: each frame decoded, handled and answered before the next is decoded."""

    def data_received(self, data: bytes) -> None:
        codec = self._codec
        codec.receive_data(data)
        try:
            while (command := codec.next_event()) is not None:
                answer = self._settle(command, self._handle_all([command])[0])
                if answer is not None:
                    self._answer(command, answer)
        except ProtocolError:
            self.close()
        self.flush()


def send_frame(opaque: int) -> bytes:
    """A SEND_MESSAGE_V2 as tidemq's producer sends it: 128-byte body, a unique key, one of 4 queues."""
    fields = {
        "a": "BenchProducer",
        "b": "BenchRead",
        "c": "TBW102",
        "d": "4",
        "e": str(opaque % 4),
        "f": "0",
        "g": str(time.time_ns() // 1_000_000),
        "h": "0",
        "i": f"UNIQ_KEY\x017F0000010001{opaque:020X}\x02WAIT\x01true\x02",
        "j": "0",
        "k": "false",
        "m": "false",
    }
    return encode_bytes(RemotingCommand(310, "PYTHON", 399, opaque, 0, None, fields, b"x" * 128))


def thread_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def connected(channel: RemotingChannel) -> RemotingChannel:
    channel.connection_made(cast(asyncio.Transport, CountingTransport()))
    return channel


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    reads = [
        b"".join(send_frame(start + k) for k in range(args.per_read))
        for start in range(0, args.messages, args.per_read)
    ]
    count = len(reads) * args.per_read
    with tempfile.TemporaryDirectory(prefix="tidemq-read-bench-") as work:
        config = BrokerConfig(store_path_root_dir=Path(work), listen_port=0)
        async with BrokerRuntime(config, host="127.0.0.1") as runtime:
            gateway = runtime.gateway
            handler = gateway.handle
            channels = {"as the broker": connected(RemotingChannel(handler, batch_handler=gateway.handle_read))}
            if args.frame_by_frame:
                channels["one at a time"] = connected(RemotingChannel(handler))
                channels["frame by frame"] = connected(FrameByFrameChannel(handler))
            channels["as the broker"].data_received(reads[0])  # creates the topic
            figures: dict[str, list[float]] = {name: [] for name in channels}
            for _ in range(args.rounds):
                for name, channel in channels.items():
                    started = thread_cpu_s()
                    for data in reads:
                        channel.data_received(data)
                    micros = (thread_cpu_s() - started) / count * 1e6
                    figures[name].append(micros)
                    print(f"{name:>15}: {micros:6.2f} µs of loop-thread CPU a send", flush=True)
                    await asyncio.sleep(0)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--per-read", type=int, default=40, help="frames in one read (~40 with 64 producers)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--frame-by-frame", action="store_true", help="also time the old one-frame-at-a-time loop")
    args = parser.parse_args()
    figures = uvloop.run(measure(args))
    for name, values in figures.items():
        print(f"{name:>15}: median {statistics.median(values):.2f} µs (min {min(values):.2f}, max {max(values):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
