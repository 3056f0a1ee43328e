"""RemotingCommand, its JSON and ROCKETMQ headers, and single-frame encode/decode."""

from __future__ import annotations

import json
import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidemq.errors import LocalProtocolError, RemoteProtocolError
from tidemq.protocol.remoting import (
    DEFAULT_VERSION,
    CommandFlag,
    LanguageCode,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SerializeType,
    coerce_ext_value,
    decode_frame,
    encode,
    encode_bytes,
    plain_response_frame,
)


def json_frame(header: bytes, body: bytes = b"", serialize_type: int = 0) -> bytes:
    return struct.pack(">iI", 4 + len(header) + len(body), serialize_type << 24 | len(header)) + header + body


def binary_frame(header: bytes, body: bytes = b"") -> bytes:
    return json_frame(header, body, serialize_type=1)


def binary_header(
    *,
    code: int = 10,
    language: int = 0,
    version: int = 399,
    opaque: int = 1,
    flag: int = 0,
    remark: bytes = b"",
    ext: bytes = b"",
    ext_length: int | None = None,
) -> bytes:
    return (
        struct.pack(">hbhiii", code, language, version, opaque, flag, len(remark))
        + remark
        + struct.pack(">i", len(ext) if ext_length is None else ext_length)
        + ext
    )


def entry(key: bytes, value: bytes) -> bytes:
    return struct.pack(">h", len(key)) + key + struct.pack(">i", len(value)) + value


# --- the command itself ---------------------------------------------------------------------------------------


def test_request_defaults_and_flags() -> None:
    cmd = RemotingCommand.request(RequestCode.HEART_BEAT, {"a": "1"}, b"{}", opaque=9)
    assert (cmd.code, cmd.opaque, cmd.flag, cmd.language, cmd.version) == (34, 9, 0, "JAVA", DEFAULT_VERSION)
    assert cmd.serialize_type is SerializeType.JSON
    assert not cmd.is_response
    assert not cmd.is_oneway
    oneway = RemotingCommand.request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, opaque=3, is_oneway=True)
    assert oneway.flag == CommandFlag.ONEWAY.value == 2
    assert oneway.is_oneway
    assert not oneway.is_response


@pytest.mark.parametrize(
    ("flag", "is_response", "is_oneway"),
    [(0, False, False), (1, True, False), (2, False, True), (3, True, True), (4, False, False), (-1, True, True)],
)
def test_flag_bits(flag: int, is_response: bool, is_oneway: bool) -> None:
    cmd = decode_frame(encode_bytes(RemotingCommand(code=0, flag=flag)))
    assert cmd.flag == flag
    assert cmd.is_response is is_response
    assert cmd.is_oneway is is_oneway


def test_request_copies_its_ext_fields() -> None:
    fields = {"topic": "t"}
    cmd = RemotingCommand.request(RequestCode.SEND_MESSAGE, fields, opaque=1)
    fields["topic"] = "changed"
    assert cmd.ext_fields == {"topic": "t"}


@pytest.mark.parametrize("serialize_type", list(SerializeType))
def test_make_response_keeps_opaque_and_serialize_type(serialize_type: SerializeType) -> None:
    request = RemotingCommand(
        code=RequestCode.PULL_MESSAGE, language="CPP", version=63, opaque=123456, serialize_type=serialize_type
    )
    response = request.make_response(ResponseCode.PULL_NOT_FOUND, remark="no new message", ext_fields={"x": "1"})
    assert response.opaque == 123456
    assert response.serialize_type is serialize_type
    assert response.flag == CommandFlag.RESPONSE
    assert response.is_response
    assert response.code == 19
    assert response.remark == "no new message"
    assert response.ext_fields == {"x": "1"}
    assert response.body == b""
    assert (response.language, response.version) == ("JAVA", DEFAULT_VERSION)
    # And it goes out in that serialization.
    assert encode(response)[0][4] == serialize_type


def test_repr_shows_the_start_of_a_big_body_only() -> None:
    text = repr(RemotingCommand(code=10, body=b"x" * 1_000_000))
    assert "<1000000 bytes" in text
    assert len(text) < 400


# --- extFields coercion ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        ("", ""),
        (4, "4"),
        (-7, "-7"),
        (1795648991484, "1795648991484"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (None, None),
        ({"a": [1, "b"]}, '{"a":[1,"b"]}'),
    ],
)
def test_coerce_ext_value(value: object, expected: str | None) -> None:
    assert coerce_ext_value(value) == expected


def test_json_header_ext_numbers_and_bools_become_strings() -> None:
    # What the C++ client sends: numbers for queueId/sysFlag, "0"/"1" strings for its booleans.
    header = (
        b'{"code":10,"extFields":{"queueId":3,"sysFlag":0,"batch":"0","unitMode":"1","flag":true,'
        b'"gone":null,"delay":2.5},"flag":0,"language":"CPP","opaque":1,"remark":"","version":63}\n'
    )
    cmd = decode_frame(json_frame(header, b"body"))
    assert cmd.ext_fields == {
        "queueId": "3",
        "sysFlag": "0",
        "batch": "0",
        "unitMode": "1",
        "flag": "true",
        "delay": "2.5",
    }
    assert cmd.remark == ""
    assert cmd.body == b"body"
    assert (cmd.language, cmd.version) == ("CPP", 63)


def test_encoding_writes_every_ext_value_as_a_json_string() -> None:
    cmd = RemotingCommand(code=0, ext_fields={"queueId": 3, "ok": True, "none": None, "s": "x"})  # type: ignore[dict-item]
    header = json.loads(encode(cmd)[0][8:])
    assert header["extFields"] == {"queueId": "3", "ok": "true", "s": "x"}
    binary = decode_frame(
        encode_bytes(RemotingCommand(code=0, ext_fields=cmd.ext_fields, serialize_type=SerializeType.ROCKETMQ))
    )
    assert binary.ext_fields == {"queueId": "3", "ok": "true", "s": "x"}


# --- JSON header ----------------------------------------------------------------------------------------------


def test_json_header_is_written_like_fastjson() -> None:
    cmd = RemotingCommand(code=ResponseCode.SUCCESS, opaque=5, flag=1, ext_fields={"msgId": "AB", "queueId": "0"})
    header_bytes, body = encode(cmd)
    assert header_bytes[8:] == (
        b'{"code":0,"extFields":{"msgId":"AB","queueId":"0"},"flag":1,"language":"JAVA","opaque":5,'
        b'"serializeTypeCurrentRPC":"JSON","version":399}'
    )
    assert body == b""


def test_json_header_omits_null_remark_and_empty_ext_fields_but_keeps_empty_remark() -> None:
    bare = json.loads(encode(RemotingCommand(code=0))[0][8:])
    assert "remark" not in bare
    assert "extFields" not in bare
    assert json.loads(encode(RemotingCommand(code=0, remark=""))[0][8:])["remark"] == ""


def test_json_header_writes_utf8_not_escapes() -> None:
    header_bytes, _ = encode(RemotingCommand(code=1, remark="déjà 日本", ext_fields={"k": "é"}))
    assert "déjà 日本".encode() in header_bytes
    assert b"\\u" not in header_bytes


def test_json_header_codes_are_plain_numbers() -> None:
    header = json.loads(encode(RemotingCommand(code=RequestCode.GET_ROUTEINFO_BY_TOPIC))[0][8:])
    assert header["code"] == 105
    assert type(header["code"]) is int


def test_json_header_tolerates_trailing_newline_and_missing_optional_fields() -> None:
    cmd = decode_frame(json_frame(b'{"code":34}\n'))
    assert cmd == RemotingCommand(code=34, language="JAVA", version=0, opaque=0, flag=0)


def test_json_header_coerces_what_fastjson_coerces() -> None:
    cmd = decode_frame(json_frame(b'{"code":"105","language":1,"opaque":"7","flag":0,"version":63,"remark":12}'))
    assert (cmd.code, cmd.language, cmd.opaque, cmd.remark) == (105, "CPP", 7, "12")
    assert decode_frame(json_frame(b'{"code":1,"language":99}')).language == "OTHER"


@pytest.mark.parametrize(
    ("header", "ext", "remark"),
    [
        # orjson refuses these or reads them differently; the header must mean what the stdlib (and fastjson) say.
        (
            b'{"code":1,"extFields":{"queueId":123456789012345678901234567890}}',
            {"queueId": "123456789012345678901234567890"},
            None,
        ),
        (b'{"code":1,"remark":"tab\there","extFields":{"k":"line\nbreak"}}', {"k": "line\nbreak"}, "tab\there"),
        (b'{"code":1,"extFields":{"nan":NaN}}', {"nan": "nan"}, None),
        (b'{"code":1,"remark":"\\ud800 lone"}', {}, "\ud800 lone"),
        (b'{"code":1,"extFields":{"k":"v"},"remark":"\xe6\x97\xa5"}', {"k": "v"}, "\u65e5"),
    ],
)
def test_json_headers_orjson_refuses_decode_as_the_stdlib_does(header: bytes, ext: dict[str, str], remark: str) -> None:
    cmd = decode_frame(json_frame(header))
    assert cmd.ext_fields == ext
    assert cmd.remark == remark


def test_json_headers_orjson_cannot_write_are_written_by_the_stdlib() -> None:
    class Name(str):
        pass

    big = RemotingCommand(code=1, opaque=5, ext_fields={Name("k"): "v"}, remark="r")
    assert json.loads(encode(big)[0][8:])["extFields"] == {"k": "v"}
    huge_version = RemotingCommand(code=1, version=2**70)
    assert json.loads(encode(huge_version)[0][8:])["version"] == 2**70


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"not json", "bad JSON command header"),
        (b'{"code":1', "bad JSON command header"),
        (b"[1,2]", "not an object"),
        (b'"x"', "not an object"),
        (b'{"opaque":1}', "has no code"),
        (b'{"code":null}', "code None is not an integer"),
        (b'{"code":"ten"}', "code 'ten' is not an integer"),
        (b'{"code":1,"opaque":true}', "opaque True is not an integer"),
        (b'{"code":1,"flag":1.5}', "flag 1.5 is not an integer"),
        (b'{"code":1,"language":["x"]}', "is not a name"),
        (b'{"code":1,"extFields":[1]}', "extFields is a list"),
        (b'{"code":1,"remark":"\xff"}', "bad JSON command header"),
        (b"[" * 100_000, "bad JSON command header"),
    ],
)
def test_bad_json_headers_raise_remote_protocol_error(header: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message.replace("[", r"\[")):
        decode_frame(json_frame(header))


@pytest.mark.parametrize(
    "cmd",
    [RemotingCommand(code=1, remark="\ud800"), RemotingCommand(code=1, ext_fields={"k": b"v"})],  # type: ignore[dict-item]
)
def test_json_headers_the_protocol_cannot_carry(cmd: RemotingCommand) -> None:
    with pytest.raises(LocalProtocolError, match="cannot encode command header as JSON"):
        encode(cmd)


# --- ROCKETMQ binary header -----------------------------------------------------------------------------------


def test_binary_header_layout() -> None:
    cmd = RemotingCommand(
        code=105,
        language="CPP",
        version=399,
        opaque=7,
        flag=2,
        remark="hé",
        ext_fields={"topic": "TopicTest", "e": ""},
        body=b"BODY",
        serialize_type=SerializeType.ROCKETMQ,
    )
    ext = entry(b"topic", b"TopicTest") + entry(b"e", b"")
    header = binary_header(code=105, language=1, version=399, opaque=7, flag=2, remark="hé".encode(), ext=ext)
    assert encode_bytes(cmd) == binary_frame(header, b"BODY")
    assert decode_frame(binary_frame(header, b"BODY")) == cmd


def test_binary_header_empty_remark_reads_back_as_none() -> None:
    cmd = RemotingCommand(code=1, remark="", serialize_type=SerializeType.ROCKETMQ)
    assert decode_frame(encode_bytes(cmd)).remark is None


def test_binary_header_unknown_language_ordinal_reads_as_other() -> None:
    assert decode_frame(binary_frame(binary_header(language=42))).language == "OTHER"
    assert decode_frame(binary_frame(binary_header(language=LanguageCode.NODE_JS))).language == "NODE_JS"


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        (RemotingCommand(code=200050, serialize_type=SerializeType.ROCKETMQ), "must fit a short"),
        (RemotingCommand(code=1, version=40000, serialize_type=SerializeType.ROCKETMQ), "must fit a short"),
        (RemotingCommand(code=1, opaque=2**31, serialize_type=SerializeType.ROCKETMQ), "must fit a short"),
        (RemotingCommand(code=1, language="COBOL", serialize_type=SerializeType.ROCKETMQ), "no ROCKETMQ ordinal"),
        (
            RemotingCommand(code=1, ext_fields={"k" * 40000: "v"}, serialize_type=SerializeType.ROCKETMQ),
            "does not fit a short",
        ),
        (RemotingCommand(code=1, remark="\udc80", serialize_type=SerializeType.ROCKETMQ), "surrogates not allowed"),
        (RemotingCommand(code=1, ext_fields={"k": b"v"}, serialize_type=SerializeType.ROCKETMQ), "not JSON serial"),  # type: ignore[dict-item]
        (RemotingCommand(code=1, serialize_type=7), "unknown serialize type"),  # type: ignore[arg-type]
        (RemotingCommand(code=1, remark="r" * (16 << 20)), "24-bit header length"),
    ],
)
def test_commands_the_protocol_cannot_carry(cmd: RemotingCommand, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        encode(cmd)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (binary_header()[:20], "shorter than 21"),
        (struct.pack(">hbhiii", 1, 0, 1, 1, 0, 10) + b"abc" + struct.pack(">i", 0), "remark length 10 overruns"),
        (struct.pack(">hbhiii", 1, 0, 1, 1, 0, -1) + struct.pack(">i", 0), "remark length -1"),
        (binary_header(ext=entry(b"k", b"v"), ext_length=3), "extFields length 3, but 8"),
        (binary_header(ext=entry(b"k", b"v"), ext_length=20), "extFields length 20, but 8"),
        (binary_header(ext=entry(b"k", b"v")[:-1]), "value length 1 overruns"),
        (binary_header(ext=b"\x00\x05ab"), "truncated extFields entry"),
        (binary_header(ext=struct.pack(">h", -2) + b"abcd"), "key length -2"),
        (binary_header(ext=struct.pack(">h", 1) + b"k" + struct.pack(">i", -1)), "value length -1"),
        (binary_header(remark=b"\xff\xfe"), "remark is not UTF-8"),
        (binary_header(ext=entry(b"\xc3", b"v")), "key is not UTF-8"),
        (binary_header(ext=entry(b"k", b"\xe6\x97")), "value is not UTF-8"),
    ],
)
def test_bad_binary_headers_raise_remote_protocol_error(header: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_frame(binary_frame(header))


# --- frames ---------------------------------------------------------------------------------------------------


def test_encode_returns_the_body_object_uncopied() -> None:
    body = memoryview(bytearray(b"0123456789"))[2:8]
    cmd = RemotingCommand(code=0, body=body)
    header, out_body = encode(cmd)
    assert out_body is body
    (length, type_and_header_length) = struct.unpack(">iI", header[:8])
    assert length == 4 + (len(header) - 8) + 6
    assert type_and_header_length == len(header) - 8
    assert encode_bytes(cmd) == header + b"234567"
    assert decode_frame(encode_bytes(cmd)).body == b"234567"


def test_decode_frame_accepts_bytes_like() -> None:
    raw = encode_bytes(RemotingCommand(code=3, body=b"abc"))
    assert decode_frame(bytearray(raw)) == decode_frame(memoryview(raw)) == decode_frame(raw)
    assert type(decode_frame(bytearray(raw)).body) is bytes


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "no length word"),
        (struct.pack(">i", 10) + b"\x00" * 5, "says 10, but 5"),
        (struct.pack(">i", 2) + b"\x00\x00", "below the minimum"),
        (struct.pack(">iI", 4, 5), "header length 5 exceeds"),
        (struct.pack(">iI", 6, 2 << 24 | 2) + b"{}", "unknown serialize type 2"),
        (struct.pack(">iI", 4, 0), "bad JSON command header"),
    ],
)
def test_bad_frames(raw: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_frame(raw)


def test_code_tables_match_rocketmq() -> None:
    # Spot checks against RequestCode.java / ResponseCode.java / LanguageCode.java.
    assert RequestCode.SEND_MESSAGE.value == 10
    assert RequestCode.QUERY_CONSUMER_OFFSET.value == 14
    assert RequestCode.GET_ROUTEINFO_BY_TOPIC.value == 105
    assert RequestCode.GET_TOPIC_STATS_INFO.value == 202
    assert RequestCode.GET_CONSUME_STATS.value == 208
    assert RequestCode.GET_TOPICS_BY_CLUSTER.value == 224
    assert RequestCode.GET_CONSUMER_RUNNING_INFO.value == 307
    assert RequestCode.SEND_MESSAGE_V2.value == 310
    assert RequestCode.SEND_BATCH_MESSAGE.value == 320
    assert RequestCode.ADD_WRITE_PERM_OF_BROKER.value == 327
    assert RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG.value == 352
    assert RequestCode.LITE_PULL_MESSAGE.value == 361
    assert {int(code) for code in RequestCode} >= {10, 11, 12, 14, 15, 17, 21, 25, 26, 28, *range(29, 44)} | {
        *range(45, 48),
        *range(100, 107),
        *range(200, 218),
        *range(219, 225),
        *range(300, 328),
        351,
        352,
        361,
    }
    assert {int(code) for code in ResponseCode} >= {*range(5), *range(10, 30), *range(200, 214), 215, 501, 1500}
    assert ResponseCode.TRANSACTION_STATE_UNKNOW.value == 202
    assert ResponseCode.GO_AWAY.value == 1500
    assert [member.name for member in LanguageCode] == [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST",
        "NODE_JS",
    ]  # fmt: skip
    assert [member.value for member in LanguageCode] == list(range(14))
    assert (SerializeType.JSON, SerializeType.ROCKETMQ) == (0, 1)
    assert (CommandFlag.RESPONSE, CommandFlag.ONEWAY) == (1, 2)


_plain_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'))


@given(
    code=st.integers(0, 0x7FFF),
    opaque=st.integers(-(2**31), 2**31 - 1),
    fields=st.dictionaries(_plain_text, _plain_text, min_size=1, max_size=6),
)
def test_a_plain_response_frame_is_the_frame_encode_makes_of_the_same_response(
    code: int, opaque: int, fields: dict[str, str]
) -> None:
    """The send handler answers with ``plain_response_frame``; every reader must see what encode() would send."""
    frame = plain_response_frame(code, opaque, orjson.dumps(fields).decode())
    expected = RemotingCommand(code, opaque=opaque, flag=1, ext_fields=fields)
    assert frame == encode_bytes(expected)
    assert decode_frame(frame) == expected
