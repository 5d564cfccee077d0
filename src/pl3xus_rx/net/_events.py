"""Network events and received-message wrappers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NewType, TypeVar

from pydantic import BaseModel

__all__ = [
    "Connected",
    "ConnectionId",
    "Disconnected",
    "Error",
    "NetworkData",
    "NetworkEvent",
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
