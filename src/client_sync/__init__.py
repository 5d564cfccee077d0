"""client_sync: the client side of pl3xus_rx.

``SyncProvider`` connects to a ``SyncServer`` and exposes a typed :class:`Signal` per
registered component type (current value plus changes, like Leptos signals), built from a
``ClientTypeRegistry.builder().register(T).build()``. ``Store`` and ``Signal`` do no I/O.
"""

from typing import TYPE_CHECKING

from pl3xus_rx._lazy import lazy_getattr

from .registry import ClientTypeRegistry, ClientTypeRegistryBuilder
from .signal import Signal, WritableSignal, async_iter
from .store import ReplicaChange, ReplicaChangeKind, SequenceGap, Store

if TYPE_CHECKING:
    from .blocking import BlockingSyncProvider, connect
    from .player import RecordingPlayer, open_recording
    from .provider import MutationHandle, RequestHandle, SyncProvider
    from .recorder import ClientRecorder
    from .states import (
        Change,
        ConnectionState,
        ConnectionStatus,
        MutationState,
        MutationStatus,
        Notice,
        Notification,
        QueryState,
        QueryStatus,
        ReconnectPolicy,
        RequestState,
        RequestStatus,
    )

# The I/O shells load on first use, so that the replica, the session, the signals and the
# state types import without websockets (they are the sans-I/O core of the client).
_LAZY = {
    "BlockingSyncProvider": "blocking",
    "connect": "blocking",
    "Change": "states",
    "ConnectionState": "states",
    "ConnectionStatus": "states",
    "ReconnectPolicy": "states",
    "MutationHandle": "provider",
    "RequestHandle": "provider",
    "RequestState": "states",
    "RequestStatus": "states",
    "MutationState": "states",
    "MutationStatus": "states",
    "Notice": "states",
    "Notification": "states",
    "QueryState": "states",
    "QueryStatus": "states",
    "SyncProvider": "provider",
    "RecordingPlayer": "player",
    "open_recording": "player",
    "ClientRecorder": "recorder",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "BlockingSyncProvider",
    "Change",
    "ClientRecorder",
    "ClientTypeRegistry",
    "ClientTypeRegistryBuilder",
    "ConnectionState",
    "ConnectionStatus",
    "MutationHandle",
    "MutationState",
    "MutationStatus",
    "Notice",
    "Notification",
    "QueryState",
    "QueryStatus",
    "ReconnectPolicy",
    "RecordingPlayer",
    "ReplicaChange",
    "RequestHandle",
    "RequestState",
    "RequestStatus",
    "ReplicaChangeKind",
    "SequenceGap",
    "Signal",
    "Store",
    "SyncProvider",
    "WritableSignal",
    "async_iter",
    "connect",
    "open_recording",
]
