"""NamesrvConfig: RocketMQ's keys and defaults, namesrv.conf loading, bad values."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tidemq.errors import ConfigError
from tidemq.namesrv.config import NamesrvConfig, load_namesrv_config
from tidemq.properties import format_properties, parse_properties


def test_defaults_are_rocketmqs() -> None:
    config = NamesrvConfig()
    assert config.listen_port == 9876
    assert config.bind_address == "0.0.0.0"
    assert config.scan_not_active_broker_interval_ms == 5_000
    assert config.broker_channel_expired_time_ms == 120_000
    assert not config.order_message_enable
    assert config.return_order_topic_config_to_broker
    assert config.enable_all_topic_list


def test_load_a_namesrv_conf(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "namesrv.conf"
    path.write_text(
        "# written for the Java name server\n"
        "listenPort = 19876\n"
        "kvConfigPath=/opt/rocketmq/kvConfig.json\n"
        "serverWorkerThreads=8\n"
        "scanNotActiveBrokerInterval=10000\n"
        "orderMessageEnable=TRUE\n"
        "bindAddress=127.0.0.1\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING):
        config = load_namesrv_config(path)
    assert config.listen_port == 19876
    assert config.kv_config_path == "/opt/rocketmq/kvConfig.json"
    assert config.scan_not_active_broker_interval_ms == 10_000
    assert config.order_message_enable
    assert config.bind_address == "127.0.0.1"
    assert caplog.records == []  # known keys, and keys known-but-ignored, are not warned about


def test_unknown_keys_are_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "namesrv.conf"
    path.write_text("listenPort=1\nmadeUpKey=1\nanotherOne=2\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        config = load_namesrv_config(path)
    assert config.listen_port == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "anotherOne, madeUpKey" in warnings[0].getMessage()
    assert str(path) in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("listenPort=abc", "listenPort"),
        ("listenPort=70000", "listenPort"),
        ("listenPort=-1", "listenPort"),
        ("scanNotActiveBrokerInterval=0", "scanNotActiveBrokerInterval"),
        ("orderMessageEnable=yes", "orderMessageEnable"),
        ("waitSecondsForService=1.5", "waitSecondsForService"),
        ("waitSecondsForService=-3", "waitSecondsForService"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "namesrv.conf"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=named) as raised:
        load_namesrv_config(path)
    assert str(path) in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.conf"):
        load_namesrv_config(tmp_path / "nope.conf")


def test_to_properties_round_trips() -> None:
    config = NamesrvConfig(listen_port=1234, order_message_enable=True, config_black_list="a;b", kv_config_path="C:\\x")
    text = format_properties(config.to_properties())
    assert NamesrvConfig.from_properties(parse_properties(text)) == config


def test_updated_returns_a_copy() -> None:
    config = NamesrvConfig()
    changed = config.updated({"enableTopicList": "false"})
    assert not changed.enable_topic_list
    assert config.enable_topic_list
