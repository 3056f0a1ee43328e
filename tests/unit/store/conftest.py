"""Store test helpers: small segments so rollover, retention and recovery happen with a few messages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tidemq.store.config import StoreConfig

ConfigFactory = Callable[..., StoreConfig]


@pytest.fixture
def small_config(tmp_path: Path) -> ConfigFactory:
    def make(**overrides: Any) -> StoreConfig:
        values: dict[str, Any] = {
            "mapped_file_size_commit_log": 64 * 1024,
            "mapped_file_size_consume_queue": 20 * 64,
            "max_message_size": 16 * 1024,
            "max_hash_slot_num": 1024,
            "max_index_num": 4096,
            "flush_interval_commit_log_ms": 50,
        }
        values.update(overrides)
        return StoreConfig(tmp_path / "store", **values)

    return make
