"""The stored-message record: RocketMQ's commit-log layout, declared once.

A pull response hands these bytes to clients unchanged, so the layout is RocketMQ's own (MessageDecoder /
CommitLog.DefaultAppendMessageCallback), magic V1 with IPv4 hosts, which every 4.x client decodes (the C++
client reads nothing else). All integers are big-endian.

======  =================  ====  ==================================================
offset  field              size  notes
======  =================  ====  ==================================================
0       TOTALSIZE          4     whole record, including this field
4       MAGICCODE          4     ``MAGIC_V1``; ``BLANK_MAGIC`` marks the end-of-segment filler
8       BODYCRC            4     ``zlib.crc32(body) & 0x7FFFFFFF`` of the body as stored
12      QUEUEID            4
16      FLAG               4     user flag from the send header
20      QUEUEOFFSET        8     consume-queue offset
28      PHYSICALOFFSET     8     commit-log offset of this record's first byte
36      SYSFLAG            4     MessageSysFlag bits
40      BORNTIMESTAMP      8     ms, producer clock
48      BORNHOST           8     IPv4 address (4) + port (int 4)
56      STORETIMESTAMP     8     ms, broker clock
64      STOREHOST          8     IPv4 address (4) + port (int 4)
72      RECONSUMETIMES     4
76      PREPAREDTXOFFSET   8
84      BODYLENGTH         4
88      BODY               n
88+n    TOPICLENGTH        1     (V1: one byte, so topics are at most 127 bytes)
89+n    TOPIC              t     UTF-8
89+n+t  PROPERTIESLENGTH   2     signed short: properties at most 32767 bytes
91+n+t  PROPERTIES         p     ``key\\x01value\\x02`` pairs, UTF-8
======  =================  ====  ==================================================

Total size = 91 + n + t + p. This module imports nothing from tidemq.
"""

from __future__ import annotations

import functools
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

MAGIC_V1: Final = -626843481  # 0xDAA320A7
MAGIC_V2: Final = -626843477  # 0xDAA320AB: topic length is a short (5.x); decoded, never written
BLANK_MAGIC: Final = -875286124  # 0xCBD43194: end-of-segment filler, TOTALSIZE = bytes left in the segment

HEAD: Final = struct.Struct(">iiiiiqqiq4siq4siiqi")
"""The fixed 88-byte prefix, TOTALSIZE through BODYLENGTH."""
HEAD_SIZE: Final = HEAD.size
MIN_RECORD_SIZE: Final = 91
"""88-byte head + topic length (1) + properties length (2). The spec says 92; captured records say 91."""
TOTAL_AND_MAGIC: Final = struct.Struct(">ii")
SIZE_FIELD: Final = struct.Struct(">i")
TOPIC_LENGTH: Final = struct.Struct(">B")
PROPERTIES_LENGTH: Final = struct.Struct(">h")

OFFSET_BODY_CRC: Final = 8
OFFSET_QUEUE_ID: Final = 12
OFFSET_QUEUE_OFFSET: Final = 20
OFFSET_PHYSICAL_OFFSET: Final = 28
OFFSET_SYS_FLAG: Final = 36
OFFSET_STORE_TIMESTAMP: Final = 56
OFFSET_BODY_LENGTH: Final = 84
LONG: Final = struct.Struct(">q")

MAX_TOPIC_BYTES: Final = 127
MAX_PROPERTIES_BYTES: Final = 32767

# MessageSysFlag bits.
SYSFLAG_COMPRESSED: Final = 0x1
SYSFLAG_MULTI_TAGS: Final = 0x2
SYSFLAG_TRANSACTION_MASK: Final = 0xC
SYSFLAG_TRANSACTION_PREPARED: Final = 0x4
SYSFLAG_TRANSACTION_COMMIT: Final = 0x8
SYSFLAG_TRANSACTION_ROLLBACK: Final = 0xC
SYSFLAG_BORNHOST_V6: Final = 0x10
SYSFLAG_STOREHOST_V6: Final = 0x20

PROPERTY_SEPARATOR: Final = "\x01"
PAIR_SEPARATOR: Final = "\x02"

# Well-known property keys (MessageConst).
PROPERTY_KEYS: Final = "KEYS"
PROPERTY_TAGS: Final = "TAGS"
PROPERTY_UNIQ_KEY: Final = "UNIQ_KEY"
PROPERTY_DELAY: Final = "DELAY"
PROPERTY_WAIT: Final = "WAIT"


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One decoded record: for tools, tests and admin paths, never for the broker's hot path."""

    total_size: int
    magic: int
    body_crc: int
    queue_id: int
    flag: int
    queue_offset: int
    physical_offset: int
    sys_flag: int
    born_timestamp: int
    born_host: tuple[str, int]
    store_timestamp: int
    store_host: tuple[str, int]
    reconsume_times: int
    prepared_transaction_offset: int
    body: bytes
    topic: str
    properties: dict[str, str]

    @property
    def tags(self) -> str | None:
        return self.properties.get(PROPERTY_TAGS)

    @property
    def keys(self) -> list[str]:
        return self.properties.get(PROPERTY_KEYS, "").split()

    @property
    def msg_id(self) -> str:
        """The offset message id the broker hands out for this record."""
        return offset_msg_id(self.store_host[0], self.store_host[1], self.physical_offset)

    def is_body_crc_ok(self) -> bool:
        return body_crc(self.body) == self.body_crc


def body_crc(body: bytes | memoryview) -> int:
    """BODYCRC: CRC32 of the stored body, masked to a non-negative int as RocketMQ's UtilAll.crc32 does."""
    return zlib.crc32(body) & 0x7FFFFFFF


def ipv4_bytes(host: str) -> bytes:
    """The 4 address bytes of a dotted IPv4 string (anything else, e.g. a name, is stored as 0.0.0.0)."""
    parts = host.split(".")
    if len(parts) != 4:
        return b"\0\0\0\0"
    try:
        return bytes(int(p) for p in parts)
    except ValueError:
        return b"\0\0\0\0"


def record_size(body_length: int, topic_length: int, properties_length: int) -> int:
    return MIN_RECORD_SIZE + body_length + topic_length + properties_length


def encode_record(
    *,
    topic: str,
    queue_id: int,
    body: bytes,
    properties: str = "",
    queue_offset: int = 0,
    physical_offset: int = 0,
    flag: int = 0,
    sys_flag: int = 0,
    born_timestamp: int = 0,
    born_host: tuple[str, int] = ("127.0.0.1", 0),
    store_timestamp: int = 0,
    store_host: tuple[str, int] = ("127.0.0.1", 10911),
    reconsume_times: int = 0,
    prepared_transaction_offset: int = 0,
) -> bytes:
    """Encode one record (tests, tools and admin paths; the store's hot path packs in place)."""
    topic_bytes = topic.encode()
    props_bytes = properties.encode()
    size = record_size(len(body), len(topic_bytes), len(props_bytes))
    out = bytearray(size)
    HEAD.pack_into(
        out,
        0,
        size,
        MAGIC_V1,
        body_crc(body),
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6),
        born_timestamp,
        ipv4_bytes(born_host[0]),
        born_host[1],
        store_timestamp,
        ipv4_bytes(store_host[0]),
        store_host[1],
        reconsume_times,
        prepared_transaction_offset,
        len(body),
    )
    pos = HEAD_SIZE
    out[pos : pos + len(body)] = body
    pos += len(body)
    out[pos] = len(topic_bytes)
    out[pos + 1 : pos + 1 + len(topic_bytes)] = topic_bytes
    pos += 1 + len(topic_bytes)
    PROPERTIES_LENGTH.pack_into(out, pos, len(props_bytes))
    out[pos + 2 :] = props_bytes
    return bytes(out)


HOST_TEXT: dict[bytes, str] = {}
"""Dotted text of the 4-byte addresses seen so far (at most 4096), for :func:`host_of` and the client's decoder."""


def host_of(address: bytes, port: int) -> tuple[str, int]:
    """Dotted text of a 4-byte address (cached: a consumer decodes the same few hosts millions of times)."""
    text = HOST_TEXT.get(address)
    if text is None:
        text = socket.inet_ntoa(address)
        if len(HOST_TEXT) < 4096:
            HOST_TEXT[address] = text
    return (text, port)


def decode_record(buf: bytes | bytearray | memoryview, pos: int = 0) -> StoredRecord:
    """Decode the record at ``pos``.

    Raises:
        ValueError: the bytes are not a whole V1/V2 record (bad magic, size or lengths).
    """
    if len(buf) - pos < MIN_RECORD_SIZE:
        raise ValueError(f"truncated record at {pos}: {len(buf) - pos} bytes")
    (
        size,
        magic,
        crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_ts,
        born_addr,
        born_port,
        store_ts,
        store_addr,
        store_port,
        reconsume,
        prepared,
        body_len,
    ) = HEAD.unpack_from(buf, pos)
    if magic not in (MAGIC_V1, MAGIC_V2):
        raise ValueError(f"bad magic {magic & 0xFFFFFFFF:#010x} at {pos}")
    if sys_flag & (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6):
        raise ValueError(f"IPv6 host records are not supported (at {pos})")
    if size < MIN_RECORD_SIZE or len(buf) - pos < size or body_len < 0 or body_len > size - MIN_RECORD_SIZE:
        raise ValueError(f"bad record size {size} / body length {body_len} at {pos}")
    p = pos + HEAD_SIZE
    body = bytes(buf[p : p + body_len])
    p += body_len
    if magic == MAGIC_V1:
        topic_len = buf[p]
        p += 1
    else:
        (topic_len,) = PROPERTIES_LENGTH.unpack_from(buf, p)
        p += 2
    topic = bytes(buf[p : p + topic_len]).decode()
    p += topic_len
    (props_len,) = PROPERTIES_LENGTH.unpack_from(buf, p)
    p += 2
    if props_len < 0 or p + props_len != pos + size:
        raise ValueError(f"record lengths do not add up to its size {size} at {pos}")
    props = parse_properties(bytes(buf[p : p + props_len]).decode())
    return StoredRecord(
        total_size=size,
        magic=magic,
        body_crc=crc,
        queue_id=queue_id,
        flag=flag,
        queue_offset=queue_offset,
        physical_offset=physical_offset,
        sys_flag=sys_flag,
        born_timestamp=born_ts,
        born_host=host_of(born_addr, born_port),
        store_timestamp=store_ts,
        store_host=host_of(store_addr, store_port),
        reconsume_times=reconsume,
        prepared_transaction_offset=prepared,
        body=body,
        topic=topic,
        properties=props,
    )


def properties_text(record: bytes | bytearray | memoryview) -> str:
    """The properties string of one raw V1 record, without decoding the rest (filters at the broker)."""
    body_length = int.from_bytes(record[OFFSET_BODY_LENGTH : OFFSET_BODY_LENGTH + 4], "big", signed=True)
    position = HEAD_SIZE + body_length
    position += 1 + record[position]
    length = int.from_bytes(record[position : position + 2], "big", signed=True)
    return bytes(record[position + 2 : position + 2 + length]).decode("utf-8", "replace")


def iter_records(buf: bytes | bytearray | memoryview) -> Iterator[StoredRecord]:
    """Decode a concatenation of records, e.g. a pull response body."""
    pos = 0
    while pos < len(buf):
        record = decode_record(buf, pos)
        yield record
        pos += record.total_size


def parse_properties(text: str) -> dict[str, str]:
    """Parse ``k\\x01v\\x02...``; pairs with an empty key or value are ignored, as Java does."""
    result: dict[str, str] = {}
    for pair in text.split(PAIR_SEPARATOR):
        key, sep, value = pair.partition(PROPERTY_SEPARATOR)
        if sep and key and value:
            result[key] = value
    return result


def encode_properties(properties: dict[str, str]) -> str:
    """Encode properties with the trailing separator both Java and C++ write."""
    return "".join(f"{k}{PROPERTY_SEPARATOR}{v}{PAIR_SEPARATOR}" for k, v in properties.items())


def find_property(text: str, key: str) -> str | None:
    """One property's value without building a dict: the hot-path lookup."""
    needle = key + PROPERTY_SEPARATOR
    start = 0
    while True:
        i = text.find(needle, start)
        if i < 0:
            return None
        if i == 0 or text[i - 1] == PAIR_SEPARATOR:
            j = i + len(needle)
            end = text.find(PAIR_SEPARATOR, j)
            return text[j:] if end < 0 else text[j:end]
        start = i + 1


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode()`` (over UTF-16 code units, signed 32-bit): RocketMQ's tag hash code."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


@functools.lru_cache(maxsize=64)
def _msg_id_prefix(host: str, port: int) -> str:
    return (ipv4_bytes(host) + struct.pack(">i", port)).hex().upper()


def offset_msg_id(host: str, port: int, physical_offset: int) -> str:
    """The broker's offset message id: store IPv4 + port + commit-log offset, 32 upper-case hex chars."""
    return f"{_msg_id_prefix(host, port)}{physical_offset:016X}"


def offset_msg_ids(host: str, port: int, physical_offsets: list[int]) -> str:
    """:func:`offset_msg_id` of each offset, comma-separated: a batch send's ``msgId`` response field."""
    prefix = _msg_id_prefix(host, port)
    return ",".join([f"{prefix}{physical:016X}" for physical in physical_offsets])


def decode_offset_msg_id(msg_id: str) -> tuple[str, int, int]:
    """Inverse of :func:`offset_msg_id`: (host, port, physical offset).

    Raises:
        ValueError: not a 32-hex-character IPv4 offset id.
    """
    if len(msg_id) != 32:
        raise ValueError(f"not an offset message id: {msg_id!r}")
    raw = bytes.fromhex(msg_id)
    port, offset = struct.unpack(">iq", raw[4:])
    return (".".join(str(b) for b in raw[:4]), port, offset)
