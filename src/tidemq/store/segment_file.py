"""Fixed-size segment files and the ordered queue of them (RocketMQ's MappedFile / MappedFileQueue).

Segments are named by the 20-digit zero-padded byte offset at which they start, preallocated with
``posix_fallocate`` so that a full disk shows up as a clear ``StoreFullError`` when a segment is created,
never half-way through a write.

We write with ``pwrite`` and read with ``pread`` rather than through ``mmap``: the data lives in the kernel's
page cache either way, but pages touched through a mapping count in the process's resident set, and a
backlog of millions of messages must not (the store's memory is bounded by the page cache, not the backlog).
A batch is one ``pwrite`` and a pull is usually one ``pread``, so the syscall cost is per batch.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

from tidemq.errors import StoreFullError

NAME_DIGITS = 20


def segment_name(start_offset: int) -> str:
    return f"{start_offset:0{NAME_DIGITS}d}"


class SegmentFile:
    """One preallocated file of ``size`` bytes holding the global byte range [start, start + size)."""

    __slots__ = ("fd", "map", "path", "size", "start")

    def __init__(self, path: Path, start: int, size: int, fd: int) -> None:
        self.path = path
        self.start = start
        self.size = size
        self.fd = fd
        self.map: mmap.mmap | None = None

    def map_for_writes(self) -> None:
        """Write through a shared mapping instead of ``pwrite``: for small, hot files (consume queues), where
        a 20-byte entry per message would otherwise cost a syscall. The file is preallocated, so a mapped
        write can never hit a full disk (no SIGBUS)."""
        if self.map is None:
            self.map = mmap.mmap(self.fd, self.size)

    @classmethod
    def create(cls, directory: Path, start: int, size: int) -> SegmentFile:
        path = directory / segment_name(start)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFullError(f"no disk space for a new {size}-byte segment {path}") from exc
            raise
        return cls(path, start, size, fd)

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

    def write(self, position: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``position`` (relative to the segment start), all of it."""
        mapped = self.map
        if mapped is not None:
            mapped[position : position + len(data)] = data
            return
        view = memoryview(data)
        while view:
            try:
                written = os.pwrite(self.fd, view, position)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreFullError(f"disk full writing {self.path}") from exc
                raise
            view = view[written:]
            position += written

    def read(self, position: int, length: int) -> bytes:
        return os.pread(self.fd, length, position)

    def sync(self) -> None:
        if self.map is not None:
            self.map.flush()
        else:
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

    def __init__(self, directory: Path, segment_size: int, *, map_writes: bool = False) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self.segments: list[SegmentFile] = []
        self.map_writes = map_writes

    def load(self) -> None:
        """Open the segments already on disk; ignore files that are not segment names."""
        self.directory.mkdir(parents=True, exist_ok=True)
        names = sorted(p for p in self.directory.iterdir() if p.name.isdigit() and len(p.name) == NAME_DIGITS)
        self.segments = [SegmentFile.open_existing(p, self.segment_size) for p in names]
        if self.map_writes and self.segments:
            self.segments[-1].map_for_writes()

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
        segment = SegmentFile.create(self.directory, start, self.segment_size)
        if self.map_writes:
            if self.segments:  # only the segment being written stays mapped
                previous = self.segments[-1]
                if previous.map is not None:
                    previous.map.close()
                    previous.map = None
            segment.map_for_writes()
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
