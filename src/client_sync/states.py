"""The values a :class:`~client_sync.SyncProvider` shows a UI: connection state, changes,
notices, mutation and query states, and the reconnect policy. Plain data, no I/O."""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from .store import ReplicaChangeKind

__all__ = [
    "Change",
    "ConnectionState",
    "ConnectionStatus",
    "MutationState",
    "MutationStatus",
    "Notice",
    "Notification",
    "RequestState",
    "RequestStatus",
    "QueryState",
    "QueryStatus",
    "ReconnectPolicy",
]

T = TypeVar("T", bound=BaseModel)


class ConnectionState(enum.Enum):
    """Where the provider's link to the server is."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """The value of :attr:`SyncProvider.connection`.

    Attributes:
        state: The state.
        attempt: While reconnecting, the attempt number (1, 2, ...).
        delay: While reconnecting, the wait before this attempt, in seconds.
        reason: Why the link went down (or why the last attempt failed).
    """

    state: ConnectionState
    attempt: int = 0
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with jitter.

    The n-th attempt waits ``min(max_delay, initial_delay * multiplier ** (n - 1))``, scaled
    by a random factor in ``[1 - jitter, 1]`` so that many clients do not reconnect in step.
    """

    initial_delay: float = 0.1
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before attempt number ``attempt`` (from 1)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """A typed change seen by the client.

    Attributes:
        kind: inserted, updated, removed (component) or despawned (entity).
        entity: The entity id.
        value: The new value, or the last one for removed / despawned.
    """

    kind: ReplicaChangeKind
    entity: int
    value: T | None


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification from the server's code, for people (a toast).

    Attributes:
        level: ``"info"``, ``"success"``, ``"warning"`` or ``"error"``.
        text: What to show.
        context: Whatever the server attached (an entity, a job id...).
    """

    level: str
    text: str
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the server tells this client unasked.

    Attributes:
        kind: ``"control_requested"`` (someone asked for control you hold; ``detail["by"]``
            is the asker's connection id), ``"control_released"`` (you lost it;
            ``detail["reason"]``: ``inactivity``, ``not_visible``, or ``taken_over`` with
            ``detail["by"]`` the taker's identity name) or ``"message_rejected"`` (a
            ``send`` the server refused; ``detail``: type, status, reason, errors).
        entity: The entity concerned.
        detail: The rest of the notice.
    """

    kind: str
    entity: int
    detail: Mapping[str, Any]


class RequestStatus(enum.Enum):
    """Where a :class:`~client_sync.RequestHandle` is."""

    IDLE = "idle"
    PENDING = "pending"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RequestState(Generic[T]):
    """The value of :attr:`RequestHandle.state`: the status, the last answer (kept while a
    new call is pending or failed), and the error of the last call if it failed."""

    status: RequestStatus
    value: T | None = None
    error: Exception | None = None


class MutationStatus(enum.Enum):
    """Where a :class:`MutationHandle` is."""

    IDLE = "idle"
    LOADING = "loading"
    SUCCESS = "success"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class MutationState:
    """The value of :attr:`MutationHandle.state`."""

    status: MutationStatus
    error: Exception | None = None


class QueryStatus(enum.Enum):
    """Where a query's answer is."""

    LOADING = "loading"
    READY = "ready"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class QueryState(Generic[T]):
    """The value of a :meth:`SyncProvider.query` signal. ``value`` keeps the last answer
    while a refetch is loading."""

    status: QueryStatus
    value: T | None = None
    error: Exception | None = None
