"""client_sync: the client side of pl3xus_rx.

``SyncProvider`` connects to a ``SyncServer`` and exposes a typed :class:`Signal` per
registered component type (current value plus changes, like Leptos signals), built from a
``ClientTypeRegistry.builder().register(T).build()``. ``Store`` and ``Signal`` do no I/O.
"""

from .blocking import BlockingSyncProvider, connect
from .provider import Change, ConnectionState, ConnectionStatus, ReconnectPolicy, SyncProvider
from .registry import ClientTypeRegistry, ClientTypeRegistryBuilder
from .signal import Signal, WritableSignal, async_iter
from .store import ReplicaChange, ReplicaChangeKind, SequenceGap, Store

__all__ = [
    "BlockingSyncProvider",
    "Change",
    "ClientTypeRegistry",
    "ClientTypeRegistryBuilder",
    "ConnectionState",
    "ConnectionStatus",
    "ReconnectPolicy",
    "ReplicaChange",
    "ReplicaChangeKind",
    "SequenceGap",
    "Signal",
    "Store",
    "SyncProvider",
    "WritableSignal",
    "async_iter",
    "connect",
]
