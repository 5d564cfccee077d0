"""What the sync engine keeps per connection, per subscription and per visibility class.
No I/O: plain records, shared by the engine and its rooms (views, held replies)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from ..security import ANONYMOUS, Identity
from ..world import EntityId, World
from ._registry import ComponentRegistration

__all__ = ["Client", "Subscription", "View"]


@dataclass(eq=False)
class Subscription:
    """One client subscription: its options and what is under way for it."""

    id: int
    client: Client
    reg: ComponentRegistration[Any]
    entity: EntityId | None
    max_rate_hz: float | None
    deadband: float | None
    needs_snapshot: bool = True
    next_due: float = 0.0
    held: dict[EntityId, int] = field(default_factory=dict)
    # entities this connection changed itself: sent past the deadband (read your writes)
    forced: set[EntityId] = field(default_factory=set)
    # a snapshot going out in parts: the entities still to send (from snapshot_at on), and
    # the same as a set; None when no snapshot is under way
    snapshot_rest: list[EntityId] | None = None
    snapshot_at: int = 0
    snapshot_pending: set[EntityId] = field(default_factory=set)
    last_sent: dict[EntityId, list[Any]] = field(default_factory=dict)
    full_next: bool = False  # field-delta types: send full values in the next type flush
    view: View | None = None  # a type restricted by visible_to: what this identity sees


@dataclass(eq=False)
class Client:
    """One connection as the engine sees it: its encoding, identity, sequence and
    subscriptions."""

    id: int
    binary: bool
    identity: Identity = ANONYMOUS
    seq: int = 0
    subs: dict[int, Subscription] = field(default_factory=dict)


@dataclass(eq=False)
class View:
    """What the identities of one visibility class see of one restricted type: the entities
    whose value every up-to-date subscription of the class holds. Changes are filtered
    through it once per flush, and its subscriptions share the groups built from that."""

    reg: ComponentRegistration[Any]
    key: Hashable
    identity: Identity  # (any of the class: the rule treats them alike)
    nothing: bool  # by role, and the identity has none of the roles
    visible: set[EntityId] = field(default_factory=set)
    subs: set[Subscription] = field(default_factory=set)
    fresh: set[EntityId] = field(default_factory=set)  # became visible in this flush

    def sees(self, world: World, entity: EntityId) -> bool:
        """Whether the class may see this component of ``entity`` now (live rules)."""
        vis = self.reg.visibility
        return not self.nothing and vis is not None and vis.sees(world, self.identity, entity)
