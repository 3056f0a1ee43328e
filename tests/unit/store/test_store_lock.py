"""One process per store directory, as RocketMQ's ``lock`` file enforces: a second opener gets a clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tidemq.errors import StoreError
from tidemq.store.message_store import MessageStore

from .conftest import ConfigFactory
from .helpers import open_store


def test_a_second_open_of_the_same_directory_is_refused_and_the_first_keeps_working(
    small_config: ConfigFactory,
) -> None:
    config = small_config()
    with open_store(config) as first:
        assert first.put_message("T", 0, b"one").is_ok
        with pytest.raises(StoreError, match="already open in another process"):
            MessageStore(config).open()
        assert first.put_message("T", 0, b"two").is_ok
        assert first.get_messages("T", 0, 0, 10).message_count == 2
    with open_store(config) as reopened:  # close released it
        assert reopened.get_messages("T", 0, 0, 10).message_count == 2


def test_abandon_releases_the_lock_as_a_crash_would(small_config: ConfigFactory) -> None:
    config = small_config()
    store = open_store(config)
    store.put_message("T", 0, b"x")
    store.abandon()
    with open_store(config) as reopened:
        assert reopened.recovery_report["crashed"] is True
        assert reopened.get_messages("T", 0, 0, 10).message_count == 1


def test_the_lock_of_a_killed_process_is_free_at_once(small_config: ConfigFactory) -> None:
    config = small_config()
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from tidemq.store.config import StoreConfig
        from tidemq.store.message_store import MessageStore
        config = StoreConfig(
            Path({str(config.store_path_root_dir)!r}),
            mapped_file_size_commit_log={config.mapped_file_size_commit_log},
            mapped_file_size_consume_queue={config.mapped_file_size_consume_queue},
            max_message_size={config.max_message_size},
            max_hash_slot_num={config.max_hash_slot_num},
            max_index_num={config.max_index_num},
        )
        store = MessageStore(config).open()
        store.put_message("T", 0, b"x", "KEYS\\x01k\\x02")
        print("open", flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="already open"):
            MessageStore(config).open()
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    with open_store(config) as reopened:  # the index waits for the dead broker's worker to finish, if need be
        assert len(reopened.query_by_key("T", "k", 2)) == 1
