"""Transactions at the store level: half messages stay invisible, commit/rollback, check-back, discard."""

from __future__ import annotations

from pathlib import Path

from tidemq.broker.transactions import (
    CHECK_MAX_TOPIC,
    COMMIT,
    HALF_TOPIC,
    ROLLBACK,
    CheckRequest,
    TransactionService,
    TransactionSettings,
    half_properties,
)
from tidemq.store import record as rec
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus


def store_config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(
        tmp_path / "store",
        mapped_file_size_commit_log=256 * 1024,
        mapped_file_size_consume_queue=20 * 100,
        max_message_size=8192,
        max_hash_slot_num=256,
        max_index_num=2048,
    )


def prepare(store: MessageStore, body: bytes, uniq: str) -> tuple[int, int, int]:
    props = half_properties(
        f"TRAN_MSG\x01true\x02PGROUP\x01TxGroup\x02UNIQ_KEY\x01{uniq}\x02TAGS\x01T\x02", "Orders", 1
    )
    result = store.put_message(HALF_TOPIC, 0, body, props, sys_flag=rec.SYSFLAG_TRANSACTION_PREPARED)
    assert result.is_ok
    return result.physical_offset, result.queue_offset, result.store_timestamp


def visible(store: MessageStore) -> list[rec.StoredRecord]:
    result = store.get_messages("Orders", 1, 0, 100)
    return list(rec.iter_records(result.body())) if result.status is GetStatus.FOUND else []


def test_commit_makes_the_message_visible_and_rollback_does_not(tmp_path: Path) -> None:
    with MessageStore(store_config(tmp_path)) as store:
        service = TransactionService(store, tmp_path / "config", TransactionSettings(), lambda request: True)
        service.load()
        committed = prepare(store, b"commit-me", "U1")
        rolled_back = prepare(store, b"roll-me-back", "U2")
        assert visible(store) == [], "half messages are invisible"
        assert not isinstance(service.end(committed[0], committed[1], COMMIT), str)
        assert not isinstance(service.end(rolled_back[0], rolled_back[1], ROLLBACK), str)
        [record] = visible(store)
        assert record.body == b"commit-me"
        assert record.prepared_transaction_offset == committed[0]
        assert record.sys_flag & rec.SYSFLAG_TRANSACTION_MASK == COMMIT
        assert record.properties["TRAN_MSG"] == "true", "kept, as in what Apache's broker commits"
        assert "REAL_TOPIC" not in record.properties
        assert record.properties["TAGS"] == "T"
        again = service.end(committed[0], committed[1], COMMIT)
        assert isinstance(again, str)
        assert "already" in again
        assert visible(store) == [record], "a repeated commit does not duplicate"


def test_unresolved_halves_are_checked_then_discarded_and_resolution_survives_restart(tmp_path: Path) -> None:
    checks: list[CheckRequest] = []
    settings = TransactionSettings(timeout_ms=1000, check_max=2)
    with MessageStore(store_config(tmp_path)) as store:
        service = TransactionService(
            store, tmp_path / "config", settings, lambda request: checks.append(request) or True
        )
        service.load()
        _, _, stored_at = prepare(store, b"unknown", "U3")
        service.check(stored_at + 999)
        assert checks == [], "younger than transactionTimeOut: not checked yet"
        service.check(stored_at + 1000)
        assert len(checks) == 1
        first = checks[0]
        assert (first.group, first.msg_id, first.topic) == ("TxGroup", "U3", "Orders")
        assert rec.decode_record(first.record).properties["TRANSACTION_CHECK_TIMES"] == "1"
        service.persist()
    with MessageStore(store_config(tmp_path)) as store:
        service = TransactionService(
            store, tmp_path / "config", settings, lambda request: checks.append(request) or True
        )
        service.load()
        service.check(stored_at + 10_000)
        assert len(checks) == 2, "checked once more after the restart, not from the beginning"
        service.check(stored_at + 20_000)
        assert service.discarded == 1
        assert store.get_max_offset(CHECK_MAX_TOPIC, 0) == 1
        assert visible(store) == []
        # Answering the last check late still finds its half resolved (discarded): nothing appears.
        last = checks[-1]
        assert isinstance(service.end(last.half_physical_offset, last.half_queue_offset, COMMIT), str)
