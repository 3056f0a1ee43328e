"""The message index: find the commit-log offsets of messages by key within a time range.

Our take on RocketMQ's IndexService / IndexFile (store/index/): each index file is a hash table of ``slot_count``
4-byte slots whose values head singly linked lists of fixed 20-byte entries, newest first. The index is derived
from the commit log and can always be rebuilt by replaying it. This module owns the files under the directory it is
given (the broker passes ``<store root>/index``) and imports nothing from tidemq but ``tidemq.errors``.

File layout (little-endian: our own format, so the slot table can be read as a native ``array`` on repair):

======  ===================  ====  ===========================================================================
offset  field                size  notes
======  ===================  ====  ===========================================================================
0       magic                4     ``b"TQIX"``; anything else is a foreign file (``StoreFormatError``)
4       version              2     ``FORMAT_VERSION``; newer ones are refused with ``StoreFormatError``
6       flags                2     ``FLAG_DIRTY``: entries may have been written past ``entries_used``
8       slot_count           4     number of hash slots
12      max_entries          4     number of entries, entry 0 included (it is never used: 0 means "none")
16      entries_used         4     entries 1..entries_used are durable (written before the last flush)
20      reserved             4     zero
24      begin_timestamp_ms   8     store timestamp of entry 1: the base of every entry's time diff
32      end_timestamp_ms     8     largest store timestamp indexed
40      begin_phys_offset    8     commit-log offset of entry 1 (-1 while empty)
48      end_phys_offset      8     largest commit-log offset indexed (-1 while empty)
56      reserved             4     zero
60      header_crc           4     ``zlib.crc32`` of bytes 0..59
64      slots                4*n   int32 index of the newest entry of each slot, 0 = empty
64+4n   entries              20*m  see below; entry ``i`` starts at ``64 + 4n + 20i``
======  ===================  ====  ===========================================================================

Entry, as RocketMQ's:

======  ===================  ====  ===========================================================================
0       key_hash             4     ``zlib.crc32(key.encode()) & 0x7FFFFFFF`` (stable across processes)
4       phys_offset          8     commit-log offset of the message
12      time_diff_s          4     seconds since begin_timestamp_ms, never decreasing within a file
16      prev_index           4     previous (older) entry in the same slot, 0 = end of the chain
======  ===================  ====  ===========================================================================

Files are named by their first commit-log offset, 20 digits like the segments. When that name is taken (one
message whose keys filled a whole file, possible only with a tiny ``max_entries``) the next free number is used,
so names strictly increase in creation order; the header, not the name, is authoritative. A file is created under
``<name>.tmp`` with its full size (a sparse file), given its header, then renamed. Disk blocks are reserved with
``posix_fallocate`` for the header and slots at creation and for entries ``ENTRY_CHUNK_BYTES`` at a time before
they are written, so a full disk raises ``StoreFullError`` rather than SIGBUS on a mapped write, while a fresh
store costs ~24 MB of disk rather than a whole 420 MB file.

Rules worth knowing:

* Offsets only grow: a put whose offset is below :attr:`IndexService.max_physical_offset` is skipped, as
  RocketMQ's ``IndexService.buildIndex`` does, so replaying the commit log after recovery does not index twice.
  Equal offsets are accepted (one message with several keys).
* Times have one-second precision (the diff is in seconds). An entry matches a query when its second overlaps
  ``[begin_ms, end_ms]``: nothing inside the range is missed, but results may hold messages up to 999 ms outside
  it. If the clock steps back, the entry is recorded at the file's latest second (RocketMQ clamps to the file's
  begin instead); keeping diffs monotonic lets a chain walk stop at the first entry older than the range.
* Only the key's 31-bit hash is stored: hash collisions are possible, so the caller must read each record and
  compare its real keys (RocketMQ's QUERY_MESSAGE handler does the same; its keys are ``topic#key``).
* Crash safety: the first put after a flush sets ``FLAG_DIRTY`` in the header, a flush syncs the data then writes
  the counts with the flag cleared. Opening a dirty file rolls its slots back to the durable ``entries_used``
  (walking each stale head down its chain; if that chain looks damaged, as after a power loss, every slot is
  rebuilt from the durable entries). :attr:`IndexService.max_physical_offset` then says where replay must resume.
* One writer: an open service holds an exclusive ``flock`` on ``<directory>/lock``; another opener waits up to
  ``LOCK_WAIT_S`` (a killed broker's index worker finishing the keys left in its socket), then is refused.
* :meth:`IndexService.truncate_above` deletes files that begin at or beyond the offset and rolls the others back
  exactly: offsets never decrease, so the entries to forget are a suffix, unlinked newest first from their slots.

Memory: the writer periodically applies ``madvise(MADV_DONTNEED)`` to the entry pages behind its position, and
a full file is released whole when it is sealed. Dropping pages of a ``MAP_SHARED`` file mapping keeps the data (dirty
pages stay in the page cache and are written back), so resident memory stays near the slot table of the file
being written, whatever the number of entries.

All public methods take one lock: one writer thread and occasional query threads may share an instance.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import mmap
import os
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self

from tidemq.errors import StoreClosedError, StoreCorruptionError, StoreError, StoreFormatError, StoreFullError

__all__ = [
    "IndexService",
    "key_hash",
    "FORMAT_VERSION",
    "MAGIC",
]

MAGIC: Final = b"TQIX"
FORMAT_VERSION: Final = 1
FLAG_DIRTY: Final = 0x1
KNOWN_FLAGS: Final = FLAG_DIRTY

HEADER: Final = struct.Struct("<4sHHIIIIqqqqI")
"""The header without its CRC (bytes 0..59); the CRC follows as ``CRC``."""
CRC: Final = struct.Struct("<I")
HEADER_SIZE: Final = HEADER.size + CRC.size
SLOT: Final = struct.Struct("<i")
ENTRY: Final = struct.Struct("<iqii")
SLOT_SIZE: Final = SLOT.size
_NATIVE_SLOTS: Final = sys.byteorder == "little" and struct.calcsize("i") == SLOT_SIZE
ENTRY_SIZE: Final = ENTRY.size
assert HEADER_SIZE == 64
assert ENTRY_SIZE == 20

KEY_HASH_MASK: Final = 0x7FFFFFFF
INT32_MAX: Final = 0x7FFFFFFF
NAME_DIGITS: Final = 20
TMP_SUFFIX: Final = ".tmp"
# Release written entry pages every 1 MiB of entries (~52k puts): one madvise per ~50 ms of full-speed puts
# keeps the syscall cost invisible while bounding the entry pages resident to about 1 MiB.
ADVISE_EVERY_ENTRIES: Final = (1 << 20) // ENTRY_SIZE
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
ENTRY_CHUNK_BYTES: Final = 4 << 20
"""Entry bytes whose disk blocks are reserved at a time."""


def key_hash(key: str) -> int:
    """The 31-bit hash an entry stores for ``key``: CRC-32 of its UTF-8 bytes, stable across processes."""
    return zlib.crc32(key.encode()) & KEY_HASH_MASK


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reserve(fd: int, start: int, end: int, path: Path) -> None:
    """Reserve disk blocks for [start, end) so that mapped writes there can never hit ENOSPC (SIGBUS)."""
    if end <= start or not hasattr(os, "posix_fallocate"):
        return  # macOS: no fallocate; the file stays sparse, so a full disk may still surface late there
    try:
        os.posix_fallocate(fd, start, end - start)
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise StoreFullError(f"no space for index file {path.name} ({end} bytes)") from exc
        raise


LOCK_FILE: Final = "lock"
LOCK_WAIT_S: Final = 10.0


def _lock_directory(directory: Path) -> int:
    """Take the directory's exclusive lock, waiting up to ``LOCK_WAIT_S`` for a holder to end; return its fd.

    Two writers would corrupt the files. The one to wait for is an index worker whose broker was just killed:
    it ends at end of file on its socket, after the keys still in that socket (milliseconds), while a new broker
    may already be opening the same store. The kernel drops the lock when its holder dies, even by SIGKILL.

    Raises:
        StoreError: still held after ``LOCK_WAIT_S`` (another live process uses this directory).
    """
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise StoreError(f"the index directory {directory} is in use by another process") from None
            time.sleep(0.02)
            continue
        except BaseException:
            os.close(fd)
            raise
        return fd


class _Slots(Protocol):
    def __getitem__(self, slot: int, /) -> int: ...
    def __setitem__(self, slot: int, value: int, /) -> None: ...


class _PackedSlots:
    """The slot table through ``SLOT`` struct calls (big-endian hosts, where a native view would swap bytes)."""

    __slots__ = ("_mm",)

    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm

    def __getitem__(self, slot: int) -> int:
        value: int = SLOT.unpack_from(self._mm, HEADER_SIZE + slot * SLOT_SIZE)[0]
        return value

    def __setitem__(self, slot: int, value: int) -> None:
        SLOT.pack_into(self._mm, HEADER_SIZE + slot * SLOT_SIZE, value)


class _IndexFile:
    """One mapped index file; its header fields live here and are written back on flush."""

    __slots__ = (
        "advise_at",
        "advised_pos",
        "allocated_entries",
        "begin_offset",
        "begin_ts",
        "end_offset",
        "end_ts",
        "entries_used",
        "entry_base",
        "fd",
        "flags",
        "last_diff",
        "max_entries",
        "mm",
        "path",
        "slot_count",
    )

    def __init__(self, path: Path, mm: mmap.mmap, fd: int, fields: tuple[int, ...]) -> None:
        (
            self.flags,
            self.slot_count,
            self.max_entries,
            self.entries_used,
            self.begin_ts,
            self.end_ts,
            self.begin_offset,
            self.end_offset,
        ) = fields
        self.path = path
        self.mm = mm
        self.fd = fd
        """Kept open for ``fdatasync``: ``mmap.flush`` (msync) holds the GIL for the whole write-back, which
        stopped the broker's event loop for as long as the disk took (hundreds of ms on a busy disk)."""
        self.entry_base = HEADER_SIZE + self.slot_count * SLOT_SIZE
        self.last_diff = self.entry(self.entries_used)[2] if self.entries_used else 0
        self.advised_pos = self.entry_base - self.entry_base % mmap.PAGESIZE
        self.advise_at = self.entries_used + ADVISE_EVERY_ENTRIES
        # Entries 1..allocated_entries are known to have disk blocks; a loaded file's used ones certainly do.
        self.allocated_entries = self.entries_used

    @staticmethod
    def file_size(slot_count: int, max_entries: int) -> int:
        return HEADER_SIZE + slot_count * SLOT_SIZE + max_entries * ENTRY_SIZE

    @classmethod
    def create(cls, path: Path, slot_count: int, max_entries: int) -> _IndexFile:
        """Create, preallocate and map a new empty file at ``path`` (via ``<path>.tmp`` and a rename)."""
        size = cls.file_size(slot_count, max_entries)
        tmp = path.with_name(path.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)
            # Header, slots (written anywhere) and the first chunk of entry 1 onwards (entry 0 is never used).
            reserved_end = min(size, HEADER_SIZE + slot_count * SLOT_SIZE + ENTRY_SIZE + ENTRY_CHUNK_BYTES)
            _reserve(fd, 0, reserved_end, path)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        index_file = cls(path, mm, fd, (0, slot_count, max_entries, 0, 0, 0, -1, -1))
        index_file.allocated_entries = (reserved_end - index_file.entry_base) // ENTRY_SIZE - 1
        index_file.write_header()
        os.fdatasync(fd)
        tmp.rename(path)
        _fsync_directory(path.parent)
        return index_file

    @classmethod
    def load(cls, path: Path) -> _IndexFile:
        """Map an existing file after checking its header.

        Raises:
            StoreFormatError: another magic (a foreign file), a newer version or unknown flags.
            StoreCorruptionError: a bad CRC, impossible counts or a size that does not match the header.
        """
        with path.open("r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            raw = fh.read(HEADER_SIZE)
            if raw[: len(MAGIC)] != MAGIC:
                raise StoreFormatError(f"{path} is not a tidemq index file (magic {raw[:4]!r})")
            if len(raw) < HEADER_SIZE:
                raise StoreCorruptionError(f"index file {path} is shorter than its header", len(raw))
            _magic, version, flags, *fields = HEADER.unpack_from(raw)
            if version > FORMAT_VERSION:
                raise StoreFormatError(f"index file {path} has format version {version}, newer than {FORMAT_VERSION}")
            if CRC.unpack_from(raw, HEADER.size)[0] != zlib.crc32(raw[: HEADER.size]):
                raise StoreCorruptionError(f"index file {path} has a bad header CRC", HEADER.size)
            if flags & ~KNOWN_FLAGS:
                raise StoreFormatError(f"index file {path} has unknown header flags {flags:#x}")
            slot_count, max_entries, entries_used, _reserved, begin_ts, end_ts, begin_offset, end_offset, _ = fields
            if (
                version < 1
                or slot_count < 1
                or not 2 <= max_entries <= INT32_MAX
                or entries_used >= max_entries
                or size != cls.file_size(slot_count, max_entries)
            ):
                raise StoreCorruptionError(f"index file {path} has an impossible header or size {size}", 0)
            mm = mmap.mmap(fh.fileno(), size)
            fd = os.dup(fh.fileno())
        return cls(
            path, mm, fd, (flags, slot_count, max_entries, entries_used, begin_ts, end_ts, begin_offset, end_offset)
        )

    # -- header ------------------------------------------------------------------------------------------------

    @property
    def is_dirty(self) -> bool:
        return bool(self.flags & FLAG_DIRTY)

    @property
    def is_full(self) -> bool:
        return self.entries_used >= self.max_entries - 1

    def reserve_entries(self) -> None:
        """Reserve disk blocks for the next ``ENTRY_CHUNK_BYTES`` of entries after the used ones.

        Raises:
            StoreFullError: the disk has no room; nothing was written.
        """
        first = self.entry_base + (self.entries_used + 1) * ENTRY_SIZE
        end = min(len(self.mm), first + ENTRY_CHUNK_BYTES)
        _reserve(self.fd, first, end, self.path)
        self.allocated_entries = (end - self.entry_base) // ENTRY_SIZE - 1

    def header_fields(self) -> tuple[int, int, int, int, int, int]:
        """(flags, entries used, begin ts, end ts, begin offset, end offset): what the header records."""
        return self.flags, self.entries_used, self.begin_ts, self.end_ts, self.begin_offset, self.end_offset

    def write_header(self, fields: tuple[int, int, int, int, int, int] | None = None) -> None:
        """Write the header from the live fields, or from ``fields`` (see :meth:`header_fields`)."""
        flags, entries_used, begin_ts, end_ts, begin_offset, end_offset = fields or self.header_fields()
        HEADER.pack_into(
            self.mm,
            0,
            MAGIC,
            FORMAT_VERSION,
            flags,
            self.slot_count,
            self.max_entries,
            entries_used,
            0,
            begin_ts,
            end_ts,
            begin_offset,
            end_offset,
            0,
        )
        CRC.pack_into(self.mm, HEADER.size, zlib.crc32(self.mm[: HEADER.size]))

    def mark_dirty(self) -> None:
        """Record that entries may be written past the durable count (written before the entries themselves)."""
        self.flags |= FLAG_DIRTY
        self.write_header()

    def flush(self) -> None:
        """Sync the slots and entries, then the header with the new counts and the dirty flag cleared."""
        if not self.is_dirty:
            return
        os.fdatasync(self.fd)
        self.flags &= ~FLAG_DIRTY
        self.write_header()
        os.fdatasync(self.fd)

    def record_durable(self, fields: tuple[int, int, int, int, int, int]) -> None:
        """After a sync that covered the entries of ``fields`` (taken before it): a clean header if nothing
        was indexed since, else a still-dirty header with those durable counts, so that repair after a crash
        only rolls back what came after them. A file flushed clean meanwhile (sealed when full) stays clean."""
        if not self.is_dirty:
            return
        if self.entries_used == fields[1] and self.end_offset == fields[5]:
            self.flags &= ~FLAG_DIRTY
            self.write_header()
        else:
            self.write_header((fields[0] | FLAG_DIRTY, *fields[1:]))

    def seal(self) -> None:
        """The file is full: make it durable and let its pages go."""
        self.flush()
        self.release_pages(0, len(self.mm))

    def close(self) -> None:
        self.flush()
        self.unmap()

    def unmap(self) -> None:
        """Unmap and close without a flush (the file is being deleted, or its load failed)."""
        self.mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- entries -----------------------------------------------------------------------------------------------

    def entry(self, index: int) -> tuple[int, int, int, int]:
        """(key hash, physical offset, time diff, previous index) of entry ``index``."""
        result: tuple[int, int, int, int] = ENTRY.unpack_from(self.mm, self.entry_base + index * ENTRY_SIZE)
        return result

    def slot_position(self, hash_value: int) -> int:
        return HEADER_SIZE + (hash_value % self.slot_count) * SLOT_SIZE

    def release_pages(self, start: int, end: int) -> None:
        """Drop the mapping's pages in [start, end) rounded inward to pages; the page cache keeps the data."""
        start = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        end -= end % mmap.PAGESIZE
        if end > start and hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def release_written(self) -> None:
        """Drop the entry pages behind the write position (called every ``ADVISE_EVERY_ENTRIES`` puts)."""
        end = self.entry_base + self.entries_used * ENTRY_SIZE
        end -= end % mmap.PAGESIZE
        self.release_pages(self.advised_pos, end)
        self.advised_pos = max(self.advised_pos, end)
        self.advise_at = self.entries_used + ADVISE_EVERY_ENTRIES

    def overlaps(self, begin_ms: int, end_ms: int) -> bool:
        # Every entry's second [t, t + 999] lies within [begin_ts, end_ts + 999].
        return self.entries_used > 0 and self.begin_ts <= end_ms and self.end_ts + 999 >= begin_ms

    def collect(self, hash_value: int, begin_ms: int, end_ms: int, max_count: int, found: dict[int, None]) -> None:
        """Add to ``found`` (ordered, no duplicates) the offsets of this file's matching entries, newest first."""
        # Entry second t = begin_ts + 1000 * diff matches when t <= end_ms and t + 999 >= begin_ms.
        low_diff = -((self.begin_ts + 999 - begin_ms) // 1000)
        high_diff = (end_ms - self.begin_ts) // 1000
        unpack_entry = ENTRY.unpack_from
        mm, entry_base, used = self.mm, self.entry_base, self.entries_used
        slot_position = self.slot_position(hash_value)
        index = SLOT.unpack_from(mm, slot_position)[0]
        if not 0 <= index <= used:
            raise StoreCorruptionError(f"index file {self.path} has a slot beyond its entries", slot_position)
        while index:
            entry_hash, offset, diff, prev = unpack_entry(mm, entry_base + index * ENTRY_SIZE)
            if diff < low_diff:
                return  # diffs never decrease with the entry index, so older entries are older still
            if entry_hash == hash_value and diff <= high_diff:
                found[offset] = None
                if len(found) >= max_count:
                    return
            if not 0 <= prev < index:
                raise StoreCorruptionError(
                    f"index file {self.path} has a broken chain", entry_base + index * ENTRY_SIZE
                )
            index = prev

    def append(self, hash_value: int, offset: int, timestamp: int) -> None:
        """Write entry ``entries_used + 1`` and publish it in its slot (the caller checked there is room)."""
        mm = self.mm
        slot_position = HEADER_SIZE + (hash_value % self.slot_count) * SLOT_SIZE
        diff = (timestamp - self.begin_ts) // 1000
        last_diff = self.last_diff
        if diff < last_diff:
            diff = last_diff
        elif diff > INT32_MAX:
            diff = INT32_MAX
        used = self.entries_used + 1
        # The entry is complete before the slot publishes it, so a reader never follows a half entry.
        prev = SLOT.unpack_from(mm, slot_position)[0]
        ENTRY.pack_into(mm, self.entry_base + used * ENTRY_SIZE, hash_value, offset, diff, prev)
        SLOT.pack_into(mm, slot_position, used)
        self.entries_used = used
        self.last_diff = diff
        self.end_offset = offset
        if timestamp > self.end_ts:
            self.end_ts = timestamp
        if used >= self.advise_at:
            self.release_written()

    def append_many(self, items: list[tuple[int, int, int]], begin: int, end: int) -> None:
        """:meth:`append` for ``items[begin:end]`` (hash, offset, timestamp), in one loop over locals: the
        index is a third of a batch append's CPU, and most of that was per-call overhead."""
        mm = self.mm
        slot_count, entry_base, begin_ts = self.slot_count, self.entry_base, self.begin_ts
        entry_pack = ENTRY.pack_into
        used, last_diff, end_ts = self.entries_used, self.last_diff, self.end_ts
        offset = self.end_offset
        with self._slot_table() as slots:
            for i in range(begin, end):
                hash_value, offset, timestamp = items[i]
                slot = hash_value % slot_count
                diff = (timestamp - begin_ts) // 1000
                if diff < last_diff:
                    diff = last_diff
                elif diff > INT32_MAX:
                    diff = INT32_MAX
                used += 1
                entry_pack(mm, entry_base + used * ENTRY_SIZE, hash_value, offset, diff, slots[slot])
                slots[slot] = used
                last_diff = diff
                if timestamp > end_ts:
                    end_ts = timestamp
        self.entries_used, self.last_diff, self.end_ts, self.end_offset = used, last_diff, end_ts, offset
        if used >= self.advise_at:
            self.release_written()

    @contextlib.contextmanager
    def _slot_table(self) -> Iterator[_Slots]:
        """The slot table as a sequence of ints: on a little-endian host a native view of the mapping (an item
        read and an item write instead of two struct calls per key), released on exit, as an exported mmap
        cannot be closed; elsewhere struct calls behind the same interface."""
        if not _NATIVE_SLOTS:
            yield _PackedSlots(self.mm)
            return
        with memoryview(self.mm) as whole, whole[HEADER_SIZE : self.entry_base].cast("i") as slots:
            yield slots

    def first_index_at_or_above(self, physical_offset: int) -> int:
        """The lowest entry index whose offset is >= ``physical_offset`` (entries_used + 1 if none)."""
        low, high = 1, self.entries_used + 1
        while low < high:
            middle = (low + high) // 2
            if self.entry(middle)[1] >= physical_offset:
                high = middle
            else:
                low = middle + 1
        return low

    def roll_back(self, keep: int) -> None:
        """Forget entries keep+1.. newest first, then make the result durable.

        Idempotent after a crash half-way: a slot that no longer heads the entry was already unlinked.
        """
        if not self.is_dirty:
            self.mark_dirty()
        for index in range(self.entries_used, keep, -1):
            entry_hash, _offset, _diff, prev = self.entry(index)
            position = self.slot_position(entry_hash)
            if SLOT.unpack_from(self.mm, position)[0] == index:
                SLOT.pack_into(self.mm, position, prev)
        start, end = self.entry_base + (keep + 1) * ENTRY_SIZE, self.entry_base + (self.entries_used + 1) * ENTRY_SIZE
        self.mm[start:end] = bytes(end - start)
        self.entries_used = keep
        if keep:
            self.end_offset = self.entry(keep)[1]
            self.last_diff = self.entry(keep)[2]
            self.end_ts = min(self.end_ts, self.begin_ts + self.last_diff * 1000 + 999)
        else:
            self.begin_ts = self.end_ts = self.last_diff = 0
            self.begin_offset = self.end_offset = -1
        self.advise_at = min(self.advise_at, keep + ADVISE_EVERY_ENTRIES)
        self.advised_pos = min(self.advised_pos, self.entry_base - self.entry_base % mmap.PAGESIZE)
        self.flush()

    # -- crash repair ------------------------------------------------------------------------------------------

    def repair(self) -> None:
        """Bring a dirty file back to its durable ``entries_used``: slots heading newer entries are rolled back."""
        heads = array.array("i")
        heads.frombytes(self.mm[HEADER_SIZE : self.entry_base])
        if sys.byteorder == "big":
            heads.byteswap()
        used = self.entries_used
        if max(heads) > used or min(heads) < 0:
            stale = [(slot, head) for slot, head in enumerate(heads) if not 0 <= head <= used]
            if not all(self._walk_back(slot, head) for slot, head in stale):
                self._rebuild_slots()
        self.flags &= ~FLAG_DIRTY
        self.write_header()
        os.fdatasync(self.fd)

    def _walk_back(self, slot: int, head: int) -> bool:
        """Follow a stale head to the newest durable entry; False if the chain does not hold together."""
        index = head
        if index < 0:
            return False
        while index > self.entries_used:
            if index >= self.max_entries:
                return False
            raw = self.mm[self.entry_base + index * ENTRY_SIZE : self.entry_base + (index + 1) * ENTRY_SIZE]
            entry_hash, _offset, _diff, prev = ENTRY.unpack(raw)
            if raw == bytes(ENTRY_SIZE) or entry_hash % self.slot_count != slot or not 0 <= prev < index:
                return False
            index = prev
        SLOT.pack_into(self.mm, HEADER_SIZE + slot * SLOT_SIZE, index)
        return True

    def _rebuild_slots(self) -> None:
        """Recompute every slot from the durable entries (their prev links were flushed with them)."""
        self.mm[HEADER_SIZE : self.entry_base] = bytes(self.entry_base - HEADER_SIZE)
        for index in range(1, self.entries_used + 1):
            SLOT.pack_into(self.mm, self.slot_position(self.entry(index)[0]), index)


class IndexService:
    """All index files of one store: puts go to the newest, queries search newest first.

    Args:
        directory: the index directory (``<store root>/index``), created by :meth:`open` if missing.
        max_hash_slots: slots per new file. RocketMQ's default: 5M slots cost 20 MB per file and keep chains
            short (~4 entries per slot when full).
        max_entries: entries per new file, entry 0 included. RocketMQ's default 20M makes 420 MB files.
    """

    def __init__(self, directory: Path, *, max_hash_slots: int = 5_000_000, max_entries: int = 20_000_000) -> None:
        if not 1 <= max_hash_slots <= INT32_MAX:
            raise ValueError(f"max_hash_slots must be in [1, {INT32_MAX}], not {max_hash_slots}")
        if not 2 <= max_entries <= INT32_MAX:
            raise ValueError(f"max_entries must be in [2, {INT32_MAX}], not {max_entries}")
        self._directory = directory
        self._max_hash_slots = max_hash_slots
        self._max_entries = max_entries
        self._files: list[_IndexFile] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        """Held by :meth:`flush` across its syncs (which run without ``_lock``) and by :meth:`close` and
        :meth:`delete_files_below`, so that no file is closed under a sync."""
        self._is_open = False
        self._max_physical_offset = -1
        self._lock_fd = -1
        """Holds an exclusive ``flock`` on ``<directory>/lock`` while open (see :func:`_lock_directory`)."""

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Load the existing files, repairing those a crash left dirty.

        Raises:
            StoreFormatError: a file has another magic or a newer format version.
            StoreCorruptionError: a file's header is damaged.
        """
        with self._lock:
            if self._is_open:
                return
            self._directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_directory(self._directory)
            for leftover in self._directory.glob("*" + TMP_SUFFIX):
                leftover.unlink()  # a creation interrupted before its rename
            paths = sorted(
                (p for p in self._directory.iterdir() if len(p.name) == NAME_DIGITS and p.name.isdigit()),
                key=lambda p: int(p.name),
            )
            try:
                for path in paths:
                    index_file = _IndexFile.load(path)
                    self._files.append(index_file)
                    if index_file.is_dirty:
                        index_file.repair()
            except BaseException:
                for index_file in self._files:
                    index_file.unmap()
                self._files.clear()
                self._unlock()
                raise
            self._max_physical_offset = max((f.end_offset for f in self._files), default=-1)
            self._is_open = True

    def close(self) -> None:
        """Flush and unmap every file. Idempotent; later calls other than :meth:`open` raise StoreClosedError."""
        with self._flush_lock, self._lock:
            if not self._is_open:
                return
            self._is_open = False
            for index_file in self._files:
                index_file.close()
            self._files.clear()
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self._is_open:
            raise StoreClosedError(f"the index service on {self._directory} is closed")

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def max_physical_offset(self) -> int:
        """The largest commit-log offset indexed (-1 if none); after a crash, where replay must resume."""
        return self._max_physical_offset

    @property
    def last_update_timestamp(self) -> int:
        """The newest file's end timestamp (ms), 0 if none: QUERY_MESSAGE's ``indexLastUpdateTimestamp``."""
        files = [f for f in self._files if f.entries_used]
        return files[-1].end_ts if files else 0

    @property
    def last_update_physical_offset(self) -> int:
        """The newest file's end offset, 0 if none: QUERY_MESSAGE's ``indexLastUpdatePhyoffset``."""
        files = [f for f in self._files if f.entries_used]
        return files[-1].end_offset if files else 0

    @property
    def file_paths(self) -> list[Path]:
        """The index files, oldest first."""
        return [f.path for f in self._files]

    # -- writes ------------------------------------------------------------------------------------------------

    def put(self, key: str, physical_offset: int, store_timestamp_ms: int) -> None:
        """Index one key of the message at ``physical_offset`` (skipped if below :attr:`max_physical_offset`).

        Raises:
            StoreFullError: a new file was needed and the disk has no room for it.
        """
        with self._lock:  # put_many's loop for one item, without its set-up
            self._check_open()
            if physical_offset < self._max_physical_offset:
                return
            hash_value = zlib.crc32(key.encode()) & KEY_HASH_MASK
            self._writable_file(physical_offset, store_timestamp_ms).append(
                hash_value, physical_offset, store_timestamp_ms
            )
            self._max_physical_offset = physical_offset

    def put_many(self, items: Iterable[tuple[str, int, int]]) -> int:
        """Index ``(key, physical_offset, store_timestamp_ms)`` items in order; return how many were indexed.

        Items below the highest offset indexed so far are skipped (a replay after recovery does not index twice).

        Raises:
            StoreFullError: a new file was needed and the disk has no room for it (items before it are indexed).
        """
        crc32 = zlib.crc32
        with self._lock:
            self._check_open()
            max_offset = self._max_physical_offset
            hashed: list[tuple[int, int, int]] = []
            for key, offset, timestamp in items:
                if offset >= max_offset:
                    hashed.append((crc32(key.encode()) & KEY_HASH_MASK, offset, timestamp))
                    max_offset = offset
            return self._put_hashed(hashed)

    def put_hashed(self, items: list[tuple[int, int, int]]) -> int:
        """:meth:`put_many` for items already hashed with :func:`key_hash` and in offset order (the store's
        appends); leading items below the highest offset indexed so far are skipped."""
        with self._lock:
            self._check_open()
            skip = 0
            while skip < len(items) and items[skip][1] < self._max_physical_offset:
                skip += 1
            return self._put_hashed(items[skip:] if skip else items)

    def _put_hashed(self, hashed: list[tuple[int, int, int]]) -> int:
        done = 0
        try:
            while done < len(hashed):
                _hash, offset, timestamp = hashed[done]
                current = self._writable_file(offset, timestamp)
                room = min(current.max_entries - 1, current.allocated_entries, current.advise_at) - current.entries_used
                stop = min(len(hashed), done + max(1, room))
                current.append_many(hashed, done, stop)
                done = stop
        finally:
            if done:
                self._max_physical_offset = hashed[done - 1][1]
        return done

    def _writable_file(self, offset: int, timestamp: int) -> _IndexFile:
        """The newest file if it has room, else a new one; marked dirty, its begin set if it is empty."""
        current = self._files[-1] if self._files else None
        # allocated_entries <= max_entries - 1, so this also says the file is not full.
        if current is not None and 0 < current.entries_used < current.allocated_entries and current.flags & FLAG_DIRTY:
            return current  # the common case, checked first
        if current is not None and not current.is_full and current.entries_used >= current.allocated_entries:
            current.reserve_entries()
        if current is None or current.is_full:
            if current is not None:
                current.seal()
            last_name = int(current.path.name) if current is not None else -1
            path = self._directory / f"{max(offset, last_name + 1):0{NAME_DIGITS}d}"
            current = _IndexFile.create(path, self._max_hash_slots, self._max_entries)
            self._files.append(current)
        if not current.is_dirty:
            current.mark_dirty()
        if current.entries_used == 0:
            current.begin_ts = current.end_ts = timestamp
            current.begin_offset = current.end_offset = offset
            current.last_diff = 0
        return current

    def flush(self) -> None:
        """Make every indexed entry durable and persist the counts and :attr:`max_physical_offset`.

        The ``fdatasync`` calls run outside the index lock: the broker indexes on its event loop, which must
        not wait for the disk. Entries indexed during a sync are left for the next flush (their file stays
        marked dirty, with a header that covers what the sync made durable).
        """
        with self._flush_lock:
            with self._lock:
                self._check_open()
                plan = [(f, f.header_fields()) for f in self._files if f.is_dirty]
            for index_file, _ in plan:
                os.fdatasync(index_file.fd)
            with self._lock:
                for index_file, fields in plan:
                    index_file.record_durable(fields)
            for index_file, _ in plan:
                os.fdatasync(index_file.fd)

    # -- reads -------------------------------------------------------------------------------------------------

    def query(self, key: str, max_count: int, begin_ms: int, end_ms: int) -> list[int]:
        """Offsets of messages whose key hash matches ``key``, stored within [begin_ms, end_ms], newest first.

        Deduplicated, at most ``max_count``. Hash collisions are possible and times have one-second precision:
        the caller must read each record and check its real key (and its store timestamp if the bounds matter
        to the millisecond).
        """
        hash_value = key_hash(key)
        found: dict[int, None] = {}
        with self._lock:
            self._check_open()
            if max_count <= 0 or begin_ms > end_ms:
                return []
            for index_file in reversed(self._files):
                if index_file.overlaps(begin_ms, end_ms):
                    index_file.collect(hash_value, begin_ms, end_ms, max_count, found)
                    if len(found) >= max_count:
                        break
        return list(found)

    # -- recovery and retention --------------------------------------------------------------------------------

    def truncate_above(self, physical_offset: int) -> None:
        """Forget every entry pointing at or beyond ``physical_offset`` (crash recovery cut the commit log there).

        Files beginning at or beyond it are deleted; in the others the entries to forget are the newest ones
        (offsets never decrease), which are unlinked from their slots and zeroed, then the file is flushed.
        """
        with self._flush_lock, self._lock:
            self._check_open()
            doomed = [f for f in self._files if f.entries_used and f.begin_offset >= physical_offset]
            self._delete(doomed)
            for index_file in self._files:
                if index_file.entries_used and index_file.end_offset >= physical_offset:
                    index_file.roll_back(index_file.first_index_at_or_above(physical_offset) - 1)
            self._max_physical_offset = max((f.end_offset for f in self._files), default=-1)

    def delete_files_below(self, physical_offset: int) -> int:
        """Retention: delete the files whose every entry points below ``physical_offset``; return how many."""
        with self._flush_lock, self._lock:
            self._check_open()
            doomed = [f for f in self._files if f.end_offset < physical_offset]
            self._delete(doomed)
            return len(doomed)

    def _delete(self, doomed: list[_IndexFile]) -> None:
        if not doomed:
            return
        for index_file in doomed:
            self._files.remove(index_file)
            index_file.unmap()
            index_file.path.unlink()
        _fsync_directory(self._directory)
