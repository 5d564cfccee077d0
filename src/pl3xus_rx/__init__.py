"""pl3xus_rx: server-authoritative reactive state sync over WebSockets.

The World, the sync engine, the command layer and the network layer, with ``SyncServer``
tying them together (the client side is ``client_sync``); see ``docs/getting-started.md``.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from .exceptions import (
    AuthenticationFailed,
    BindError,
    ChannelFull,
    CommandRejected,
    CommandTimeout,
    ConnectFailed,
    ConnectionClosed,
    ConnectionLost,
    ConnectionNotFound,
    DecodeError,
    DuplicateRegistration,
    EntityNotFound,
    Forbidden,
    FrameError,
    HandlerTimeout,
    InvalidValue,
    MessageValidationError,
    NetworkStateError,
    NotFound,
    NotRegistered,
    Pl3xusError,
    ProtocolError,
    RateLimited,
    RemoteError,
    SchemaMismatch,
    SequenceGap,
    ServerError,
    SettingsError,
    StateConflict,
    StateError,
    StateRestoreFailed,
    StateSchemaChanged,
    StateUnreadable,
    StateWriteFailed,
    SubscriptionError,
    UnknownComponent,
    UnknownMessageType,
    UnsupportedModel,
    ValueTooLarge,
    WrongFrameType,
)

if TYPE_CHECKING:
    from .net import (
        Connected,
        ConnectionId,
        ConnectionStatistics,
        Disconnected,
        Error,
        HealthCheck,
        Network,
        NetworkData,
        NetworkEvent,
        NetworkSettings,
        NetworkState,
        NetworkStatistics,
    )
    from .protocol import Query, Request
    from .security import ANONYMOUS, Identity, bearer_tokens, jwt_verifier
    from .server import SyncServer
    from .state import StateLoaded, StateSaved, StateSettings, StateStatistics
    from .sync import Authorized, Denied, EntityControl, MutationContext, SyncSettings
    from .world import ChangeKind, ComponentChange, EntityId, World

# The network names load on first use, so that importing the sans-I/O core
# (``pl3xus_rx.protocol``) never imports websockets or asyncio networking.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "Connected",
            "ConnectionId",
            "ConnectionStatistics",
            "Disconnected",
            "Error",
            "HealthCheck",
            "Network",
            "NetworkData",
            "NetworkEvent",
            "NetworkSettings",
            "NetworkState",
            "NetworkStatistics",
        ),
        "net",
    ),
    "SyncServer": "server",
    **dict.fromkeys(("StateLoaded", "StateSaved", "StateSettings", "StateStatistics"), "state"),
    "Query": "protocol",
    "Request": "protocol",
    "SyncSettings": "sync",
    "EntityControl": "sync",
    "Authorized": "sync",
    "Denied": "sync",
    "MutationContext": "sync",
    **dict.fromkeys(("ChangeKind", "ComponentChange", "EntityId", "World"), "world"),
    **dict.fromkeys(("ANONYMOUS", "Identity", "bearer_tokens", "jwt_verifier"), "security"),
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__version__ = "0.1.0"

__all__ = [
    "ANONYMOUS",
    "Identity",
    "bearer_tokens",
    "jwt_verifier",
    "AuthenticationFailed",
    "Authorized",
    "BindError",
    "ChangeKind",
    "CommandRejected",
    "CommandTimeout",
    "ConnectionLost",
    "Forbidden",
    "HandlerTimeout",
    "InvalidValue",
    "NotFound",
    "ServerError",
    "ComponentChange",
    "EntityControl",
    "EntityId",
    "SyncServer",
    "SyncSettings",
    "Query",
    "Request",
    "World",
    "ChannelFull",
    "ConnectFailed",
    "Connected",
    "ConnectionClosed",
    "ConnectionId",
    "ConnectionNotFound",
    "EntityNotFound",
    "ValueTooLarge",
    "SequenceGap",
    "SubscriptionError",
    "UnknownComponent",
    "ConnectionStatistics",
    "DecodeError",
    "Denied",
    "Disconnected",
    "DuplicateRegistration",
    "Error",
    "FrameError",
    "HealthCheck",
    "MessageValidationError",
    "MutationContext",
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
    "StateConflict",
    "StateError",
    "StateLoaded",
    "StateRestoreFailed",
    "StateSaved",
    "StateSchemaChanged",
    "StateSettings",
    "StateStatistics",
    "StateUnreadable",
    "StateWriteFailed",
    "UnknownMessageType",
    "UnsupportedModel",
    "WrongFrameType",
    "__version__",
]
