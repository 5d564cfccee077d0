"""The sync engine: component registry, subscriptions, batching, conflation (no I/O)."""

from ._commands import (
    CommandKind,
    Commands,
    MessageBuilder,
    MessageRegistration,
    QueryBuilder,
    QueryRegistration,
    RequestBuilder,
    RequestRegistration,
    Status,
)
from ._engine import SubscriptionError, SyncEngine, SyncStatistics, UnknownComponent
from ._policy import Authorized, Denied, MutationContext, default_entity_policy
from ._registry import (
    ComponentBuilder,
    ComponentRegistration,
    ComponentRegistry,
    EntityControl,
    EntityPolicy,
)
from ._settings import SyncSettings
from ._wire import FLAG_COMPLETE, FLAG_CONTINUED, FLAG_SNAPSHOT, SyncKind

__all__ = [
    "FLAG_COMPLETE",
    "FLAG_CONTINUED",
    "FLAG_SNAPSHOT",
    "Authorized",
    "CommandKind",
    "Commands",
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
    "SyncEngine",
    "SyncKind",
    "SyncSettings",
    "SyncStatistics",
    "UnknownComponent",
    "default_entity_policy",
]
