"""JSON bodies as RocketMQ writes them: fastjson's non-standard maps in, compact UTF-8 JSON out.

Java bodies come from fastjson (``RemotingSerializable``), which writes two things that are not JSON (spec 1.5):

* maps with integer keys, keys unquoted: ``{"brokerAddrs":{0:"127.0.0.1:10911"}}`` (TopicRouteData);
* maps whose keys are objects: ``{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:123}}``
  (``Map<MessageQueue, Long>`` in ConsumeStats, TopicStatsTable, ResetOffsetBody, ConsumerRunningInfo...).

:func:`loads_lenient` reads standard JSON with ``json`` (C speed) and falls back to a small recursive-descent
parser only when that fails. In the fallback, keys keep their JSON type: an unquoted ``0`` is the int ``0`` (a
quoted ``"0"`` stays a str), and an object key becomes an :class:`ObjectKey`, a tuple of its ``(name, value)``
items sorted by name, because a dict cannot be a dict key. ``ObjectKey`` is a real tuple, so it hashes and
compares like one, and ``dict(key)`` gives the fields back; it is a subclass only so that :func:`dumps_compact`
can write it back as an object.

:func:`dumps_compact` writes compact UTF-8 JSON, and ``ObjectKey`` keys the way fastjson does, which the Java
admin tool needs for GET_TOPIC_STATS_INFO and GET_CONSUME_STATS::

    table = {message_queue_key("t", "broker-a", 0): {"brokerOffset": 5, "consumerOffset": 3, "lastTimestamp": 0}}
    dumps_compact({"consumeTps": 0.0, "offsetTable": table})
    # b'{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"t"}:{...}}}'

Bodies come from the peer, so parse failures raise ``RemoteProtocolError``; values we cannot write raise
``LocalProtocolError``. This module does no I/O and imports nothing from tidemq except ``tidemq.errors``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final, NoReturn

from tidemq.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["ObjectKey", "dumps_compact", "loads_lenient", "message_queue_key"]

# strict=False accepts raw control characters inside strings, as fastjson and jsoncpp do.
_DECODER: Final = json.JSONDecoder(strict=False)
# allow_nan=False: NaN and Infinity are not JSON, and fastjson never writes them.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
# Real bodies nest a few levels; the bound keeps a hostile body from exhausting the Python stack.
_MAX_DEPTH: Final = 200


class ObjectKey(tuple[tuple[Any, Any], ...]):
    """A JSON object used as a map key, as its ``(name, value)`` items sorted by name.

    Nested objects inside it are ``ObjectKey`` too, nested arrays plain tuples, so the whole key is hashable.
    """

    __slots__ = ()

    @classmethod
    def from_items(cls, items: Iterable[tuple[Any, Any]]) -> ObjectKey:
        """Freeze ``items`` (values frozen too) and sort them by name, fastjson's order for bean fields."""
        return cls(sorted(((name, _freeze(value)) for name, value in items), key=_item_name))


def message_queue_key(topic: str, broker_name: str, queue_id: int) -> ObjectKey:
    """The key that fastjson writes for a ``MessageQueue``: ``{"brokerName":..,"queueId":..,"topic":..}``."""
    return ObjectKey((("brokerName", broker_name), ("queueId", queue_id), ("topic", topic)))


def _item_name(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return ObjectKey.from_items(value.items())
    if isinstance(value, list):
        return tuple(map(_freeze, value))
    return value


# --- reading ----------------------------------------------------------------------------------------------------


def loads_lenient(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse a body: standard JSON plus fastjson's unquoted integer keys and object keys.

    Returns ``Any`` like ``json.loads``: a body's shape depends on its request code, and callers index into it.

    Raises:
        RemoteProtocolError: the body is not UTF-8, or not JSON even by fastjson's rules (the message gives
            the position).
    """
    if isinstance(data, str):
        text = data
    else:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"JSON body is not UTF-8: {exc}") from exc
    try:
        return _DECODER.decode(text)
    except ValueError:
        pass  # not standard JSON: try fastjson's forms below
    except RecursionError as exc:
        raise RemoteProtocolError("JSON body nested too deeply") from exc
    return _LenientParser(text).parse()


class _LenientParser:
    """Recursive descent over objects and arrays; scalars go to ``json``'s C scanner via ``raw_decode``."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def parse(self) -> Any:
        value, position = self._value(self._skip(0), 0)
        position = self._skip(position)
        if position != len(self._text):
            self._fail("extra data after the JSON value", position)
        return value

    def _skip(self, position: int) -> int:
        match = _WHITESPACE.match(self._text, position)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def _fail(self, message: str, position: int) -> NoReturn:
        raise RemoteProtocolError(f"bad JSON body: {message} at char {position}")

    def _value(self, position: int, depth: int) -> tuple[Any, int]:
        char = self._text[position : position + 1]
        if char == "{":
            return self._object(position + 1, depth + 1)
        if char == "[":
            return self._array(position + 1, depth + 1)
        try:
            return _DECODER.raw_decode(self._text, position)
        except json.JSONDecodeError as exc:
            self._fail(exc.msg, exc.pos)
        except ValueError as exc:  # int() refusing a number of thousands of digits
            self._fail(str(exc), position)

    def _object(self, position: int, depth: int) -> tuple[dict[Any, Any], int]:
        if depth > _MAX_DEPTH:
            self._fail(f"nested deeper than {_MAX_DEPTH}", position)
        text = self._text
        result: dict[Any, Any] = {}
        position = self._skip(position)
        if text.startswith("}", position):
            return result, position + 1
        while True:
            key, position = self._value(position, depth)  # any value may be a key: "a", 0, {...}
            position = self._skip(position)
            if not text.startswith(":", position):
                self._fail("expected ':' after an object key", position)
            value, position = self._value(self._skip(position + 1), depth)
            result[_freeze(key)] = value
            position = self._skip(position)
            if text.startswith(",", position):
                position = self._skip(position + 1)
            elif text.startswith("}", position):
                return result, position + 1
            else:
                self._fail("expected ',' or '}' in an object", position)

    def _array(self, position: int, depth: int) -> tuple[list[Any], int]:
        if depth > _MAX_DEPTH:
            self._fail(f"nested deeper than {_MAX_DEPTH}", position)
        text = self._text
        result: list[Any] = []
        position = self._skip(position)
        if text.startswith("]", position):
            return result, position + 1
        while True:
            value, position = self._value(position, depth)
            result.append(value)
            position = self._skip(position)
            if text.startswith(",", position):
                position = self._skip(position + 1)
            elif text.startswith("]", position):
                return result, position + 1
            else:
                self._fail("expected ',' or ']' in an array", position)


# --- writing ----------------------------------------------------------------------------------------------------


def dumps_compact(obj: object) -> bytes:
    """Serialize a body: compact separators, non-ASCII as UTF-8 (not ``\\u`` escapes), like fastjson.

    Keys that are :class:`ObjectKey` are written as JSON objects, fastjson's form for ``Map<MessageQueue, V>``;
    int keys are quoted (``"0"``), which Java and the C++ client both accept.

    Raises:
        LocalProtocolError: ``obj`` holds something JSON cannot carry (NaN, a set, a lone surrogate...).
    """
    try:
        try:
            text = _ENCODER.encode(obj)
        except TypeError:
            text = _dump(obj)  # ObjectKey keys (json refuses tuple keys), or a real type error raised again
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise LocalProtocolError(f"cannot encode body as JSON: {exc}") from exc


def _dump(obj: object) -> str:
    if isinstance(obj, ObjectKey):
        return _dump_items(obj)
    if isinstance(obj, dict):
        return _dump_items(obj.items())
    if isinstance(obj, list | tuple):
        return "[" + ",".join(map(_dump, obj)) + "]"
    return _ENCODER.encode(obj)


def _dump_items(items: Iterable[tuple[Any, Any]]) -> str:
    return "{" + ",".join(f"{_dump_key(key)}:{_dump(value)}" for key, value in items) + "}"


def _dump_key(key: object) -> str:
    if isinstance(key, ObjectKey):
        return _dump_items(key)
    if isinstance(key, tuple):
        return _dump(key)  # a frozen array key; fastjson writes a List key the same way
    if isinstance(key, str):
        return _ENCODER.encode(key)
    # What json.dumps does with non-str keys: quote their JSON spelling.
    return _ENCODER.encode(_ENCODER.encode(key))
