"""Broker: the composition root of one broker's state — store, topics, groups, offsets, clients, held pulls.

Protocol-neutral: gateways (remoting today, gRPC later) translate requests into calls on these parts.
Threading: everything here is used from the event loop thread, store calls included (an append is a few
microseconds of CPU plus one ``pwrite`` into the page cache); the store's own flusher and cleaner threads
reach the loop only through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tidemq.broker.clients import ConsumerManager, ProducerManager
from tidemq.broker.config import BrokerConfig
from tidemq.broker.durable_waits import DurableWaits
from tidemq.broker.long_polling import PullHoldService
from tidemq.broker.offsets import ConsumerOffsetManager
from tidemq.broker.schedule import ScheduleService
from tidemq.broker.stats import BrokerStats
from tidemq.broker.subscription_groups import SubscriptionGroupManager
from tidemq.broker.timer import TimerService
from tidemq.broker.topics import PERM_READ, PERM_WRITE, TopicConfigManager
from tidemq.broker.transactions import Checker, CheckRequest, TransactionService, TransactionSettings
from tidemq.store.message_store import MessageStore
from tidemq.store.tag_codes import SCHEDULE_TOPIC, TIMER_TOPIC

log = logging.getLogger(__name__)


class Broker:
    """Owns the broker's parts and their periodic jobs. ``await start()`` / ``await close()``."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        config_dir = config.store_path_root_dir / "config"
        self.store = MessageStore(config.store_config())
        self.topics = TopicConfigManager(
            config_dir, default_queue_nums=config.default_topic_queue_nums, broker_permission=config.broker_permission
        )
        self.subscription_groups = SubscriptionGroupManager(
            config_dir, auto_create=config.auto_create_subscription_group
        )
        self.offsets = ConsumerOffsetManager(config_dir)
        self.consumers = ConsumerManager(expiry_ms=config.channel_expired_timeout)
        self.producers = ProducerManager(expiry_ms=config.channel_expired_timeout)
        self.holds = PullHoldService()
        self.stats = BrokerStats()
        self.schedule: ScheduleService | None = None
        self.timer: TimerService | None = None
        self.transactions: TransactionService | None = None
        self.transaction_checker: Checker | None = None
        """Set by the gateway: sends CHECK_TRANSACTION_STATE to a producer of the group."""
        self.durable = DurableWaits(self.store)
        self.locks: dict[tuple[str, str, str, int], tuple[str, float]] = {}
        """(group, topic, broker name, queue id) -> (client id, last renewal, loop time): LOCK_BATCH_MQ."""
        self.registrar: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self.is_running = False

    def bind_port(self, listen_port: int) -> None:
        """Adopt the port the gateway actually bound (``listenPort=0``) before :meth:`start`.

        Records carry the broker's address (STOREHOST) and message ids derive from it, so the store must be
        created with the real port.
        """
        if self.is_running:
            raise RuntimeError("bind_port must be called before start")
        self.config = self.config.with_overrides(listen_port=listen_port)
        self.store = MessageStore(self.config.store_config())
        self.durable = DurableWaits(self.store)

    async def start(self) -> None:
        """Open the store (recovery runs here), load configs, create system topics, start periodic jobs."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.store.open)
        self.topics.load()
        self.subscription_groups.load()
        self.offsets.load()
        config = self.config
        self.topics.ensure_system_topics(
            cluster_name=config.broker_cluster_name,
            broker_name=config.broker_name,
            auto_create=config.auto_create_topic_enable,
            cluster_topic=config.cluster_topic_enable,
            broker_topic=config.broker_topic_enable,
        )
        self.durable.attach()
        self.schedule = ScheduleService(self.store, config.store_path_root_dir / "config")
        self.schedule.load()
        self.timer = TimerService(self.store, config.store_path_root_dir / "config")
        self.timer.load()
        self.store.arrival_listeners.append(self._on_arrival)
        self.schedule.start()
        self.timer.start()
        self.transactions = TransactionService(
            self.store,
            config.store_path_root_dir / "config",
            TransactionSettings(
                check_interval_s=config.transaction_check_interval / 1000,
                timeout_ms=config.transaction_time_out,
                check_max=config.transaction_check_max,
            ),
            self._check_transaction,
        )
        self.transactions.load()
        self.transactions.start()
        self._tasks.append(
            asyncio.create_task(self._every(config.flush_consumer_offset_interval / 1000, self._persist_offsets))
        )
        self._tasks.append(asyncio.create_task(self._every(10.0, self._scan_clients)))
        self.is_running = True

    def _on_arrival(self, topic: str, queue_id: int, max_offset: int) -> None:
        """The store's one arrival listener: held pulls, and the schedule and timer services for their own
        topics. One call per stored message rather than three: every single send pays for each."""
        self.holds.notify_arrival(topic, queue_id, max_offset)
        if topic == SCHEDULE_TOPIC and self.schedule is not None:
            self.schedule.on_arrival(topic, queue_id, max_offset)
        elif topic == TIMER_TOPIC and self.timer is not None:
            self.timer.on_arrival(topic, queue_id, max_offset)

    def _check_transaction(self, request: CheckRequest) -> bool:
        return self.transaction_checker is not None and self.transaction_checker(request)

    async def close(self) -> None:
        if not self.is_running:
            return  # never started (or failed to): write nothing into a directory we did not open
        self.is_running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.holds.wake_all()
        self.durable.release_all()
        if self.schedule is not None:
            await self.schedule.close()
        if self.transactions is not None:
            await self.transactions.close()
        if self.timer is not None:
            await self.timer.close()
        self.offsets.persist(force=True)
        self.subscription_groups.persist()
        self.topics.persist()
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    async def _every(self, interval_s: float, job: Any) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                job()
            except Exception:  # a failing periodic job is logged and retried next period
                log.exception("periodic job %s failed", getattr(job, "__name__", job))

    def _persist_offsets(self) -> None:
        self.offsets.persist()

    def _scan_clients(self) -> None:
        self.consumers.scan_expired()
        self.producers.scan_expired()

    def register_body(self) -> tuple[dict[str, Any], dict[str, int]]:
        """What REGISTER_BROKER carries: the topic table and its data version.

        A broker that is not readable and writable (``brokerPermission``) registers every topic with its
        permission masked by the broker's, as RocketMQ's registerBrokerAll does, so routes steer clients away.
        """
        table = self.topics.serialize_wrapper()["topicConfigTable"]
        broker_perm = self.config.broker_permission
        if (broker_perm & (PERM_READ | PERM_WRITE)) != PERM_READ | PERM_WRITE:
            table = {name: {**topic, "perm": topic["perm"] & broker_perm} for name, topic in table.items()}
        return table, self.topics.data_version.to_json()
