"""Packing appended messages into commit-log records and consume-queue entries: pure computation, no files.

:class:`~tidemq.store.message_store.MessageStore` decides where records go (write offset, queue offset, store
time) and writes what these functions return; keeping the byte work here keeps that class about locking, files
and dispatch, and lets the hot loop be read (and profiled) on its own. Every record is RocketMQ's V1 layout
(:mod:`tidemq.store.record`): an 88-byte head packed with one ``struct.pack_into``, then body, topic and
properties copied into one buffer per append, so an append is one write whatever the batch size.

``common`` below is the part of the head shared by every record of one append, in head order: sys flag, born
timestamp, born address (4 bytes), born port, store timestamp, store address (4 bytes), store port, reconsume
times, prepared-transaction offset.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Sequence
from typing import Final

from tidemq.store import record as rec
from tidemq.store.consume_queue import ENTRY
from tidemq.store.index_keys import HashedIndexItem, PendingIndex, hash_index_keys, index_prefix_crc
from tidemq.store.tag_codes import SCHEDULE_TOPIC, TIMER_TOPIC, tag_code_of, tag_hash_of_bytes

BLANK_MIN: Final = 8
"""A segment always keeps 8 bytes for the end-of-file blank record (RocketMQ END_FILE_MIN_BLANK_LENGTH)."""

HeadCommon = tuple[int, int, bytes, int, int, bytes, int, int, int]

BATCH_ENTRY_HEAD: Final = struct.Struct(">iiiii")
"""A batch body entry's head (RocketMQ MessageDecoder.encodeMessage): total size, magic, body CRC, flag, body
length; then the body, a 2-byte properties length and the properties."""
BATCH_ENTRY_OVERHEAD: Final = BATCH_ENTRY_HEAD.size + 2

_HEAD_PACK = rec.HEAD.pack_into
_HEAD_VARYING = struct.Struct(rec.HEAD.format[:8]).pack
"""TOTALSIZE through PHYSICALOFFSET: the part of a record's head that differs between the records of a batch."""
_HEAD_SHARED = struct.Struct(">" + rec.HEAD.format[8:-1]).pack
"""SYSFLAG through PREPAREDTRANSACTIONOFFSET: the same for every record of a batch (:data:`HeadCommon`)."""
assert struct.calcsize(rec.HEAD.format[:8]) + struct.calcsize(">" + rec.HEAD.format[8:]) == rec.HEAD.size
_BATCH_HEAD = BATCH_ENTRY_HEAD.unpack_from
_SHORT = struct.Struct(">h").unpack_from
_ENTRY = ENTRY.pack
_CRC = zlib.crc32
_MASK31: Final = 0x7FFFFFFF


class BatchFormatError(ValueError):
    """A batch body whose entries do not add up, or that holds a message the store refuses."""


def pack_batch(
    start: int,
    segment_size: int,
    total: int,
    topic: str,
    topic_bytes: bytes,
    queue_id: int,
    queue_offset: int,
    encoded: list[tuple[bytes, bytes, int]],
    properties: Sequence[str],
    common: HeadCommon,
    tag_code_override: int | None,
    delay_levels_ms: tuple[int, ...],
    index_out: list[PendingIndex] | None,
    index_prefix_crc: int,
) -> tuple[bytes, int, list[int], bytearray]:
    """Records for ``encoded`` (body, encoded properties, flag) written from ``start``, and their queue entries.

    A record never spans two segments: where the next one would not fit (keeping :data:`BLANK_MIN` bytes), the
    rest of the segment becomes the blank end-of-file record. ``total`` is the records' summed size. Records with
    index keys are added to ``index_out`` (unless None). Returns the bytes to write at ``start``, the end offset,
    each record's physical offset and the packed consume-queue entries.

    Each record is joined from its pieces (the head fields it shares with the batch are packed once), as in
    :func:`pack_raw_batch`: packing each into a zeroed buffer cost twice as much.
    """
    topic_tail = len(topic_bytes)
    topic_prefix = bytes((topic_tail,)) + topic_bytes
    fits = start % segment_size + total + BLANK_MIN <= segment_size  # the common case: no segment end inside
    is_schedule = topic in (SCHEDULE_TOPIC, TIMER_TOPIC)
    store_timestamp = common[4]
    magic = rec.MAGIC_V1
    pack_head = _HEAD_VARYING
    shared_head = _HEAD_SHARED(*common)
    parts: list[bytes] = []
    positions: list[int] = []
    entries = bytearray()
    position = start
    for i, (body, props, flag) in enumerate(encoded):
        body_length = len(body)
        size = 91 + body_length + topic_tail + len(props)
        if not fits:
            segment_end = position - position % segment_size + segment_size
            if position + size + BLANK_MIN > segment_end:
                blank_size = segment_end - position
                parts += (rec.TOTAL_AND_MAGIC.pack(blank_size, rec.BLANK_MAGIC), bytes(blank_size - 8))
                position = segment_end
        parts += (
            pack_head(size, magic, _CRC(body) & _MASK31, queue_id, flag, queue_offset + i, position),
            shared_head,
            body_length.to_bytes(4, "big"),
            body,
            topic_prefix,
            len(props).to_bytes(2, "big"),
            props,
        )
        tags, keys, uniq = dispatch_properties(props)
        if tag_code_override is not None:
            tag_code = tag_code_override
        elif is_schedule:
            tag_code = tag_code_of(topic, properties[i], store_timestamp, delay_levels_ms)
        elif tags is None:
            tag_code = 0
        else:
            tag_code = tag_hash_of_bytes(tags)
        entries += _ENTRY(position, size, tag_code)
        if index_out is not None and (keys or uniq):
            index_out.append((index_prefix_crc, keys, uniq, position, store_timestamp))
        positions.append(position)
        position += size
    return b"".join(parts), position, positions, entries


def pack_one_into(
    target: bytearray | mmap.mmap,
    at: int,
    start: int,
    topic: str,
    topic_bytes: bytes,
    queue_id: int,
    queue_offset: int,
    message: tuple[bytes, bytes, int],
    properties: str,
    common: HeadCommon,
    tag_code_override: int | None,
    delay_levels_ms: tuple[int, ...],
) -> tuple[bytes, bytes | None, bytes | None]:
    """:func:`pack_batch` for one record written from commit-log offset ``start``, packed into ``target`` at
    ``at`` (the segment's mapping itself, when it has one: no record buffer to build and copy), without the
    per-batch lists (single sends are most of a broker's appends, so their fixed cost counts). Returns the
    record's consume-queue entry, and its KEYS and UNIQ_KEY."""
    body, props, flag = message
    body_length = len(body)
    topic_tail = len(topic_bytes)
    size = 91 + body_length + topic_tail + len(props)
    tags, keys, uniq = dispatch_properties(props)
    if tag_code_override is not None:
        tag_code = tag_code_override
    elif topic in (SCHEDULE_TOPIC, TIMER_TOPIC):
        tag_code = tag_code_of(topic, properties, common[4], delay_levels_ms)
    else:
        tag_code = 0 if tags is None else tag_hash_of_bytes(tags)
    _HEAD_PACK(
        target, at, size, rec.MAGIC_V1, _CRC(body) & _MASK31, queue_id, flag, queue_offset, start, *common, body_length
    )
    at += 88
    target[at : at + body_length] = body
    at += body_length
    target[at] = topic_tail
    target[at + 1 : at + 1 + topic_tail] = topic_bytes
    at += 1 + topic_tail
    target[at : at + 2 + len(props)] = len(props).to_bytes(2, "big") + props
    return ENTRY.pack(start, size, tag_code), keys, uniq


def pack_raw_batch(
    raw: bytes,
    start: int,
    room: int,
    topic_bytes: bytes,
    queue_id: int,
    queue_offset: int,
    common: HeadCommon,
    max_body: int,
    index_out: list[PendingIndex] | None,
    index_prefix_crc: int,
) -> tuple[bytes, int, list[int], bytearray] | None:
    """Records for the messages of a batch body (:data:`BATCH_ENTRY_HEAD` entries) written from ``start``, and
    their queue entries, straight from the body's bytes: no message is decoded into Python objects.

    A record is the entry with an 84-byte head in place of the entry's 16, and the topic between body and
    properties, so each record is joined from five pieces, two of them views of ``raw``. Returns None when the
    records would not fit in ``room`` bytes (the caller takes the general path, which ends the segment); index
    keys are added to ``index_out`` (unless None) as they are packed, so the caller removes them if it fails.

    Raises:
        BatchFormatError: an entry's lengths do not add up, a body is over ``max_body`` bytes, properties are
            not UTF-8, or the batch is empty.
    """
    view = memoryview(raw)
    total = len(raw)
    topic_tail = len(topic_bytes)
    topic_prefix = bytes((topic_tail,)) + topic_bytes
    grown = 91 + topic_tail - BATCH_ENTRY_OVERHEAD  # a record's size minus its entry's size
    store_timestamp = common[4]
    magic = rec.MAGIC_V1
    pack_head = _HEAD_VARYING
    shared_head = _HEAD_SHARED(*common)  # packed once: a third of the per-record packing was these 9 fields
    parts: list[bytes | memoryview] = []
    positions: list[int] = []
    entries = bytearray()
    physical = start
    position = 0
    i = 0
    while position < total:
        if total - position < BATCH_ENTRY_OVERHEAD:
            raise BatchFormatError(f"batch entry at {position} is cut short")
        size, _, _, flag, body_length = _BATCH_HEAD(raw, position)
        props_at = position + 20 + body_length
        end = position + size
        if body_length < 0 or end > total or props_at + 2 > end or _SHORT(raw, props_at)[0] != end - props_at - 2:
            raise BatchFormatError(f"batch entry at {position} has bad lengths")
        if body_length > max_body:
            raise BatchFormatError(f"message body of {body_length} bytes is over {max_body}")
        props = raw[props_at + 2 : end]
        if not props.isascii():
            _check_utf8(props, position)
        record_size = size + grown
        parts += (
            pack_head(
                record_size,
                magic,
                _CRC(view[position + 20 : props_at]) & _MASK31,
                queue_id,
                flag,
                queue_offset + i,
                physical,
            ),
            shared_head,
            view[position + 16 : props_at],  # body length and body
            topic_prefix,
            view[props_at:end],  # properties length and properties
        )
        tags = keys = uniq = None  # dispatch_properties, inlined: this loop is the batch path's whole cost
        for pair in props.split(b"\x02"):
            key, _, value = pair.partition(b"\x01")
            if key == b"TAGS":
                tags = value or None
            elif key == b"KEYS":
                keys = value or None
            elif key == b"UNIQ_KEY":
                uniq = value or None
        entries += _ENTRY(physical, record_size, 0 if tags is None else tag_hash_of_bytes(tags))
        if index_out is not None and (keys or uniq):
            index_out.append((index_prefix_crc, keys, uniq, physical, store_timestamp))
        positions.append(physical)
        physical += record_size
        position = end
        i += 1
    if not positions:
        raise BatchFormatError("the batch is empty")
    if physical - start > room:
        return None
    return b"".join(parts), physical, positions, entries


def split_batch(raw: bytes | memoryview) -> list[tuple[bytes, str, int]]:
    """A batch body's (body, properties, flag) entries: the general path of :func:`pack_raw_batch`.

    Raises:
        BatchFormatError: an entry's lengths do not add up, properties are not UTF-8, or the batch is empty.
    """
    view = memoryview(raw)
    entries: list[tuple[bytes, str, int]] = []
    position = 0
    total = len(view)
    while position < total:
        if total - position < BATCH_ENTRY_OVERHEAD:
            raise BatchFormatError(f"batch entry at {position} is cut short")
        size, _, _, flag, body_length = _BATCH_HEAD(view, position)
        props_at = position + 20 + body_length
        end = position + size
        if body_length < 0 or end > total or props_at + 2 > end or _SHORT(view, props_at)[0] != end - props_at - 2:
            raise BatchFormatError(f"batch entry at {position} has bad lengths")
        props = bytes(view[props_at + 2 : end])
        entries.append((bytes(view[position + 20 : props_at]), _check_utf8(props, position), flag))
        position = end
    if not entries:
        raise BatchFormatError("the batch is empty")
    return entries


def _check_utf8(props: bytes, position: int) -> str:
    try:
        return props.decode()
    except UnicodeDecodeError:
        raise BatchFormatError(f"batch entry at {position} has properties that are not UTF-8") from None


def dispatch_properties(properties: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """TAGS, KEYS and UNIQ_KEY of encoded properties: all dispatch needs, without building a dict.

    One ``split`` and a ``partition`` per pair measured twice as fast as three ``find`` scans.
    """
    tags = keys = uniq = None
    for pair in properties.split(b"\x02"):
        key, _, value = pair.partition(b"\x01")
        if key == b"TAGS":
            tags = value or None
        elif key == b"KEYS":
            keys = value or None
        elif key == b"UNIQ_KEY":
            uniq = value or None
    return tags, keys, uniq


def collect_index_keys(
    out: list[HashedIndexItem], topic: str, properties: str, physical: int, store_timestamp: int
) -> None:
    """Index items of one record (recovery's path; appends go through :func:`hash_index_keys`)."""
    _, keys, uniq = dispatch_properties(properties.encode())
    out.extend(hash_index_keys([(index_prefix_crc(topic.encode()), keys, uniq, physical, store_timestamp)]))
