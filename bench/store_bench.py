"""Store-level benchmarks (issue 2): appends, group commit, sequential reads, recovery, memory.

Run: ``.venv/bin/python bench/store_bench.py [--quick] [--dir DIR] [--runs 3] [--json out.json]``.
Every figure is the median of ``--runs`` runs, printed beside this machine's raw limits measured in the same
run (sequential write MB/s, fdatasync/s). Each scenario runs in a fresh subprocess so memory figures are honest.
``cpu_msgs_per_s`` counts the appending process's CPU; the index worker's (a child process since the index is
built there) is ``index_worker_cpu_s``, for the whole scenario including opening and closing the store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BODY = os.urandom(128)
PROPS = "TAGS\x01TagA\x02KEYS\x01order-{}\x02UNIQ_KEY\x017F0000010000C04700007C93FA8{:05d}\x02WAIT\x01true\x02"


def props(i: int) -> str:
    return PROPS.format(i, i % 100000)


# --- raw limits ----------------------------------------------------------------------------------------------


def raw_sequential_write_mb_s(directory: Path, total_mb: int = 512) -> float:
    path = directory / "raw-seq"
    chunk = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    started = time.perf_counter()
    for _ in range(total_mb):
        os.write(fd, chunk)
    os.fdatasync(fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    path.unlink()
    return total_mb / elapsed


def raw_fsyncs_per_s(directory: Path, seconds: float = 2.0) -> float:
    path = directory / "raw-fsync"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.posix_fallocate(fd, 0, 1 << 26)
    block = os.urandom(4096)
    count = 0
    started = time.perf_counter()
    position = 0
    while time.perf_counter() - started < seconds:
        os.pwrite(fd, block, position)
        os.fdatasync(fd)
        position = (position + 4096) % (1 << 26)
        count += 1
    elapsed = time.perf_counter() - started
    os.close(fd)
    path.unlink()
    return count / elapsed


# --- scenarios (each runs in its own process: `store_bench.py --scenario NAME --dir D --count N`) -----------


def _children_cpu_s() -> float:
    """CPU seconds of this process's ended children: the store's index worker, once the store is closed."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _config(directory: Path, **overrides: Any) -> Any:
    from tidemq.store.config import StoreConfig

    return StoreConfig(directory, **overrides)


def scenario_append_batch(directory: Path, count: int) -> dict[str, float]:
    from tidemq.store.message_store import MessageStore

    batch_size = 64
    with MessageStore(_config(directory)) as store:
        batches = [
            [(BODY, props(b * batch_size + i), 0) for i in range(batch_size)] for b in range(count // batch_size)
        ]
        started, cpu_started = time.perf_counter(), time.process_time()
        for n, batch in enumerate(batches):
            store.put_messages("BenchTopic", n & 7, batch)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = len(batches) * batch_size
    return {"msgs_per_s": count / elapsed, "cpu_msgs_per_s": count / cpu, "index_worker_cpu_s": _children_cpu_s()}


def scenario_append_batch_body(directory: Path, count: int) -> dict[str, float]:
    """Batches of 32 as the broker receives them (SEND_BATCH_MESSAGE bodies), through ``append_batch``."""
    from tidemq.client._message import encode_batch
    from tidemq.store.message_store import MessageStore

    batch_size = 32
    with MessageStore(_config(directory)) as store:
        bodies = [
            encode_batch([(BODY, props(b * batch_size + i), 0) for i in range(batch_size)])
            for b in range(count // batch_size)
        ]
        started, cpu_started = time.perf_counter(), time.process_time()
        for n, body in enumerate(bodies):
            store.append_batch("BenchTopic", n & 7, body)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = len(bodies) * batch_size
    return {"msgs_per_s": count / elapsed, "cpu_msgs_per_s": count / cpu, "index_worker_cpu_s": _children_cpu_s()}


def scenario_append_single(directory: Path, count: int) -> dict[str, float]:
    from tidemq.store.message_store import MessageStore

    with MessageStore(_config(directory)) as store:
        messages = [props(i) for i in range(count)]
        started, cpu_started = time.perf_counter(), time.process_time()
        for i, properties in enumerate(messages):
            store.put_message("BenchTopic", i & 7, BODY, properties)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"msgs_per_s": count / elapsed, "cpu_msgs_per_s": count / cpu, "index_worker_cpu_s": _children_cpu_s()}


def scenario_sync_flush(directory: Path, count: int) -> dict[str, float]:
    from tidemq.store.config import FlushDiskType
    from tidemq.store.message_store import MessageStore

    threads = 64
    per_thread = count // threads
    with MessageStore(_config(directory, flush_disk_type=FlushDiskType.SYNC_FLUSH)) as store:
        start = threading.Barrier(threads + 1)

        def appender(n: int) -> None:
            start.wait()
            for i in range(per_thread):
                result = store.put_message("SyncTopic", n & 7, BODY, props(i))
                assert result.is_ok, result

        workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        fsyncs = store._flusher.fsync_count if store._flusher else 0
    return {
        "msgs_per_s": threads * per_thread / elapsed,
        "fsyncs": fsyncs,
        "msgs_per_fsync": threads * per_thread / max(fsyncs, 1),
    }


def scenario_sync_flush_loop(directory: Path, count: int) -> dict[str, float]:
    """64 appenders as the broker runs them: coroutines on one uvloop loop, each appending with ``append_one``
    and awaiting its group commit through the broker's own ``DurableWaits`` (one loop wake-up per fsync)."""
    import asyncio

    import uvloop

    from tidemq.broker.durable_waits import DurableWaits
    from tidemq.store.config import FlushDiskType
    from tidemq.store.message_store import MessageStore
    from tidemq.store.results import PutStatus

    appenders = 64
    per_appender = count // appenders
    with MessageStore(_config(directory, flush_disk_type=FlushDiskType.SYNC_FLUSH)) as store:

        async def run() -> float:
            durable = DurableWaits(store)
            durable.attach()

            async def appender(n: int) -> None:
                for i in range(per_appender):
                    result = store.append_one("SyncTopic", n & 7, BODY, props(i))
                    assert result.status is PutStatus.PUT_OK, result
                    assert await durable.wait(result.end_offset, 5.0), "group commit timed out"

            started = time.perf_counter()
            await asyncio.gather(*(appender(n) for n in range(appenders)))
            return time.perf_counter() - started

        elapsed = uvloop.run(run())
        fsyncs = store._flusher.fsync_count if store._flusher else 0
    return {
        "msgs_per_s": appenders * per_appender / elapsed,
        "fsyncs": fsyncs,
        "msgs_per_fsync": appenders * per_appender / max(fsyncs, 1),
    }


def scenario_fill_backlog(directory: Path, count: int) -> dict[str, float]:
    from tidemq.store.message_store import MessageStore

    with MessageStore(_config(directory)) as store:
        batch = 256
        for b in range(count // batch):
            store.put_messages("Backlog", 0, [(BODY, props(b * batch + i), 0) for i in range(batch)])
    return {}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def scenario_read_backlog(directory: Path, count: int) -> dict[str, float]:
    from tidemq.store.message_store import MessageStore
    from tidemq.store.results import GetStatus

    rss_before = _rss_mb()
    with MessageStore(_config(directory)) as store:
        rss_open = _rss_mb()
        started = time.perf_counter()
        offset, read = 0, 0
        while True:
            result = store.get_messages("Backlog", 0, offset, 32)
            if result.status is not GetStatus.FOUND:
                break
            read += result.message_count
            offset = result.next_begin_offset
        elapsed = time.perf_counter() - started
        rss_after = _rss_mb()
    assert read == count // 256 * 256, (read, count)  # fill_backlog writes whole batches of 256
    return {
        "msgs_per_s": read / elapsed,
        "rss_open_mb": rss_open,
        "rss_after_read_mb": rss_after,
        "rss_before_open_mb": rss_before,
    }


def scenario_crash_writer(directory: Path, count: int) -> dict[str, float]:
    """Append until the commit log holds ``count`` MiB, print 'full', then wait to be killed."""
    from tidemq.store.message_store import MessageStore

    store = MessageStore(_config(directory)).open()
    target = count << 20
    batch = [(BODY + bytes(96), props(i), 0) for i in range(256)]
    n = 0
    while store.write_offset < target:
        store.put_messages("Crash", n & 15, batch)
        n += 1
    print("full", flush=True)
    time.sleep(3600)
    return {}


def scenario_recover(directory: Path, count: int) -> dict[str, float]:
    from tidemq.store.message_store import MessageStore

    started = time.perf_counter()
    store = MessageStore(_config(directory)).open()
    elapsed = time.perf_counter() - started
    report = dict(store.recovery_report)
    store.close()
    return {"open_s": elapsed, "redispatched": float(report["redispatched"]), "end": float(report["end"])}


SCENARIOS = {
    "append_batch": scenario_append_batch,
    "append_batch_body": scenario_append_batch_body,
    "append_single": scenario_append_single,
    "sync_flush": scenario_sync_flush,
    "sync_flush_loop": scenario_sync_flush_loop,
    "fill_backlog": scenario_fill_backlog,
    "read_backlog": scenario_read_backlog,
    "crash_writer": scenario_crash_writer,
    "recover": scenario_recover,
}


def run_scenario(name: str, directory: Path, count: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--scenario", name, "--dir", str(directory), "--count", str(count)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scenario {name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def crash_at_size(directory: Path, mib: int) -> None:
    process = subprocess.Popen(
        [sys.executable, __file__, "--scenario", "crash_writer", "--dir", str(directory), "--count", str(mib)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    if line.strip() != "full":
        raise RuntimeError("the crash writer died before filling the log")


def median_of(runs: int, fn: Any) -> tuple[dict[str, float], list[dict[str, float]]]:
    results = [fn() for _ in range(runs)]
    keys = results[0].keys()
    return {k: statistics.median(r[k] for r in results) for k in keys}, results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller counts, one run: a smoke test of the harness")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(SCENARIOS[args.scenario](args.dir, args.count)))
        return 0
    base = Path(tempfile.mkdtemp(prefix="tidemq-bench-", dir=args.dir))
    runs = 1 if args.quick else args.runs
    scale = 10 if args.quick else 1
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "runs": runs,
    }

    def fresh(name: str) -> Path:
        path = base / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    try:
        out["raw_sequential_write_mb_s"] = statistics.median(raw_sequential_write_mb_s(base) for _ in range(runs))
        out["raw_fsyncs_per_s"] = statistics.median(raw_fsyncs_per_s(base) for _ in range(runs))
        out["append_batch"], _ = median_of(runs, lambda: run_scenario("append_batch", fresh("ab"), 1_000_000 // scale))
        out["append_batch_body"], _ = median_of(
            runs, lambda: run_scenario("append_batch_body", fresh("abb"), 1_000_000 // scale)
        )
        out["append_single"], _ = median_of(runs, lambda: run_scenario("append_single", fresh("as"), 300_000 // scale))
        out["sync_flush_64"], _ = median_of(runs, lambda: run_scenario("sync_flush", fresh("sf"), 128_000 // scale))
        out["sync_flush_64_loop"], _ = median_of(
            runs, lambda: run_scenario("sync_flush_loop", fresh("sfl"), 256_000 // scale)
        )
        backlog = fresh("backlog")
        run_scenario("fill_backlog", backlog, 1_000_000 // scale)
        out["read_backlog"], _ = median_of(runs, lambda: run_scenario("read_backlog", backlog, 1_000_000 // scale))
        crash_dir = fresh("crash")
        crash_at_size(crash_dir, 1024 // scale)
        out["recover_after_kill9"], _ = median_of(1, lambda: run_scenario("recover", crash_dir, 0))
        crash_at_size(fresh("crash2"), 1024 // scale)
        (base / "crash2" / "checkpoint").unlink(missing_ok=True)
        out["recover_full_rebuild"], _ = median_of(1, lambda: run_scenario("recover", base / "crash2", 0))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
