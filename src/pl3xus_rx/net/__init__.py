"""The network layer: typed messages over WebSockets (the pl3xus_websockets counterpart).

This package does the I/O; framing and validation live in :mod:`pl3xus_rx.protocol`.
"""

from .._http import HEALTH_PATH, AdmissionCheck, HttpRequest, HttpResponse, RouteHandler
from ._connection import ConnectionStatistics
from ._events import (
    Connected,
    ConnectionId,
    Disconnected,
    Error,
    NetworkData,
    NetworkEvent,
    NetworkState,
    NetworkStatistics,
)
from ._health import HealthCheck
from ._network import Network
from ._settings import NetworkSettings
from ._transport import (
    HandlerFactory,
    Link,
    LinkHandler,
    Listener,
    ListenerHooks,
    Transport,
)
from ._websocket import WebSocketTransport

__all__ = [
    "AdmissionCheck",
    "HttpRequest",
    "HttpResponse",
    "RouteHandler",
    "HEALTH_PATH",
    "Connected",
    "ConnectionId",
    "ConnectionStatistics",
    "Disconnected",
    "Error",
    "HandlerFactory",
    "HealthCheck",
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
    "Transport",
    "WebSocketTransport",
]
