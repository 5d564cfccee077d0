"""Authorization decisions for client mutations (the policies themselves; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocol import EntityControl
from ..security import ANONYMOUS, Identity
from ..world import EntityId, World

__all__ = ["Authorized", "Denied", "MutationContext", "default_entity_policy"]


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
    """Authorized if the requester controls ``entity`` or one of its ancestors."""
    for candidate in (entity, *world.ancestors(entity)):
        if world.contains(candidate):
            control = world.get(candidate, EntityControl)
            if control is not None and control.holder == ctx.connection:
                return Authorized()
    return Denied(f"connection {ctx.connection} does not control entity {entity}")
