"""BrokerGateway: the request-code table, the listening sockets (listenPort and the VIP port listenPort-2),
and the broker-to-client notifications (requests forwarded to consumers: ``broker_to_client``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from tidemq.broker.broker import Broker
from tidemq.gateways.remoting_broker import admin, broker_to_client, consumer, pull, query, send, transaction
from tidemq.gateways.remoting_broker.common import BadRequest
from tidemq.protocol.remoting import RemotingCommand, RequestCode, ResponseCode
from tidemq.transport import RemotingChannel, RemotingServer, next_opaque
from tidemq.transport.remoting import HandlerResult

log = logging.getLogger(__name__)

Handler = Callable[["BrokerGateway", RemotingChannel, RemotingCommand], HandlerResult]

HEADER_ROOM: Final = 64 * 1024
"""Frame limit = maxMessageSize plus room for headers and batch framing."""

BASE_HANDLERS: Final[dict[int, Handler]] = {
    RequestCode.SEND_MESSAGE: send.handle_send,
    RequestCode.SEND_MESSAGE_V2: send.handle_send,
    RequestCode.SEND_BATCH_MESSAGE: send.handle_send,
    RequestCode.PULL_MESSAGE: pull.handle_pull,
    RequestCode.LITE_PULL_MESSAGE: pull.handle_pull,
    RequestCode.HEART_BEAT: consumer.handle_heartbeat,
    RequestCode.UNREGISTER_CLIENT: consumer.handle_unregister_client,
    RequestCode.GET_CONSUMER_LIST_BY_GROUP: consumer.handle_get_consumer_list,
    RequestCode.QUERY_CONSUMER_OFFSET: consumer.handle_query_consumer_offset,
    RequestCode.UPDATE_CONSUMER_OFFSET: consumer.handle_update_consumer_offset,
    RequestCode.LOCK_BATCH_MQ: consumer.handle_lock_batch,
    RequestCode.UNLOCK_BATCH_MQ: consumer.handle_unlock_batch,
    RequestCode.CONSUMER_SEND_MSG_BACK: consumer.handle_send_back,
    RequestCode.CHECK_CLIENT_CONFIG: consumer.handle_check_client_config,
    RequestCode.END_TRANSACTION: transaction.handle_end_transaction,
    RequestCode.GET_MAX_OFFSET: query.handle_get_max_offset,
    RequestCode.GET_MIN_OFFSET: query.handle_get_min_offset,
    RequestCode.SEARCH_OFFSET_BY_TIMESTAMP: query.handle_search_offset,
    RequestCode.GET_EARLIEST_MSG_STORETIME: query.handle_earliest_time,
    RequestCode.VIEW_MESSAGE_BY_ID: query.handle_view_message,
    RequestCode.QUERY_MESSAGE: query.handle_query_message,
}


class BrokerGateway:
    """Serves one Broker over the remoting protocol. ``async with BrokerGateway(broker, host=..., port=0)``."""

    def __init__(
        self, broker: Broker, *, host: str = "0.0.0.0", port: int | None = None, with_vip_channel: bool = True
    ) -> None:
        self.broker = broker
        self.handlers: dict[int, Handler] = {**BASE_HANDLERS, **admin.HANDLERS, **broker_to_client.HANDLERS}
        self.client_call_timeout_s = broker_to_client.CALL_CLIENT_TIMEOUT_S
        """How long a request forwarded to a consumer (307, 309) may take before the caller gets a timeout."""
        listen_port = broker.config.listen_port if port is None else port
        max_frame = broker.config.max_message_size + HEADER_ROOM
        self.server = RemotingServer(
            self.handle,
            host=host,
            port=listen_port,
            max_frame=max_frame,
            on_close=self._closed,
            batch_handler=self.handle_read,
        )
        self.vip_server: RemotingServer | None = None
        if with_vip_channel and listen_port > 2:
            self.vip_server = RemotingServer(
                self.handle,
                host=host,
                port=listen_port - 2,
                max_frame=max_frame,
                on_close=self._closed,
                batch_handler=self.handle_read,
            )
        self.store_host = (broker.config.broker_ip1, broker.config.listen_port)
        self._hosts: dict[str, tuple[str, int]] = {}
        broker.consumers.on_ids_changed = self._notify_ids_changed
        broker.transaction_checker = lambda check: transaction.send_transaction_check(self, check)

    async def start(self, *, serving: bool = True) -> None:
        """Bind the ports; with ``serving=False`` connections are refused until :meth:`start_serving`."""
        await self.server.start(serving=serving)
        if self.vip_server is not None:
            await self.vip_server.start(serving=serving)
        self.store_host = (self.broker.config.broker_ip1, self.server.port)

    async def start_serving(self) -> None:
        await self.server.start_serving()
        if self.vip_server is not None:
            await self.vip_server.start_serving()

    async def close(self) -> None:
        if self.vip_server is not None:
            await self.vip_server.close()
        await self.server.close()

    async def __aenter__(self) -> BrokerGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self.server.port

    def handle(self, channel: RemotingChannel, request: RemotingCommand) -> HandlerResult:
        handler = self.handlers.get(request.code)
        if handler is None:
            return request.make_response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {request.code} not supported"
            )
        try:
            return handler(self, channel, request)
        except BadRequest as exc:
            return request.make_response(exc.code, str(exc))

    def handle_read(self, channel: RemotingChannel, requests: list[RemotingCommand]) -> list[HandlerResult | Exception]:
        """The requests of one read, in order: each run of two or more sends (ones the table still routes to
        ``send.handle_send``) goes through :func:`send.handle_sends` in passes, anything else through
        :meth:`handle`. A send's append thus still happens after every request before it and before every
        request after it, as one request at a time would have it."""
        results: list[HandlerResult | Exception] = []
        handlers = self.handlers
        run: list[RemotingCommand] = []
        for request in requests:
            if handlers.get(request.code) is send.handle_send:
                run.append(request)
            else:
                self._handle_run(channel, run, results)
                results.append(self._handle_one(channel, request))
        self._handle_run(channel, run, results)
        return results

    def _handle_one(self, channel: RemotingChannel, request: RemotingCommand) -> HandlerResult | Exception:
        try:
            return self.handle(channel, request)
        except Exception as exc:  # noqa: BLE001  # passed on: the transport logs and answers it
            return exc

    def _handle_run(
        self, channel: RemotingChannel, run: list[RemotingCommand], results: list[HandlerResult | Exception]
    ) -> None:
        """Add the results of a run of sends (none, one, or several in passes) and empty the run."""
        if len(run) == 1:
            results.append(self._handle_one(channel, run[0]))
        elif run:
            results.extend(send.handle_sends(self, channel, run))
        run.clear()

    def host_of(self, channel: RemotingChannel) -> tuple[str, int]:
        """(ip, port) of a peer, for BORNHOST; parsed once per connection."""
        address = self._hosts.get(channel.remote_address)
        if address is None:
            host, _, port = channel.remote_address.rpartition(":")
            address = (host.strip("[]"), int(port) if port.isdigit() else 0)
            if len(self._hosts) > 100_000:
                self._hosts.clear()
            self._hosts[channel.remote_address] = address
        return address

    def _closed(self, channel: RemotingChannel) -> None:
        self._hosts.pop(channel.remote_address, None)
        self.broker.consumers.channel_closed(channel)
        self.broker.producers.channel_closed(channel)

    def _notify_ids_changed(self, group: str, channels: list[object]) -> None:
        for channel in channels:
            if isinstance(channel, RemotingChannel) and not channel.is_closed:
                channel.send(
                    RemotingCommand.request(
                        RequestCode.NOTIFY_CONSUMER_IDS_CHANGED,
                        {"consumerGroup": group},
                        opaque=next_opaque(),
                        is_oneway=True,
                    )
                )
