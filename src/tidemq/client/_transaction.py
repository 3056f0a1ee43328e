"""Transactional sends, the parts that are not the producer: the local-transaction states, the callback types, and
the END_TRANSACTION codes (spec 3.15; Java's ``LocalTransactionState``, ``TransactionListener``).

Pure code: the producer (``producer.py``) sends the requests.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeAlias

from tidemq.client._message import ReceivedMessage
from tidemq.store import record as rec

if TYPE_CHECKING:
    from tidemq.client.producer import SendResult


class TransactionState(enum.Enum):
    """The outcome of a local transaction (Java's ``LocalTransactionState``)."""

    COMMIT = "COMMIT_MESSAGE"
    """Deliver the message."""
    ROLLBACK = "ROLLBACK_MESSAGE"
    """Discard it."""
    UNKNOWN = "UNKNOW"
    """Not decided yet: the broker asks the group's producers again later (its check-back)."""


END_TRANSACTION_TYPE: Final[dict[TransactionState, int]] = {
    TransactionState.COMMIT: rec.SYSFLAG_TRANSACTION_COMMIT,
    TransactionState.ROLLBACK: rec.SYSFLAG_TRANSACTION_ROLLBACK,
    TransactionState.UNKNOWN: 0,  # TRANSACTION_NOT_TYPE
}

StateOrAwaitable: TypeAlias = TransactionState | Awaitable[TransactionState]
LocalTransaction: TypeAlias = Callable[["SendResult"], StateOrAwaitable]
"""Runs the local transaction once the half message is stored; gets the half's result (``msg_id`` is the
transaction id). A plain function runs on the event loop (keep it short); a coroutine function is awaited."""
TransactionChecker: TypeAlias = Callable[[ReceivedMessage], StateOrAwaitable]
"""Answers the broker's check-back for a half message (shown in its real topic and queue) whose transaction
ended UNKNOWN, or whose END_TRANSACTION was lost. Called like :data:`LocalTransaction`."""


async def resolve_state(result: StateOrAwaitable) -> TransactionState:
    """A callback's answer, awaited if it is awaitable, checked to be a :class:`TransactionState`."""
    state = await result if inspect.isawaitable(result) else result
    if not isinstance(state, TransactionState):
        raise TypeError(f"a transaction callback returned {state!r}, not a TransactionState")
    return state


__all__ = ["END_TRANSACTION_TYPE", "LocalTransaction", "TransactionChecker", "TransactionState", "resolve_state"]
