"""Times the message index (tidemq.store.index): put_many, single puts, queries, and resident memory.

Keys look like the broker's (``topic#key``, ~20 bytes), one per message, offsets ~200 bytes apart, one message per
millisecond. Each figure is the best of ``--repeat`` runs, so a busy machine shows up as noise rather than as a
slower index. RssFile after the puts shows that written entry pages are released (it stays near the 20 MB slot
table of the default 5M-slot geometry, whatever the number of entries).

    .venv/bin/python bench/index_bench.py [--puts 200000] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tidemq.store.index import IndexService


def resident_mb() -> dict[str, int]:
    """RssAnon / RssFile of this process in MB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        return {
            line.split(":")[0]: int(line.split()[1]) // 1024
            for line in status
            if line.startswith(("RssAnon", "RssFile"))
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=200_000, help="puts per run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files (default: a temp dir)")
    args = parser.parse_args()
    n = args.puts
    best = {"put_many (batches of 64)": 0.0, "put": 0.0, "query": 0.0}
    with tempfile.TemporaryDirectory(dir=args.dir) as directory, IndexService(Path(directory)) as index:
        next_id = 0
        for _ in range(args.repeat):
            items = [(f"TopicTest#order-{i}", i * 200, 1_700_000_000_000 + i) for i in range(next_id, next_id + n)]
            next_id += n
            started = time.perf_counter()
            for start in range(0, n, 64):
                index.put_many(items[start : start + 64])
            best["put_many (batches of 64)"] = max(
                best["put_many (batches of 64)"], n / (time.perf_counter() - started)
            )

            items = [(f"TopicTest#order-{i}", i * 200, 1_700_000_000_000 + i) for i in range(next_id, next_id + n)]
            next_id += n
            put = index.put
            started = time.perf_counter()
            for key, offset, timestamp in items:
                put(key, offset, timestamp)
            best["put"] = max(best["put"], n / (time.perf_counter() - started))

            keys = [f"TopicTest#order-{i * 7919 % next_id}" for i in range(n // 4)]
            started = time.perf_counter()
            for key in keys:
                index.query(key, 32, 0, 2**62)
            best["query"] = max(best["query"], len(keys) / (time.perf_counter() - started))
        started = time.perf_counter()
        index.flush()
        flush_s = time.perf_counter() - started
        memory = resident_mb()
    for name, rate in best.items():
        print(f"{name:26} {rate:12,.0f} /s")
    print(f"{'flush':26} {flush_s * 1000:12.1f} ms   after {next_id:,} entries; resident MB {memory}")


if __name__ == "__main__":
    main()
