"""Files tidemq defines in a store directory: the store marker and the checkpoint.

Both carry a magic, a format version and a CRC, so a directory written by another program or by a newer
tidemq is refused instead of being overwritten.

``store.meta`` (written once when the store is created)::

    magic "TIDEMQST" (8) | format version (int 4) | CRC32 of the previous 12 bytes (int 4)

``checkpoint`` (rewritten by the flusher; the store opens with recovery from ``safe_offset``)::

    magic "TIDEMQCP" (8) | version (int 4) | safe_offset (long 8) | commit_log_end (long 8)
    | is_clean (int 4) | timestamp ms (long 8) | CRC32 of everything before (int 4)

``safe_offset``: every commit-log byte below it was fsynced, and every consume-queue and index entry of those
records was fsynced too. ``commit_log_end`` and ``is_clean`` are exact only after a clean shutdown; the
``abort`` file (created at open, deleted at clean close, as RocketMQ does) says whether the last run crashed.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tidemq.errors import StoreCorruptionError, StoreError, StoreFormatError

FORMAT_VERSION: Final = 1
META_MAGIC: Final = b"TIDEMQST"
CHECKPOINT_MAGIC: Final = b"TIDEMQCP"
META: Final = struct.Struct(">8si")
CHECKPOINT: Final = struct.Struct(">8siqqiq")
CRC: Final = struct.Struct(">I")
META_FILE: Final = "store.meta"
CHECKPOINT_FILE: Final = "checkpoint"
ABORT_FILE: Final = "abort"
LOCK_FILE: Final = "lock"


def _with_crc(payload: bytes) -> bytes:
    return payload + CRC.pack(zlib.crc32(payload))


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def lock_store_root(root: Path) -> int:
    """Take the exclusive lock on ``<root>/lock`` that a store holds while open; return its fd (close it to unlock).

    RocketMQ's broker does the same (``Lock failed,MQ already started``): two processes appending to one commit
    log would interleave records. The kernel drops the lock when its holder dies, even by SIGKILL.

    Raises:
        StoreError: another process (or another open store in this one) holds it.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"the store {root} is already open in another process (its lock file is held)") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def refuse_foreign_directory(root: Path) -> None:
    """Raise StoreFormatError if ``root`` holds files but no ``store.meta``: another program's data, into which
    nothing may be written (not even our lock file)."""
    if not root.is_dir() or (root / META_FILE).exists():
        return
    foreign = [p.name for p in root.iterdir() if p.name != LOCK_FILE]
    if foreign:
        raise StoreFormatError(
            f"{root} is not a tidemq store (it has {', '.join(sorted(foreign)[:5])} but no {META_FILE}); "
            "refusing to write into another program's data"
        )


def ensure_store_marker(root: Path) -> None:
    """Create ``store.meta`` in an empty or new directory, or check an existing one.

    Raises:
        StoreFormatError: the directory holds files but no marker (another program's data), a marker of
            another program, or a newer format version.
        StoreCorruptionError: the marker fails its CRC.
    """
    root.mkdir(parents=True, exist_ok=True)
    meta = root / META_FILE
    if not meta.exists():
        refuse_foreign_directory(root)
        _write_atomically(meta, _with_crc(META.pack(META_MAGIC, FORMAT_VERSION)))
        return
    data = meta.read_bytes()
    if len(data) != META.size + CRC.size or not data.startswith(META_MAGIC):
        raise StoreFormatError(f"{meta} was not written by tidemq")
    if CRC.unpack_from(data, META.size)[0] != zlib.crc32(data[: META.size]):
        raise StoreCorruptionError(f"{meta} fails its CRC", 0)
    _, version = META.unpack_from(data)
    if version > FORMAT_VERSION:
        raise StoreFormatError(
            f"{root} was written by a newer tidemq (store format {version}; this one reads up to {FORMAT_VERSION})"
        )


def ensure_store_marker_readonly(root: Path) -> None:
    """Like :func:`ensure_store_marker` but never writes: a missing marker is an error too."""
    if not (root / META_FILE).exists():
        raise StoreFormatError(f"{root} is not a tidemq store (no {META_FILE})")
    ensure_store_marker(root)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    safe_offset: int = 0
    commit_log_end: int = 0
    is_clean: bool = False
    timestamp_ms: int = 0

    def encode(self) -> bytes:
        return _with_crc(
            CHECKPOINT.pack(
                CHECKPOINT_MAGIC,
                FORMAT_VERSION,
                self.safe_offset,
                self.commit_log_end,
                int(self.is_clean),
                self.timestamp_ms,
            )
        )

    def save(self, root: Path) -> None:
        _write_atomically(root / CHECKPOINT_FILE, self.encode())

    @classmethod
    def load(cls, root: Path) -> Checkpoint | None:
        """The saved checkpoint, or None when absent or damaged (recovery then scans the whole log)."""
        path = root / CHECKPOINT_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) != CHECKPOINT.size + CRC.size or not data.startswith(CHECKPOINT_MAGIC):
            return None
        if CRC.unpack_from(data, CHECKPOINT.size)[0] != zlib.crc32(data[: CHECKPOINT.size]):
            return None
        _, version, safe, end, clean, ts = CHECKPOINT.unpack_from(data)
        if version > FORMAT_VERSION:
            raise StoreFormatError(f"{path} has a newer format version {version}")
        return cls(safe, end, bool(clean), ts)
