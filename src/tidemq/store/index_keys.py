"""Index keys as the appender hands them over, and their hashes: all the index worker needs from the store.

Kept apart from :mod:`tidemq.store.packing` so that the index worker process imports only this (its start is
part of every store's open).
"""

from __future__ import annotations

import zlib

PendingIndex = tuple[int, bytes | None, bytes | None, int, int]
"""A record's index keys waiting for the index: (CRC-32 of ``topic#``, KEYS, UNIQ_KEY, physical offset, store
timestamp). An index key's hash is the CRC-32 of ``topic#key``, which zlib continues from the prefix's CRC."""
HashedIndexItem = tuple[int, int, int]
"""(key hash, physical offset, store timestamp): what :meth:`IndexService.put_hashed` takes."""

_CRC = zlib.crc32
_MASK31 = 0x7FFFFFFF


def index_prefix_crc(topic_bytes: bytes) -> int:
    """CRC-32 of ``topic#``, from which each of the topic's index-key hashes continues."""
    return _CRC(topic_bytes + b"#")


def hash_index_keys(pending: list[PendingIndex]) -> list[HashedIndexItem]:
    """Index items of pending records, in append order (KEYS split on spaces, then UNIQ_KEY); each hash is
    ``crc32(topic#key) & 0x7FFFFFFF`` (:func:`tidemq.store.index.key_hash`)."""
    out: list[HashedIndexItem] = []
    append = out.append
    for prefix_crc, keys, uniq, physical, store_timestamp in pending:
        if keys:
            if b" " in keys:
                out.extend(
                    (_CRC(key, prefix_crc) & _MASK31, physical, store_timestamp) for key in keys.split(b" ") if key
                )
            else:
                append((_CRC(keys, prefix_crc) & _MASK31, physical, store_timestamp))
        if uniq:
            append((_CRC(uniq, prefix_crc) & _MASK31, physical, store_timestamp))
    return out
