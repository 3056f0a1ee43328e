"""RouteTable: RocketMQ's RouteInfoManager rules, with a fake clock and plain objects as channel keys."""

from __future__ import annotations

import pytest

from tidemq.namesrv.route_table import (
    NAMESPACE_ORDER_TOPIC_CONFIG,
    DataVersion,
    QueueData,
    RegisterResult,
    RouteTable,
    TopicConfig,
)

CLUSTER = "DefaultCluster"
V1 = DataVersion(counter=1, state_version=0, timestamp=1000)
V2 = DataVersion(counter=2, state_version=0, timestamp=2000)


def topics(*names: str, queues: int = 4, perm: int = 6, sys_flag: int = 0) -> dict[str, TopicConfig]:
    return {
        name: TopicConfig(name, read_queue_nums=queues, write_queue_nums=queues, perm=perm, topic_sys_flag=sys_flag)
        for name in names
    }


def register(
    table: RouteTable,
    name: str = "broker-a",
    broker_id: int = 0,
    addr: str = "10.0.0.1:10911",
    configs: dict[str, TopicConfig] | None = None,
    version: DataVersion = V1,
    channel: object = "channel-a",
    now_ms: int = 0,
    cluster: str = CLUSTER,
    **options: object,
) -> RegisterResult:
    host, port = addr.rsplit(":", 1)
    return table.register_broker(
        cluster,
        name,
        addr,
        broker_id,
        f"{host}:{int(port) + 1}",
        topics("TopicTest") if configs is None else configs,
        version,
        channel,
        now_ms,
        **options,  # type: ignore[arg-type]  # keyword options of register_broker, typed there
    )


def test_register_master_builds_the_route() -> None:
    table = RouteTable()
    assert register(table) == RegisterResult(None, None)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert route.queue_datas == (QueueData("broker-a", 4, 4, 6, 0),)
    assert len(route.broker_datas) == 1
    broker = route.broker_datas[0]
    assert (broker.cluster, broker.broker_name, dict(broker.broker_addrs)) == (
        CLUSTER,
        "broker-a",
        {0: "10.0.0.1:10911"},
    )
    assert route.filter_server_table == {}
    assert route.order_topic_conf is None


def test_unknown_topic_has_no_route() -> None:
    table = RouteTable()
    register(table)
    assert table.topic_route("Nope") is None


def test_slave_gets_the_master_address_and_does_not_change_queue_data() -> None:
    table = RouteTable()
    register(table, configs=topics("TopicTest", queues=4))
    result = register(table, broker_id=1, addr="10.0.0.2:10911", configs=topics("TopicTest", "SlaveOnly", queues=8))
    assert result == RegisterResult("10.0.0.1:10911", "10.0.0.1:10912")
    route = table.topic_route("TopicTest")
    assert route is not None
    assert dict(route.broker_datas[0].broker_addrs) == {0: "10.0.0.1:10911", 1: "10.0.0.2:10911"}
    assert route.queue_datas[0].read_queue_nums == 4  # a 4.x slave's topic configs are ignored
    assert table.topic_route("SlaveOnly") is None


def test_slave_before_its_master_gets_no_master_address() -> None:
    table = RouteTable()
    assert register(table, broker_id=1, addr="10.0.0.2:10911") == RegisterResult(None, None)
    register(table)
    assert register(table, broker_id=1, addr="10.0.0.2:10911") == RegisterResult("10.0.0.1:10911", "10.0.0.1:10912")


def test_a_5x_slave_alone_feeds_the_topic_table_as_prime_slave() -> None:
    table = RouteTable()
    register(table, broker_id=1, addr="10.0.0.2:10911", enable_acting_master=False)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert route.queue_datas[0].perm == 6


def test_acting_master_prime_slave_loses_write_perm() -> None:
    table = RouteTable()
    register(table, broker_id=1, addr="10.0.0.2:10911", enable_acting_master=True)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert route.queue_datas[0].perm == 4
    assert route.broker_datas[0].enable_acting_master is True


def test_queue_data_is_rebuilt_only_when_the_data_version_changes() -> None:
    table = RouteTable()
    register(table, configs=topics("TopicTest", queues=4), version=V1)
    register(table, configs=topics("TopicTest", queues=8), version=V1)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert route.queue_datas[0].write_queue_nums == 4  # same version: not re-read
    register(table, configs=topics("TopicTest", queues=8), version=V2)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert route.queue_datas[0].write_queue_nums == 8


def test_same_version_still_adds_a_topic_the_table_lacks() -> None:
    table = RouteTable()
    register(table, configs=topics("A"), version=V1)
    register(table, configs=topics("A", "B"), version=V1)
    assert table.all_topics() == ["A", "B"]


def test_a_broker_registered_again_after_leaving_is_new() -> None:
    table = RouteTable()
    register(table, configs=topics("A", queues=4))
    table.unregister_broker(CLUSTER, "10.0.0.1:10911", "broker-a", 0)
    register(table, configs=topics("A", queues=8))  # same version, but new to the table
    route = table.topic_route("A")
    assert route is not None
    assert route.queue_datas[0].write_queue_nums == 8


def test_data_version_queries() -> None:
    table = RouteTable()
    assert table.is_broker_topic_config_changed(CLUSTER, "10.0.0.1:10911", V1)
    register(table, version=V1)
    assert not table.is_broker_topic_config_changed(CLUSTER, "10.0.0.1:10911", V1)
    assert table.is_broker_topic_config_changed(CLUSTER, "10.0.0.1:10911", V2)
    assert table.broker_data_version(CLUSTER, "10.0.0.1:10911") == V1
    assert table.broker_data_version(CLUSTER, "10.9.9.9:1") is None


def test_expiry_after_120_seconds() -> None:
    table = RouteTable()
    register(table, now_ms=1_000)
    assert table.scan_expired(121_000) == []  # exactly 120 s: still alive (RocketMQ compares with <)
    removed = table.scan_expired(121_001)
    assert [(b.broker_name, b.broker_addr, b.broker_id, b.channel_key) for b in removed] == [
        ("broker-a", "10.0.0.1:10911", 0, "channel-a")
    ]
    assert table.topic_route("TopicTest") is None
    assert table.all_topics() == []
    info = table.cluster_info()
    assert info.broker_addr_table == {}
    assert info.cluster_addr_table == {}


def test_a_registration_refreshes_liveness() -> None:
    table = RouteTable()
    register(table, now_ms=0)
    register(table, now_ms=100_000)
    assert table.scan_expired(200_000) == []
    table.touch_broker(CLUSTER, "10.0.0.1:10911", 300_000)
    assert table.scan_expired(400_000) == []
    assert len(table.scan_expired(420_001)) == 1


def test_a_broker_heartbeat_timeout_overrides_the_default() -> None:
    table = RouteTable()
    register(table, now_ms=0, heartbeat_timeout_ms=10_000)
    register(table, name="broker-b", addr="10.0.0.2:10911", channel="channel-b", now_ms=0)
    assert [b.broker_name for b in table.scan_expired(10_001)] == ["broker-a"]
    assert table.broker_names() == ["broker-b"]


def test_a_topic_goes_only_with_its_last_broker() -> None:
    table = RouteTable()
    register(table, configs=topics("Shared", "OnlyA"), now_ms=0)
    register(
        table, name="broker-b", addr="10.0.0.2:10911", configs=topics("Shared"), channel="channel-b", now_ms=60_000
    )
    table.scan_expired(150_000)  # broker-a silent since 0, broker-b since 60 s
    assert table.all_topics() == ["Shared"]
    route = table.topic_route("Shared")
    assert route is not None
    assert [q.broker_name for q in route.queue_datas] == ["broker-b"]
    assert [b.broker_name for b in route.broker_datas] == ["broker-b"]


def test_channel_closed_removes_only_brokers_of_that_channel() -> None:
    table = RouteTable()
    register(table, channel="channel-a")
    register(table, name="broker-b", addr="10.0.0.2:10911", channel="channel-b")
    removed = table.channel_closed("channel-a")
    assert [b.broker_name for b in removed] == ["broker-a"]
    assert table.broker_names() == ["broker-b"]
    assert table.channel_closed("channel-zzz") == []


def test_reregistration_on_a_new_channel_survives_the_old_channel_closing() -> None:
    table = RouteTable()
    register(table, channel="old")
    register(table, channel="new")
    assert table.channel_closed("old") == []
    assert table.broker_names() == ["broker-a"]


def test_unregister_master_keeps_the_slave_and_the_topic() -> None:
    table = RouteTable()
    register(table)
    register(table, broker_id=1, addr="10.0.0.2:10911", channel="channel-s")
    table.unregister_broker(CLUSTER, "10.0.0.1:10911", "broker-a", 0)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert dict(route.broker_datas[0].broker_addrs) == {1: "10.0.0.2:10911"}
    # The master is gone, so the slave's next registration answers no master.
    assert register(table, broker_id=1, addr="10.0.0.2:10911", channel="channel-s") == RegisterResult(None, None)
    table.unregister_broker(CLUSTER, "10.0.0.2:10911", "broker-a", 1)
    assert table.topic_route("TopicTest") is None
    assert table.cluster_info().cluster_addr_table == {}


def test_unregister_unknown_broker_is_harmless() -> None:
    table = RouteTable()
    register(table)
    table.unregister_broker(CLUSTER, "10.9.9.9:1", "nobody", 0)
    table.unregister_broker(CLUSTER, "10.9.9.9:1", "broker-a", 3)
    assert table.broker_names() == ["broker-a"]


def test_a_slave_promoted_to_master_keeps_one_id() -> None:
    table = RouteTable()
    register(table, broker_id=1, addr="10.0.0.2:10911")
    register(table, broker_id=0, addr="10.0.0.2:10911")
    info = table.cluster_info()
    assert dict(info.broker_addr_table["broker-a"].broker_addrs) == {0: "10.0.0.2:10911"}


def test_a_new_address_with_an_older_state_version_is_refused() -> None:
    table = RouteTable()
    register(table, addr="10.0.0.1:10911", version=DataVersion(1, 5, 0))
    result = register(table, addr="10.0.0.9:10911", version=DataVersion(1, 3, 0), channel="usurper")
    assert result == RegisterResult(None, None)
    assert dict(table.cluster_info().broker_addr_table["broker-a"].broker_addrs) == {0: "10.0.0.1:10911"}
    register(table, addr="10.0.0.9:10911", version=DataVersion(1, 6, 0), channel="successor")
    assert dict(table.cluster_info().broker_addr_table["broker-a"].broker_addrs) == {0: "10.0.0.9:10911"}


def test_cluster_info_and_topics_by_cluster() -> None:
    table = RouteTable()
    register(table, configs=topics("A", "B"))
    register(table, name="broker-b", addr="10.0.0.2:10911", configs=topics("B"), channel="b")
    register(table, name="broker-c", addr="10.0.0.3:10911", configs=topics("C"), channel="c", cluster="Other")
    info = table.cluster_info()
    assert dict(info.cluster_addr_table) == {CLUSTER: ("broker-a", "broker-b"), "Other": ("broker-c",)}
    assert list(info.broker_addr_table) == ["broker-a", "broker-b", "broker-c"]
    assert info.broker_addr_table["broker-c"].cluster == "Other"
    assert table.topics_by_cluster(CLUSTER) == ["A", "B"]
    assert table.topics_by_cluster("Other") == ["C"]
    assert table.topics_by_cluster("Unknown") == []
    assert table.all_topics() == ["A", "B", "C"]


def test_delete_topic_everywhere_or_in_one_cluster() -> None:
    table = RouteTable()
    register(table, configs=topics("T", "U"))
    register(table, name="broker-c", addr="10.0.0.3:10911", configs=topics("T"), channel="c", cluster="Other")
    table.delete_topic("T", "Other")
    route = table.topic_route("T")
    assert route is not None
    assert [q.broker_name for q in route.queue_datas] == ["broker-a"]
    table.delete_topic("T", CLUSTER)
    assert table.topic_route("T") is None
    table.delete_topic("U")
    assert table.all_topics() == []
    table.delete_topic("never-existed")
    table.delete_topic("never-existed", "NoCluster")


def test_wipe_and_add_write_perm() -> None:
    table = RouteTable()
    register(table, configs=topics("A", "B", perm=7))
    register(table, name="broker-b", addr="10.0.0.2:10911", configs=topics("A"), channel="b")
    assert table.wipe_write_perm("broker-a") == 2
    route = table.topic_route("A")
    assert route is not None
    assert {q.broker_name: q.perm for q in route.queue_datas} == {"broker-a": 5, "broker-b": 6}
    assert table.add_write_perm("broker-a") == 2
    route = table.topic_route("B")
    assert route is not None
    assert route.queue_datas[0].perm == 6  # RocketMQ sets READ|WRITE, dropping INHERIT
    assert table.wipe_write_perm("nobody") == 0


def test_kv_config() -> None:
    table = RouteTable()
    assert table.get_kv_config("ns", "k") is None
    assert table.kv_list("ns") is None
    table.put_kv_config("ns", "k", "v1")
    table.put_kv_config("ns", "k", "v2")
    table.put_kv_config("ns", "k2", "x")
    assert table.get_kv_config("ns", "k") == "v2"
    assert table.kv_list("ns") == {"k": "v2", "k2": "x"}
    table.delete_kv_config("ns", "k")
    table.delete_kv_config("ns", "absent")
    table.delete_kv_config("no-namespace", "k")
    assert table.kv_list("ns") == {"k2": "x"}


def test_order_topic_conf_comes_from_the_kv_namespace() -> None:
    table = RouteTable()
    register(table, configs=topics("Ordered"))
    table.put_kv_config(NAMESPACE_ORDER_TOPIC_CONFIG, "Ordered", "broker-a:4")
    route = table.topic_route("Ordered")
    assert route is not None
    assert route.order_topic_conf == "broker-a:4"
    route = table.topic_route("Ordered", include_order_topic_conf=False)
    assert route is not None
    assert route.order_topic_conf is None


def test_system_topics_are_cluster_and_broker_names() -> None:
    table = RouteTable()
    assert table.system_topics() == ([], None)
    register(table)
    register(table, broker_id=1, addr="10.0.0.2:10911", channel="s")
    topics_found, broker_addr = table.system_topics()
    assert topics_found == ["DefaultCluster", "broker-a"]
    assert broker_addr == "10.0.0.1:10911"


def test_unit_topic_lists() -> None:
    table = RouteTable()
    register(
        table,
        configs={
            **topics("Plain"),
            **topics("Unit", sys_flag=1),
            **topics("UnitSub", sys_flag=2),
            **topics("UnitAndSub", sys_flag=3),
        },
    )
    assert table.topics_with_sys_flag(has=1) == ["Unit", "UnitAndSub"]
    assert table.topics_with_sys_flag(has=2) == ["UnitAndSub", "UnitSub"]
    assert table.topics_with_sys_flag(has=2, lacks=1) == ["UnitSub"]


def test_register_topic_needs_known_brokers() -> None:
    table = RouteTable()
    register(table, configs={})
    assert not table.register_topic("T", [QueueData("unknown", 1, 1, 6)])
    assert table.topic_route("T") is None
    assert not table.register_topic("T", [])
    assert table.register_topic("T", [QueueData("broker-a", 2, 2, 6)])
    route = table.topic_route("T")
    assert route is not None
    assert route.queue_datas == (QueueData("broker-a", 2, 2, 6),)


@pytest.mark.parametrize("enabled", [False, True])
def test_delete_topic_with_broker_registration(enabled: bool) -> None:
    table = RouteTable(delete_topic_with_broker_registration=enabled)
    register(table, configs=topics("Keep", "Drop"), version=V1)
    register(table, configs=topics("Keep"), version=V2)
    assert table.all_topics() == (["Keep"] if enabled else ["Drop", "Keep"])


def test_filter_servers_appear_in_the_route() -> None:
    table = RouteTable()
    register(table, filter_server_list=["10.0.0.1:30000"])
    route = table.topic_route("TopicTest")
    assert route is not None
    assert dict(route.filter_server_table) == {"10.0.0.1:10911": ("10.0.0.1:30000",)}
    register(table, filter_server_list=[])
    route = table.topic_route("TopicTest")
    assert route is not None
    assert route.filter_server_table == {}


def test_route_lists_are_sorted_by_broker_name() -> None:
    table = RouteTable()
    for index, name in enumerate(["broker-c", "broker-a", "broker-b"]):
        register(table, name=name, addr=f"10.0.0.{index}:10911", channel=name)
    route = table.topic_route("TopicTest")
    assert route is not None
    assert [q.broker_name for q in route.queue_datas] == ["broker-a", "broker-b", "broker-c"]
    assert [b.broker_name for b in route.broker_datas] == ["broker-a", "broker-b", "broker-c"]
