"""The one access decision for every client command that targets an entity. No I/O.

Every command kind that names an entity — MUTATE, CONTROL, a targeted REQUEST or SEND, the
parent of a SPAWN, DESPAWN — passes :class:`Gate` for it, in one fixed order:

1. **identity**: who asks is the connection's identity from the handshake (the shell puts
   it in the :class:`~pl3xus_rx.sync.MutationContext`); every later step decides for it;
2. **visibility**: the entity must exist *and* be visible to that identity (it sees at least
   one synced component of it other than ``EntityControl``; a MUTATE must see the written
   component type for that entity too). Hidden and missing are one answer: ``not_found``,
   ``entity N does not exist``. The live rules decide, at the command, not what the
   connection was sent;
3. **the kind's built-in rules**: CONTROL asks the control book; a SPAWN's parent and a
   DESPAWN must not be held by another party (above or, for DESPAWN, below), and a DESPAWN
   never removes descendants the identity cannot see;
4. **the registration's rules**: its entity policy (``with_default_entity_policy`` is how a
   MUTATE, REQUEST or SEND asks for control);
5. **the application's policy**: the server-wide authorizer, the control, spawn and despawn
   policies (the despawn policy is ownership unless the application gives its own: see
   ``_quota``).

A policy that raises anything but the documented answers (``Forbidden``, ``NotFound``,
``InvalidValue``) refuses (``forbidden``, ``not authorized``); the failure is counted and
logged. Nothing in a refusal names an entity or a holder the identity cannot see: control
held on a hidden entity above or below still blocks, with a message that names neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from ..protocol import EntityControl, FrameKind, Status, shown
from ..security import Identity
from ..sync._access import sees_entity
from ..sync._policy import Authorized, Denied, FaultLog, MutationContext
from ..sync._registry import ComponentRegistration, ComponentRegistry, EntityPolicy
from ..world import EntityId, World
from ._book import ControlBook, Refused
from ._effects import Reject, decide

__all__ = [
    "OFF",
    "Authorizer",
    "ControlRefused",
    "DespawnPolicy",
    "Gate",
    "SpawnPolicy",
    "party_of",
]

Authorizer = Callable[[World, MutationContext, EntityId, BaseModel], Any]
"""``(world, ctx, entity, value) -> Authorized | Denied``: a server-wide veto."""

SpawnPolicy = Callable[[World, MutationContext, "EntityId | None", "list[BaseModel]"], Any]
"""``(world, ctx, parent, components) -> Authorized | Denied``: may this client spawn an
entity with these (validated) components under ``parent``?"""

DespawnPolicy = Callable[[World, MutationContext, EntityId], Any]
"""``(world, ctx, entity) -> Authorized | Denied``: may this client despawn ``entity``?"""

_MUTATE, _CONTROL, _SPAWN, _DESPAWN = (
    int(FrameKind.MUTATE),
    int(FrameKind.CONTROL),
    int(FrameKind.SPAWN),
    int(FrameKind.DESPAWN),
)

OFF: Any = object()
"""Spawning (or despawning) from clients is not allowed."""


def party_of(ctx: MutationContext) -> str | None:
    """Who holds control for ``ctx``: an authenticated identity's name (shared by its
    connections), or ``None`` (the connection alone)."""
    return None if ctx.identity.anonymous else ctx.identity.name


class ControlRefused(Reject):
    """A take the control book refused; ``refused`` says whom to tell that someone
    asked."""

    def __init__(self, message: str, refused: Refused) -> None:
        super().__init__(Status.FORBIDDEN, message)
        self.refused = refused


class Gate:
    """The access decision for the entities client commands target.

    Args:
        world: The World.
        components: The synced component types (their visibility decides what is seen).
        book: Who controls which entity.
        faults: Where failing policies are counted and logged.
    """

    def __init__(
        self,
        world: World,
        components: ComponentRegistry,
        book: ControlBook,
        faults: FaultLog,
    ) -> None:
        self.world = world
        self.components = components
        self.book = book
        self.faults = faults
        self.authorizer: Authorizer | None = None
        """A server-wide veto over every mutation, targeted request and message, and
        take of control (asked last)."""
        self.control_policy: EntityPolicy | None = None
        """Who may take control of an entity (``None``: anyone who sees it)."""
        self.spawn_policy: SpawnPolicy | None = OFF
        """Clients' SPAWN: off (the default) until allowed."""
        self.despawn_policy: DespawnPolicy | None = OFF
        """Clients' DESPAWN: off (the default) until allowed."""
        self.takeover_roles: frozenset[str] = frozenset()
        """Identities with one of these roles take control over another party's."""
        self._decided = [0] * 256  # by frame kind (a list: no enum hashing per command)
        self.identities: dict[int, Identity] = {}
        """Who each connection that shares control is (its sight is checked while it
        holds)."""
        self.release_unseen: Callable[[Iterable[EntityId]], None] = lambda entities: None
        """Ends control of these entities for holders that no longer see them (the
        control room sets it): run on the target and its ancestors before any policy,
        so control on an entity the caller cannot see never authorizes it."""

    @property
    def decisions(self) -> dict[FrameKind, int]:
        """Decisions taken so far, by command kind (every targeted kind comes here)."""
        return {FrameKind(kind): n for kind, n in enumerate(self._decided) if n}

    # ------------------------------------------------------------------ visibility

    def sees(self, identity: Identity, entity: EntityId) -> bool:
        """Whether ``identity`` may see ``entity`` now (``False`` if it does not exist)."""
        return sees_entity(self.world, self.components, identity, entity)

    def _target(self, kind: int, identity: Identity, raw: Any) -> EntityId:
        """Steps 1 and 2: the entity, if it exists and ``identity`` sees it; the same
        ``not_found`` answer otherwise."""
        self._decided[kind] += 1
        if type(raw) is int and self.sees(identity, EntityId(raw)):  # (a bool is no id)
            return raw
        raise Reject(Status.NOT_FOUND, missing(raw))

    def _blocked(
        self,
        ctx: MutationContext,
        entity: EntityId,
        around: Iterable[EntityId],
        what: str,
    ) -> None:
        """Refuse if another party holds one of ``around``; a hidden holder is not named."""
        refused = self.book.blocking(ctx.connection, around, party_of(ctx))
        if refused is None:
            return
        raise Reject(Status.FORBIDDEN, self._refusal_text(ctx.identity, entity, refused, what))

    def _refusal_text(
        self, identity: Identity, entity: EntityId, refused: Refused, what: str
    ) -> str:
        contested = refused.contested
        if contested is not None and contested != entity and not self.sees(identity, contested):
            return (
                f"cannot {what} entity {entity}: an entity above or below it is controlled "
                "by another party"
            )
        return refused.reason

    def _policy(
        self,
        what: str | tuple[str, str],
        policy: Callable[..., Any] | None,
        *args: Any,
        strict: bool = True,
    ) -> None:
        """Steps 4 and 5: ``policy(*args)`` must authorize (``strict``: anything but
        ``Authorized`` refuses; else only ``Denied`` does). ``what`` names it (in parts,
        joined only when needed)."""
        if policy is None:
            return
        decision = decide(self.faults, what, policy, *args)
        if isinstance(decision, Denied):
            raise Reject(Status.FORBIDDEN, decision.reason)
        if strict and not isinstance(decision, Authorized):
            name = what if isinstance(what, str) else "".join(what)
            raise Reject(Status.FORBIDDEN, f"{name} returned {shown(decision)}, not Authorized")

    def _authorizer(self, ctx: MutationContext, entity: EntityId, value: BaseModel) -> None:
        """Step 5, the server-wide veto: only a ``Denied`` refuses."""
        self._policy(
            "the authorizer", self.authorizer, self.world, ctx, entity, value, strict=False
        )

    def _blind(self, entity: EntityId, also: Iterable[EntityId] = ()) -> None:
        """Step 3 for every kind: holds on ``entity``, its ancestors (and ``also``) whose
        holders no longer see them end now, before a built-in rule or a policy reads them.
        Only the entities the decision reads are judged, and only the held ones: a command
        costs its own chain, never a scan of every hold."""
        if self.book.holds:
            around = (entity, *self.world.ancestors(entity), *also)
            held = [e for e in around if self.book.holder(e) is not None]
            if held:
                self.release_unseen(held)

    def _touch(self, ctx: MutationContext, entity: EntityId, now: float) -> None:
        """Authorized activity keeps the caller's control of the entity (and above) alive."""
        chain = (entity, *self.world.ancestors(entity))
        if self.book.touch(ctx.connection, chain, now, party_of(ctx)):
            self.identities[ctx.connection] = ctx.identity  # it shares control now

    # ------------------------------------------------------------------ per kind

    def mutate(
        self,
        ctx: MutationContext,
        raw: Any,
        reg: ComponentRegistration[Any],
        value: BaseModel,
        now: float,
    ) -> EntityId:
        """MUTATE of ``reg`` on ``raw``: the entity visible, and the component type visible
        for it (alike whether the entity holds one: a write never comes without read
        access)."""
        vis = reg.visibility
        if vis is None and type(raw) is int and self.world.has(raw, reg.model):
            # the hot path: a public component the entity holds makes the entity visible
            self._decided[_MUTATE] += 1
            entity: EntityId = raw
        else:
            entity = self._target(_MUTATE, ctx.identity, raw)
            if vis is not None and not vis.sees(self.world, ctx.identity, entity):
                raise Reject(Status.NOT_FOUND, missing(raw))
        if self.book.holds:
            self._blind(entity)
        if reg.entity_policy is not None:
            self._policy(
                ("the entity policy of ", reg.name), reg.entity_policy, self.world, ctx, entity
            )
        if self.authorizer is not None:
            self._authorizer(ctx, entity, value)
        if self.book.holds:
            self._touch(ctx, entity, now)
        return entity

    def targeted(
        self,
        kind: FrameKind,
        ctx: MutationContext,
        raw: Any,
        name: str,
        policy: EntityPolicy | None,
        value: BaseModel,
        now: float,
    ) -> EntityId:
        """A targeted REQUEST or SEND (``kind``) of type ``name`` on ``raw``."""
        entity = self._target(int(kind), ctx.identity, raw)
        self._blind(entity)
        self._policy(("the policy of ", name), policy, self.world, ctx, entity)
        self._authorizer(ctx, entity, value)
        self._touch(ctx, entity, now)
        return entity

    def take(self, ctx: MutationContext, raw: Any) -> tuple[EntityId, tuple[EntityId, ...], bool]:
        """CONTROL take of ``raw``: returns the entity, its related entities (ancestors,
        held descendants) and whether the caller takes over another party's control.

        Raises:
            ControlRefused: another party holds it (or one related), for the notice.
        """
        entity = self._target(_CONTROL, ctx.identity, raw)
        self._blind(entity, self.held_below(entity))
        related = (*self.world.ancestors(entity), *self.held_below(entity))
        override = ctx.identity.has_role(*self.takeover_roles)
        # a takeover role overrides what it sees, never what it cannot see
        around = (
            [e for e in related if not self.sees(ctx.identity, e)]
            if override
            else [entity, *related]
        )
        refused = self.book.blocking(ctx.connection, around, party_of(ctx))
        if refused is not None:
            text = self._refusal_text(ctx.identity, entity, refused, "take")
            raise ControlRefused(text, refused)
        self._policy("the control policy", self.control_policy, self.world, ctx, entity)
        value = EntityControl(holder=ctx.connection, by=party_of(ctx))
        self._authorizer(ctx, entity, value)
        return entity, related, override

    def release(self, ctx: MutationContext, raw: Any) -> EntityId:
        """CONTROL release of ``raw`` (the book decides whether the caller holds it)."""
        return self._target(_CONTROL, ctx.identity, raw)

    def spawn(
        self, ctx: MutationContext, raw_parent: Any, values: list[BaseModel]
    ) -> EntityId | None:
        """SPAWN of ``values`` under ``raw_parent`` (``None``: a root entity)."""
        if raw_parent is None:
            self._decided[_SPAWN] += 1
            parent = None
        else:
            parent = self._target(_SPAWN, ctx.identity, raw_parent)
            self._blind(parent)
            self._blocked(ctx, parent, (parent, *self.world.ancestors(parent)), "spawn under")
        self._policy("the spawn policy", self.spawn_policy, self.world, ctx, parent, list(values))
        return parent

    def spawned(self, ctx: MutationContext, entity: EntityId) -> bool:
        """Whether the identity sees every synced component of the entity it just spawned
        (a client never creates what it may not read; the caller undoes the spawn)."""
        world, identity = self.world, ctx.identity
        for model in tuple(world.component_types(entity)):
            reg = self.components.find(model)
            vis = reg.visibility if reg is not None else None
            if vis is not None and not vis.sees(world, identity, entity):
                return False
        return True

    def despawn(self, ctx: MutationContext, raw: Any) -> EntityId:
        """DESPAWN of ``raw``: never while another party holds it, an entity above or one
        below; never with descendants the identity cannot see (it is refused, saying
        only that)."""
        entity = self._target(_DESPAWN, ctx.identity, raw)
        self._blind(entity, self.held_below(entity))
        self._blocked(
            ctx,
            entity,
            (entity, *self.world.ancestors(entity), *self.held_below(entity)),
            "despawn",
        )
        for below in self.descendants(entity):
            if self._shown_to_someone(below) and not self.sees(ctx.identity, below):
                raise Reject(
                    Status.FORBIDDEN,
                    f"entity {entity} cannot be despawned: it has descendants this identity "
                    "cannot see",
                )
        self._policy("the despawn policy", self.despawn_policy, self.world, ctx, entity)
        return entity

    # ------------------------------------------------------------------ hierarchy

    def held_below(self, entity: EntityId) -> list[EntityId]:
        """The held descendants of ``entity``: found from the few held entities up, not by
        walking a hierarchy that may be huge (a take must cost little)."""
        world = self.world
        return [
            held
            for held in self.book.held()
            if held != entity and world.contains(held) and entity in world.ancestors(held)
        ]

    def descendants(self, entity: EntityId) -> Iterator[EntityId]:
        """Every entity below ``entity`` (iteratively: hierarchies may be deep)."""
        stack = list(self.world.children(entity))
        while stack:
            current = stack.pop()
            yield current
            stack.extend(self.world.children(current))

    def _shown_to_someone(self, entity: EntityId) -> bool:
        """Whether ``entity`` holds a synced component other than ``EntityControl`` (an
        entity with none is the server's own bookkeeping, never sent to a client)."""
        find = self.components.find
        return any(
            model is not EntityControl and find(model) is not None
            for model in self.world.component_types(entity)
        )


def missing(raw: Any) -> str:
    """The answer about an entity that does not exist, or that the caller cannot see."""
    return f"entity {shown(raw)} does not exist"
