"""IndexService against an in-memory model: puts, queries, flush, reopen, crash and replay, truncation, retention.

The model mirrors the index's files as lists of ``(key, offset, timestamp)`` entries (with the same rollover rule)
and the commit log as ``truth``, the records a recovery replay would re-dispatch. Timestamps and query bounds are
whole seconds, so the index's one-second time precision is exact here.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tidemq.store.index import IndexService, key_hash

T0 = 1_700_000_000_000
Entry = tuple[str, int, int]  # key, physical offset, store timestamp (ms)

keys = st.one_of(st.sampled_from(["a", "b", "c", "TopicTest#order-1", "é"]), st.text(max_size=6))


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="tidemq-index-"))
        self.generation = 0
        self.files: list[list[Entry]] = []  # what the index files hold, oldest first
        self.durable = 0  # entries of the last file made durable (flushed); earlier files are durable whole
        self.truth: list[Entry] = []  # what the commit log holds: replayed after a crash
        self.max_offset = -1
        self.next_offset = 0
        self.now_ms = T0
        self.index: IndexService | None = None

    # -- set-up and tear-down -----------------------------------------------------------------------------------

    @initialize(slots=st.integers(1, 5), entries=st.integers(2, 7))
    def start(self, slots: int, entries: int) -> None:
        self.slots, self.capacity = slots, entries - 1
        self.index = self._open(self.root / "index-0")

    def _open(self, directory: Path) -> IndexService:
        index = IndexService(directory, max_hash_slots=self.slots, max_entries=self.capacity + 1)
        index.open()
        return index

    def teardown(self) -> None:
        if self.index is not None:
            self.index.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def service(self) -> IndexService:
        assert self.index is not None
        return self.index

    # -- model helpers ------------------------------------------------------------------------------------------

    def _next_entry(self, key: str, same_offset: bool, seconds: int) -> Entry:
        """Another key of the last message (same offset and time) or the first key of a new message."""
        if not same_offset or self.next_offset == 0:
            self.next_offset += 100
            self.now_ms += seconds * 1000
        return (key, self.next_offset, self.now_ms)

    def _model_put(self, entry: Entry) -> bool:
        if entry[1] < self.max_offset:
            return False
        if not self.files or len(self.files[-1]) >= self.capacity:
            self.files.append([])  # the full file before it was sealed: durable
            self.durable = 0
        self.files[-1].append(entry)
        self.max_offset = entry[1]
        return True

    def _expected(self, key: str, max_count: int, begin_ms: int, end_ms: int) -> list[int]:
        hash_value = key_hash(key)
        found: dict[int, None] = {}
        for entries in reversed(self.files):
            for entry_key, offset, timestamp in reversed(entries):
                if len(found) >= max_count:
                    return list(found)
                if key_hash(entry_key) == hash_value and begin_ms <= timestamp <= end_ms:
                    found[offset] = None
        return list(found)[:max_count]

    def _recompute_max(self) -> None:
        self.max_offset = max((entries[-1][1] for entries in self.files if entries), default=-1)

    # -- rules --------------------------------------------------------------------------------------------------

    @rule(key=keys, same_offset=st.booleans(), seconds=st.integers(0, 3))
    def put(self, key: str, same_offset: bool, seconds: int) -> None:
        entry = self._next_entry(key, same_offset, seconds)
        self.service.put(*entry)
        if self._model_put(entry):
            self.truth.append(entry)

    @rule(batch=st.lists(st.tuples(keys, st.booleans(), st.integers(0, 2)), max_size=12))
    def put_many(self, batch: list[tuple[str, bool, int]]) -> None:
        entries = []
        for key, same_offset, seconds in batch:
            entries.append(self._next_entry(key, same_offset, seconds))
        accepted = [entry for entry in entries if self._model_put(entry)]
        assert self.service.put_many(entries) == len(accepted)
        self.truth.extend(accepted)

    @rule(key=keys, back=st.sampled_from([1, 2, 99, 100, 101, 300]), batch=st.booleans())
    def put_below_max_is_skipped(self, key: str, back: int, batch: bool) -> None:
        offset = self.max_offset - back
        if batch:
            assert self.service.put_many([(key, offset, self.now_ms)]) == 0
        else:
            self.service.put(key, offset, self.now_ms)
        assert not self._model_put((key, offset, self.now_ms))

    @rule(
        key=keys,
        max_count=st.integers(1, 40),
        begin_s=st.integers(-2, 60),
        length_s=st.integers(0, 60),
    )
    def query(self, key: str, max_count: int, begin_s: int, length_s: int) -> None:
        begin_ms = T0 + begin_s * 1000
        end_ms = begin_ms + length_s * 1000
        assert self.service.query(key, max_count, begin_ms, end_ms) == self._expected(key, max_count, begin_ms, end_ms)

    @rule()
    def flush(self) -> None:
        self.service.flush()
        self.durable = len(self.files[-1]) if self.files else 0

    @rule()
    def reopen(self) -> None:
        directory = self.service._directory
        self.service.close()
        self.index = self._open(directory)
        self.durable = len(self.files[-1]) if self.files else 0
        self._recompute_max()

    @rule()
    def crash_and_replay(self) -> None:
        """Copy the files as a killed process leaves them (unflushed entries in, header stale), then recover."""
        self.generation += 1
        copy = self.root / f"index-{self.generation}"
        shutil.copytree(self.service._directory, copy)
        self.service.close()
        self.index = self._open(copy)
        if self.files:
            del self.files[-1][self.durable :]
        self._recompute_max()
        assert self.service.max_physical_offset == self.max_offset
        replay = [entry for entry in self.truth if entry[1] >= self.max_offset]
        assert self.service.put_many(replay) == len(replay)
        for entry in replay:
            assert self._model_put(entry)

    @precondition(lambda self: self.truth)
    @rule(data=st.data())
    def truncate_above(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from([entry[1] for entry in self.truth] + [self.max_offset + 1, 0]))
        self.service.truncate_above(offset)
        last = self.files[-1] if self.files else None
        self.files = [entries for entries in self.files if not entries or entries[0][1] < offset]
        rolled_back = False
        for entries in self.files:
            if entries and entries[-1][1] >= offset:
                entries[:] = [entry for entry in entries if entry[1] < offset]
                rolled_back = True
        if not self.files or self.files[-1] is not last or rolled_back:
            self.durable = len(self.files[-1]) if self.files else 0
        self.durable = min(self.durable, len(self.files[-1])) if self.files else 0
        self.truth = [entry for entry in self.truth if entry[1] < offset]
        self._recompute_max()

    @rule(data=st.data())
    def delete_files_below(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from([entry[1] for entry in self.truth] + [0, self.max_offset + 1]))
        last = self.files[-1] if self.files else None
        kept = [entries for entries in self.files if entries and entries[-1][1] >= offset]
        assert self.service.delete_files_below(offset) == len(self.files) - len(kept)
        self.files = kept
        if not self.files or self.files[-1] is not last:
            self.durable = len(self.files[-1]) if self.files else 0
        self.truth = [entry for entry in self.truth if entry[1] >= offset]

    # -- invariants ---------------------------------------------------------------------------------------------

    @invariant()
    def same_files_and_offsets(self) -> None:
        if self.index is None:
            return
        assert len(self.service.file_paths) == len(self.files)
        assert self.service.max_physical_offset == self.max_offset
        newest = next((entries[-1] for entries in reversed(self.files) if entries), None)
        assert self.service.last_update_physical_offset == (newest[1] if newest else 0)

    @invariant()
    def every_key_answers_as_the_model(self) -> None:
        if self.index is None:
            return
        indexed = sorted({entry[2] for entries in self.files for entry in entries})
        middle = indexed[len(indexed) // 2] if indexed else T0
        ranges = [(0, 2**62), (middle, 2**62), (T0, middle), (middle, middle)]
        for key in {"a", "b", "c", "TopicTest#order-1", "é"} | {entry[0] for entry in self.truth}:
            for begin_ms, end_ms in ranges:
                for max_count in (1, 3, 1000):
                    actual = self.service.query(key, max_count, begin_ms, end_ms)
                    assert actual == self._expected(key, max_count, begin_ms, end_ms), (key, begin_ms, end_ms)


IndexMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIndexMachine = IndexMachine.TestCase
