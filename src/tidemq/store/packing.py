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

import zlib
from collections.abc import Iterator, Sequence
from typing import Final

from tidemq.store import record as rec
from tidemq.store.consume_queue import ENTRY, ENTRY_SIZE
from tidemq.store.tag_codes import SCHEDULE_TOPIC, TIMER_TOPIC, tag_code_of, tag_hash

BLANK_MIN: Final = 8
"""A segment always keeps 8 bytes for the end-of-file blank record (RocketMQ END_FILE_MIN_BLANK_LENGTH)."""

HeadCommon = tuple[int, int, bytes, int, int, bytes, int, int, int]
PendingIndex = tuple[str, str | None, str | None, int, int]
"""A record's index keys waiting for the index: (topic, KEYS, UNIQ_KEY, physical offset, store timestamp)."""

_HEAD_PACK = rec.HEAD.pack_into
_ENTRY_PACK = ENTRY.pack_into
_CRC = zlib.crc32
_MASK31: Final = 0x7FFFFFFF


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
) -> tuple[bytearray, int, list[int], bytearray]:
    """Records for ``encoded`` (body, encoded properties, flag) written from ``start``, and their queue entries.

    A record never spans two segments: where the next one would not fit (keeping :data:`BLANK_MIN` bytes), the
    rest of the segment becomes the blank end-of-file record. ``total`` is the records' summed size. Records with
    index keys are added to ``index_out`` (unless None). Returns the buffer to write at ``start``, the end offset,
    each record's physical offset and the packed consume-queue entries.
    """
    topic_tail = len(topic_bytes)
    blanks: list[tuple[int, int]] = []
    positions: list[int] = []
    position = start
    if start % segment_size + total + BLANK_MIN <= segment_size:
        for body, props, _ in encoded:  # the common case: the whole batch fits in the current segment
            positions.append(position)
            position += 91 + len(body) + topic_tail + len(props)
    else:
        for body, props, _ in encoded:
            size = 91 + len(body) + topic_tail + len(props)
            segment_end = position - position % segment_size + segment_size
            if position + size + BLANK_MIN > segment_end:
                blanks.append((position, segment_end - position))
                position = segment_end
            positions.append(position)
            position += size
    end = position
    buffer = bytearray(end - start)
    for blank_at, blank_size in blanks:
        rec.TOTAL_AND_MAGIC.pack_into(buffer, blank_at - start, blank_size, rec.BLANK_MAGIC)
    entries = bytearray(ENTRY_SIZE * len(encoded))
    topic_prefix = bytes((topic_tail,)) + topic_bytes
    is_schedule = topic in (SCHEDULE_TOPIC, TIMER_TOPIC)
    store_timestamp = common[4]
    magic = rec.MAGIC_V1
    for i, (body, props, flag) in enumerate(encoded):
        physical = positions[i]
        at = physical - start
        body_length = len(body)
        size = 91 + body_length + topic_tail + len(props)
        _HEAD_PACK(
            buffer,
            at,
            size,
            magic,
            _CRC(body) & _MASK31,
            queue_id,
            flag,
            queue_offset + i,
            physical,
            *common,
            body_length,
        )
        at += 88
        buffer[at : at + body_length] = body
        at += body_length
        buffer[at : at + topic_tail + 1] = topic_prefix
        at += topic_tail + 1
        buffer[at : at + 2] = len(props).to_bytes(2, "big")
        buffer[at + 2 : at + 2 + len(props)] = props
        text = properties[i]
        tags, keys, uniq = dispatch_properties(text)
        if tag_code_override is not None:
            tag_code = tag_code_override
        elif is_schedule:
            tag_code = tag_code_of(topic, text, store_timestamp, delay_levels_ms)
        elif tags is None:
            tag_code = 0
        else:
            tag_code = tag_hash(tags)
        _ENTRY_PACK(entries, i * ENTRY_SIZE, physical, size, tag_code)
        if index_out is not None and (keys or uniq):
            index_out.append((topic, keys, uniq, physical, store_timestamp))
    return buffer, end, positions, entries


def pack_one(
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
) -> tuple[bytearray, bytes, str | None, str | None]:
    """:func:`pack_batch` for one record that fits its segment, without the per-batch lists (single sends are
    most of a broker's appends, so their fixed cost counts). Returns the record, its consume-queue entry, and
    its KEYS and UNIQ_KEY."""
    body, props, flag = message
    body_length = len(body)
    topic_tail = len(topic_bytes)
    size = 91 + body_length + topic_tail + len(props)
    tags, keys, uniq = dispatch_properties(properties)
    if tag_code_override is not None:
        tag_code = tag_code_override
    elif topic in (SCHEDULE_TOPIC, TIMER_TOPIC):
        tag_code = tag_code_of(topic, properties, common[4], delay_levels_ms)
    else:
        tag_code = 0 if tags is None else tag_hash(tags)
    buffer = bytearray(size)
    _HEAD_PACK(
        buffer, 0, size, rec.MAGIC_V1, _CRC(body) & _MASK31, queue_id, flag, queue_offset, start, *common, body_length
    )
    at = 88 + body_length
    buffer[88:at] = body
    buffer[at] = topic_tail
    buffer[at + 1 : at + 1 + topic_tail] = topic_bytes
    at += 1 + topic_tail
    buffer[at : at + 2] = len(props).to_bytes(2, "big")
    buffer[at + 2 :] = props
    return buffer, ENTRY.pack(start, size, tag_code), keys, uniq


def dispatch_properties(properties: str) -> tuple[str | None, str | None, str | None]:
    """TAGS, KEYS and UNIQ_KEY of a properties string: all dispatch needs, without building a dict.

    One ``split`` and a ``partition`` per pair measured twice as fast as three ``find`` scans.
    """
    tags = keys = uniq = None
    for pair in properties.split("\x02"):
        key, _, value = pair.partition("\x01")
        if key == "TAGS":
            tags = value or None
        elif key == "KEYS":
            keys = value or None
        elif key == "UNIQ_KEY":
            uniq = value or None
    return tags, keys, uniq


def expand_index_keys(pending: list[PendingIndex]) -> Iterator[tuple[str, int, int]]:
    """``topic#key`` index items of pending records, in append order (KEYS split on spaces, then UNIQ_KEY)."""
    for topic, keys, uniq, physical, store_timestamp in pending:
        if keys:
            for key in keys.split(" "):
                if key:
                    yield f"{topic}#{key}", physical, store_timestamp
        if uniq:
            yield f"{topic}#{uniq}", physical, store_timestamp


def collect_index_keys(
    out: list[tuple[str, int, int]], topic: str, properties: str, physical: int, store_timestamp: int
) -> None:
    """Index keys of one record (recovery's path; appends go through :func:`expand_index_keys`)."""
    _, keys, uniq = dispatch_properties(properties)
    out.extend(expand_index_keys([(topic, keys, uniq, physical, store_timestamp)]))
