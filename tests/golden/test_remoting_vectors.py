"""Every frame of the spec's remoting vectors (captured from the C++ client rocketmq==0.4.4) decodes as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidemq.protocol.remoting import (
    ObjectKey,
    RemotingCommand,
    RemotingConnection,
    RequestCode,
    SerializeType,
    decode_frame,
    encode,
    encode_bytes,
    loads_lenient,
)

VECTOR_DIR = Path(__file__).parent / "remoting"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*.json"))


def _load_frames() -> list[tuple[str, dict[str, Any]]]:
    frames = []
    for path in VECTOR_FILES:
        for index, frame in enumerate(json.loads(path.read_text(encoding="utf-8")).get("frames", [])):
            frames.append((f"{path.stem}[{index}]", frame))
    return frames


FRAMES = _load_frames()
FRAME_IDS = [name for name, _ in FRAMES]
JSON_FRAMES = [(name, frame) for name, frame in FRAMES if frame["decoded"]["serialize_type"] == 0]


def _expected_ext_fields(header: dict[str, Any]) -> dict[str, str]:
    # What Java sees: strings kept, numbers and booleans as their JSON spelling (4 -> "4", true -> "true").
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in header.get("extFields", {}).items()
    }


def test_the_vectors_are_all_here() -> None:
    assert len(VECTOR_FILES) == 22
    assert len(FRAMES) == 52
    assert sum(frame["decoded"]["serialize_type"] == 1 for _, frame in FRAMES) == 2


@pytest.mark.parametrize(("name", "frame"), FRAMES, ids=FRAME_IDS)
def test_frame_decodes_as_documented(name: str, frame: dict[str, Any]) -> None:
    raw = bytes.fromhex(frame["hex"])
    decoded = frame["decoded"]
    header = decoded["header"]
    cmd = decode_frame(raw)

    assert int.from_bytes(raw[4:8], "big") & 0xFFFFFF == decoded["header_length"]
    if "total_length" in decoded:
        assert len(raw) - 4 == decoded["total_length"]
    assert cmd.serialize_type == decoded["serialize_type"]
    assert cmd.code == header["code"]
    assert cmd.opaque == header["opaque"]
    assert cmd.flag == header["flag"]
    assert cmd.is_response == bool(header["flag"] & 1)
    assert cmd.version == header["version"]
    assert cmd.language == header["language"].split("(")[0]  # the binary vector writes "JAVA(0)"
    assert cmd.remark == header.get("remark")
    assert cmd.ext_fields == _expected_ext_fields(header)
    assert all(type(value) is str for value in cmd.ext_fields.values())
    if "body_text" in decoded:
        assert bytes(cmd.body).decode("utf-8") == decoded["body_text"]
    elif "body_hex" in decoded:
        assert bytes(cmd.body).hex() == decoded["body_hex"]
    else:
        assert cmd.body == b""
    if "body_length" in decoded:
        assert len(cmd.body) == decoded["body_length"]


@pytest.mark.parametrize(("name", "frame"), JSON_FRAMES, ids=[name for name, _ in JSON_FRAMES])
def test_json_frame_reencodes_to_an_equal_command(name: str, frame: dict[str, Any]) -> None:
    cmd = decode_frame(bytes.fromhex(frame["hex"]))
    again = decode_frame(encode_bytes(cmd))
    assert again == cmd
    # What we write is what the C++ client reads: a JSON object whose extFields values are all strings.
    header_bytes, body = encode(cmd)
    header = json.loads(header_bytes[8:])
    assert all(isinstance(value, str) for value in header.get("extFields", {}).values())
    assert body is cmd.body


def test_binary_header_vector_fields_and_exact_reencoding() -> None:
    frames = json.loads((VECTOR_DIR / "rocketmq_binary_header.json").read_text(encoding="utf-8"))["frames"]
    request_raw, response_raw = (bytes.fromhex(frame["hex"]) for frame in frames)

    request = decode_frame(request_raw)
    assert request == RemotingCommand(
        code=RequestCode.GET_ROUTEINFO_BY_TOPIC,
        language="JAVA",
        version=399,
        opaque=7,
        flag=0,
        remark=None,
        ext_fields={"topic": "TopicTest"},
        body=b"",
        serialize_type=SerializeType.ROCKETMQ,
    )
    response = decode_frame(response_raw)
    assert response == request.make_response(0, body=b"{}")
    assert response.serialize_type == SerializeType.ROCKETMQ

    assert encode_bytes(request) == request_raw
    assert encode_bytes(response) == response_raw
    assert encode_bytes(request.make_response(0, body=b"{}")) == response_raw


def test_all_vectors_as_one_stream_in_odd_chunks() -> None:
    stream = b"".join(bytes.fromhex(frame["hex"]) for _, frame in FRAMES)
    conn = RemotingConnection()
    received: list[RemotingCommand] = []
    for start in range(0, len(stream), 97):
        conn.receive_data(stream[start : start + 97])
        received.extend(conn.events())
    conn.receive_data(b"")
    assert list(conn.events()) == []
    assert received == [decode_frame(bytes.fromhex(frame["hex"])) for _, frame in FRAMES]


def _body_of(file_stem: str, index: int) -> bytes:
    frame = json.loads((VECTOR_DIR / f"{file_stem}.json").read_text(encoding="utf-8"))["frames"][index]
    return bytes(decode_frame(bytes.fromhex(frame["hex"])).body)


def test_route_body_with_unquoted_integer_keys() -> None:
    body = _body_of("get_routeinfo_by_topic", 1)
    with pytest.raises(ValueError, match="property name"):
        json.loads(body)  # the point: Python's json refuses fastjson's form
    route = loads_lenient(body)
    assert route["brokerDatas"][0]["brokerAddrs"] == {0: "127.0.0.1:44729"}
    assert route["queueDatas"][0]["writeQueueNums"] == 4


def test_consumer_running_info_body_with_object_keys() -> None:
    body = _body_of("get_consumer_running_info", 1)
    info = loads_lenient(body)
    keys = list(info["mqTable"])
    assert len(keys) == len(set(keys)) > 0
    assert all(isinstance(key, ObjectKey) for key in keys)
    assert dict(keys[0]) == {"brokerName": "broker-a", "queueId": 0, "topic": "%RETRY%CG_cap"}
    assert info["mqTable"][keys[0]]["lastPullTimestamp"] == "1795649005022"


@pytest.mark.parametrize(
    ("file_stem", "index"),
    [
        ("heart_beat", 0),
        ("heart_beat", 2),
        ("heart_beat", 4),
        ("heart_beat", 6),
        ("lock_batch_mq", 0),
        ("lock_batch_mq", 1),
        ("unlock_batch_mq", 0),
        ("get_consumer_list_by_group", 1),
    ],
)
def test_standard_json_bodies_parse_like_json(file_stem: str, index: int) -> None:
    body = _body_of(file_stem, index)
    assert loads_lenient(body) == json.loads(body)
