"""The network layer: typed messages over WebSockets (the pl3xus_websockets counterpart).

This package does the I/O; framing and validation live in :mod:`pl3xus_rx.protocol`.
"""

from ._connection import ConnectionStatistics
from ._events import Connected, ConnectionId, Disconnected, Error, NetworkData, NetworkEvent
from ._network import Network, NetworkState, NetworkStatistics
from ._settings import NetworkSettings
from ._transport import (
    HandlerFactory,
    Link,
    LinkHandler,
    Listener,
    ListenerHooks,
    Refusal,
    Transport,
)
from ._websocket import HEALTH_PATH, WebSocketTransport

__all__ = [
    "HEALTH_PATH",
    "Connected",
    "ConnectionId",
    "ConnectionStatistics",
    "Disconnected",
    "Error",
    "HandlerFactory",
    "Link",
    "LinkHandler",
    "Listener",
    "ListenerHooks",
    "Network",
    "NetworkData",
    "NetworkEvent",
    "NetworkSettings",
    "NetworkState",
    "NetworkStatistics",
    "Refusal",
    "Transport",
    "WebSocketTransport",
]
