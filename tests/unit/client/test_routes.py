"""Route parsing (fastjson's unquoted integer keys), producer and consumer queue lists, TBW102, round robin."""

from __future__ import annotations

import pytest

from tidemq.client._routes import (
    BrokerData,
    MessageQueue,
    PublishInfo,
    QueueData,
    TopicRoute,
    default_route_for,
    parse_namesrv_addrs,
    parse_topic_route,
    publish_queues,
    subscribe_queues,
)
from tidemq.client.errors import NoRouteError
from tidemq.errors import RemoteProtocolError

FASTJSON_ROUTE = (
    b'{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.2:10911",1:"10.0.0.3:10911"},"brokerName":"broker-b",'
    b'"cluster":"DefaultCluster"},{"brokerAddrs":{0:"10.0.0.1:10911"},"brokerName":"broker-a",'
    b'"cluster":"DefaultCluster"},{"brokerAddrs":{1:"10.0.0.9:10911"},"brokerName":"broker-c","cluster":"c"}],'
    b'"filterServerTable":{},'
    b'"queueDatas":[{"brokerName":"broker-b","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2},'
    b'{"brokerName":"broker-a","perm":6,"readQueueNums":3,"topicSysFlag":0,"writeQueueNums":3},'
    b'{"brokerName":"broker-c","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}]}'
)


def test_parse_fastjson_route_with_integer_keys() -> None:
    route = parse_topic_route(FASTJSON_ROUTE)
    assert [qd.broker_name for qd in route.queue_datas] == ["broker-a", "broker-b", "broker-c"], "sorted"
    broker_b = route.broker("broker-b")
    assert broker_b is not None
    assert broker_b.broker_addrs == {0: "10.0.0.2:10911", 1: "10.0.0.3:10911"}
    assert broker_b.master_addr == "10.0.0.2:10911"
    assert route.broker("broker-c") is not None
    assert route.broker("broker-c").master_addr is None  # type: ignore[union-attr]


def test_quoted_keys_parse_the_same() -> None:
    standard = FASTJSON_ROUTE.replace(b"{0:", b'{"0":').replace(b",1:", b',"1":').replace(b"{1:", b'{"1":')
    assert parse_topic_route(standard) == parse_topic_route(FASTJSON_ROUTE)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"queueDatas":[{"perm":6}]}',
        b"{not json",
        b'{"brokerDatas":[{"brokerName":"a","brokerAddrs":{"x":"y"}}]}',
    ],
)
def test_malformed_routes_raise_protocol_errors(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_topic_route(body)


def test_producer_queues_are_writable_queues_of_masters() -> None:
    route = parse_topic_route(FASTJSON_ROUTE)
    targets = publish_queues("T", route)
    assert [(q.broker_name, q.queue_id, addr) for q, addr in targets] == [
        ("broker-a", 0, "10.0.0.1:10911"),
        ("broker-a", 1, "10.0.0.1:10911"),
        ("broker-a", 2, "10.0.0.1:10911"),
        ("broker-b", 0, "10.0.0.2:10911"),
        ("broker-b", 1, "10.0.0.2:10911"),
    ], "broker-c has no master"
    read_only = TopicRoute((QueueData("broker-a", 4, 4, 4),), route.broker_datas)
    assert publish_queues("T", read_only) == []
    assert len(subscribe_queues("T", read_only)) == 4
    write_only = TopicRoute((QueueData("broker-a", 4, 4, 2),), route.broker_datas)
    assert subscribe_queues("T", write_only) == []


def test_order_topic_conf_lists_the_queues() -> None:
    route = TopicRoute(
        parse_topic_route(FASTJSON_ROUTE).queue_datas,
        parse_topic_route(FASTJSON_ROUTE).broker_datas,
        "broker-b:2;broker-x:3",
    )
    assert [(q.broker_name, q.queue_id) for q, _ in publish_queues("T", route)] == [("broker-b", 0), ("broker-b", 1)]


def test_tbw102_route_is_capped_at_the_default_queue_count() -> None:
    template = TopicRoute((QueueData("broker-a", 8, 8, 7),), (BrokerData("c", "broker-a", {0: "h:1"}),))
    capped = default_route_for(template, 4)
    assert capped.queue_datas == (QueueData("broker-a", 4, 4, 7),)
    assert [q.queue_id for q, _ in publish_queues("New", capped)] == [0, 1, 2, 3]


def test_round_robin_and_avoiding_a_failed_broker() -> None:
    info = PublishInfo("T", parse_topic_route(FASTJSON_ROUTE))
    picks = [info.select()[0] for _ in range(10)]
    assert len(set(picks)) == 5, "every queue in turn"
    assert picks[:5] == picks[5:]
    for _ in range(10):
        assert info.select(avoid_broker="broker-a")[0].broker_name == "broker-b"
    only_a = PublishInfo("T", TopicRoute((QueueData("broker-a", 2, 2, 6),), (BrokerData("c", "broker-a", {0: "h:1"}),)))
    assert only_a.select(avoid_broker="broker-a")[0].broker_name == "broker-a", "no other broker: use it anyway"
    assert info.target(1, "broker-b") == (MessageQueue("T", "broker-b", 1), "10.0.0.2:10911")
    assert info.target(2)[0].broker_name == "broker-a"
    with pytest.raises(NoRouteError):
        info.target(7)
    with pytest.raises(NoRouteError):
        PublishInfo("T", TopicRoute((), ())).select()


def test_namesrv_address_lists() -> None:
    assert parse_namesrv_addrs("a:1;b:2") == ["a:1", "b:2"]
    assert parse_namesrv_addrs(" a:1 ; b:2;") == ["a:1", "b:2"]
    with pytest.raises(ValueError):
        parse_namesrv_addrs(" ; ")
