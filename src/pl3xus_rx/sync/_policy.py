"""Authorization decisions for client mutations (the policies themselves; no I/O)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import EntityControl
from ..security import ANONYMOUS, Identity
from ..world import EntityId, World

__all__ = [
    "FAULT_LOG_INTERVAL",
    "Authorized",
    "FaultLog",
    "Denied",
    "MutationContext",
    "Visibility",
    "VisibilityRule",
    "default_entity_policy",
    "identity_key",
]


logger = logging.getLogger(__name__)

FAULT_LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same failing rule or policy."""


class FaultLog:
    """Rules and policies that raised where an answer was expected: counted, and logged at
    most once per :data:`FAULT_LOG_INTERVAL` seconds per rule and type (a rule that fails on
    every change must not flood the log). The caller answers as if it had said no.

    Attributes:
        count: Failures so far, by what failed (``"visible_to of Secret"``, ``"the control
            policy"``...).
    """

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def failed(self, what: str, exc: BaseException) -> None:
        """``what`` raised ``exc``: count it, and log it unless it was logged lately."""
        self.count[what] = self.count.get(what, 0) + 1
        now = time.monotonic()  # (for the log's pace only, never for a decision)
        last = self._logged.get(what)
        if last is None or now - last >= FAULT_LOG_INTERVAL:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged[what] = now
            logger.error(
                "%s raised %s; treated as a refusal (logged once a minute; %d so far)",
                what,
                type(exc).__name__,
                self.count[what],
                exc_info=exc,
            )

    @property
    def total(self) -> int:
        """Failures of every rule and policy."""
        return sum(self.count.values())


FAULTS = FaultLog()
"""The process's log of failing visibility rules (a rule is shared by every server that
registers its type)."""


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
    label: str = field(default="a visibility rule", compare=False)

    def sees_all(self, identity: Identity) -> bool:
        """Whether ``identity`` sees every entity (no rule to evaluate)."""
        return self.rule is None and self.roles is not None and identity.has_role(*self.roles)

    def sees(self, world: World, identity: Identity, entity: EntityId) -> bool:
        """Whether ``identity`` may see this component of ``entity`` now. A rule that raises
        says no (counted and logged in :data:`FAULTS`)."""
        if self.rule is not None:
            try:
                return bool(self.rule(world, identity, entity))
            except Exception as exc:
                FAULTS.failed(self.label, exc)
                return False
        return self.roles is not None and identity.has_role(*self.roles)
