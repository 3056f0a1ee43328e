"""loads_lenient / dumps_compact: fastjson's non-standard maps in and out."""

from __future__ import annotations

import json
import math

import pytest

from tidemq.errors import LocalProtocolError, RemoteProtocolError
from tidemq.protocol.remoting import ObjectKey, dumps_compact, loads_lenient, message_queue_key

ROUTE = b'{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a",\
"cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6}]}'

# jsoncpp StyledWriter output, as the C++ client writes ConsumerRunningInfo.
STYLED = """{
   "mqTable" : {{
   "brokerName" : "broker-a",
   "queueId" : 2,
   "topic" : "T"
}:{
   "commitOffset" : "5",
   "locked" : false
}
,{
   "brokerName" : "broker-a",
   "queueId" : 3,
   "topic" : "T"
}:{
   "commitOffset" : "6",
   "locked" : true
}
}
}
"""


def test_standard_json_is_json() -> None:
    text = '{"a":[1,2.5,-3e2,true,false,null,"\\u00e9\\n"],"b":{"c":{}}}'
    assert loads_lenient(text) == json.loads(text)
    assert (
        loads_lenient(text.encode())
        == loads_lenient(bytearray(text.encode()))
        == loads_lenient(memoryview(text.encode()))
    )


def test_unquoted_integer_keys() -> None:
    route = loads_lenient(ROUTE)
    assert route["brokerDatas"][0]["brokerAddrs"] == {0: "127.0.0.1:10911", 1: "127.0.0.1:10921"}
    assert route["queueDatas"] == [{"brokerName": "broker-a", "perm": 6}]
    assert loads_lenient('{-1:"x", 12345678901234:"y", "0":"quoted"}') == {-1: "x", 12345678901234: "y", "0": "quoted"}


def test_object_keys_pretty_printed() -> None:
    info = loads_lenient(STYLED)
    table = info["mqTable"]
    assert list(table) == [message_queue_key("T", "broker-a", 2), message_queue_key("T", "broker-a", 3)]
    assert table[message_queue_key("T", "broker-a", 3)] == {"commitOffset": "6", "locked": True}
    key = next(iter(table))
    assert isinstance(key, ObjectKey)
    assert isinstance(key, tuple)
    assert key == (("brokerName", "broker-a"), ("queueId", 2), ("topic", "T"))
    assert dict(key) == {"brokerName": "broker-a", "queueId": 2, "topic": "T"}


def test_object_keys_are_sorted_and_frozen() -> None:
    parsed = loads_lenient('{{"topic":"t","queueId":0,"nested":{"b":1,"a":[1,{"z":0}]}}:1}')
    (key,) = parsed
    assert [name for name, _ in key] == ["nested", "queueId", "topic"]
    nested = dict(key)["nested"]
    assert isinstance(nested, ObjectKey)
    assert nested == (("a", (1, ObjectKey((("z", 0),)))), ("b", 1))
    hash(key)


def test_empty_containers_and_whitespace_in_lenient_mode() -> None:
    assert loads_lenient(" {\n0 : [ ] , 1:{ } ,2:[ {3:4} ]}\n") == {0: [], 1: {}, 2: [{3: 4}]}


def test_message_queue_map_is_written_like_fastjson() -> None:
    table = {
        message_queue_key("TopicTest", "broker-a", 0): {"brokerOffset": 5, "consumerOffset": 3, "lastTimestamp": 0},
        message_queue_key("TopicTest", "broker-a", 1): {"brokerOffset": 7, "consumerOffset": 7, "lastTimestamp": 1},
    }
    body = dumps_compact({"consumeTps": 0.0, "offsetTable": table})
    assert body == (
        b'{"consumeTps":0.0,"offsetTable":{'
        b'{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:'
        b'{"brokerOffset":5,"consumerOffset":3,"lastTimestamp":0},'
        b'{"brokerName":"broker-a","queueId":1,"topic":"TopicTest"}:'
        b'{"brokerOffset":7,"consumerOffset":7,"lastTimestamp":1}}}'
    )
    assert loads_lenient(body)["offsetTable"] == table


def test_dumps_compact_is_compact_utf8() -> None:
    assert dumps_compact({"a": [1, 2], "é": "日本"}) == '{"a":[1,2],"é":"日本"}'.encode()
    assert dumps_compact({0: "x", True: 1.5}) == b'{"0":"x","true":1.5}'


def test_dumps_compact_non_str_keys_next_to_object_keys() -> None:
    body = dumps_compact({message_queue_key("t", "b", 0): {1: None, 2.5: [True]}, "k": (1, 2)})
    assert body == b'{{"brokerName":"b","queueId":0,"topic":"t"}:{"1":null,"2.5":[true]},"k":[1,2]}'


@pytest.mark.parametrize("value", [math.nan, math.inf, {1, 2}, object(), {"k": b"bytes"}, "\ud800"])
def test_dumps_compact_refuses_what_json_cannot_carry(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="cannot encode body as JSON"):
        dumps_compact({message_queue_key("t", "b", 0): value})
    with pytest.raises(LocalProtocolError, match="cannot encode body as JSON"):
        dumps_compact([value])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Expecting value at char 0"),
        ("   ", "Expecting value at char 3"),
        ("{0:}", "Expecting value at char 3"),
        ("{0 1}", "expected ':' after an object key at char 3"),
        ('{0:"a" "b"}', "expected ',' or '}' in an object at char 7"),
        ("[0:1]", "expected ',' or ']' in an array at char 2"),
        ("{0:1}x", "extra data after the JSON value at char 5"),
        ("{0:1,}", "at char 5"),
        ('{{"a":1}:2', "expected ',' or '}' in an object at char 10"),
        ("{0:" + "9" * 5000 + "}", "digits"),
        ("[" * 300 + "{0:1}" + "]" * 300, "nested deeper than 200"),
        ("{0:" * 300 + "1" + "}" * 300, "nested deeper than 200"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_bad_bodies_raise_remote_protocol_error(text: str, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        loads_lenient(text)


def test_body_that_is_not_utf8() -> None:
    with pytest.raises(RemoteProtocolError, match="not UTF-8"):
        loads_lenient(b'{"a":"\xff"}')
