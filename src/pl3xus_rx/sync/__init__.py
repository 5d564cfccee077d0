"""The sync engine: component registry, subscriptions, batching, conflation (no I/O)."""

from ..exceptions import SubscriptionError, UnknownComponent

# Part of the wire vocabulary (defined in pl3xus_rx.protocol), kept here for the server's
# users: a component every server syncs, and a command's outcome.
from ..protocol import EntityControl, Status
from ._builders import (
    MessageBuilder,
    MessageRegistration,
    QueryBuilder,
    QueryRegistration,
    RequestBuilder,
    RequestRegistration,
)
from ._engine import SyncEngine, SyncStatistics
from ._policy import Authorized, Denied, MutationContext, default_entity_policy
from ._registry import (
    ComponentBuilder,
    ComponentRegistration,
    ComponentRegistry,
    EntityPolicy,
)
from ._settings import SyncSettings
from ._subs import SubscriptionInfo
from ._taps import FlushedChanges, FlushHook

__all__ = [
    "FlushedChanges",
    "FlushHook",
    "Authorized",
    "MessageBuilder",
    "MessageRegistration",
    "QueryBuilder",
    "QueryRegistration",
    "RequestBuilder",
    "RequestRegistration",
    "Status",
    "ComponentBuilder",
    "ComponentRegistration",
    "ComponentRegistry",
    "Denied",
    "EntityControl",
    "EntityPolicy",
    "MutationContext",
    "SubscriptionError",
    "SubscriptionInfo",
    "SyncEngine",
    "SyncSettings",
    "SyncStatistics",
    "UnknownComponent",
    "default_entity_policy",
]
