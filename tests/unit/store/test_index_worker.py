"""The key index built in a child process: same answers as in-process, and it survives its worker's death."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tidemq.store import index_worker
from tidemq.store import record as rec
from tidemq.store.index import IndexService
from tidemq.store.index_worker import IndexClient
from tidemq.store.message_store import INDEX_BATCH

from .conftest import ConfigFactory
from .helpers import open_store, props


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent we are not) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def _wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} still alive after {timeout_s} s")
        time.sleep(0.02)


def _fill(store: object, first: int, count: int) -> None:
    for i in range(first, first + count):
        result = store.put_message("T", i % 4, b"m%d" % i, props(keys=f"k{i}", uniq=f"U{i}"))  # type: ignore[attr-defined]
        assert result.is_ok


@pytest.mark.parametrize("in_worker", [True, False], ids=["worker", "in-process"])
def test_both_index_modes_find_every_key_at_once_and_after_a_restart(
    small_config: ConfigFactory, in_worker: bool
) -> None:
    config = small_config(index_worker_enable=in_worker)
    count = INDEX_BATCH * 2 + 7  # drained in bulk twice, and a remainder drained by the lookup itself
    with open_store(config) as store:
        assert isinstance(store.index, IndexClient if in_worker else IndexService)
        _fill(store, 0, count)
        for i in (0, INDEX_BATCH, count - 1):
            assert [rec.decode_record(r).body for r in store.query_by_key("T", f"k{i}", 5)] == [b"m%d" % i]
            assert len(store.query_by_key("T", f"U{i}", 5)) == 1
        assert store.index.max_physical_offset > 0
    with open_store(config) as store:
        assert [rec.decode_record(r).body for r in store.query_by_key("T", f"k{count - 1}", 5)] == [
            b"m%d" % (count - 1)
        ]


def test_a_killed_worker_is_replaced_and_no_key_is_lost(small_config: ConfigFactory) -> None:
    """SIGKILL the worker between appends: the store starts another and re-indexes what the dead one had not
    synced, so every key appended before and after is found."""
    config = small_config(flush_interval_commit_log_ms=60_000)  # no checkpoint syncs the index meanwhile
    with open_store(config) as store:
        index = store.index
        assert isinstance(index, IndexClient)
        _fill(store, 0, INDEX_BATCH + 50)  # one bulk hand-over reached the worker, 50 keys still pending
        first_pid = index.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        _wait_gone(first_pid)
        _fill(store, INDEX_BATCH + 50, INDEX_BATCH + 10)  # the next hand-over finds the worker dead
        assert index.pid not in (None, first_pid)
        total = 2 * INDEX_BATCH + 60
        missing = [i for i in range(total) if len(store.query_by_key("T", f"k{i}", 2)) != 1]
        assert missing == []


def test_a_hung_worker_is_replaced_after_the_io_timeout(
    small_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stops answering (SIGSTOP here; a deadlock or swap storm in life) must not hang the store:
    the call that waits for it fails after IO_TIMEOUT_S, the store kills it, starts another and re-indexes."""
    monkeypatch.setattr(index_worker, "IO_TIMEOUT_S", 0.5)
    config = small_config(flush_interval_commit_log_ms=60_000)
    with open_store(config) as store:
        index = store.index
        assert isinstance(index, IndexClient)
        hung_pid = index.pid
        assert hung_pid is not None
        os.kill(hung_pid, signal.SIGSTOP)
        try:
            _fill(store, 0, INDEX_BATCH + 20)
            started = time.monotonic()
            found = store.query_by_key("T", f"k{INDEX_BATCH + 19}", 2)
            waited = time.monotonic() - started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung_pid, signal.SIGCONT)
        assert len(found) == 1
        assert 0.4 < waited < 10, f"the lookup waited {waited:.2f} s"
        assert index.pid not in (None, hung_pid)
        _wait_gone(hung_pid)
        assert [i for i in range(INDEX_BATCH + 20) if len(store.query_by_key("T", f"k{i}", 2)) != 1] == []


def test_the_worker_ignores_sigint_and_sigterm_and_the_store_closes_cleanly(small_config: ConfigFactory) -> None:
    """Ctrl-C in a terminal reaches the whole process group: the worker must outlive it until the store has
    flushed the index on close."""
    config = small_config()
    store = open_store(config)
    index = store.index
    assert isinstance(index, IndexClient)
    pid = index.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    _fill(store, 0, 10)
    assert len(store.query_by_key("T", "k3", 2)) == 1
    assert index.pid == pid, "the worker survived both signals"
    store.close()
    _wait_gone(pid)
    with open_store(config) as reopened:
        assert len(reopened.query_by_key("T", "k9", 2)) == 1


def test_the_worker_exits_when_its_store_process_is_killed(tmp_path: Path) -> None:
    """kill -9 of the broker leaves no index worker behind: it sees end of file on its socket and exits."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tidemq.store.config import StoreConfig
        from tidemq.store.message_store import MessageStore
        store = MessageStore(StoreConfig(Path({str(tmp_path / "store")!r}), max_hash_slot_num=1024)).open()
        store.put_message("T", 0, b"x", "KEYS\\x01k\\x02")
        print(store.index.pid, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        worker_pid = int(owner.stdout.readline())
        assert _pid_alive(worker_pid)
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    _wait_gone(worker_pid)
