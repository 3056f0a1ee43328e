"""kill -9 a real process mid-append under SYNC_FLUSH: every acknowledged record survives the restart."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tidemq.store import record as rec
from tidemq.store.config import FlushDiskType, StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus

WRITER = r"""
import sys, threading
from pathlib import Path
from tidemq.store.config import FlushDiskType, StoreConfig
from tidemq.store.message_store import MessageStore

root, round_no = Path(sys.argv[1]), int(sys.argv[2])
config = StoreConfig(root, mapped_file_size_commit_log=256 * 1024, mapped_file_size_consume_queue=20 * 500,
                     max_message_size=16 * 1024, max_hash_slot_num=4096, max_index_num=100_000,
                     flush_disk_type=FlushDiskType.SYNC_FLUSH)
store = MessageStore(config).open()
out = sys.stdout
lock = threading.Lock()
print("ready", flush=True)

def appender(n):
    i = 0
    while True:
        body = b"r%d-t%d-%d-" % (round_no, n, i) + bytes(i % 700)
        result = store.put_message("Crash", n % 4, body, "KEYS\x01r%d-t%d-%d\x02" % (round_no, n, i))
        if result.is_ok:  # acknowledged: durable under SYNC_FLUSH
            with lock:
                out.write("%d %d %s\n" % (n % 4, result.queue_offset, body.hex()))
                out.flush()
        i += 1

for n in range(8):
    threading.Thread(target=appender, args=(n,), daemon=True).start()
threading.Event().wait()
"""


def config_for(root: Path) -> StoreConfig:
    return StoreConfig(
        root,
        mapped_file_size_commit_log=256 * 1024,
        mapped_file_size_consume_queue=20 * 500,
        max_message_size=16 * 1024,
        max_hash_slot_num=4096,
        max_index_num=100_000,
        flush_disk_type=FlushDiskType.SYNC_FLUSH,
    )


def run_and_kill(root: Path, round_no: int, run_s: float) -> dict[tuple[int, int], bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(round_no)], stdout=subprocess.PIPE, text=True
    )
    acknowledged: dict[tuple[int, int], bytes] = {}
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + run_s
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            queue_id, offset, body = line.split()
            acknowledged[(int(queue_id), int(offset))] = bytes.fromhex(body)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        # Lines already written by the killed process were acknowledged too.
        for line in process.stdout:
            parts = line.split()
            if len(parts) == 3:
                acknowledged[(int(parts[0]), int(parts[1]))] = bytes.fromhex(parts[2])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    return acknowledged


def stored(store: MessageStore) -> dict[tuple[int, int], bytes]:
    found: dict[tuple[int, int], bytes] = {}
    for queue_id in store.queue_ids("Crash"):
        offset = store.get_min_offset("Crash", queue_id)
        while True:
            result = store.get_messages("Crash", queue_id, offset, 64)
            if result.status is not GetStatus.FOUND:
                break
            for record in rec.iter_records(result.body()):
                assert record.is_body_crc_ok()
                found[(queue_id, record.queue_offset)] = record.body
            offset = result.next_begin_offset
    return found


def test_kill_9_mid_append_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rng = random.Random(1234)
    all_acknowledged: dict[tuple[int, int], bytes] = {}
    for round_no in range(4):
        acknowledged = run_and_kill(root, round_no, rng.uniform(0.3, 1.5))
        assert acknowledged, "the writer acknowledged nothing"
        all_acknowledged.update(acknowledged)
        with MessageStore(config_for(root)) as store:
            assert store.recovery_report["crashed"] is True
            recovered = stored(store)
            missing = [key for key in all_acknowledged if recovered.get(key) != all_acknowledged[key]]
            assert not missing, f"round {round_no}: {len(missing)} acknowledged records lost, e.g. {missing[:3]}"
            # Queue offsets are dense: nothing but the unacknowledged tail may be beyond what was acknowledged.
            for queue_id in store.queue_ids("Crash"):
                assert store.get_max_offset("Crash", queue_id) == len([k for k in recovered if k[0] == queue_id])
            sample = rng.choice(sorted(acknowledged))
            key = acknowledged[sample].split(b"-\x00")[0].rstrip(b"-").decode()
            assert store.query_by_key("Crash", key, 2), f"index lost the key {key}"
