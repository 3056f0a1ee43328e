"""`tidemq store verify|dump` as an operator runs them, on a real store directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore


def tidemq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tidemq.cli.main", *args], capture_output=True, text=True, timeout=60)


def make_store(root: Path) -> StoreConfig:
    config = StoreConfig(
        root,
        mapped_file_size_commit_log=64 * 1024,
        mapped_file_size_consume_queue=20 * 64,
        max_message_size=8192,
        max_hash_slot_num=256,
        max_index_num=1024,
    )
    with MessageStore(config) as store:
        for i in range(300):
            props = f"TAGS\x01Tag{i % 2}\x02KEYS\x01key-{i}\x02"
            store.put_message("Orders", i % 3, f"order {i} ü".encode(), props)
    return config


def test_verify_reports_a_sound_store(tmp_path: Path) -> None:
    make_store(tmp_path / "s")
    done = tidemq("store", "verify", str(tmp_path / "s"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 records" in done.stdout
    assert "3 queues, 300 entries" in done.stdout
    assert done.stdout.strip().endswith("OK")


def test_verify_finds_a_flipped_byte_and_exits_non_zero(tmp_path: Path) -> None:
    config = make_store(tmp_path / "s")
    segment = sorted(config.commit_log_dir.iterdir())[0]
    data = bytearray(segment.read_bytes())
    # A body byte of the 11th record: BODYCRC covers the body (as in RocketMQ, header fields carry no CRC).
    position = 0
    for _ in range(10):
        position += int.from_bytes(data[position : position + 4], "big")
    data[position + 88] ^= 0x55
    segment.write_bytes(bytes(data))
    done = tidemq("store", "verify", str(tmp_path / "s"))
    assert done.returncode == 1
    assert "DAMAGE: commit log" in done.stdout
    assert "FAILED" in done.stdout


def test_verify_finds_a_consume_queue_entry_pointing_elsewhere(tmp_path: Path) -> None:
    config = make_store(tmp_path / "s")
    queue_file = sorted((config.consume_queue_dir / "Orders" / "1").iterdir())[0]
    data = bytearray(queue_file.read_bytes())
    data[20:40] = data[40:60]  # entry 1 now points at entry 2's record
    queue_file.write_bytes(bytes(data))
    done = tidemq("store", "verify", str(tmp_path / "s"))
    assert done.returncode == 1
    assert "consume queue Orders/1 offset 1" in done.stdout


def test_dump_prints_records_readably(tmp_path: Path) -> None:
    make_store(tmp_path / "s")
    done = tidemq(
        "store", "dump", str(tmp_path / "s"), "--topic", "Orders", "--queue", "2", "--from", "5", "--count", "2"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "queue Orders/2: offsets 0..99"
    assert lines[1].startswith("offset=5 ")
    assert "KEYS=key-17" in lines[1]
    assert "'order 17 ü'" in lines[1]
    assert "crc=ok" in lines[1]
    assert lines[2].startswith("offset=6 ")


def test_tools_refuse_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    done = tidemq("store", "verify", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "not a tidemq store" in done.stderr
