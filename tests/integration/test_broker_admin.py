"""Admin requests over real sockets: the reply shapes mqadmin reads (checked against Apache RocketMQ 5.5.0's replies
to the same requests; tests/interop/test_mqadmin.py runs mqadmin itself), without a JVM."""

from __future__ import annotations

import json

from tidemq.protocol.remoting import ObjectKey, RequestCode, ResponseCode, loads_lenient
from tidemq.transport import RemotingChannel

from .conftest import RunningBroker, call, open_client
from .test_broker_remoting import pull_fields, send_fields


def _mq(topic: str, queue_id: int) -> ObjectKey:
    return ObjectKey((("brokerName", "broker-a"), ("queueId", queue_id), ("topic", topic)))


async def _send(client: RemotingChannel, topic: str, queue_id: int, count: int) -> None:
    for i in range(count):
        reply = await call(client, RequestCode.SEND_MESSAGE, send_fields(topic, queue_id), f"m{i}".encode())
        assert reply.code == ResponseCode.SUCCESS, reply.remark


async def test_topic_and_consume_stats_use_object_keys(running_broker: RunningBroker) -> None:
    client = await open_client(running_broker.port)
    await _send(client, "Stats", 1, 3)
    await _send(client, "Stats", 2, 1)
    stats = await call(client, RequestCode.GET_TOPIC_STATS_INFO, {"topic": "Stats"})
    assert stats.code == ResponseCode.SUCCESS, stats.remark
    body = bytes(stats.body)
    assert body.startswith(b'{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"Stats"}:{"lastUpdate')
    table = loads_lenient(body)
    assert set(table) == {"offsetTable", "topicPutTps"}
    assert table["topicPutTps"] > 0
    offsets = table["offsetTable"]
    assert set(offsets) == {_mq("Stats", q) for q in range(4)}
    assert (offsets[_mq("Stats", 1)]["minOffset"], offsets[_mq("Stats", 1)]["maxOffset"]) == (0, 3)
    assert offsets[_mq("Stats", 1)]["lastUpdateTimestamp"] > 0
    assert offsets[_mq("Stats", 0)] == {"lastUpdateTimestamp": 0, "maxOffset": 0, "minOffset": 0}
    missing = await call(client, RequestCode.GET_TOPIC_STATS_INFO, {"topic": "Nope"})
    assert (missing.code, missing.remark) == (ResponseCode.TOPIC_NOT_EXIST, "topic[Nope] not exist")

    pulled = await call(client, RequestCode.PULL_MESSAGE, pull_fields("Stats", 1, 0))
    assert pulled.ext_fields["nextBeginOffset"] == "3"
    await call(
        client,
        RequestCode.UPDATE_CONSUMER_OFFSET,
        {"consumerGroup": "CG", "topic": "Stats", "queueId": "1", "commitOffset": "2"},
    )
    consume = await call(client, RequestCode.GET_CONSUME_STATS, {"consumerGroup": "CG"})
    assert consume.code == ResponseCode.SUCCESS
    data = loads_lenient(bytes(consume.body))
    assert data["consumeTps"] > 0
    row = data["offsetTable"][_mq("Stats", 1)]
    assert (row["brokerOffset"], row["consumerOffset"], row["pullOffset"]) == (3, 2, 3)
    assert row["lastTimestamp"] > 0  # store time of the last consumed message (offset 1)
    assert data["offsetTable"][_mq("Stats", 2)] == {
        "brokerOffset": 1,
        "consumerOffset": 0,
        "lastTimestamp": 0,
        "pullOffset": 0,
    }
    by_who = await call(client, RequestCode.QUERY_TOPIC_CONSUME_BY_WHO, {"topic": "Stats"})
    assert json.loads(bytes(by_who.body)) == {"groupList": ["CG"]}
    queue = await call(
        client, RequestCode.QUERY_CONSUME_QUEUE, {"topic": "Stats", "queueId": "1", "index": "1", "count": "5"}
    )
    entries = json.loads(bytes(queue.body))
    assert (entries["minQueueIndex"], entries["maxQueueIndex"], len(entries["queueData"])) == (0, 3, 2)
    assert entries["queueData"][0]["tagsCode"] == 2598919  # "TagA".hashCode()
    client.close()


async def test_runtime_info_and_broker_config(running_broker: RunningBroker) -> None:
    client = await open_client(running_broker.port)
    await _send(client, "Rt", 0, 2)
    info = await call(client, RequestCode.GET_BROKER_RUNTIME_INFO)
    table = json.loads(bytes(info.body))["table"]
    assert table["msgPutTotalTodayNow"] == "2"
    assert table["brokerVersionDesc"] == "V4_9_3"
    assert table["getTransferedTps"] == table["getTransferredTps"]  # 4.9 tools read the misspelt one
    assert len(table["putTps"].split()) == 3
    assert int(table["earliestMessageTimeStamp"]) > 0
    assert all(isinstance(v, str) for v in table.values())

    config = await call(client, RequestCode.GET_BROKER_CONFIG)
    text = bytes(config.body).decode()
    assert "brokerName=broker-a\n" in text
    assert "brokerIP1=127.0.0.1\n" in text
    version = json.loads(config.ext_fields["version"])
    refused = await call(client, RequestCode.UPDATE_BROKER_CONFIG, body=b"longPollingEnable=false\nlistenPort=1\n")
    assert refused.code == ResponseCode.NO_PERMISSION
    assert "cannot change listenPort" in (refused.remark or "")
    assert running_broker.broker.config.long_polling_enable  # all or nothing
    same = await call(client, RequestCode.UPDATE_BROKER_CONFIG, body=b"brokerName=broker-a\n")  # unchanged: fine
    assert same.code == ResponseCode.SUCCESS
    bad = await call(client, RequestCode.UPDATE_BROKER_CONFIG, body=b"longPollingEnable=maybe\n")
    assert bad.code == ResponseCode.INVALID_PARAMETER
    applied = await call(
        client, RequestCode.UPDATE_BROKER_CONFIG, body=b"brokerPermission=4\nchannelExpiredTimeout=60000\n"
    )
    assert applied.code == ResponseCode.SUCCESS
    broker = running_broker.broker
    assert (broker.config.broker_permission, broker.consumers.expiry_ms) == (4, 60000)
    table_registered, _ = broker.register_body()
    assert table_registered["Rt"]["perm"] == 4  # read-only broker: routes say so
    refused_send = await call(client, RequestCode.SEND_MESSAGE, send_fields("Rt", 0), b"x")
    assert refused_send.code == ResponseCode.NO_PERMISSION
    after = await call(client, RequestCode.GET_BROKER_CONFIG)
    assert "brokerPermission=4\n" in bytes(after.body).decode()
    assert json.loads(after.ext_fields["version"])["counter"] == version["counter"] + 1
    client.close()


async def test_groups_and_topic_deletion(running_broker: RunningBroker) -> None:
    client = await open_client(running_broker.port)
    broker = running_broker.broker
    for name in ("G1", "G2", "G3"):
        created = await call(
            client,
            RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
            body=json.dumps({"groupName": name, "retryMaxTimes": 3}).encode(),
        )
        assert created.code == ResponseCode.SUCCESS
    bad = await call(client, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=b'{"groupName":"bad name"}')
    assert bad.code == ResponseCode.INVALID_PARAMETER
    one = await call(client, RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG, {"group": "G2"})
    assert json.loads(bytes(one.body))["retryMaxTimes"] == 3
    everyone = await call(client, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)  # 4.x: everything, no total
    assert {"G1", "G2", "G3"} <= set(json.loads(bytes(everyone.body))["subscriptionGroupTable"])
    total = len(broker.subscription_groups.groups)
    seen: set[str] = set()
    for start in range(0, total, 4):  # 5.x pages
        page = await call(
            client,
            RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
            {"groupSeq": str(start), "maxGroupNum": "4", "dataVersion": ""},
        )
        assert page.ext_fields["totalGroupNum"] == str(total)
        seen |= set(json.loads(bytes(page.body))["subscriptionGroupTable"])
    assert len(seen) == total
    deleted = await call(client, RequestCode.DELETE_SUBSCRIPTIONGROUP, {"groupName": "G2", "cleanOffset": "false"})
    assert deleted.code == ResponseCode.SUCCESS
    gone = await call(client, RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG, {"group": "G2"})
    assert gone.code == ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST

    await _send(client, "Doomed", 0, 2)
    broker.offsets.commit("G1", "Doomed", 0, 1)
    queue_dir = broker.store.config.consume_queue_dir / "Doomed"
    assert queue_dir.is_dir()
    reply = await call(client, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": "Doomed"})
    assert reply.code == ResponseCode.SUCCESS
    assert broker.topics.get("Doomed") is None
    assert broker.offsets.offsets("G1", "Doomed") == {}
    assert not queue_dir.exists()
    assert broker.store.get_max_offset("Doomed", 0) == 0
    await _send(client, "Doomed", 0, 1)  # auto-created afresh: a new queue from offset 0
    assert broker.store.get_max_offset("Doomed", 0) == 1
    system = await call(client, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": "TBW102"})
    assert system.code == ResponseCode.INVALID_PARAMETER
    topics = await call(client, RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_BROKER)
    assert {"TBW102", "SCHEDULE_TOPIC_XXXX", "DefaultCluster", "broker-a"} <= set(
        json.loads(bytes(topics.body))["topicList"]
    )
    client.close()
