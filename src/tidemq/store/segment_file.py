"""Fixed-size segment files and the ordered queue of them (RocketMQ's MappedFile / MappedFileQueue).

Segments are named by the 20-digit zero-padded byte offset at which they start. A commit-log segment has its
full logical size from the start (``ftruncate``: offsets inside it are valid, unwritten parts read as zeros)
but disk blocks are reserved with ``posix_fallocate`` only ``ALLOCATE_AHEAD`` bytes ahead of the write
position: a full disk still shows up as a clear ``StoreFullError`` *before* a write, never half-way through
one, yet a fresh store (``tidemq dev``, a test) costs megabytes of disk, not a whole 1 GiB segment, which on a
shared CI disk adds up fast. Segments written through a mapping (the consume queues) reserve
``MAPPED_ALLOCATE_AHEAD`` at a time, and their owner reserves before the commit-log write: a mapped write into a
hole on a full disk would be a SIGBUS, and failing after the commit-log write would leave a record without its
queue entry.

Writes go through a shared mapping of the segment being written (a record is a ``memcpy``, no syscall: a
``pwrite`` per single-message append cost ~4 µs, a third of the store's whole budget per message); reads use
``pread``. Pages touched through a mapping count in the process's resident set, and a backlog of millions of
messages must not, so a log opened with ``release_written`` drops the mapping's pages behind the write position
every ``RELEASE_EVERY`` bytes (``MADV_DONTNEED``: the data stays in the page cache, dirty pages included, and
``fdatasync`` still writes them). The store's memory stays bounded by the page cache, not the backlog.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

from tidemq.errors import StoreFullError

NAME_DIGITS = 20
ALLOCATE_AHEAD = 16 << 20
"""Disk blocks reserved at a time ahead of a segment's write position (commit log)."""
SMALL_ALLOCATE_AHEAD = 256 << 10
"""The same for logs of small entries (consume queues: 13,107 entries at a time)."""
RELEASE_EVERY = 8 << 20
"""Bytes written through a mapping between two releases of the pages behind (``release_written`` logs)."""
_NEVER = 1 << 62
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def segment_name(start_offset: int) -> str:
    return f"{start_offset:0{NAME_DIGITS}d}"


class SegmentFile:
    """One file of ``size`` bytes holding the global byte range [start, start + size).

    ``allocated``: the bytes from the file's start known to have disk blocks reserved; writes below it cannot
    fail for lack of space.
    """

    __slots__ = ("allocated", "fd", "map", "path", "release_at", "released_to", "size", "small_writes", "start")

    def __init__(self, path: Path, start: int, size: int, fd: int) -> None:
        self.path = path
        self.start = start
        self.size = size
        self.fd = fd
        self.allocated = 0
        self.small_writes = False
        self.released_to = 0
        self.release_at = _NEVER  # the write end at which the pages behind are dropped next
        self.map: mmap.mmap | None = None

    def map_for_writes(self, *, release_written: bool = False) -> None:
        """Write through a shared mapping instead of ``pwrite`` (one ``memcpy`` instead of a syscall per write).
        Writes reserve their blocks first, so a mapped write can never hit a full disk (no SIGBUS). With
        ``release_written`` the pages behind the write position leave the resident set as writes go on."""
        if self.map is None:
            self.map = mmap.mmap(self.fd, self.size)
        if release_written:
            self.release_at = RELEASE_EVERY

    def release_written(self, end: int) -> None:
        """Drop the mapping's pages in [released_to, end) rounded down to pages (the page cache keeps them)."""
        mapped = self.map
        end -= end % mmap.PAGESIZE
        if mapped is not None and end > self.released_to:
            mapped.madvise(mmap.MADV_DONTNEED, self.released_to, end - self.released_to)
            self.released_to = end
        self.release_at = end + RELEASE_EVERY

    @classmethod
    def create(cls, directory: Path, start: int, size: int, *, small_writes: bool = False) -> SegmentFile:
        """A new segment of logical size ``size`` with disk blocks for its first bytes, so that a disk too full
        for the first write fails here, before any write."""
        path = directory / segment_name(start)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        segment = cls(path, start, size, fd)
        segment.small_writes = small_writes
        try:
            os.ftruncate(fd, size)
            segment.reserve(1)
        except BaseException:
            segment.delete()
            raise
        return segment

    @classmethod
    def open_existing(cls, path: Path, size: int) -> SegmentFile:
        fd = os.open(path, os.O_RDWR)
        actual = os.fstat(fd).st_size
        if actual < size:
            # A segment cut short (e.g. created just before a crash on a filesystem without fallocate):
            # extend it so offsets inside it stay valid; the missing part reads as zeros (= no records).
            os.ftruncate(fd, size)
        return cls(path, int(path.name), size, fd)

    @property
    def end(self) -> int:
        return self.start + self.size

    def reserve(self, end: int) -> None:
        """Make sure disk blocks back [0, end), reserving up to ``ALLOCATE_AHEAD`` beyond it.

        Raises:
            StoreFullError: the disk has no room; nothing was written.
        """
        if end <= self.allocated:
            return
        target = min(self.size, end + (SMALL_ALLOCATE_AHEAD if self.small_writes else ALLOCATE_AHEAD))
        try:
            os.posix_fallocate(self.fd, self.allocated, target - self.allocated)
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise StoreFullError(f"no disk space to extend segment {self.path} to {target} bytes") from exc
            raise
        self.allocated = target

    def map_with_room(self, position: int, length: int) -> mmap.mmap | None:
        """The mapping, when ``length`` bytes at ``position`` can be packed straight into it (mapped, and its
        disk blocks reserved); else None and the caller uses :meth:`write`. Call :meth:`wrote` after."""
        if self.map is not None and position + length <= self.allocated:
            return self.map
        return None

    def wrote(self, end: int) -> None:
        """Bytes up to ``end`` were packed into the mapping from :meth:`map_with_room`."""
        if end >= self.release_at:
            self.release_written(end)

    def write(self, position: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``position`` (relative to the segment start), all of it."""
        if position + len(data) > self.allocated:
            self.reserve(position + len(data))
        mapped = self.map
        if mapped is not None:
            end = position + len(data)
            mapped[position:end] = data
            if end >= self.release_at:
                self.release_written(end)
            return
        view = memoryview(data)
        while view:
            try:
                written = os.pwrite(self.fd, view, position)
            except OSError as exc:
                if exc.errno in _FULL_ERRNOS:
                    raise StoreFullError(f"disk full writing {self.path}") from exc
                raise
            view = view[written:]
            position += written

    def read(self, position: int, length: int) -> bytes:
        return os.pread(self.fd, length, position)

    def sync(self) -> None:
        # Also for mapped writes: on Linux a shared mapping's dirty pages are the file's page-cache pages, which
        # fdatasync writes (msync of a whole 1 GiB mapping would only walk more page tables to the same end).
        os.fdatasync(self.fd)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def unlink(self) -> None:
        """Remove the file but keep the descriptor open (a concurrent pread stays valid)."""
        self.path.unlink(missing_ok=True)


class SegmentQueue:
    """The segments of one log (the commit log, or one consume queue), ordered by start offset.

    Not thread-safe by itself: the owner (CommitLog, ConsumeQueue) serialises changes. Readers may race
    with deletion of the oldest segment; they see ``None`` or an ``OSError`` and report "offset moved".
    """

    def __init__(
        self,
        directory: Path,
        segment_size: int,
        *,
        map_writes: bool = False,
        small_writes: bool = False,
        release_written: bool = False,
    ) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self.segments: list[SegmentFile] = []
        self.map_writes = map_writes
        self.small_writes = small_writes
        self.release_written = release_written

    def load(self) -> None:
        """Open the segments already on disk; ignore files that are not segment names."""
        self.directory.mkdir(parents=True, exist_ok=True)
        names = sorted(p for p in self.directory.iterdir() if p.name.isdigit() and len(p.name) == NAME_DIGITS)
        self.segments = [SegmentFile.open_existing(p, self.segment_size) for p in names]
        for segment in self.segments:
            segment.small_writes = self.small_writes
        if self.map_writes and self.segments:
            self.segments[-1].map_for_writes(release_written=self.release_written)

    @property
    def min_offset(self) -> int:
        return self.segments[0].start if self.segments else 0

    def segment_for(self, offset: int) -> SegmentFile | None:
        """The segment holding ``offset``, or None when it is outside every segment."""
        segments = self.segments
        if not segments or offset < segments[0].start:
            return None
        index = (offset - segments[0].start) // self.segment_size
        if index < len(segments):
            segment = segments[index]
            if segment.start <= offset < segment.end:
                return segment
        for segment in segments:  # a gap in the names (deleted by hand): fall back to a scan
            if segment.start <= offset < segment.end:
                return segment
        return None

    def last_or_create(self, offset: int) -> SegmentFile:
        """The segment to write ``offset`` into, creating it (and only it) when needed."""
        if self.segments and self.segments[-1].start <= offset < self.segments[-1].end:
            return self.segments[-1]
        start = offset - offset % self.segment_size
        self.directory.mkdir(parents=True, exist_ok=True)
        segment = SegmentFile.create(self.directory, start, self.segment_size, small_writes=self.small_writes)
        if self.map_writes:
            if self.segments:  # only the segment being written stays mapped
                previous = self.segments[-1]
                if previous.map is not None:
                    previous.map.close()
                    previous.map = None
            segment.map_for_writes(release_written=self.release_written)
        self.segments.append(segment)
        return segment

    def read(self, offset: int, length: int) -> bytes:
        """Read up to ``length`` bytes at ``offset`` without crossing a segment end; b"" if none."""
        segment = self.segment_for(offset)
        if segment is None:
            return b""
        length = min(length, segment.end - offset)
        try:
            return segment.read(offset - segment.start, length)
        except OSError:  # deleted under us by retention
            return b""

    def truncate_from(self, offset: int) -> None:
        """Drop everything at or after ``offset``: zero the rest of its segment, delete later segments."""
        keep: list[SegmentFile] = []
        for segment in self.segments:
            if segment.start >= offset:
                segment.delete()
                continue
            if offset < segment.end:
                _zero_tail(segment, offset - segment.start)
            keep.append(segment)
        self.segments = keep

    def delete_first(self) -> SegmentFile | None:
        if not self.segments:
            return None
        segment = self.segments.pop(0)
        segment.delete()
        return segment

    def sync(self) -> None:
        for segment in self.segments[-2:]:
            segment.sync()

    def close(self) -> None:
        for segment in self.segments:
            segment.close()


def _zero_tail(segment: SegmentFile, position: int) -> None:
    """Zero from ``position`` until the first 1 MiB chunk that is already zero.

    A preallocated segment reads as zeros past the last write, so only the torn bytes need clearing; this
    keeps a truncation from rewriting a whole 1 GiB segment.
    """
    chunk_size = 1 << 20
    zeros = bytes(chunk_size)
    while position < segment.size:
        n = min(chunk_size, segment.size - position)
        if segment.read(position, n) == zeros[:n]:
            return
        segment.write(position, zeros[:n])
        position += n
