"""Helpers every broker handler uses: field parsing with clear errors, and response shortcuts."""

from __future__ import annotations

from collections.abc import Mapping

from tidemq.errors import TidemqError
from tidemq.protocol.remoting import RemotingCommand, ResponseCode


class BadRequest(TidemqError):
    """A request field is missing or malformed; answered with ``code`` and the message as remark."""

    def __init__(self, message: str, code: int = ResponseCode.SYSTEM_ERROR) -> None:
        super().__init__(message)
        self.code = code


def text(fields: Mapping[str, str], key: str, default: str | None = None, *, field_name: str = "") -> str:
    """``fields[key]``; ``field_name`` names it in the error where ``key`` is a V2 header's one-letter name."""
    value = fields.get(key)
    if value is None:
        if default is None:
            raise BadRequest(f"the request lacks the field {field_name or key}")
        return default
    return value


def integer(fields: Mapping[str, str], key: str, default: int | None = None, *, field_name: str = "") -> int:
    """``fields[key]`` as an int (the default when absent or empty); ``field_name`` as in :func:`text`."""
    value = fields.get(key)
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"the request lacks the field {field_name or key}")
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"the field {field_name or key} is not a number: {value[:40]!r}") from None


def boolean(fields: Mapping[str, str], key: str, default: bool = False) -> bool:
    value = fields.get(key)
    if value is None:
        return default
    return value.lower() in ("true", "1")


def error(request: RemotingCommand, code: int, remark: str) -> RemotingCommand:
    return request.make_response(code, remark)


def ok(
    request: RemotingCommand, ext_fields: Mapping[str, str] | None = None, body: bytes | memoryview = b""
) -> RemotingCommand:
    return request.make_response(ResponseCode.SUCCESS, None, ext_fields, body)
