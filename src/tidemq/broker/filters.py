"""Subscription expressions: TAG expressions (``*``, ``A || B``), as the broker filters pulls with them.

The consume queue holds each message's tag hash, so a pull first filters on hashes (no commit-log read for
messages that cannot match) and then checks the real tag of the survivors, since hashes collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tidemq.store import record as rec

SUB_ALL: Final = "*"


@dataclass(frozen=True, slots=True)
class TagFilter:
    """A parsed TAG expression. ``tags`` empty means every message matches."""

    expression: str
    tags: frozenset[str]
    codes: frozenset[int]

    @property
    def matches_all(self) -> bool:
        return not self.tags

    def matches_record(self, record: memoryview) -> bool:
        """The exact check on a raw record: its TAGS property is one of ours."""
        return _record_tag(record) in self.tags


def parse_tag_expression(expression: str | None) -> TagFilter:
    """Parse ``TagA || TagB`` (RocketMQ FilterAPI.buildSubscriptionData): split on ``||``, trim, drop empties."""
    text = (expression or "").strip()
    if not text or text == SUB_ALL:
        return TagFilter(SUB_ALL, frozenset(), frozenset())
    tags = frozenset(t.strip() for t in text.split("||") if t.strip())
    if not tags:
        return TagFilter(SUB_ALL, frozenset(), frozenset())
    return TagFilter(text, tags, frozenset(rec.java_string_hash(t) for t in tags))


def _record_tag(record: memoryview) -> str | None:
    return rec.find_property(rec.properties_text(record), rec.PROPERTY_TAGS)


class SqlFilter:
    """A compiled SQL92 expression over a record's properties (RocketMQ's ExpressionType.SQL92).

    No consume-queue prefilter applies (the tag hash says nothing about other properties), so every candidate
    record's properties are decoded once and the predicate runs at the broker: unmatched messages never
    cross the network.
    """

    __slots__ = ("expression", "predicate")

    matches_all = False
    codes: frozenset[int] | None = None

    def __init__(self, expression: str) -> None:
        from tidemq.broker.sql_filter import compile_sql

        self.expression = expression
        self.predicate = compile_sql(expression)

    def matches_record(self, record: memoryview) -> bool:
        return self.predicate(_record_properties(record))


MessageFilter = TagFilter | SqlFilter
_SQL_CACHE: dict[str, SqlFilter] = {}


def build_filter(expression: str | None, expression_type: str | None) -> MessageFilter:
    """The filter for a subscription. Compiled SQL filters are shared by expression text.

    Raises:
        SqlFilterError: a malformed SQL92 expression.
    """
    kind = (expression_type or "TAG").upper()
    if kind != "SQL92":
        return parse_tag_expression(expression)
    text = expression or ""
    found = _SQL_CACHE.get(text)
    if found is None:
        found = SqlFilter(text)
        if len(_SQL_CACHE) > 10_000:
            _SQL_CACHE.clear()
        _SQL_CACHE[text] = found
    return found


def _record_properties(record: memoryview) -> dict[str, str]:
    return rec.parse_properties(rec.properties_text(record))
