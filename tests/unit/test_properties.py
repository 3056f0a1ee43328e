"""The Java .properties reader and writer, against the rules of java.util.Properties.load/store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidemq.errors import ConfigError
from tidemq.properties import format_properties, load_properties, parse_properties


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=b", {"a": "b"}),
        ("a:b", {"a": "b"}),
        ("a b", {"a": "b"}),
        ("a\tb", {"a": "b"}),
        ("a\fb", {"a": "b"}),
        ("  a = b  ", {"a": "b  "}),  # trailing blanks belong to the value
        ("a = = b", {"a": "= b"}),  # only one separator is skipped
        ("a : = b", {"a": "= b"}),
        ("a=", {"a": ""}),
        ("a", {"a": ""}),
        ("a   ", {"a": ""}),
        ("a=b=c", {"a": "b=c"}),
        ("a=b:c", {"a": "b:c"}),
        ("key\\=with\\:seps=v", {"key=with:seps": "v"}),
        ("key\\ with\\ spaces v", {"key with spaces": "v"}),
        ("a=x\\ty\\nz\\rw\\fv", {"a": "x\ty\nz\rw\fv"}),
        ("a=\\q\\\\", {"a": "q\\"}),  # an unknown escape gives the character; \\\\ one backslash
        ("a=\\u0041\\u00e9\\u4e2d", {"a": "Aé中"}),
        ("\\u0041=1", {"A": "1"}),
        ("a=\\ud83d\\ude00", {"a": "😀"}),  # a UTF-16 surrogate pair is one character
        ("a=é中", {"a": "é中"}),
        ("a=1\na=2", {"a": "2"}),  # the last one wins
        ("=v", {"": "v"}),
    ],
)
def test_key_value_forms(text: str, expected: dict[str, str]) -> None:
    assert parse_properties(text) == expected


@pytest.mark.parametrize("comment", ["# c", "! c", "   # indented", "\t! tab", "#", "!"])
def test_comments_are_skipped(comment: str) -> None:
    assert parse_properties(f"{comment}\na=1\n") == {"a": "1"}


def test_a_comment_ending_with_a_backslash_does_not_continue() -> None:
    assert parse_properties("# comment \\\na=1") == {"a": "1"}


def test_hash_inside_a_value_is_not_a_comment() -> None:
    assert parse_properties("a=1 # not a comment") == {"a": "1 # not a comment"}


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_terminator(newline: str) -> None:
    text = newline.join(["a=1", "", "b=2", "c=3\\", "   4", ""])
    assert parse_properties(text) == {"a": "1", "b": "2", "c": "34"}


def test_continuation_lines() -> None:
    text = "fruits = apple, banana, \\\n         pear, \\\n         cherry\n"
    assert parse_properties(text) == {"fruits": "apple, banana, pear, cherry"}


def test_continuation_in_the_key() -> None:
    assert parse_properties("ke\\\n  y=v") == {"key": "v"}


def test_even_backslashes_do_not_continue() -> None:
    assert parse_properties("a=x\\\\\nb=y") == {"a": "x\\", "b": "y"}


def test_a_blank_continuation_line_ends_the_logical_line() -> None:
    assert parse_properties("a=x\\\n\n b=y") == {"a": "x", "b": "y"}


def test_a_continuation_at_end_of_input_drops_the_backslash() -> None:
    assert parse_properties("a=x\\") == {"a": "x"}


def test_a_continued_line_starting_with_hash_is_not_a_comment() -> None:
    assert parse_properties("a=x\\\n  #y") == {"a": "x#y"}


def test_blank_and_empty_input() -> None:
    assert parse_properties("") == {}
    assert parse_properties("\n\n   \n\t\n") == {}


@pytest.mark.parametrize("bad", ["a=\\u12", "a=\\u12G4", "a=\\u", "\\uZZZZ=1"])
def test_malformed_unicode_escape_is_an_error_with_the_line(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"line 2: malformed \\uxxxx"):
        parse_properties(f"ok=1\n{bad}")


def test_lone_surrogate_is_kept() -> None:
    assert parse_properties("a=\\ud83d") == {"a": "\ud83d"}


@pytest.mark.parametrize(
    "table",
    [
        {"a": "b"},
        {"key with spaces": " leading and trailing ", "k=:#!": "v=:#!"},
        {"path": "C:\\Program Files\\rocketmq", "multi": "line1\nline2\r\n\tx"},
        {"unicode": "é中😀", "empty": "", "": "empty key"},
        {"#notcomment": "!x", "!also": "#y"},
    ],
)
def test_format_then_parse_round_trips(table: dict[str, str]) -> None:
    assert parse_properties(format_properties(table)) == table


def test_format_escapes_like_java_store() -> None:
    assert format_properties({"a b": " x=y"}) == "a\\ b=\\ x\\=y\n"


def test_load_reads_utf8_and_latin1(tmp_path: Path) -> None:
    utf8 = tmp_path / "utf8.properties"
    utf8.write_bytes("name=é中\n".encode())
    assert load_properties(utf8) == {"name": "é中"}
    latin1 = tmp_path / "latin1.properties"
    latin1.write_bytes(b"name=\xe9\n")  # not UTF-8: read as ISO-8859-1, as Java does
    assert load_properties(latin1) == {"name": "é"}


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.conf"):
        load_properties(tmp_path / "missing.conf")
    bad = tmp_path / "bad.conf"
    bad.write_text("a=\\uXYZ1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.conf: properties line 1"):
        load_properties(bad)
