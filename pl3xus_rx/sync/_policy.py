"""Authorization decisions for client mutations (the policies themselves; no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from ..protocol import EntityControl
from ..security import ANONYMOUS, Identity
from ..world import EntityId, World

__all__ = [
    "Authorized",
    "Denied",
    "MutationContext",
    "Visibility",
    "VisibilityRule",
    "default_entity_policy",
    "identity_key",
]


@dataclass(frozen=True, slots=True)
class Authorized:
    """The mutation may proceed."""


@dataclass(frozen=True, slots=True)
class Denied:
    """The mutation is refused; ``reason`` goes back to the client."""

    reason: str


@dataclass(frozen=True, slots=True)
class MutationContext:
    """Who asks: the client's connection id and its identity (from the handshake's
    authenticator; :data:`~pl3xus_rx.ANONYMOUS` without one)."""

    connection: int
    identity: Identity = ANONYMOUS


def default_entity_policy(world: World, ctx: MutationContext, entity: EntityId) -> Any:
    """Authorized if the requester controls ``entity`` or one of its ancestors: its own
    connection took it, or another connection of the same authenticated identity did."""
    name = None if ctx.identity.anonymous else ctx.identity.name
    for candidate in (entity, *world.ancestors(entity)):
        if world.contains(candidate):
            control = world.get(candidate, EntityControl)
            if control is not None and (
                control.holder == ctx.connection or (name is not None and control.by == name)
            ):
                return Authorized()
    return Denied(f"connection {ctx.connection} does not control entity {entity}")


VisibilityRule = Callable[[World, Identity, EntityId], bool]
"""``(world, identity, entity) -> bool``: may ``identity`` see this component of ``entity``?"""


def identity_key(identity: Identity) -> Hashable:
    """What makes two identities see the same under a visibility rule (by default: name,
    roles, anonymity and claims). Connections with equal keys share one view and its
    encoded updates."""
    claims = tuple(sorted((str(k), repr(v)) for k, v in identity.claims.items()))
    return (identity.name, identity.roles, identity.anonymous, claims)


@dataclass(frozen=True, slots=True)
class Visibility:
    """Who may see a synced component (``ComponentBuilder.visible_to``).

    Either by role (``roles``: an identity with any of them sees every entity's value, others
    none), or by a ``rule`` over identity and entity, evaluated when the component changes,
    when a view is created, and when the server is told visibility changed
    (``SyncServer.visibility_changed``). ``key`` groups identities that see the same.
    """

    roles: frozenset[str] | None = None
    rule: VisibilityRule | None = None
    key: Callable[[Identity], Hashable] = identity_key

    def sees_all(self, identity: Identity) -> bool:
        """Whether ``identity`` sees every entity (no rule to evaluate)."""
        return self.rule is None and self.roles is not None and identity.has_role(*self.roles)

    def sees(self, world: World, identity: Identity, entity: EntityId) -> bool:
        """Whether ``identity`` may see this component of ``entity`` now."""
        if self.rule is not None:
            return bool(self.rule(world, identity, entity))
        return self.roles is not None and identity.has_role(*self.roles)
