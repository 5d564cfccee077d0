"""pl3xus_rx: server-authoritative reactive state sync over WebSockets.

The network layer (typed messages between a server and many clients) is here today; see
``docs/websocket-patterns.md``.
"""

from .exceptions import (
    BindError,
    ChannelFull,
    ConnectFailed,
    ConnectionClosed,
    ConnectionNotFound,
    DecodeError,
    DuplicateRegistration,
    FrameError,
    MessageValidationError,
    NetworkStateError,
    NotRegistered,
    Pl3xusError,
    ProtocolError,
    RateLimited,
    RemoteError,
    SchemaMismatch,
    SettingsError,
    UnknownMessageType,
    WrongFrameType,
)
from .net import (
    Connected,
    ConnectionId,
    ConnectionStatistics,
    Disconnected,
    Error,
    Network,
    NetworkData,
    NetworkEvent,
    NetworkSettings,
    NetworkState,
    NetworkStatistics,
)

__version__ = "0.1.0"

__all__ = [
    "BindError",
    "ChannelFull",
    "ConnectFailed",
    "Connected",
    "ConnectionClosed",
    "ConnectionId",
    "ConnectionNotFound",
    "ConnectionStatistics",
    "DecodeError",
    "Disconnected",
    "DuplicateRegistration",
    "Error",
    "FrameError",
    "MessageValidationError",
    "Network",
    "NetworkData",
    "NetworkEvent",
    "NetworkSettings",
    "NetworkState",
    "NetworkStatistics",
    "NetworkStateError",
    "NotRegistered",
    "Pl3xusError",
    "ProtocolError",
    "RateLimited",
    "RemoteError",
    "SchemaMismatch",
    "SettingsError",
    "UnknownMessageType",
    "WrongFrameType",
    "__version__",
]
