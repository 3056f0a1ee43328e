"""NamesrvHandlers: request codes in, responses out, checked against the Java name server's shapes."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path
from typing import Any

import pytest

from tidemq.namesrv.config import NamesrvConfig
from tidemq.namesrv.handlers import NamesrvHandlers
from tidemq.namesrv.route_table import NAMESPACE_ORDER_TOPIC_CONFIG, RouteTable
from tidemq.properties import parse_properties
from tidemq.protocol.remoting import (
    RemotingCommand,
    RequestCode,
    ResponseCode,
    decode_frame,
    dumps_compact,
    encode_bytes,
    loads_lenient,
)

VECTOR = Path(__file__).parents[2] / "golden" / "remoting" / "get_routeinfo_by_topic.json"
CLUSTER = "DefaultCluster"


class FakeClock:
    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def make_handlers(config: NamesrvConfig | None = None, clock: FakeClock | None = None) -> NamesrvHandlers:
    return NamesrvHandlers(RouteTable(), config or NamesrvConfig(), clock_ms=clock or FakeClock())


def request(code: int, ext: dict[str, str] | None = None, body: bytes = b"", *, version: int = 399) -> RemotingCommand:
    return RemotingCommand.request(code, ext, body, opaque=7, version=version)


def topic_json(name: str, queues: int = 4, perm: int = 6) -> dict[str, Any]:
    return {
        "topicName": name,
        "readQueueNums": queues,
        "writeQueueNums": queues,
        "perm": perm,
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": False,
        "attributes": {},
    }


def register_body(*names: str, queues: int = 4, counter: int = 1) -> bytes:
    return dumps_compact(
        {
            "topicConfigSerializeWrapper": {
                "topicConfigTable": {name: topic_json(name, queues) for name in names},
                "dataVersion": {"counter": counter, "stateVersion": 0, "timestamp": 1_700_000_000_000},
            },
            "filterServerList": [],
        }
    )


def register_ext(
    name: str = "broker-a", broker_id: int = 0, addr: str = "127.0.0.1:10911", body: bytes | None = None
) -> dict[str, str]:
    host, port = addr.rsplit(":", 1)
    ext = {
        "brokerName": name,
        "brokerAddr": addr,
        "clusterName": CLUSTER,
        "haServerAddr": f"{host}:{int(port) + 1}",
        "brokerId": str(broker_id),
        "compressed": "false",
    }
    if body is not None:
        ext["bodyCrc32"] = str(zlib.crc32(body) & 0x7FFFFFFF)
    return ext


def do_register(handlers: NamesrvHandlers, *names: str, channel: object = "ch", **kwargs: Any) -> RemotingCommand:
    body = register_body(*(names or ("TopicTest",)))
    return handlers.handle(request(RequestCode.REGISTER_BROKER, register_ext(body=body, **kwargs), body), channel)


def route(handlers: NamesrvHandlers, topic: str, **kwargs: Any) -> RemotingCommand:
    return handlers.handle(request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, **kwargs))


# --- REGISTER_BROKER ------------------------------------------------------------------------------------------------


def test_register_master_answers_success_without_master_fields() -> None:
    handlers = make_handlers()
    response = do_register(handlers)
    assert response.code == ResponseCode.SUCCESS
    assert response.is_response
    assert response.opaque == 7
    assert "masterAddr" not in response.ext_fields
    assert response.body == b""
    assert handlers.route_table.broker_names() == ["broker-a"]


def test_register_slave_answers_the_master_addresses() -> None:
    handlers = make_handlers()
    do_register(handlers)
    response = do_register(handlers, broker_id=1, addr="127.0.0.2:10911", channel="slave")
    assert response.code == ResponseCode.SUCCESS
    assert response.ext_fields == {"masterAddr": "127.0.0.1:10911", "haServerAddr": "127.0.0.1:10912"}


def test_register_answers_the_order_topic_kv_table() -> None:
    handlers = make_handlers()
    handlers.route_table.put_kv_config(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:4")
    response = do_register(handlers)
    assert loads_lenient(response.body) == {"table": {"T": "broker-a:4"}}
    handlers.config = NamesrvConfig(return_order_topic_config_to_broker=False)
    assert do_register(handlers).body == b""


def test_register_accepts_the_unmasked_crc_and_no_crc() -> None:
    handlers = make_handlers()
    body = register_body("T")
    ext = register_ext(body=body)
    ext["bodyCrc32"] = str(zlib.crc32(body))
    assert handlers.handle(request(RequestCode.REGISTER_BROKER, ext, body)).code == ResponseCode.SUCCESS
    ext["bodyCrc32"] = "0"
    assert handlers.handle(request(RequestCode.REGISTER_BROKER, ext, body)).code == ResponseCode.SUCCESS
    del ext["bodyCrc32"]
    assert handlers.handle(request(RequestCode.REGISTER_BROKER, ext, body)).code == ResponseCode.SUCCESS


def test_register_with_a_wrong_crc_is_refused() -> None:
    handlers = make_handlers()
    body = register_body("T")
    ext = register_ext(body=body)
    ext["bodyCrc32"] = "12345"
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, ext, body))
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "crc32 not match")
    assert handlers.route_table.broker_names() == []


def test_register_compressed_is_refused_clearly() -> None:
    handlers = make_handlers()
    ext = register_ext()
    ext["compressed"] = "true"
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, ext, b"\x78\x9c\x01"))
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark is not None
    assert "compressed" in response.remark


def test_register_with_an_empty_body_registers_no_topics() -> None:
    handlers = make_handlers()
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, register_ext()))
    assert response.code == ResponseCode.SUCCESS
    assert handlers.route_table.broker_names() == ["broker-a"]
    assert handlers.route_table.all_topics() == []


def test_register_with_a_bare_topic_config_wrapper_body() -> None:
    handlers = make_handlers()
    body = dumps_compact({"topicConfigTable": {"T": topic_json("T")}, "dataVersion": {"counter": 1}})
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, register_ext(), body, version=30))
    assert response.code == ResponseCode.SUCCESS
    assert handlers.route_table.all_topics() == ["T"]


def test_register_accepts_fastjson_leniencies_in_the_body() -> None:
    handlers = make_handlers()
    body = (
        b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"topicName":"T","readQueueNums":"2",'
        b'"writeQueueNums":2.0,"perm":6,"order":"false","extra":[1]}},"dataVersion":{"counter":1,'
        b'"stateVersion":0,"timestamp":1}},"filterServerList":[],"unknownField":{0:"x"}}'
    )
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, register_ext(), body))
    assert response.code == ResponseCode.SUCCESS, response.remark
    table_route = handlers.route_table.topic_route("T")
    assert table_route is not None
    assert table_route.queue_datas[0].read_queue_nums == 2


@pytest.mark.parametrize("field", ["brokerName", "brokerAddr", "clusterName", "haServerAddr", "brokerId"])
def test_register_missing_field_is_named(field: str) -> None:
    handlers = make_handlers()
    ext = register_ext()
    del ext[field]
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, ext, register_body("T")))
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark == f"the custom field <{field}> is null"


@pytest.mark.parametrize(
    ("field", "value"), [("brokerId", "zero"), ("bodyCrc32", "x1"), ("heartbeatTimeoutMillis", "?")]
)
def test_register_non_numeric_field_is_named(field: str, value: str) -> None:
    handlers = make_handlers()
    ext = register_ext()
    ext[field] = value
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, ext, register_body("T")))
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark is not None
    assert f"<{field}>" in response.remark


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"not json at all", "bad REGISTER_BROKER body"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1,2,3]", "body is a list"),
        (b"{}", "topicConfigSerializeWrapper is missing"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":[]}}', "topicConfigTable is a list"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"perm":"rw"}}}}', "perm"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":5}}}', "topicConfigTable['T']"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{},"dataVersion":{"counter":"x"}}}', "counter"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{},"dataVersion":7}}', "dataVersion"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{}},"filterServerList":{}}', "filterServerList"),
        (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"order":"maybe"}}}}', "order"),
    ],
)
def test_register_bad_body_gets_a_clear_error(body: bytes, named: str) -> None:
    handlers = make_handlers()
    response = handlers.handle(request(RequestCode.REGISTER_BROKER, register_ext(), body))
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark is not None
    assert named in response.remark
    assert handlers.route_table.broker_names() == []


def test_unregister_broker() -> None:
    handlers = make_handlers()
    do_register(handlers)
    ext = {"brokerName": "broker-a", "brokerAddr": "127.0.0.1:10911", "clusterName": CLUSTER, "brokerId": "0"}
    assert handlers.handle(request(RequestCode.UNREGISTER_BROKER, ext)).code == ResponseCode.SUCCESS
    assert route(handlers, "TopicTest").code == ResponseCode.TOPIC_NOT_EXIST
    del ext["brokerId"]
    response = handlers.handle(request(RequestCode.UNREGISTER_BROKER, ext))
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "the custom field <brokerId> is null")


def test_query_data_version() -> None:
    handlers = make_handlers()
    do_register(handlers)
    ext = {"brokerName": "broker-a", "brokerAddr": "127.0.0.1:10911", "clusterName": CLUSTER, "brokerId": "0"}
    same = dumps_compact({"counter": 1, "stateVersion": 0, "timestamp": 1_700_000_000_000})
    response = handlers.handle(request(RequestCode.QUERY_DATA_VERSION, ext, same))
    assert response.code == ResponseCode.SUCCESS
    assert response.ext_fields == {"changed": "false"}
    assert loads_lenient(response.body) == {"counter": 1, "stateVersion": 0, "timestamp": 1_700_000_000_000}
    newer = dumps_compact({"counter": 2, "stateVersion": 0, "timestamp": 1_700_000_000_000})
    assert handlers.handle(request(RequestCode.QUERY_DATA_VERSION, ext, newer)).ext_fields == {"changed": "true"}
    unknown = dict(ext, brokerAddr="127.0.0.9:1")
    response = handlers.handle(request(RequestCode.QUERY_DATA_VERSION, unknown, same))
    assert (response.ext_fields, response.body) == ({"changed": "true"}, b"")
    bad = handlers.handle(request(RequestCode.QUERY_DATA_VERSION, ext, b"{{{"))
    assert bad.code == ResponseCode.SYSTEM_ERROR


def test_query_data_version_refreshes_liveness() -> None:
    clock = FakeClock(0)
    handlers = make_handlers(clock=clock)
    do_register(handlers)
    clock.now_ms = 100_000
    ext = {"brokerName": "broker-a", "brokerAddr": "127.0.0.1:10911", "clusterName": CLUSTER, "brokerId": "0"}
    handlers.handle(request(RequestCode.QUERY_DATA_VERSION, ext, b""))
    assert handlers.route_table.scan_expired(200_000) == []


# --- GET_ROUTEINFO_BY_TOPIC -----------------------------------------------------------------------------------------


def test_route_of_an_unknown_topic() -> None:
    response = route(make_handlers(), "Nope")
    assert response.code == 17
    assert response.remark == "No topic route info in name server for the topic: Nope"


def test_route_without_topic_field() -> None:
    response = make_handlers().handle(request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {}))
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "the custom field <topic> is null")


def test_route_reply_matches_the_captured_vector_byte_for_byte() -> None:
    frames = json.loads(VECTOR.read_text(encoding="utf-8"))["frames"]
    captured_request = decode_frame(bytes.fromhex(frames[0]["hex"]))
    expected_body = frames[1]["decoded"]["body_text"].encode("utf-8")
    handlers = make_handlers()
    do_register(handlers, "T_cap", addr="127.0.0.1:44729")
    response = handlers.handle(captured_request)
    assert response.code == ResponseCode.SUCCESS
    assert response.body == expected_body
    assert response.opaque == captured_request.opaque
    # The whole reply frame matches too: the fake server wrote it in the Java broker's style.
    assert encode_bytes(response).hex() == frames[1]["hex"]


def test_route_body_parses_with_loads_lenient() -> None:
    handlers = make_handlers()
    do_register(handlers, "T")
    do_register(handlers, "T", broker_id=1, addr="127.0.0.2:10911", channel="slave")
    do_register(handlers, "T", name="broker-b", addr="127.0.0.3:10911", channel="b")
    body = route(handlers, "T", version=63).body
    assert b"{0:" in bytes(body)
    parsed = loads_lenient(body)
    assert parsed == {
        "brokerDatas": [
            {
                "brokerAddrs": {0: "127.0.0.1:10911", 1: "127.0.0.2:10911"},
                "brokerName": "broker-a",
                "cluster": CLUSTER,
            },
            {"brokerAddrs": {0: "127.0.0.3:10911"}, "brokerName": "broker-b", "cluster": CLUSTER},
        ],
        "filterServerTable": {},
        "queueDatas": [
            {"brokerName": "broker-a", "perm": 6, "readQueueNums": 4, "topicSysFlag": 0, "writeQueueNums": 4},
            {"brokerName": "broker-b", "perm": 6, "readQueueNums": 4, "topicSysFlag": 0, "writeQueueNums": 4},
        ],
    }


@pytest.mark.parametrize(
    ("ext", "version", "is_standard"),
    [
        ({}, 63, False),  # the C++ client
        ({}, 399, False),  # Java 4.9.3
        ({"acceptStandardJsonOnly": "false"}, 399, False),
        ({"acceptStandardJsonOnly": "true"}, 399, True),
        ({"acceptStandardJsonOnly": "true"}, 63, True),
        ({}, 401, True),  # V4_9_4 and later: ClientRequestProcessor quotes the keys for them
        ({}, 413, True),  # V5_0_0
    ],
)
def test_route_quotes_keys_only_for_clients_that_want_standard_json(
    ext: dict[str, str], version: int, is_standard: bool
) -> None:
    handlers = make_handlers()
    do_register(handlers, "T")
    response = handlers.handle(request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T", **ext}, version=version))
    body = bytes(response.body)
    if is_standard:
        assert json.loads(body)["brokerDatas"][0]["brokerAddrs"] == {"0": "127.0.0.1:10911"}
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        assert loads_lenient(body)["brokerDatas"][0]["brokerAddrs"] == {0: "127.0.0.1:10911"}


def test_route_carries_order_topic_conf_when_enabled() -> None:
    handlers = make_handlers(NamesrvConfig(order_message_enable=True))
    do_register(handlers, "Ordered")
    handlers.route_table.put_kv_config(NAMESPACE_ORDER_TOPIC_CONFIG, "Ordered", "broker-a:4")
    assert loads_lenient(route(handlers, "Ordered").body)["orderTopicConf"] == "broker-a:4"
    handlers.config = NamesrvConfig()  # orderMessageEnable defaults to false, as in RocketMQ
    assert "orderTopicConf" not in loads_lenient(route(handlers, "Ordered").body)


def test_route_waits_for_service_when_asked() -> None:
    clock = FakeClock(0)
    handlers = make_handlers(NamesrvConfig(need_wait_for_service=True, wait_seconds_for_service=45), clock)
    do_register(handlers, "T")
    response = route(handlers, "T")
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "name server not ready")
    clock.now_ms = 45_000
    assert route(handlers, "T").code == ResponseCode.SUCCESS


# --- cluster and topic lists ----------------------------------------------------------------------------------------


def test_cluster_info_shape() -> None:
    handlers = make_handlers()
    do_register(handlers, "T")
    do_register(handlers, "T", name="broker-b", addr="127.0.0.3:10911", channel="b")
    response = handlers.handle(request(RequestCode.GET_BROKER_CLUSTER_INFO))
    assert response.code == ResponseCode.SUCCESS
    assert bytes(response.body).startswith(b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911"}')
    assert loads_lenient(response.body) == {
        "brokerAddrTable": {
            "broker-a": {"brokerAddrs": {0: "127.0.0.1:10911"}, "brokerName": "broker-a", "cluster": CLUSTER},
            "broker-b": {"brokerAddrs": {0: "127.0.0.3:10911"}, "brokerName": "broker-b", "cluster": CLUSTER},
        },
        "clusterAddrTable": {CLUSTER: ["broker-a", "broker-b"]},
    }


def test_empty_cluster_info() -> None:
    response = make_handlers().handle(request(RequestCode.GET_BROKER_CLUSTER_INFO))
    assert bytes(response.body) == b'{"brokerAddrTable":{},"clusterAddrTable":{}}'


def test_topic_lists() -> None:
    handlers = make_handlers()
    do_register(handlers, "A", "B")
    all_topics = handlers.handle(request(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
    assert bytes(all_topics.body) == b'{"topicList":["A","B"]}'
    by_cluster = handlers.handle(request(RequestCode.GET_TOPICS_BY_CLUSTER, {"cluster": CLUSTER}))
    assert loads_lenient(by_cluster.body) == {"topicList": ["A", "B"]}
    unknown = handlers.handle(request(RequestCode.GET_TOPICS_BY_CLUSTER, {"cluster": "Nope"}))
    assert loads_lenient(unknown.body) == {"topicList": []}
    missing = handlers.handle(request(RequestCode.GET_TOPICS_BY_CLUSTER))
    assert (missing.code, missing.remark) == (ResponseCode.SYSTEM_ERROR, "the custom field <cluster> is null")
    system = handlers.handle(request(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS))
    assert loads_lenient(system.body) == {"brokerAddr": "127.0.0.1:10911", "topicList": [CLUSTER, "broker-a"]}
    for code in (
        RequestCode.GET_UNIT_TOPIC_LIST,
        RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST,
        RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
    ):
        assert loads_lenient(handlers.handle(request(code)).body) == {"topicList": []}


def test_topic_lists_can_be_disabled() -> None:
    handlers = make_handlers(NamesrvConfig(enable_all_topic_list=False, enable_topic_list=False))
    for code, ext in [
        (RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, {}),
        (RequestCode.GET_TOPICS_BY_CLUSTER, {"cluster": CLUSTER}),
        (RequestCode.GET_UNIT_TOPIC_LIST, {}),
    ]:
        response = handlers.handle(request(code, ext))
        assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, "disable")


def test_delete_topic_in_namesrv() -> None:
    handlers = make_handlers()
    do_register(handlers, "A", "B")
    assert handlers.handle(request(RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "A"})).code == ResponseCode.SUCCESS
    response = handlers.handle(request(RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "B", "clusterName": "Other"}))
    assert response.code == ResponseCode.SUCCESS
    assert handlers.route_table.all_topics() == ["B"]
    handlers.handle(request(RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "B", "clusterName": CLUSTER}))
    assert handlers.route_table.all_topics() == []
    assert handlers.handle(request(RequestCode.DELETE_TOPIC_IN_NAMESRV)).code == ResponseCode.SYSTEM_ERROR


def test_register_topic_in_namesrv() -> None:
    handlers = make_handlers()
    do_register(handlers, "Existing")
    body = b'{"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":2,"writeQueueNums":2,"topicSysFlag":0}]}'
    response = handlers.handle(request(RequestCode.REGISTER_TOPIC_IN_NAMESRV, {"topic": "New"}, body))
    assert response.code == ResponseCode.SUCCESS
    assert loads_lenient(route(handlers, "New").body)["queueDatas"][0]["readQueueNums"] == 2
    bad = handlers.handle(request(RequestCode.REGISTER_TOPIC_IN_NAMESRV, {"topic": "X"}, b'{"queueDatas":[{}]}'))
    assert bad.code == ResponseCode.SYSTEM_ERROR
    assert bad.remark is not None
    assert "brokerName" in bad.remark


def test_wipe_and_add_write_perm() -> None:
    handlers = make_handlers()
    do_register(handlers, "A", "B")
    wipe = handlers.handle(request(RequestCode.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": "broker-a"}))
    assert (wipe.code, wipe.ext_fields) == (ResponseCode.SUCCESS, {"wipeTopicCount": "2"})
    assert loads_lenient(route(handlers, "A").body)["queueDatas"][0]["perm"] == 4
    add = handlers.handle(request(RequestCode.ADD_WRITE_PERM_OF_BROKER, {"brokerName": "broker-a"}))
    assert (add.code, add.ext_fields) == (ResponseCode.SUCCESS, {"addTopicCount": "2"})
    assert loads_lenient(route(handlers, "A").body)["queueDatas"][0]["perm"] == 6
    unknown = handlers.handle(request(RequestCode.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": "nobody"}))
    assert unknown.ext_fields == {"wipeTopicCount": "0"}


# --- KV config ------------------------------------------------------------------------------------------------------


def test_kv_config_round_trip() -> None:
    handlers = make_handlers()
    put = handlers.handle(request(RequestCode.PUT_KV_CONFIG, {"namespace": "ns", "key": "k", "value": "v"}))
    assert put.code == ResponseCode.SUCCESS
    got = handlers.handle(request(RequestCode.GET_KV_CONFIG, {"namespace": "ns", "key": "k"}))
    assert (got.code, got.ext_fields) == (ResponseCode.SUCCESS, {"value": "v"})
    listed = handlers.handle(request(RequestCode.GET_KVLIST_BY_NAMESPACE, {"namespace": "ns"}))
    assert bytes(listed.body) == b'{"table":{"k":"v"}}'
    deleted = handlers.handle(request(RequestCode.DELETE_KV_CONFIG, {"namespace": "ns", "key": "k"}))
    assert deleted.code == ResponseCode.SUCCESS
    missing = handlers.handle(request(RequestCode.GET_KV_CONFIG, {"namespace": "ns", "key": "k"}))
    assert (missing.code, missing.remark) == (ResponseCode.QUERY_NOT_FOUND, "No config item, Namespace: ns Key: k")
    assert int(missing.code) == 22


def test_kv_list_of_an_unknown_namespace() -> None:
    response = make_handlers().handle(request(RequestCode.GET_KVLIST_BY_NAMESPACE, {"namespace": "nope"}))
    assert (response.code, response.remark) == (ResponseCode.QUERY_NOT_FOUND, "No config item, Namespace: nope")


@pytest.mark.parametrize("missing", ["namespace", "key", "value"])
def test_put_kv_config_needs_every_field(missing: str) -> None:
    ext = {"namespace": "ns", "key": "k", "value": "v"}
    del ext[missing]
    response = make_handlers().handle(request(RequestCode.PUT_KV_CONFIG, ext))
    assert (response.code, response.remark) == (ResponseCode.SYSTEM_ERROR, f"the custom field <{missing}> is null")


# --- name server config ---------------------------------------------------------------------------------------------


def test_get_namesrv_config_is_properties_text() -> None:
    response = make_handlers(NamesrvConfig(listen_port=9999)).handle(request(RequestCode.GET_NAMESRV_CONFIG))
    properties = parse_properties(bytes(response.body).decode("utf-8"))
    assert properties["listenPort"] == "9999"
    assert properties["scanNotActiveBrokerInterval"] == "5000"
    assert properties["orderMessageEnable"] == "false"


def test_update_namesrv_config() -> None:
    handlers = make_handlers()
    body = b"orderMessageEnable=true\nenableAllTopicList = false\ndeleteTopicWithBrokerRegistration=true\nfoo=bar\n"
    response = handlers.handle(request(RequestCode.UPDATE_NAMESRV_CONFIG, body=body))
    assert response.code == ResponseCode.SUCCESS
    assert handlers.config.order_message_enable
    assert not handlers.config.enable_all_topic_list
    assert handlers.route_table.delete_topic_with_broker_registration
    assert handlers.handle(request(RequestCode.UPDATE_NAMESRV_CONFIG)).code == ResponseCode.SUCCESS


@pytest.mark.parametrize("key", ["kvConfigPath", "configStorePath", "configBlackList", "rocketmqHome"])
def test_update_namesrv_config_black_list(key: str) -> None:
    handlers = make_handlers()
    response = handlers.handle(request(RequestCode.UPDATE_NAMESRV_CONFIG, body=f"{key}=/tmp/x".encode()))
    assert (response.code, response.remark) == (ResponseCode.NO_PERMISSION, "Can not update config in black list.")


def test_update_namesrv_config_custom_black_list() -> None:
    handlers = make_handlers(NamesrvConfig(config_black_list="listenPort;orderMessageEnable"))
    response = handlers.handle(request(RequestCode.UPDATE_NAMESRV_CONFIG, body=b"orderMessageEnable=true"))
    assert response.code == ResponseCode.NO_PERMISSION


@pytest.mark.parametrize(
    ("body", "named"),
    [(b"waitSecondsForService=soon", "waitSecondsForService"), (b"a=\\u00", "uxxxx"), (b"\xff=1", "")],
)
def test_update_namesrv_config_bad_values(body: bytes, named: str) -> None:
    handlers = make_handlers()
    before = handlers.config
    response = handlers.handle(request(RequestCode.UPDATE_NAMESRV_CONFIG, body=body))
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.remark is not None
    assert named in response.remark
    assert handlers.config is before


# --- anything else --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [99, 10, 34, 0, -1, 65535])
def test_unknown_codes_are_not_supported(code: int) -> None:
    response = make_handlers().handle(request(code))
    assert response.code == 3
    assert response.remark == f"request type {code} not supported"


NAMESRV_CODES = [
    RequestCode.PUT_KV_CONFIG,
    RequestCode.GET_KV_CONFIG,
    RequestCode.DELETE_KV_CONFIG,
    RequestCode.REGISTER_BROKER,
    RequestCode.UNREGISTER_BROKER,
    RequestCode.GET_ROUTEINFO_BY_TOPIC,
    RequestCode.GET_BROKER_CLUSTER_INFO,
    RequestCode.WIPE_WRITE_PERM_OF_BROKER,
    RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    RequestCode.DELETE_TOPIC_IN_NAMESRV,
    RequestCode.REGISTER_TOPIC_IN_NAMESRV,
    RequestCode.GET_KVLIST_BY_NAMESPACE,
    RequestCode.GET_TOPICS_BY_CLUSTER,
    RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS,
    RequestCode.GET_UNIT_TOPIC_LIST,
    RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST,
    RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
    RequestCode.UPDATE_NAMESRV_CONFIG,
    RequestCode.GET_NAMESRV_CONFIG,
    RequestCode.QUERY_DATA_VERSION,
    RequestCode.ADD_WRITE_PERM_OF_BROKER,
]
FIELD_NAMES = [
    "brokerName",
    "brokerAddr",
    "clusterName",
    "haServerAddr",
    "brokerId",
    "compressed",
    "bodyCrc32",
    "heartbeatTimeoutMillis",
    "enableActingMaster",
    "topic",
    "cluster",
    "namespace",
    "key",
    "value",
    "acceptStandardJsonOnly",
]
NASTY_VALUES = ["", "0", "-1", "99999999999999999999", "abc", "true", "1.5", " 7 ", "\u0000", "é中", "{}", "[]"]
NASTY_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'{"topicConfigSerializeWrapper":null}',
    b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"":{}}}}',
    b'{"queueDatas":"x"}',
    b"\x00\x01\x02",
    b"=\\u",
    b'{"counter":[]}',
]


@pytest.mark.parametrize("code", NAMESRV_CODES)
def test_random_garbage_always_gets_a_response(code: int) -> None:
    generator = random.Random(code)
    handlers = make_handlers()
    do_register(handlers, "T")
    for _ in range(200):
        ext = {name: generator.choice(NASTY_VALUES) for name in generator.sample(FIELD_NAMES, generator.randint(0, 8))}
        response = handlers.handle(request(code, ext, generator.choice(NASTY_BODIES)), generator.choice(["a", "b"]))
        assert response.is_response
        assert response.opaque == 7
        assert response.code in {
            ResponseCode.SUCCESS,
            ResponseCode.SYSTEM_ERROR,
            ResponseCode.TOPIC_NOT_EXIST,
            ResponseCode.QUERY_NOT_FOUND,
            ResponseCode.NO_PERMISSION,
        }
        encode_bytes(response)  # and the response can be written
