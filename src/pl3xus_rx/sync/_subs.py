"""What the sync engine keeps per connection, per subscription and per visibility class,
and the checks a SUBSCRIBE passes before it becomes a subscription. No I/O: plain records,
shared by the engine and its rooms (views, groups, held replies)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import SubscriptionError, UnknownComponent
from ..protocol import sent_name, shown
from ..security import ANONYMOUS, Identity
from ..world import EntityId, World
from ._registry import ComponentRegistration, ComponentRegistry
from ._window import Window

__all__ = ["Client", "Subscription", "SubscriptionInfo", "View", "check_subscribe"]

_OPTIONS = ("max_rate_hz", "deadband")


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One live subscription, as of the call (what DevTools' connections view lists).

    Attributes:
        id: The client's subscription id.
        component: The component type's wire name.
        entity: The one entity it watches, or ``None`` for the whole type.
        max_rate_hz: Its own rate cap, if it asked for one.
        deadband: Its deadband, if it asked for one.
        snapshot_under_way: A snapshot of it is still going out (in parts).
    """

    id: int
    component: str
    entity: int | None
    max_rate_hz: float | None
    deadband: float | None
    snapshot_under_way: bool


def finite_number(v: Any) -> bool:
    """An int or float (not a bool) that is finite as a float (a 400-digit int is not)."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def check_subscribe(
    registry: ComponentRegistry, sub_id: int, type_name: str, entity: Any, options: Any
) -> tuple[ComponentRegistration[Any], EntityId | None, float | None, float | None]:
    """What a SUBSCRIBE asks for, checked: ``(registration, entity or None, max_rate_hz,
    deadband)``.

    Raises:
        UnknownComponent: ``type_name`` is not a synced component (the known ones named).
        SubscriptionError: a bad entity or option (the field named).
    """
    reg = registry.by_name(type_name)
    if reg is None:
        known = ", ".join(registry.names()) or "none"
        raise UnknownComponent(
            f"cannot subscribe to {shown(type_name)}: not a synced component; "
            f"synced components: {known}",
            subscription=sub_id,
            type_name=sent_name(type_name),
        )
    if entity is not None and (not isinstance(entity, int) or isinstance(entity, bool)):
        raise SubscriptionError(
            "entity must be an integer or null",
            subscription=sub_id,
            type_name=type_name,
            field="entity",
        )
    if not isinstance(options, dict):
        raise SubscriptionError(
            "options must be a map", subscription=sub_id, type_name=type_name, field="options"
        )
    unknown = sorted(
        shown(k, 40) for k in itertools.islice((k for k in options if k not in _OPTIONS), 5)
    )
    if unknown:
        raise SubscriptionError(
            f"unknown subscription options: {', '.join(unknown[:5])}; known: {', '.join(_OPTIONS)}",
            subscription=sub_id,
            type_name=type_name,
            field=unknown[0],
        )
    rate, deadband = options.get("max_rate_hz"), options.get("deadband")
    for key, val in (("max_rate_hz", rate), ("deadband", deadband)):
        if val is not None and (
            not finite_number(val) or val < 0 or (key == "max_rate_hz" and val == 0)
        ):
            raise SubscriptionError(
                f"{key} must be a positive finite number, got {shown(val, 40)}",
                subscription=sub_id,
                type_name=type_name,
                field=key,
            )
    return (
        reg,
        EntityId(entity) if entity is not None else None,
        float(rate) if rate else None,
        float(deadband) if deadband else None,
    )


@dataclass(eq=False, slots=True)
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

    def info(self) -> SubscriptionInfo:
        """What DevTools' connections view shows of it, as of the call."""
        return SubscriptionInfo(
            id=self.id,
            component=self.reg.name,
            entity=None if self.entity is None else int(self.entity),
            max_rate_hz=self.max_rate_hz,
            deadband=self.deadband,
            snapshot_under_way=self.needs_snapshot or self.snapshot_rest is not None,
        )


@dataclass(eq=False, slots=True)
class Client:
    """One connection as the engine sees it: its encoding, identity, sequence and
    subscriptions."""

    id: int
    binary: bool
    identity: Identity = ANONYMOUS
    seq: int = 0
    subs: dict[int, Subscription] = field(default_factory=dict)
    window: Window | None = None  # protocol v2: frames in flight, how current its data is
    behind: bool = False  # past its acknowledgement window: sent nothing, merged


@dataclass(eq=False, slots=True)
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
