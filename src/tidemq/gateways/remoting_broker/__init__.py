"""The broker's RocketMQ remoting gateway (what 4.x clients, mqadmin and the dashboard talk to).

Design note. State: none of its own beyond the held-pull tasks owned by each connection; everything lives in
:class:`tidemq.broker.broker.Broker`. Acks: a send is answered once stored (SYNC_FLUSH with WAIT=true: once
fsynced). Gaps: delay levels, transactions, retry delays and SQL92 filters arrive with the consumption issue.
"""

from tidemq.gateways.remoting_broker.gateway import BrokerGateway

__all__ = ["BrokerGateway"]
