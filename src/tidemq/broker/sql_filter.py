"""SQL92 property filters (RocketMQ's ``MessageSelector.bySql``), compiled once per subscription.

The grammar is RocketMQ's (its SelectorParser, from ActiveMQ's JMS selectors)::

    expr      := or
    or        := and ("OR" and)*
    and       := not ("AND" not)*
    not       := "NOT" not | predicate
    predicate := "(" expr ")"
               | value ("=" | "<>" | "!=" | ">" | ">=" | "<" | "<=") value
               | value ["NOT"] "BETWEEN" value "AND" value
               | value ["NOT"] "IN" "(" literal ("," literal)* ")"
               | value "IS" ["NOT"] "NULL"
               | value ["NOT"] ("CONTAINS" | "STARTSWITH" | "ENDSWITH") string
               | TRUE | FALSE | identifier            (a boolean property)
    value     := identifier | number | 'string' | TRUE | FALSE | NULL

Properties are strings on the wire; a comparison with a number compares numerically when the property parses
as one, and is false otherwise. A missing property (NULL) makes every comparison false (three-valued logic
collapsed as RocketMQ does: the message does not match). Keywords are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from tidemq.errors import TidemqError


class SqlFilterError(TidemqError):
    """A malformed SQL92 expression; the message says where."""


Value = str | float | bool | None
Getter = Callable[[Mapping[str, str]], Value]
Predicate = Callable[[Mapping[str, str]], bool]

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<string>'(?:[^']|'')*')"
    r"|(?P<op><>|!=|>=|<=|=|>|<|\(|\)|,)|(?P<word>[A-Za-z_$][\w.$-]*))"
)
_KEYWORDS: Final = frozenset(
    {"AND", "OR", "NOT", "BETWEEN", "IN", "IS", "NULL", "TRUE", "FALSE", "CONTAINS", "STARTSWITH", "ENDSWITH"}
)
MAX_EXPRESSION_LENGTH: Final = 4096


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, op, word, keyword, end
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SqlFilterError(f"unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup or "op"
        value = match.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            tokens.append(_Token("keyword", value.upper(), match.start(kind)))
        else:
            tokens.append(_Token(kind, value, match.start(kind)))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(op: str, left: Value, right: Value) -> bool:
    if left is None or right is None:
        return False
    if isinstance(left, bool) or isinstance(right, bool):
        if op not in ("=", "<>", "!="):
            return False
        left_bool = left if isinstance(left, bool) else str(left).lower() == "true"
        right_bool = right if isinstance(right, bool) else str(right).lower() == "true"
        return (left_bool == right_bool) == (op == "=")
    if isinstance(left, float) or isinstance(right, float):
        a = left if isinstance(left, float) else _number(left)
        b = right if isinstance(right, float) else _number(right)
        if a is None or b is None:
            return False
        left, right = a, b
    if op == "=":
        return left == right
    if op in ("<>", "!="):
        return left != right
    if isinstance(left, str) != isinstance(right, str):
        return False
    if op == ">":
        return left > right  # type: ignore[operator]  # both str or both float here
    if op == ">=":
        return left >= right  # type: ignore[operator]
    if op == "<":
        return left < right  # type: ignore[operator]
    return left <= right  # type: ignore[operator]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = text or kind
            found = token.text or "the end"
            raise SqlFilterError(f"expected {wanted} but found {found!r} at position {token.position}")
        return self.take()

    def parse(self) -> Predicate:
        predicate = self.or_expression()
        if self.peek().kind != "end":
            token = self.peek()
            raise SqlFilterError(f"unexpected {token.text!r} at position {token.position}")
        return predicate

    def or_expression(self) -> Predicate:
        parts = [self.and_expression()]
        while self.accept("keyword", "OR"):
            parts.append(self.and_expression())
        if len(parts) == 1:
            return parts[0]
        return lambda props: any(p(props) for p in parts)

    def and_expression(self) -> Predicate:
        parts = [self.not_expression()]
        while self.accept("keyword", "AND"):
            parts.append(self.not_expression())
        if len(parts) == 1:
            return parts[0]
        return lambda props: all(p(props) for p in parts)

    def not_expression(self) -> Predicate:
        if self.accept("keyword", "NOT"):
            inner = self.not_expression()
            return lambda props: not inner(props)
        return self.predicate()

    def predicate(self) -> Predicate:
        if self.accept("op", "("):
            inner = self.or_expression()
            self.expect("op", ")")
            return inner
        left = self.value()
        token = self.peek()
        if token.kind == "op" and token.text in ("=", "<>", "!=", ">", ">=", "<", "<="):
            self.take()
            right = self.value()
            op = token.text
            return lambda props: _compare(op, left(props), right(props))
        negate = self.accept("keyword", "NOT")
        if self.accept("keyword", "BETWEEN"):
            low = self.value()
            self.expect("keyword", "AND")
            high = self.value()

            def between(props: Mapping[str, str]) -> bool:
                value = left(props)
                return _compare(">=", value, low(props)) and _compare("<=", value, high(props))

            return (lambda props: not between(props)) if negate else between
        if self.accept("keyword", "IN"):
            self.expect("op", "(")
            choices = [self.literal()]
            while self.accept("op", ","):
                choices.append(self.literal())
            self.expect("op", ")")

            def within(props: Mapping[str, str]) -> bool:
                value = left(props)
                return value is not None and any(_compare("=", value, c) for c in choices)

            return (lambda props: left(props) is not None and not within(props)) if negate else within
        for word in ("CONTAINS", "STARTSWITH", "ENDSWITH"):
            if self.accept("keyword", word):
                needle = self.expect("string").text[1:-1].replace("''", "'")
                check = _string_check(word, needle)

                def matches(props: Mapping[str, str], check: Callable[[str], bool] = check) -> bool:
                    value = left(props)
                    return isinstance(value, str) and check(value)

                return (lambda props: left(props) is not None and not matches(props)) if negate else matches
        if negate:
            raise SqlFilterError(f"NOT must be followed by BETWEEN, IN or a string test at position {token.position}")
        if self.accept("keyword", "IS"):
            is_not = self.accept("keyword", "NOT")
            self.expect("keyword", "NULL")
            return (lambda props: left(props) is not None) if is_not else (lambda props: left(props) is None)
        # A bare value used as a boolean: TRUE, FALSE or a property holding "true".
        return lambda props: _compare("=", left(props), True)

    def literal(self) -> Value:
        token = self.take()
        if token.kind == "number":
            return float(token.text)
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return token.text == "TRUE"
        raise SqlFilterError(f"expected a constant but found {token.text or 'the end'!r} at position {token.position}")

    def value(self) -> Getter:
        token = self.take()
        if token.kind == "word":
            name = token.text
            return lambda props: props.get(name)
        if token.kind == "number":
            number = float(token.text)
            return lambda props: number
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            return lambda props: text
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            flag = token.text == "TRUE"
            return lambda props: flag
        if token.kind == "keyword" and token.text == "NULL":
            return lambda props: None
        raise SqlFilterError(f"expected a value but found {token.text or 'the end'!r} at position {token.position}")


def _string_check(word: str, needle: str) -> Callable[[str], bool]:
    if word == "CONTAINS":
        return lambda value: needle in value
    if word == "STARTSWITH":
        return lambda value: value.startswith(needle)
    return lambda value: value.endswith(needle)


def compile_sql(expression: str) -> Predicate:
    """Compile a SQL92 filter into ``predicate(properties) -> bool``.

    Raises:
        SqlFilterError: the expression is empty, too long, or malformed (the message says where).
    """
    if not expression or not expression.strip():
        raise SqlFilterError("the SQL92 expression is empty")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise SqlFilterError(f"the SQL92 expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    return _Parser(expression).parse()
