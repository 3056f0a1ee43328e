"""The ``tidemq.testing`` pytest plugin: an in-process name server and broker on the test's own event loop.

This module loads the plugin itself (``pytest_plugins`` below, the module form; ``-p tidemq.testing`` is the
command-line form, checked with pytester).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from tidemq.client import ConsumeFromWhere, ConsumerTimings, Producer, PushConsumer, ReceivedMessage

if TYPE_CHECKING:  # imported by pytest_plugins below: importing it first would stop its assertion rewriting
    from tidemq.testing import TidemqServer

pytest_plugins = ["pytester", "tidemq.testing"]
pytestmark = pytest.mark.timeout(60)

FAST = ConsumerTimings(pull_suspend_s=1.0)


async def wait_for(probe: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(0.02)


async def test_produce_and_consume_in_process(
    tidemq_server: TidemqServer,
    tidemq_producer: Producer,
    tidemq_consumer_factory: Callable[..., PushConsumer],
) -> None:
    received: asyncio.Queue[ReceivedMessage] = asyncio.Queue()
    consumer = tidemq_consumer_factory("CG_plugin", consume_from_where=ConsumeFromWhere.FIRST_OFFSET, timings=FAST)
    consumer.subscribe("PluginTopic", "*", received.put)
    result = await tidemq_producer.send("PluginTopic", b"hello", tags="T")
    await consumer.start()
    message = await asyncio.wait_for(received.get(), 10)
    assert (message.body, message.msg_id, message.tags) == (b"hello", result.msg_id, "T")
    assert tidemq_server.broker.broker.store.get_max_offset("PluginTopic", result.queue_id) == 1
    assert tidemq_server.namesrv_addr.startswith("127.0.0.1:")


@pytest.mark.parametrize("start", [ConsumeFromWhere.LAST_OFFSET, ConsumeFromWhere.TIMESTAMP])
async def test_a_new_group_starts_at_consume_from_where(
    tidemq_server: TidemqServer,
    tidemq_producer: Producer,
    tidemq_consumer_factory: Callable[..., PushConsumer],
    start: ConsumeFromWhere,
) -> None:
    """A group that never committed starts where ``consume_from_where`` says, not at 0: the consumer asks with
    ``setZeroIfNotFound=false`` (RocketMQ 5), so the broker answers QUERY_NOT_FOUND instead of 0."""
    old = {(await tidemq_producer.send("FromWhere", f"old{i}")).msg_id for i in range(6)}
    await asyncio.sleep(0.01)  # a gap in store time between old and new (store timestamps are in ms)
    received: list[ReceivedMessage] = []
    consumer = tidemq_consumer_factory(
        "CG_from_where", consume_from_where=start, consume_timestamp_ms=time.time_ns() // 1_000_000, timings=FAST
    )
    consumer.subscribe("FromWhere", "*", received.append)
    if start is ConsumeFromWhere.TIMESTAMP:  # messages stored after the timestamp count, even before start
        await asyncio.sleep(0.01)
        early = {(await tidemq_producer.send("FromWhere", "early")).msg_id}
    else:
        early = set()
    await consumer.start()
    await wait_for(lambda: len(consumer.assigned_queues()) == 5, "4 queues and the retry queue held")
    new = {(await tidemq_producer.send("FromWhere", f"new{i}")).msg_id for i in range(4)}
    await wait_for(lambda: {m.msg_id for m in received} >= new | early, "the new messages")
    assert {m.msg_id for m in received} == new | early
    assert not old & {m.msg_id for m in received}


def test_the_plugin_loads_with_dash_p(pytester: pytest.Pytester) -> None:
    """What a user writes: a test module with no conftest, run with ``-p tidemq.testing`` (asyncio strict mode)."""
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_round_trip(tidemq_producer, tidemq_consumer_factory):
            got = asyncio.Queue()
            consumer = tidemq_consumer_factory("CG_user", consume_from_where="CONSUME_FROM_FIRST_OFFSET")
            consumer.subscribe("UserTopic", "*", got.put)
            await tidemq_producer.send("UserTopic", b"hi")
            await consumer.start()
            assert (await asyncio.wait_for(got.get(), 10)).body == b"hi"
        """
    )
    result = pytester.runpytest_subprocess("-p", "tidemq.testing", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
