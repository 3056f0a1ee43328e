"""The flusher thread: periodic flush (ASYNC_FLUSH) and group commit (SYNC_FLUSH).

Group commit: appenders never fsync themselves. A SYNC_FLUSH append registers ``(end_offset, callback)``
and the flusher, woken by it, snapshots the commit log's write offset, runs one ``fdatasync`` and completes
every waiter at or below that snapshot. Appends that arrive during the fsync ride on the next one, so the
number of fsyncs per second stays roughly constant while messages per fsync grow with concurrency.

Owned state: the waiter list (under ``_condition``); ``durable_offset`` is written only by the flusher thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FlushCallback = Callable[[bool], None]
"""Called once, on the flusher thread, with True when durable or False when the store closed first."""


class FlushService:
    """Runs ``sync_commit_log`` for waiters and ``checkpoint`` every ``interval_s``.

    Args:
        sync_commit_log: fsyncs the commit log and returns the offset now durable.
        checkpoint: fsyncs derived files (consume queues, index) and saves the checkpoint.
        interval_s: period of the full flush (flushIntervalCommitLog).
    """

    def __init__(
        self,
        sync_commit_log: Callable[[], int],
        checkpoint: Callable[[], None],
        interval_s: float,
    ) -> None:
        self._sync_commit_log = sync_commit_log
        self._checkpoint = checkpoint
        self._interval_s = interval_s
        self._condition = threading.Condition()
        self._waiters: list[tuple[int, FlushCallback]] = []
        self._stopping = False
        self._final_flush = True
        self._thread = threading.Thread(target=self._run, name="tidemq-flush", daemon=True)
        self.durable_offset = 0
        self.fsync_count = 0
        self._requested = 0
        self.durable_listeners: list[Callable[[int], None]] = []
        """Called on the flusher thread with the new durable offset after each group commit: one call per
        fsync, however many appends it covered (the broker resolves its own waiters on its loop)."""

    def start(self, durable_offset: int) -> None:
        self.durable_offset = durable_offset
        self._thread.start()

    def when_durable(self, end_offset: int, callback: FlushCallback) -> None:
        """Call ``callback(True)`` once every byte below ``end_offset`` is on disk."""
        if end_offset <= self.durable_offset:
            callback(True)
            return
        with self._condition:
            if self._stopping:
                callback(False)
                return
            self._waiters.append((end_offset, callback))
            self._condition.notify()

    def request_flush(self, end_offset: int) -> None:
        """Ask for a group commit covering ``end_offset``; ``durable_listeners`` hear when it is done."""
        if end_offset <= self._requested:
            return
        with self._condition:
            if end_offset > self._requested:
                self._requested = end_offset
                self._condition.notify()

    def wait_durable(self, end_offset: int, timeout_s: float) -> bool:
        """Block until ``end_offset`` is durable; False on timeout or close."""
        if end_offset <= self.durable_offset:
            return True
        # A bare lock taken twice is CPython's cheapest wake-up: an Event (a Condition with its own lock and
        # waiter list) cost more than the append itself when 64 threads wait for every group commit.
        wake = threading.Lock()
        wake.acquire()
        outcome: list[bool] = []

        def finish(ok: bool) -> None:
            outcome.append(ok)
            wake.release()

        self.when_durable(end_offset, finish)
        return wake.acquire(timeout=timeout_s) and outcome[0]

    def stop(self, *, final_flush: bool = True) -> None:
        """Flush what is pending, run a last checkpoint (unless told not to, as a crash), stop the thread."""
        with self._condition:
            self._stopping = True
            self._final_flush = final_flush
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        next_checkpoint = time.monotonic() + self._interval_s
        while True:
            with self._condition:
                while not self._waiters and self._requested <= self.durable_offset and not self._stopping:
                    remaining = next_checkpoint - time.monotonic()
                    if remaining <= 0:
                        break
                    self._condition.wait(remaining)
                waiters, self._waiters = self._waiters, []
                stopping = self._stopping
                is_requested = self._requested > self.durable_offset
            try:
                if waiters or is_requested:
                    self._complete(waiters)
                if (stopping and self._final_flush) or (not stopping and time.monotonic() >= next_checkpoint):
                    self._flush_all()
                    next_checkpoint = time.monotonic() + self._interval_s
            except Exception:  # the flusher must survive a failing disk and keep reporting it
                log.exception("flush failed; appends waiting for it will time out")
                for _, callback in waiters:
                    callback(False)
                time.sleep(min(self._interval_s, 1.0))
            if stopping:
                with self._condition:
                    for _, callback in self._waiters:
                        callback(False)
                    self._waiters.clear()
                return

    def _complete(self, waiters: list[tuple[int, FlushCallback]]) -> None:
        durable = self._sync_commit_log()
        self.fsync_count += 1
        self.durable_offset = durable
        self._tell_listeners(durable)
        late: list[tuple[int, FlushCallback]] = []
        for end_offset, callback in waiters:
            if end_offset <= durable:
                callback(True)
            else:
                late.append((end_offset, callback))
        if late:
            with self._condition:
                self._waiters.extend(late)

    def _tell_listeners(self, durable: int) -> None:
        """A failing listener is logged and skipped: it must not keep the others, or the checkpoint, from
        hearing that the bytes are on disk."""
        for listener in self.durable_listeners:
            try:
                listener(durable)
            except Exception:
                log.exception("durable-offset listener %r failed", listener)

    def _flush_all(self) -> None:
        durable = self._sync_commit_log()
        self.durable_offset = durable
        self._tell_listeners(durable)
        self._checkpoint()
