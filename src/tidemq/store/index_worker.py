"""The key index in a child process: the appending process hands index keys over and goes on.

Why a process: hashing each KEYS / UNIQ_KEY and chaining it into its slot cost a third of a batch append's CPU,
and the GIL keeps a thread from doing it beside the appender. A child process does it on another core, as
RocketMQ's dispatcher thread does; the appender only pickles the keys it already has (0.17 µs a message).

:class:`IndexClient` stands where :class:`~tidemq.store.index.IndexService` stands in-process, with the same
methods. It talks to the worker (:func:`main` in a new interpreter) over a socketpair; every message is a pickled tuple
behind its 4-byte big-endian length:

====================================  ======================================================================
``("keys", pending)``                 one-way: index these :data:`~tidemq.store.index_keys.PendingIndex` items
``("hashed", items)``                 one-way: index these ``(hash, offset, timestamp)`` items (recovery)
``("call", name, args)``              request: ``IndexService.<name>(*args)``; the reply is ``("ok", value)``
                                      or ``("error", exception type name, text)``
====================================  ======================================================================

The worker handles messages in order, so a call is answered after every put sent before it: a query sees the
keys of every append before it and a flush makes them durable, the guarantees of the in-process service. A put
that fails in the worker (a full disk when a new index file is needed) is reported by the next call.

Lifetime: the worker exits when its socket reaches end of file, that is when the store closes it or its process
dies (even by SIGKILL), and it ignores SIGINT and SIGTERM, which a terminal or a process-group kill also sends
it: the store's close must come first, so that the index is flushed after the last append. If the worker dies, or
blocks a hand-over or a call for ``IO_TIMEOUT_S``, that call and every later one raise :class:`IndexWorkerError`
until :meth:`IndexClient.restart` starts another one on the same files (the store then re-indexes what the lost
worker had not synced).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from tidemq.errors import StoreClosedError, StoreCorruptionError, StoreError, StoreFormatError, StoreFullError
from tidemq.store.index import IndexService
from tidemq.store.index_keys import HashedIndexItem, PendingIndex, hash_index_keys

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
"""How long :meth:`IndexClient.open` waits for the worker to load (and repair) the index files."""
IO_TIMEOUT_S = 30.0
"""How long a hand-over may block (the worker's socket buffer full) or a call wait for its answer before the
worker counts as hung and is replaced: an appender must never wait forever under the store's lock."""

_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        StoreFullError,
        StoreClosedError,
        StoreCorruptionError,
        StoreFormatError,
        StoreError,
        ValueError,
        OSError,
    )
}
"""Exceptions of the worker's IndexService re-raised as themselves in the store; any other is an IndexWorkerError."""

_STATE_CALL = "state"


_LENGTH = struct.Struct(">I")

_WORKER_COMMAND = "import sys; from tidemq.store.index_worker import main; main(sys.argv[1:])"
"""``-c`` rather than ``-m``: runpy's imports are a tenth of the worker's start, paid at every store open."""


class IndexWorkerError(RuntimeError):
    """The index worker process is gone or answered nonsense; :meth:`IndexClient.restart` starts another."""


class Channel:
    """Pickled messages over a stream socket, each behind its length: the store's and the worker's end alike."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock

    def send(self, message: object) -> None:
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self._socket.sendall(_LENGTH.pack(len(payload)) + payload)

    def recv(self) -> Any:
        """The next message. Raises EOFError at end of file (the peer closed or died)."""
        (length,) = _LENGTH.unpack(self._read_exactly(_LENGTH.size))
        return pickle.loads(self._read_exactly(length))  # noqa: S301  # our own child (or parent), on a socketpair

    def _read_exactly(self, length: int) -> bytearray:
        buffer = bytearray(length)
        view = memoryview(buffer)
        got = 0
        while got < length:
            n = self._socket.recv_into(view[got:])
            if n == 0:
                raise EOFError("end of file")
            got += n
        return buffer

    def wait_readable(self, timeout_s: float) -> bool:
        previous = self._socket.gettimeout()
        self._socket.settimeout(timeout_s)
        try:
            self._socket.recv(1, socket.MSG_PEEK)  # data or end of file: either way recv() will not block
        except TimeoutError:
            return False
        finally:
            self._socket.settimeout(previous)
        return True

    def set_timeout(self, timeout_s: float | None) -> None:
        """Sends and receives raise TimeoutError after ``timeout_s`` (None: block)."""
        self._socket.settimeout(timeout_s)

    def close(self) -> None:
        self._socket.close()


class IndexClient:
    """The store's handle on its index worker: :class:`~tidemq.store.index.IndexService`'s methods, run there.

    Thread-safe: one lock orders every message, as the in-process service's lock orders its calls.
    """

    def __init__(self, directory: Path, *, max_hash_slots: int = 5_000_000, max_entries: int = 20_000_000) -> None:
        self._directory = directory
        self._max_hash_slots = max_hash_slots
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._connection: Channel | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._failure: str | None = None
        """Why the current worker can no longer be used (set on the first failed exchange)."""

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (for tests and operators)."""
        return self._process.pid if self._process is not None else None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Start the worker and wait until it has loaded the index files.

        Raises:
            StoreFormatError, StoreCorruptionError: as :meth:`IndexService.open`.
            IndexWorkerError: the worker could not be started.
        """
        with self._lock:
            if self._connection is not None:
                return
            ours, theirs = socket.socketpair()
            try:
                command = [
                    sys.executable,
                    "-c",
                    _WORKER_COMMAND,
                    str(theirs.fileno()),
                    str(self._max_hash_slots),
                    str(self._max_entries),
                    str(self._directory),
                ]
                # Our own interpreter and module, with arguments we built: no untrusted input.
                process = subprocess.Popen(  # noqa: S603
                    command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
                )
            except OSError as exc:
                ours.close()
                raise IndexWorkerError(f"cannot start the index worker: {exc}") from exc
            finally:
                theirs.close()
            connection = Channel(ours)
            connection.set_timeout(IO_TIMEOUT_S)
            try:
                self._await_start(connection)
            except BaseException:
                connection.close()
                _reap(process)
                raise
            self._connection, self._process = connection, process

    def _await_start(self, connection: Channel) -> None:
        if not connection.wait_readable(START_TIMEOUT_S):
            raise IndexWorkerError(f"the index worker did not start within {START_TIMEOUT_S:.0f} s")
        self._check(self._receive(connection))

    def close(self) -> None:
        """Flush and close the index files, and end the worker. Idempotent."""
        with self._lock:
            connection, process = self._connection, self._process
            self._connection = self._process = None
            failure, self._failure = self._failure, None
            if connection is None:
                return
            try:
                if failure is None:
                    connection.send(("call", "close", ()))
                    self._check(self._receive(connection))
                elif process is not None:
                    process.kill()  # hung or gone: its files are repaired at the next open, as after a crash
            except (OSError, IndexWorkerError):
                log.exception("index worker: closing the index failed")
                if process is not None:
                    process.kill()
            finally:
                connection.close()  # end of file: the worker exits
                if process is not None:
                    _reap(process)

    def restart(self) -> None:
        """Replace a worker that died or hung: end what is left of it and start another on the same files (a
        file the old one left dirty is repaired to its last flush, as after a crash)."""
        with self._lock:
            connection, process = self._connection, self._process
            self._connection = self._process = None
            self._failure = None
        if connection is not None:
            connection.close()
        if process is not None:
            if process.poll() is None:
                process.kill()
            _reap(process)
        self.open()

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def max_physical_offset(self) -> int:
        return int(self._state()[0])

    @property
    def last_update_timestamp(self) -> int:
        return int(self._state()[1])

    @property
    def last_update_physical_offset(self) -> int:
        return int(self._state()[2])

    @property
    def file_paths(self) -> list[Path]:
        return [Path(p) for p in self._state()[3]]

    def _state(self) -> tuple[Any, ...]:
        state = self._call(_STATE_CALL)
        assert isinstance(state, tuple)
        return state

    # -- writes ------------------------------------------------------------------------------------------------

    def put_pending(self, pending: list[PendingIndex]) -> None:
        """Index the keys of appended records (hashed in the worker). Does not wait."""
        self._send(("keys", pending))

    def put_hashed(self, items: list[HashedIndexItem]) -> None:
        """:meth:`IndexService.put_hashed`, without waiting."""
        self._send(("hashed", items))

    def flush(self) -> None:
        """:meth:`IndexService.flush`, after every put sent before it."""
        self._call("flush")

    def truncate_above(self, physical_offset: int) -> None:
        self._call("truncate_above", physical_offset)

    def delete_files_below(self, physical_offset: int) -> int:
        return int(self._call("delete_files_below", physical_offset))

    # -- reads -------------------------------------------------------------------------------------------------

    def query(self, key: str, max_count: int, begin_ms: int, end_ms: int) -> list[int]:
        """:meth:`IndexService.query`, after every put sent before it."""
        found = self._call("query", key, max_count, begin_ms, end_ms)
        assert isinstance(found, list)
        return found

    # -- the channel -------------------------------------------------------------------------------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            connection = self._open_connection()
            try:
                connection.send(message)
            except OSError as exc:  # TimeoutError included: the worker stopped reading
                raise self._failed(connection, exc) from exc

    def _call(self, name: str, *args: Any) -> Any:
        with self._lock:
            connection = self._open_connection()
            try:
                connection.send(("call", name, args))
                reply = connection.recv()
            except (EOFError, OSError) as exc:  # TimeoutError included: no answer in IO_TIMEOUT_S
                raise self._failed(connection, exc) from exc
            return self._check(reply)

    def _open_connection(self) -> Channel:
        if self._failure is not None:
            raise IndexWorkerError(self._failure)
        if self._connection is None:
            raise StoreClosedError(f"the index service on {self._directory} is closed")
        return self._connection

    def _failed(self, connection: Channel, exc: BaseException) -> IndexWorkerError:
        """The channel is unusable (a message may be half sent, an answer may still come): close it, so that
        no later call can read a late answer as its own, and fail every call until :meth:`restart`."""
        self._failure = f"the index worker is gone or hung: {exc or type(exc).__name__}"
        connection.close()
        return IndexWorkerError(self._failure)

    @staticmethod
    def _receive(connection: Channel) -> Any:
        try:
            return connection.recv()
        except (EOFError, OSError) as exc:
            raise IndexWorkerError(f"the index worker is gone: {exc or type(exc).__name__}") from exc

    @staticmethod
    def _check(reply: Any) -> Any:
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if type(reply) is tuple and len(reply) == 3 and reply[0] == "error":
            raise _ERRORS.get(reply[1], IndexWorkerError)(reply[2])
        raise IndexWorkerError(f"the index worker answered {reply!r:.200}")


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the worker ------------------------------------------------------------------------------------------------


def serve(connection: Channel, index: IndexService) -> None:
    """Answer the store until end of file on ``connection`` (the index is opened here and closed on the way out)."""
    try:
        index.open()
    except Exception as exc:  # noqa: BLE001  # e.g. a damaged file: reported to the store, which raises it
        connection.send(("error", type(exc).__name__, str(exc)))
        return
    connection.send(("ok", None))
    failed_put: Exception | None = None
    try:
        while True:
            try:
                message = connection.recv()
            except EOFError:
                return
            kind = message[0]
            if kind == "keys" or kind == "hashed":
                if failed_put is None:
                    try:
                        index.put_hashed(hash_index_keys(message[1]) if kind == "keys" else message[1])
                    except Exception as exc:  # reported by the next call; later puts are dropped until then
                        log.exception("index worker: a put failed")
                        failed_put = exc
                continue
            name, args = message[1], message[2]
            if failed_put is not None and name not in ("close", _STATE_CALL):
                failure, failed_put = failed_put, None
                connection.send(("error", type(failure).__name__, f"an index put failed: {failure}"))
                continue
            try:
                value = _run_call(index, name, args)
            except Exception as exc:  # noqa: BLE001  # the call's failure goes back to the store, which raises it
                connection.send(("error", type(exc).__name__, str(exc)))
                continue
            connection.send(("ok", value))
            if name == "close":
                return
    finally:
        index.close()


def _run_call(index: IndexService, name: str, args: tuple[Any, ...]) -> Any:
    if name == _STATE_CALL:
        return (
            index.max_physical_offset,
            index.last_update_timestamp,
            index.last_update_physical_offset,
            [str(p) for p in index.file_paths],
        )
    if name in ("flush", "query", "truncate_above", "delete_files_below", "close"):
        return getattr(index, name)(*args)
    raise ValueError(f"no index call {name!r}")


def main(argv: list[str]) -> NoReturn:
    """The worker: ``<socket fd> <max hash slots> <max entries> <index directory>``, from :class:`IndexClient`
    (no argparse: its import would be a fifth of the start)."""
    fd, max_hash_slots, max_entries, directory = int(argv[0]), int(argv[1]), int(argv[2]), Path(argv[3])
    # The store ends this process by closing the socket after its last append; a Ctrl-C or a group's SIGTERM
    # reaching the worker first would lose the index's last flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    connection = Channel(socket.socket(fileno=fd))
    try:
        serve(connection, IndexService(directory, max_hash_slots=max_hash_slots, max_entries=max_entries))
    except (OSError, EOFError):  # the store is gone mid-reply: nothing left to answer
        pass
    finally:
        connection.close()
        logging.shutdown()
    os._exit(0)  # no interpreter teardown: the store's close waits for this exit
