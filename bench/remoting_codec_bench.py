"""Times the remoting codec on SEND_MESSAGE frames: decode through RemotingConnection, decode_frame, encode.

Frames come from the golden vectors (tests/golden/remoting): the C++ client's captured SEND_MESSAGE (code 10) and
the constructed Java SEND_MESSAGE_V2 (code 310), plus a ~200-byte V2 frame built here. Each figure is the best of
several runs, so a busy machine shows up as noise rather than as a slower codec.

    .venv/bin/python bench/remoting_codec_bench.py [--frames 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from tidemq.protocol.remoting import RemotingCommand, RemotingConnection, decode_frame, encode, encode_bytes

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "golden" / "remoting"


def vector_frame(file_name: str, index: int = 0) -> bytes:
    frames = json.loads((VECTORS / file_name).read_text(encoding="utf-8"))["frames"]
    return bytes.fromhex(frames[index]["hex"])


def small_send_frame() -> bytes:
    """A SEND_MESSAGE_V2 as a Java client sends it, with short names: about 200 bytes."""
    fields = {"a": "PG", "b": "T", "c": "TBW102", "d": "4", "e": "1", "f": "0", "g": "1700000000000", "h": "0"}
    fields |= {"i": "WAIT\x01true\x02", "j": "0", "k": "false", "m": "false"}
    return encode_bytes(RemotingCommand(code=310, opaque=42, ext_fields=fields, body=b"hello"))


def best_seconds(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def bench_stream(frame: bytes, count: int, repeat: int) -> float:
    """Frames per second through RemotingConnection, the broker's path: one chunk of ``count`` frames."""
    chunk = frame * count

    def run() -> None:
        conn = RemotingConnection()
        conn.receive_data(chunk)
        received = sum(1 for _ in conn.events())
        assert received == count

    return count / best_seconds(run, repeat)


def bench_decode_frame(frame: bytes, count: int, repeat: int) -> float:
    def run() -> None:
        for _ in range(count):
            decode_frame(frame)

    return count / best_seconds(run, repeat)


def bench_encode(command: RemotingCommand, count: int, repeat: int) -> float:
    def run() -> None:
        for _ in range(count):
            encode(command)

    return count / best_seconds(run, repeat)


def baseline_json(frame: bytes, count: int, repeat: int) -> float:
    """``json.loads`` of the header alone: the floor for a JSON-header decode in CPython."""
    header = frame[8 : 8 + (int.from_bytes(frame[4:8], "big") & 0xFFFFFF)]

    def run() -> None:
        for _ in range(count):
            json.loads(header)

    return count / best_seconds(run, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    args = parser.parse_args()

    frames = {
        "SEND_MESSAGE, C++ client (captured)": vector_frame("send_message.json"),
        "SEND_MESSAGE_V2, Java (constructed)": vector_frame("send_message_v2.json"),
        "SEND_MESSAGE_V2, small": small_send_frame(),
    }
    response = decode_frame(vector_frame("send_message.json", 1)).make_response(
        0, ext_fields={"msgId": "7F00000100002A9F00000000000001D4", "queueId": "0", "queueOffset": "0"}
    )
    for name, frame in frames.items():
        stream = bench_stream(frame, args.frames, args.repeat)
        single = bench_decode_frame(frame, args.frames, args.repeat)
        floor = baseline_json(frame, args.frames, args.repeat)
        print(f"{name} ({len(frame)} bytes)")
        print(f"  RemotingConnection: {stream:>10,.0f} frames/s  {1e6 / stream:6.2f} µs/frame")
        print(f"  decode_frame:       {single:>10,.0f} frames/s  {1e6 / single:6.2f} µs/frame")
        print(f"  json.loads(header): {floor:>10,.0f} /s        {1e6 / floor:6.2f} µs  (floor)")
    encoded = bench_encode(response, args.frames, args.repeat)
    print(f"encode SEND_MESSAGE response: {encoded:,.0f} frames/s  {1e6 / encoded:.2f} µs/frame")


if __name__ == "__main__":
    main()
