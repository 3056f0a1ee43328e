"""Messages on the client side: what a producer sends, what a consumer receives, and their byte forms.

* :class:`Message` - one message of a batch (``send_batch``): body, tags, keys, user properties.
* :func:`new_uniq_key` - the UNIQ_KEY a producer stamps on every message (spec 5.6), laid out like Java's
  ``MessageClientIDSetter``: IPv4 (4 bytes) + pid (2) + a per-process random (4, Java's class-loader hash)
  + milliseconds since the start of the month (4) + a counter (2), as 32 upper-case hex characters. The first
  20 characters are fixed per process, so one id costs a clock read and one f-string.
* :func:`message_properties` - the properties string (``key\\x01value\\x02``...) of one message.
* :func:`encode_batch` - a SEND_BATCH_MESSAGE body (spec 5.8, ``MessageDecoder.encodeMessages``).
* :class:`ReceivedMessage` and :func:`decode_messages` - stored records (spec 5.1) from a pull body.

Pure code: no I/O beyond one UDP ``getsockname`` the first time an id is made (to learn our IPv4 address).
"""

from __future__ import annotations

import calendar
import os
import random
import socket
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

from tidemq.errors import MessageIllegalError
from tidemq.store import record as rec

PROPERTY_WAIT_TRUE: Final = "WAIT\x01true\x02"
"""Java's ``Message`` sets WAIT=true (wait for the store before answering) unless told otherwise."""

RESERVED_PROPERTIES: Final = frozenset(
    {
        "KEYS", "TAGS", "WAIT", "DELAY", "RETRY_TOPIC", "REAL_TOPIC", "REAL_QID", "TRAN_MSG", "PGROUP",
        "MIN_OFFSET", "MAX_OFFSET", "BUYER_ID", "ORIGIN_MESSAGE_ID", "TRANSFER_FLAG", "CORRECTION_FLAG",
        "MQ2_FLAG", "RECONSUME_TIME", "MSG_REGION", "TRACE_ON", "UNIQ_KEY", "MAX_RECONSUME_TIMES",
        "CONSUME_START_TIME", "__transactionId__", "TRANSACTION_CHECK_TIMES", "CHECK_IMMUNITY_TIME_IN_SECONDS",
        "INSTANCE_ID", "CORRELATION_ID", "REPLY_TO_CLIENT", "TTL", "ARRIVE_TIME", "PUSH_REPLY_TIME", "CLUSTER",
        "TRAN_PREPARED_QUEUE_OFFSET", "__STARTDELIVERTIME", "TIMER_DELIVER_MS", "TIMER_DELAY_SEC",
        "TIMER_DELAY_MS",
    }
)  # fmt: skip
"""System property names (``MessageConst.STRING_HASH_SET``): Java refuses them as user properties."""

_BATCH_ENTRY_HEAD: Final = struct.Struct(">iiiii")
"""TOTALSIZE, MAGICCODE (0), BODYCRC (0), FLAG, BODYLENGTH of one batch entry."""
_SHORT: Final = struct.Struct(">h")
_INT: Final = struct.Struct(">i")
_COMPRESSION_TYPE_MASK: Final = 0x700
_HOST_TEXT: Final = rec.HOST_TEXT
_ZLIB_COMPRESSION: Final = 0x300


# --- UNIQ_KEY ---------------------------------------------------------------------------------------------------


def local_ipv4(target: str = "10.255.255.255") -> bytes:
    """Our IPv4 address as the kernel would pick it to reach ``target``; 127.0.0.1 when there is no route.

    A UDP ``connect`` sends nothing; it only picks the interface.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 1))
            return socket.inet_aton(probe.getsockname()[0])
    except OSError:
        return b"\x7f\x00\x00\x01"


def _month_bounds_ms(now_ms: int) -> tuple[int, int]:
    """Start of this month and of the next, local time, in epoch ms (Java's ``setStartTime``)."""
    local = time.localtime(now_ms / 1000)
    start = time.mktime((local.tm_year, local.tm_mon, 1, 0, 0, 0, 0, 0, -1))
    days = calendar.monthrange(local.tm_year, local.tm_mon)[1]
    year, month = (local.tm_year + 1, 1) if local.tm_mon == 12 else (local.tm_year, local.tm_mon + 1)
    end = time.mktime((year, month, 1, 0, 0, 0, 0, 0, -1))
    assert end - start >= (days - 1) * 86400  # DST changes move it by an hour at most
    return int(start * 1000), int(end * 1000)


class UniqKeyGenerator:
    """Makes UNIQ_KEYs; one per process (:func:`new_uniq_key`), or one per test.

    Args:
        ip: our IPv4 address, 4 bytes.
        pid: the process id (its low 16 bits are used).
        salt: a random 32-bit number, different in every process (Java: the class loader's hash).
    """

    __slots__ = ("_counter", "_month_start_ms", "_next_month_ms", "_prefix")

    def __init__(self, ip: bytes, pid: int, salt: int) -> None:
        if len(ip) != 4:
            raise ValueError("the UNIQ_KEY layout holds an IPv4 address")
        self._prefix = (ip + struct.pack(">HI", pid & 0xFFFF, salt & 0xFFFFFFFF)).hex().upper()
        self._counter = 0
        self._month_start_ms = 0
        self._next_month_ms = 0

    @property
    def prefix(self) -> str:
        """The 20 hex characters shared by every id of this generator."""
        return self._prefix

    def next_key(self) -> str:
        now_ms = time.time_ns() // 1_000_000
        if now_ms >= self._next_month_ms:
            self._month_start_ms, self._next_month_ms = _month_bounds_ms(now_ms)
        self._counter = counter = (self._counter + 1) & 0xFFFF
        return f"{self._prefix}{(now_ms - self._month_start_ms) & 0xFFFFFFFF:08X}{counter:04X}"


_generator: UniqKeyGenerator | None = None


def new_uniq_key() -> str:
    """A new UNIQ_KEY: 32 upper-case hex characters, unique across processes and hosts."""
    global _generator  # one generator per process, made on first use (it probes the network)
    generator = _generator
    if generator is None:
        salt = random.SystemRandom().getrandbits(32)
        generator = _generator = UniqKeyGenerator(local_ipv4(), os.getpid(), salt)
    return generator.next_key()


# --- sending ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a batch.

    Attributes:
        body: the payload.
        tags: the tag consumers filter on (one tag).
        keys: business keys, indexed by the broker for QUERY_MESSAGE (a string is one key).
        properties: user properties; names must not be RocketMQ's reserved ones.
        flag: the user flag stored with the message.
    """

    body: bytes
    tags: str | None = None
    keys: str | Sequence[str] | None = None
    properties: Mapping[str, str] | None = field(default=None)
    flag: int = 0


def _check_text(value: str, what: str) -> None:
    if "\x01" in value or "\x02" in value:
        raise MessageIllegalError(f"the {what} {value[:40]!r} contains a \\x01 or \\x02 separator")


def message_properties(
    uniq_key: str | None,
    tags: str | None,
    keys: str | Sequence[str] | None,
    properties: Mapping[str, str] | None,
    *,
    delay_level: int = 0,
    deliver_at_ms: int | None = None,
    wait_store: bool = True,
) -> str:
    """The properties string of one message (spec 5.4), checked.

    Raises:
        MessageIllegalError: a reserved property name, a separator character inside a value, or an empty name.
    """
    text = f"UNIQ_KEY\x01{uniq_key}\x02" if uniq_key else ""
    if wait_store:
        text += PROPERTY_WAIT_TRUE
    if tags:
        _check_text(tags, "tags")
        text += f"TAGS\x01{tags}\x02"
    if keys:
        joined = keys if isinstance(keys, str) else " ".join(keys)
        _check_text(joined, "keys")
        text += f"KEYS\x01{joined}\x02"
    if delay_level > 0:
        text += f"DELAY\x01{delay_level}\x02"
    if deliver_at_ms is not None:
        text += f"TIMER_DELIVER_MS\x01{int(deliver_at_ms)}\x02"
    if properties:
        for name, value in properties.items():
            if name in RESERVED_PROPERTIES:
                raise MessageIllegalError(f"the property name {name!r} is reserved by RocketMQ")
            if not name or not value:
                raise MessageIllegalError(f"the property {name!r} has an empty name or value")
            _check_text(name, "property name")
            _check_text(value, "property value")
            text += f"{name}\x01{value}\x02"
    return text


def encode_batch(entries: Iterable[tuple[bytes, str, int]]) -> bytes:
    """A SEND_BATCH_MESSAGE body from ``(body, properties, flag)`` entries (spec 5.8).

    Raises:
        MessageIllegalError: an entry's properties do not fit the 2-byte length.
    """
    parts: list[bytes] = []
    for body, properties, flag in entries:
        props = properties.encode()
        if len(props) > rec.MAX_PROPERTIES_BYTES:
            raise MessageIllegalError(f"properties of {len(props)} bytes exceed {rec.MAX_PROPERTIES_BYTES}")
        size = _BATCH_ENTRY_HEAD.size + len(body) + 2 + len(props)
        parts += (_BATCH_ENTRY_HEAD.pack(size, 0, 0, flag, len(body)), body, _SHORT.pack(len(props)), props)
    return b"".join(parts)


# --- receiving --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReceivedMessage:
    """One message as a consumer sees it (Java's ``MessageExt``), decoded from a stored record.

    Treat it as read-only (copy with :func:`dataclasses.replace`). It is not ``frozen``: a frozen dataclass sets
    each of its 15 fields through ``object.__setattr__``, and building one was a third of decoding a message,
    which a push consumer does for every message it delivers.

    Attributes:
        topic: the topic it was stored under.
        body: the payload, inflated if the producer compressed it.
        queue_id: the queue it is in.
        queue_offset: its position in that queue.
        commitlog_offset: the broker's commit-log offset of the record.
        properties: every property, system ones included.
        born_timestamp: when the producer made it (ms, producer clock).
        store_timestamp: when the broker stored it (ms, broker clock).
        born_host: the producer's ``(ip, port)`` as the broker saw it.
        store_host: the broker's ``(ip, port)``.
        reconsume_times: how often it was redelivered.
        sys_flag: MessageSysFlag bits of the record.
        flag: the user flag.
        store_size: the record's size in bytes.
        broker_name: the broker it was pulled from (``""`` when not known, e.g. decoded from raw bytes).
    """

    topic: str
    body: bytes
    queue_id: int
    queue_offset: int
    commitlog_offset: int
    properties: dict[str, str]
    born_timestamp: int
    store_timestamp: int
    born_host: tuple[str, int]
    store_host: tuple[str, int]
    reconsume_times: int
    sys_flag: int
    flag: int
    store_size: int
    broker_name: str = ""

    @property
    def tags(self) -> str | None:
        return self.properties.get(rec.PROPERTY_TAGS)

    @property
    def keys(self) -> list[str]:
        return self.properties.get(rec.PROPERTY_KEYS, "").split()

    @property
    def offset_msg_id(self) -> str:
        """The broker's id of the record (store host + commit-log offset); VIEW_MESSAGE_BY_ID takes it."""
        return rec.offset_msg_id(self.store_host[0], self.store_host[1], self.commitlog_offset)

    @property
    def msg_id(self) -> str:
        """The id users see: the producer's UNIQ_KEY, else the offset id (as Java's ``MessageClientExt``)."""
        return self.properties.get(rec.PROPERTY_UNIQ_KEY) or self.offset_msg_id


_PROPERTIES_SLOT: Final = ReceivedMessage.__dict__["properties"]
"""The slot behind ``ReceivedMessage.properties``: :class:`_PulledMessage` reads and writes it directly."""
_UNPARSED: Final[dict[str, str]] = {}
"""Passed for ``properties`` when building a :class:`_PulledMessage`: leave the slot empty, parse on first read."""
_FIELD_NAMES: Final = tuple(f.name for f in fields(ReceivedMessage))


class _PulledMessage(ReceivedMessage):
    """A :class:`ReceivedMessage` decoded from a pull body, whose properties are parsed when first read.

    Parsing the properties into a dict was a third of decoding a message, and a push consumer decodes every
    message on its event loop's thread; listeners that read only the body never pay for it. Otherwise it is a
    ``ReceivedMessage``: equal to one with the same fields, copied by ``dataclasses.replace``.
    """

    __slots__ = ("_properties_text",)
    _properties_text: str | None
    """The properties as stored until first read, then None (the parsed dict is in the slot). Checked rather
    than the empty slot's AttributeError: raising and catching it cost twice the parse."""

    @property
    def properties(self) -> dict[str, str]:
        text = self._properties_text
        if text is None:
            parsed: dict[str, str] = _PROPERTIES_SLOT.__get__(self, ReceivedMessage)
            return parsed
        parsed = rec.parse_properties(text)
        _PROPERTIES_SLOT.__set__(self, parsed)
        self._properties_text = None
        return parsed

    @properties.setter
    def properties(self, value: dict[str, str]) -> None:
        if value is not _UNPARSED:
            _PROPERTIES_SLOT.__set__(self, value)
            self._properties_text = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReceivedMessage):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELD_NAMES)

    __hash__ = None  # type: ignore[assignment]  # as ReceivedMessage: mutable, compared by value

    def __repr__(self) -> str:
        _, _, fields_text = ReceivedMessage.__repr__(self).partition("(")
        return f"ReceivedMessage({fields_text}"


def record_sizes(raw: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """``(start, size)`` of each record in a pull body, reading only the TOTALSIZE words.

    Raises:
        ValueError: a size runs past the end or is too small (the body is not whole records).
    """
    position = 0
    end = len(raw)
    unpack = _INT.unpack_from
    while position < end:
        (size,) = unpack(raw, position)
        if size < rec.MIN_RECORD_SIZE or position + size > end:
            raise ValueError(f"bad record size {size} at {position} of a {end}-byte pull body")
        yield position, size
        position += size


def count_records(raw: bytes | memoryview) -> int:
    """How many records a pull body holds, without decoding them."""
    count = 0
    for _ in record_sizes(raw):
        count += 1
    return count


def iter_bodies(raw: bytes | memoryview) -> Iterator[memoryview]:
    """Each record's body as stored (compressed bodies stay compressed), as views into ``raw``."""
    view = memoryview(raw)
    for start, _ in record_sizes(view):
        (length,) = _INT.unpack_from(view, start + rec.OFFSET_BODY_LENGTH)
        body_start = start + rec.HEAD_SIZE
        yield view[body_start : body_start + length]


def decode_message(raw: bytes | memoryview, position: int = 0, broker_name: str = "") -> ReceivedMessage:
    """Decode the record at ``position`` (magic V1 or V2, IPv4 hosts), pulled from ``broker_name``.

    Straight into a :class:`ReceivedMessage` (not through :func:`tidemq.store.record.decode_record`'s
    StoredRecord): a push consumer decodes every message it hands to a listener.

    Raises:
        ValueError: not a whole record.
    """
    return _decode(raw if type(raw) is bytes else bytes(raw), position, broker_name)


def _decode(raw: bytes, position: int, broker_name: str) -> ReceivedMessage:
    """:func:`decode_message` of ``bytes``: slices of ``bytes`` are ``bytes`` already, and the ``bytes(...)``
    around each of them cost a quarter of a decode."""
    if len(raw) - position < rec.MIN_RECORD_SIZE:
        raise ValueError(f"truncated record at {position}: {len(raw) - position} bytes")
    (
        size,
        magic,
        _crc,
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
        _prepared,
        body_len,
    ) = rec.HEAD.unpack_from(raw, position)
    if magic != rec.MAGIC_V1 and magic != rec.MAGIC_V2:  # two int compares: cheaper than a tuple
        raise ValueError(f"bad magic {magic & 0xFFFFFFFF:#010x} at {position}")
    if sys_flag & (rec.SYSFLAG_BORNHOST_V6 | rec.SYSFLAG_STOREHOST_V6):
        raise ValueError(f"IPv6 host records are not supported (at {position})")
    if (
        size < rec.MIN_RECORD_SIZE
        or len(raw) - position < size
        or body_len < 0
        or body_len > size - rec.MIN_RECORD_SIZE
    ):
        raise ValueError(f"bad record size {size} / body length {body_len} at {position}")
    p = position + rec.HEAD_SIZE
    body = raw[p : p + body_len]
    p += body_len
    if magic == rec.MAGIC_V1:
        topic_len = raw[p]
        p += 1
    else:
        (topic_len,) = rec.PROPERTIES_LENGTH.unpack_from(raw, p)
        p += 2
    topic = raw[p : p + topic_len].decode()
    p += topic_len
    (props_len,) = rec.PROPERTIES_LENGTH.unpack_from(raw, p)
    p += 2
    if props_len < 0 or p + props_len != position + size:
        raise ValueError(f"record lengths do not add up to its size {size} at {position}")
    properties_text = raw[p : p + props_len].decode()
    if sys_flag & rec.SYSFLAG_COMPRESSED and sys_flag & _COMPRESSION_TYPE_MASK in (0, _ZLIB_COMPRESSION):
        try:
            body = zlib.decompress(body)
        except zlib.error as exc:
            raise ValueError(f"compressed body of the record at {position} does not inflate: {exc}") from None
    hosts = _HOST_TEXT
    born_text = hosts.get(born_addr) or rec.host_of(born_addr, born_port)[0]
    store_text = hosts.get(store_addr) or rec.host_of(store_addr, store_port)[0]
    message = _PulledMessage(  # positional, in field order: keyword matching cost 0.3 µs a message
        topic,
        body,
        queue_id,
        queue_offset,
        physical_offset,
        _UNPARSED,
        born_ts,
        store_ts,
        (born_text, born_port),
        (store_text, store_port),
        reconsume,
        sys_flag,
        flag,
        size,
        broker_name,
    )
    message._properties_text = properties_text
    return message


def decode_messages(raw: bytes | memoryview, broker_name: str = "") -> list[ReceivedMessage]:
    """Every record of a pull body, decoded.

    Raises:
        ValueError: the body is not whole records.
    """
    data = raw if type(raw) is bytes else bytes(raw)
    messages: list[ReceivedMessage] = []
    append = messages.append
    position, end = 0, len(data)
    while position < end:
        message = _decode(data, position, broker_name)  # checks the size against what is left
        append(message)
        position += message.store_size
    return messages
