"""Helpers shared by the store tests."""

from __future__ import annotations

from tidemq.store.config import StoreConfig
from tidemq.store.message_store import MessageStore


def props(tags: str | None = None, keys: str | None = None, uniq: str | None = None, **user: str) -> str:
    """A properties string as clients send it."""
    pairs: dict[str, str] = {}
    if tags:
        pairs["TAGS"] = tags
    if keys:
        pairs["KEYS"] = keys
    if uniq:
        pairs["UNIQ_KEY"] = uniq
    pairs.update(user)
    return "".join(f"{k}\x01{v}\x02" for k, v in pairs.items())


def open_store(config: StoreConfig) -> MessageStore:
    return MessageStore(config).open()
