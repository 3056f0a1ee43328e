"""The file store against a model: random appends, reads, clean reopens and crashes with a torn tail.

After every crash the recovered state must equal the acknowledged prefix: every put that returned PUT_OK.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tidemq.store import record as rec
from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore
from tidemq.store.results import GetStatus

TOPICS = ["Alpha", "Beta"]
QUEUES = [0, 1, 2]
bodies = st.binary(min_size=0, max_size=3000)
tags = st.sampled_from([None, "TagA", "TagB"])


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="tidemq-sm-"))
        self.config = StoreConfig(
            self.directory / "store",
            mapped_file_size_commit_log=16 * 1024,
            mapped_file_size_consume_queue=20 * 16,
            max_message_size=8 * 1024,
            max_hash_slot_num=64,
            max_index_num=512,
            flush_interval_commit_log_ms=20,
        )
        self.store = MessageStore(self.config).open()
        self.model: dict[tuple[str, int], list[tuple[bytes, str | None]]] = {}

    @rule(
        topic=st.sampled_from(TOPICS),
        queue_id=st.sampled_from(QUEUES),
        batch=st.lists(st.tuples(bodies, tags), min_size=1, max_size=4),
    )
    def append(self, topic: str, queue_id: int, batch: list[tuple[bytes, str | None]]) -> None:
        messages = [(body, f"TAGS\x01{tag}\x02" if tag else "", 0) for body, tag in batch]
        result = self.store.put_messages(topic, queue_id, messages)
        assert result.is_ok, result
        queue = self.model.setdefault((topic, queue_id), [])
        assert result.queue_offset == len(queue)
        queue.extend(batch)

    @rule(
        topic=st.sampled_from(TOPICS),
        queue_id=st.sampled_from(QUEUES),
        start=st.integers(0, 40),
        count=st.integers(1, 40),
    )
    def read(self, topic: str, queue_id: int, start: int, count: int) -> None:
        expected = self.model.get((topic, queue_id), [])
        result = self.store.get_messages(topic, queue_id, start, count)
        if start >= len(expected):
            assert result.status is not GetStatus.FOUND
            return
        assert result.status is GetStatus.FOUND
        records = list(rec.iter_records(result.body()))
        assert records, "FOUND with no records"
        assert len(records) <= count
        want = expected[start : start + len(records)]
        assert [(r.body, r.tags) for r in records] == want
        assert [r.queue_offset for r in records] == list(range(start, start + len(records)))
        assert result.next_begin_offset == start + len(records)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = MessageStore(self.config).open()
        assert self.store.recovery_report["crashed"] is False

    @rule(garbage=st.binary(min_size=1, max_size=400))
    def crash_with_torn_tail(self, garbage: bytes) -> None:
        end = self.store.write_offset
        self.store.abandon()
        segment_size = self.config.mapped_file_size_commit_log
        segments = sorted(self.config.commit_log_dir.iterdir()) if self.config.commit_log_dir.exists() else []
        if segments and int(segments[-1].name) <= end < int(segments[-1].name) + segment_size:
            path = segments[-1]
            room = int(path.name) + segment_size - end
            with path.open("r+b") as f:
                f.seek(end - int(path.name))
                f.write(garbage[:room])
        self.store = MessageStore(self.config).open()
        assert self.store.recovery_report["end"] == end

    @precondition(lambda self: bool(self.model))
    @invariant()
    def queue_ends_match_the_model(self) -> None:
        for (topic, queue_id), messages in self.model.items():
            assert self.store.get_max_offset(topic, queue_id) == len(messages)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


StoreMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_matches_the_model = StoreMachine.TestCase
