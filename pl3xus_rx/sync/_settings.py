"""SyncSettings: how often the sync engine flushes."""

from __future__ import annotations

from pydantic import Field

from .._settings import CheckedSettings

__all__ = ["SyncSettings"]


class SyncSettings(CheckedSettings):
    """Settings of the sync engine.

    Attributes:
        max_update_rate_hz: At most this many flushes per second (a flush runs as soon as the
            loop is free after a change, but never sooner than ``1 / max_update_rate_hz``
            after the previous one). A component may lower it for itself.
        max_subscriptions_per_connection: Subscriptions one connection may hold.
        max_snapshot_items: Most snapshot entities one connection gets per flush; a bigger
            snapshot (or many at once) goes out in parts over several flushes, with live
            changes in between, so frames stay bounded.
        control_timeout: Seconds of inactivity after which control of an entity is released
            (authorized mutations and requests on it count as activity); ``None``: never.
        handler_timeout: Seconds an async handler (mutation, request, query, one-way
            message) may take; then it is cancelled and the command answered ``timeout``.
            ``None``: no limit. (A handler's task is also cancelled when its client leaves.)
        max_pending_commands: Async handlers one connection may have running at once; a
            command beyond them is answered ``forbidden`` naming the limit (a one-way message
            gets a ``message_rejected`` notice). ``None``: no limit.
    """

    max_update_rate_hz: float = Field(default=60.0, gt=0)
    max_subscriptions_per_connection: int = Field(default=100, ge=1)
    max_snapshot_items: int = Field(default=20_000, ge=1)
    control_timeout: float | None = Field(default=300.0, gt=0)
    handler_timeout: float | None = Field(default=30.0, gt=0)
    max_pending_commands: int | None = Field(default=100, ge=1)
