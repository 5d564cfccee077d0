"""Read access at the grain of an entity: what ``EntityControl``, the command gate and the
tree query share. No I/O.

An identity sees an entity when it sees at least one of the entity's synced components
other than ``EntityControl`` (whose visibility follows the entity's: a released
``EntityControl(holder=None)`` never makes an entity visible by itself). The rules are the
live ones, evaluated at the call.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Protocol

from pydantic import BaseModel

from ..protocol import EntityControl
from ..security import Identity
from ..world import EntityId, World
from ._policy import Visibility

__all__ = ["Registrations", "control_visibility", "sees_entity"]


class Registrations(Protocol):
    """What read access needs of the component registry (its types and their
    visibility)."""

    def find(self, model: type[BaseModel]) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


def sees_entity(
    world: World, registry: Registrations, identity: Identity, entity: EntityId
) -> bool:
    """Whether ``identity`` may see ``entity`` now (``False`` for a missing entity)."""
    for model in tuple(world.component_types(entity)):  # (a rule may change the entity)
        if model is EntityControl:
            continue
        reg = registry.find(model)
        if reg is None:
            continue  # never synced: says nothing about the entity to a client
        vis = reg.visibility
        if vis is None or vis.sees(world, identity, entity):
            return True
    return False


def control_visibility(registry: Registrations) -> Visibility:
    """``EntityControl``'s visibility: an entity's control is seen by the identities that
    see the entity. Identities are alike when every restricted type treats them alike."""

    def rule(world: World, identity: Identity, entity: EntityId) -> bool:
        return sees_entity(world, registry, identity, entity)

    def key(identity: Identity) -> Hashable:
        parts: list[Hashable] = []
        for reg in registry:
            vis = reg.visibility
            if vis is None or reg.model is EntityControl:
                continue
            if vis.rule is None:
                parts.append(vis.sees_all(identity))
            else:
                parts.append(vis.key(identity))
        return tuple(parts)

    return Visibility(rule=rule, key=key, label="visibility of EntityControl")
