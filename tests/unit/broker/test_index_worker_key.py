"""``indexWorkerEnable`` in broker.conf: where the broker builds its key index."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidemq.broker.config import broker_config_from_properties
from tidemq.errors import ConfigError
from tidemq.store.index import IndexService
from tidemq.store.index_worker import IndexClient
from tidemq.store.message_store import MessageStore


@pytest.mark.parametrize(
    ("conf", "expected"),
    [({}, IndexClient), ({"indexWorkerEnable": "false"}, IndexService), ({"indexWorkerEnable": "true"}, IndexClient)],
)
def test_the_key_chooses_a_worker_process_or_the_broker_itself(
    tmp_path: Path, conf: dict[str, str], expected: type
) -> None:
    config = broker_config_from_properties({"storePathRootDir": str(tmp_path / "store"), **conf})
    with MessageStore(config.store_config()).open() as store:
        assert type(store.index) is expected


def test_a_bad_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="indexWorkerEnable"):
        broker_config_from_properties({"storePathRootDir": str(tmp_path), "indexWorkerEnable": "maybe"})
