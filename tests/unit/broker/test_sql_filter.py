"""SQL92 property filters: RocketMQ's grammar, its treatment of missing properties, clear parse errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidemq.broker.sql_filter import SqlFilterError, compile_sql

PROPS = {"a": "5", "b": "abc", "TAGS": "TagA", "price": "12.5", "flag": "true", "name": "it's"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a > 3", True),
        ("a > 5", False),
        ("a >= 5", True),
        ("a < 10 AND b = 'abc'", True),
        ("a < 10 AND b = 'abd'", False),
        ("a < 1 OR b = 'abc'", True),
        ("NOT a = 5", False),
        ("a <> 5", False),
        ("a != 4", True),
        ("a BETWEEN 1 AND 5", True),
        ("a NOT BETWEEN 1 AND 5", False),
        ("price BETWEEN 12 AND 13", True),
        ("TAGS IN ('TagA', 'TagB')", True),
        ("TAGS NOT IN ('TagA', 'TagB')", False),
        ("missing IS NULL", True),
        ("a IS NOT NULL", True),
        ("missing > 1", False),
        ("missing = 'x' OR a = 5", True),
        ("NOT missing = 'x'", True),
        ("b > 3", False),
        ("b CONTAINS 'bc'", True),
        ("b STARTSWITH 'ab' AND b ENDSWITH 'c'", True),
        ("b NOT CONTAINS 'z'", True),
        ("flag = TRUE", True),
        ("flag", True),
        ("TRUE", True),
        ("FALSE OR (a = 5 AND (b = 'abc'))", True),
        ("name = 'it''s'", True),
        ("a = 5.0", True),
        ("a > -1", True),
        ("a between 1 and 9 and tags is null", True),
    ],
)
def test_expressions(expression: str, expected: bool) -> None:
    assert compile_sql(expression)(PROPS) is expected


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "empty"),
        ("a >", "expected a value"),
        ("a > 3 AND", "expected a value"),
        ("(a > 3", r"expected \)"),
        ("a ~ 3", "unexpected character"),
        ("a IN ()", "expected a constant"),
        ("a > 3 b", "unexpected 'b'"),
        ("a NOT 3", "NOT must be followed"),
        ("a BETWEEN 1 2", "expected AND"),
    ],
)
def test_malformed_expressions_are_refused_with_a_clear_message(expression: str, fragment: str) -> None:
    with pytest.raises(SqlFilterError, match=fragment):
        compile_sql(expression)


@given(st.text(max_size=60))
def test_random_text_either_compiles_or_raises_sql_filter_error(text: str) -> None:
    try:
        predicate = compile_sql(text)
    except SqlFilterError:
        return
    assert predicate(PROPS) in (True, False)
