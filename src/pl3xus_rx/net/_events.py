"""What a :class:`~pl3xus_rx.net.Network` reports: its events, the messages it received,
its life-cycle state and its counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, NewType, TypeVar

from pydantic import BaseModel

__all__ = [
    "Connected",
    "ConnectionId",
    "Disconnected",
    "Error",
    "NetworkData",
    "NetworkEvent",
    "NetworkState",
    "NetworkStatistics",
]

ConnectionId = NewType("ConnectionId", int)
"""Identifies one connection of a :class:`Network`; ids start at 1 and are never reused."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection was established (a client connected, or ``connect()`` succeeded)."""

    id: ConnectionId


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection ended.

    Attributes:
        id: The connection.
        reason: Why, in words (close code and reason when the peer sent them).
        code: The WebSocket close code, when there was one.
    """

    id: ConnectionId
    reason: str
    code: int | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong on a connection; the connection may well go on.

    Attributes:
        id: The connection, or ``None`` for errors not tied to one.
        error: The exception, from the :mod:`pl3xus_rx.exceptions` family.
    """

    id: ConnectionId | None
    error: Exception


NetworkEvent = Connected | Disconnected | Error


@dataclass(frozen=True, slots=True)
class NetworkData(Generic[M]):
    """A typed message received from a connection.

    Attributes:
        source: The connection it came from.
        message: The validated message.
    """

    source: ConnectionId
    message: M


class NetworkState(Enum):
    """The life cycle of a :class:`Network`."""

    IDLE = "idle"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class NetworkStatistics:
    """Counters of a :class:`Network`, as of the call.

    Attributes:
        connections: Live connections.
        accepted: Connections opened since start (both directions).
        refused: Handshakes refused (over ``max_connections``, shutting down, a foreign
            origin, protected mode, authentication, an admission check).
        auth_failures: Handshakes the authenticator refused (or failed on).
        frames_received: Frames read from peers.
        frames_sent: Frames written to peers.
        messages_received: Typed messages validated and delivered to subscribers.
        bad_frames: Incoming frames rejected as bad input (each answered with an error frame).
        rate_limited: Incoming frames dropped by the rate limiter.
        channel_dropped: Outbound frames dropped because a channel was full (``"drop"``).
        channel_full_closes: Connections closed because their channel was full (``"close"``).
        errors_received: Error frames received from peers.
        bytes_received: Payload bytes read from peers.
        bytes_sent: Payload bytes written (or queued) to peers.
        refreshes: Credentials refreshed in band (REFRESH frames accepted).
        expired: Connections closed because their credential expired unrefreshed.
        received_kinds: Frames decoded, by frame kind (``"message"``, ``"mutate"``...;
            ``"other"`` for anything that is not a known kind).
    """

    connections: int
    accepted: int
    refused: int
    auth_failures: int
    frames_received: int
    frames_sent: int
    messages_received: int
    bad_frames: int
    rate_limited: int
    channel_dropped: int
    channel_full_closes: int
    errors_received: int
    bytes_received: int = 0
    bytes_sent: int = 0
    refreshes: int = 0
    expired: int = 0
    received_kinds: Mapping[str, int] = field(default_factory=dict)
