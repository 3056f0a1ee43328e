"""Java ``.properties`` text, read and written the way ``java.util.Properties`` does.

RocketMQ's configuration files (``namesrv.conf``, ``broker.conf``) and the bodies of GET/UPDATE_NAMESRV_CONFIG and
GET/UPDATE_BROKER_CONFIG are ``Properties`` text. The rules, from ``Properties.load`` (its ``LineReader`` and
``loadConvert``):

* Natural lines end at ``\\n``, ``\\r`` or ``\\r\\n``; leading spaces, tabs and form feeds are skipped.
* A line whose first non-blank character is ``#`` or ``!`` is a comment, even if it ends with a backslash.
* A line ending with an odd number of backslashes continues on the next one; that backslash and the next line's
  leading blanks are dropped. A blank continuation line ends the logical line.
* The key runs to the first unescaped ``=``, ``:`` or blank. Blanks around one ``=`` or ``:`` are skipped; the
  rest of the line is the value (so ``a = = b`` gives ``"= b"``). A key alone has the value ``""``.
* Escapes in keys and values: ``\\t \\n \\r \\f``, ``\\uXXXX`` (surrogate pairs are joined), and ``\\X`` for any
  other ``X`` gives ``X``. A malformed ``\\u`` escape is an error, as in Java.
* A key given twice keeps its last value.

One deliberate difference: Java's ``load(InputStream)`` decodes bytes as ISO-8859-1; :func:`load_properties`
reads UTF-8 (of which ASCII files are a subset) and falls back to ISO-8859-1 only for bytes that are not UTF-8.

This module is pure: no I/O except :func:`load_properties` reading the one file it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from tidemq.errors import ConfigError

__all__ = ["format_properties", "load_properties", "parse_properties"]

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_BLANKS: Final = " \t\f"
_SEPARATORS: Final = "=:"
_SIMPLE_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_SURROGATES: Final = re.compile("[\ud800-\udfff]")
# What Properties.saveConvert escapes with a backslash, besides the backslash itself.
_SAVE_ESCAPES: Final = {
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\f": "\\f",
    "=": "\\=",
    ":": "\\:",
    "#": "\\#",
    "!": "\\!",
}


def parse_properties(text: str) -> dict[str, str]:
    """Parse ``Properties`` text into a dict, in the order keys first appear.

    Raises:
        ConfigError: a malformed ``\\uXXXX`` escape (the message gives the line number).
    """
    lines = _LINE_BREAK.split(text)
    result: dict[str, str] = {}
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].lstrip(_BLANKS)
        index += 1
        if not line or line[0] in "#!":
            continue
        parts: list[str] = []
        while _ends_with_odd_backslashes(line):
            parts.append(line[:-1])
            if index >= len(lines):  # a continuation at end of input: Java drops the backslash
                line = ""
                break
            line = lines[index].lstrip(_BLANKS)
            index += 1
        parts.append(line)
        key, value = _split_key_value("".join(parts))
        try:
            result[_unescape(key)] = _unescape(value)
        except ValueError as exc:
            raise ConfigError(f"properties line {number}: {exc}") from None
    return result


def load_properties(path: str | Path) -> dict[str, str]:
    """Read and parse a ``.properties`` file (UTF-8, or ISO-8859-1 when the bytes are not UTF-8).

    Raises:
        ConfigError: the file cannot be read, or holds a malformed escape; the message names the file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("iso-8859-1")
    try:
        return parse_properties(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def format_properties(properties: Mapping[str, str]) -> str:
    """Write ``key=value`` lines that :func:`parse_properties` and Java's ``Properties.load`` read back exactly.

    Escaping follows ``Properties.saveConvert``: backslash, ``= : # !`` and control characters everywhere,
    blanks in keys, a leading blank in values. Non-ASCII text is kept as is (encode the result as UTF-8).
    """
    return "".join(f"{_escape(key, is_key=True)}={_escape(value, is_key=False)}\n" for key, value in properties.items())


def _ends_with_odd_backslashes(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split_key_value(line: str) -> tuple[str, str]:
    """Split a logical line at the first unescaped separator or blank (``Properties.load0``)."""
    has_separator = False
    is_escaped = False
    key_end = len(line)
    for position, char in enumerate(line):
        if not is_escaped and (char in _SEPARATORS or char in _BLANKS):
            key_end = position
            has_separator = char in _SEPARATORS
            break
        is_escaped = char == "\\" and not is_escaped
    value_start = key_end + 1 if key_end < len(line) else key_end
    while value_start < len(line):
        char = line[value_start]
        if char not in _BLANKS:
            if has_separator or char not in _SEPARATORS:
                break
            has_separator = True
        value_start += 1
    return line[:key_end], line[value_start:]


def _unescape(text: str) -> str:
    """``Properties.loadConvert``; raises ``ValueError`` on a malformed ``\\u`` escape."""
    if "\\" not in text:
        return text
    out: list[str] = []
    position = 0
    end = len(text)
    while position < end:
        char = text[position]
        position += 1
        if char != "\\" or position >= end:
            out.append(char)
            continue
        char = text[position]
        position += 1
        if char == "u":
            digits = text[position : position + 4]
            if len(digits) < 4 or not _HEX_DIGITS.issuperset(digits):
                raise ValueError(f"malformed \\uxxxx encoding: \\u{digits}")
            out.append(chr(int(digits, 16)))
            position += 4
        else:
            out.append(_SIMPLE_ESCAPES.get(char, char))
    result = "".join(out)
    if _SURROGATES.search(result):
        # Java strings are UTF-16, so "\\ud83d\\ude00" is one character; join such pairs, keep lone halves.
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return result


def _escape(text: str, *, is_key: bool) -> str:
    out: list[str] = []
    for position, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == " " and (is_key or position == 0):
            out.append("\\ ")
        else:
            out.append(_SAVE_ESCAPES.get(char, char))
    return "".join(out)
