"""SyncSettings: how often the sync engine flushes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..exceptions import SettingsError

__all__ = ["SyncSettings"]


class SyncSettings(BaseModel):
    """Settings of the sync engine.

    Attributes:
        max_update_rate_hz: At most this many flushes per second (a flush runs as soon as the
            loop is free after a change, but never sooner than ``1 / max_update_rate_hz``
            after the previous one). A component may lower it for itself.
        max_subscriptions_per_connection: Subscriptions one connection may hold.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_update_rate_hz: float = Field(60.0, gt=0)
    max_subscriptions_per_connection: int = Field(1000, ge=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise SettingsError(f"invalid SyncSettings: {problems}") from exc
