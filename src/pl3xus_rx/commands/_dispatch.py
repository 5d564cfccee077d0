"""The command layer's entry: frames in, effects out. No I/O.

``Commands.handle(ctx, frame, now)`` takes a client's command frame, who sent it and the
time, and returns what must happen (:mod:`._effects`). The other inputs are
``handler_finished`` (an async handler the shell ran has ended), ``tick`` (time passes:
control expires, or ends for a holder that stopped seeing its entity),
``connection_opened`` and ``connection_closed`` (for a move, too: see ``_control``).
Nothing here sends, sleeps or reads a clock.

Every command gets exactly one REPLY (``[8, req_id, status, message, body]``): ``ok``,
``forbidden``, ``not_found``, ``validation_error`` (with the field errors), ``timeout`` or
``internal_error`` (a handler that failed). An ``ok`` that changed the World is held until
the flush that carries the change, so a client that awaited it already sees its change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from ..protocol import (
    CommandFrameError,
    ControlCommand,
    DespawnCommand,
    ErrorCode,
    MutateCommand,
    QueryCommand,
    RequestCommand,
    SendCommand,
    SpawnCommand,
    Status,
    parse_command,
)
from ..security import Identity
from ..sync._builders import MessageRegistration, QueryRegistration, RequestRegistration
from ..sync._policy import FaultLog, MutationContext
from ..sync._registry import ComponentRegistry, EntityPolicy
from ..sync._settings import SyncSettings
from ..world import EntityId, World
from ._book import ControlBook
from ._calls import Calls
from ._control import Control
from ._core import Core
from ._effects import Effect, Reject
from ._gate import Authorizer, DespawnPolicy, Gate, SpawnPolicy
from ._mutations import Mutations
from ._quota import Holdings, Owner, charged_size
from ._slow import SlowHandlers
from ._spawn import Spawning

__all__ = ["Commands"]


class Commands:
    """Mutations, control, requests, queries, messages, spawn and despawn for one World.

    Args:
        world: The World.
        components: The synced component types (mutations are checked against them).
        settings: ``control_timeout``, ``handler_timeout`` and ``max_pending_commands``.
        control_policy: Who may take control of an entity (``None``: anyone who sees it).
        takeover_roles: Identities with one of these roles take control over another
            party's (who is told with a ``control_released`` notice, reason
            ``taken_over``).
    """

    def __init__(
        self,
        world: World,
        components: ComponentRegistry,
        settings: SyncSettings,
        *,
        control_policy: EntityPolicy | None = None,
        takeover_roles: Iterable[str] = (),
    ) -> None:
        self._core = core = Core(world, components, settings)
        self.world = world
        self.components = components
        self._calls = Calls(core)
        self._control = Control(core)
        self._mutations = Mutations(core, self._calls.invalidate)
        self._spawning = Spawning(core, self._calls.invalidate)
        core.gate.control_policy = control_policy
        core.gate.takeover_roles = frozenset(takeover_roles)

    # ------------------------------------------------------------------ state

    @property
    def settings(self) -> SyncSettings:
        """The settings in force (assignable)."""
        return self._core.settings

    @settings.setter
    def settings(self, settings: SyncSettings) -> None:
        self._core.settings = settings
        self._core.control.timeout = settings.control_timeout

    @property
    def gate(self) -> Gate:
        """The one access decision for every targeted command."""
        return self._core.gate

    @property
    def control(self) -> ControlBook:
        """Who controls which entity (the World's ``EntityControl`` components mirror it)."""
        return self._core.control

    @property
    def replies(self) -> dict[str, int]:
        """Replies sent so far, by status."""
        return self._core.replies

    @property
    def faults(self) -> FaultLog:
        """Policies that failed (counted and logged; each answered as a refusal)."""
        return self._core.faults

    @property
    def slow(self) -> SlowHandlers:
        """Synchronous handler calls that held the event loop (counted and logged)."""
        return self._core.slow

    @property
    def authorizer(self) -> Authorizer | None:
        """A server-wide veto over every mutation, targeted request and message, and take
        of control."""
        return self._core.gate.authorizer

    @authorizer.setter
    def authorizer(self, fn: Authorizer | None) -> None:
        self._core.gate.authorizer = fn

    @property
    def requests(self) -> dict[str, RequestRegistration[Any]]:
        """The registered request types, by name."""
        return self._calls.requests

    @property
    def queries(self) -> dict[str, QueryRegistration[Any]]:
        """The registered query types, by name."""
        return self._calls.queries

    @property
    def messages(self) -> dict[str, MessageRegistration]:
        """The registered one-way message types, by name."""
        return self._calls.messages

    def in_flight(self, connection: int | None = None) -> int:
        """Async handlers running for ``connection`` (``None``: for every connection)."""
        if connection is None:
            return sum(self._core.in_flight.values())
        return self._core.in_flight.get(connection, 0)

    def holder(self, entity: EntityId) -> int | None:
        """The connection that controls ``entity`` itself, if any."""
        return self._core.control.holder(entity)

    # ------------------------------------------------------------------ registration

    def add_request(self, reg: RequestRegistration[Any]) -> None:
        """Register a request type (see :class:`~pl3xus_rx.sync.RequestBuilder`)."""
        self._calls.add_request(reg)

    def add_message(self, reg: MessageRegistration) -> None:
        """Register a one-way message type (see :class:`~pl3xus_rx.sync.MessageBuilder`)."""
        self._calls.add_message(reg)

    def add_query(self, reg: QueryRegistration[Any]) -> None:
        """Register a query type (see :class:`~pl3xus_rx.sync.QueryBuilder`)."""
        self._calls.add_query(reg)

    def wire_tables(self) -> dict[str, Any]:
        """The welcome's ``requests``, ``queries`` and ``one_way`` tables."""
        return self._calls.wire_tables()

    def allow_spawn(self, policy: SpawnPolicy | None = None) -> None:
        """Let clients spawn entities (SPAWN): each component must be of a synced type
        clients may write, valid, and within ``max_value_bytes``; the owner's and the
        server's quotas must allow it (``max_spawned_entities_per_owner``,
        ``max_spawned_bytes_per_owner``, ``max_spawned_entities``, ``max_spawned_bytes``);
        a parent must be visible, not controlled by another party, and the new entity no
        deeper than ``max_spawn_depth``; then ``policy(world, ctx, parent, components)``
        decides. Without one, every client that got this far, except under another
        client's entity (the ledger's ``own_parents_only``). The new entity remembers its
        :class:`Owner` (:meth:`owner_of`)."""
        ledger = self._core.ledger
        self._core.gate.spawn_policy = ledger.own_parents_only if policy is None else policy

    def allow_despawn(self, policy: DespawnPolicy | None = None) -> None:
        """Let clients despawn entities (DESPAWN): never one that is hidden from them, that
        another party controls (the entity, an ancestor or a descendant), or that has
        descendants hidden from them; then the policy decides.

        Without a ``policy`` the ownership rule (:meth:`owners_only`) decides: a client
        may despawn what it spawned (with everything below it, all its own too), never
        an entity of the server's or of another owner. A ``policy`` replaces that rule
        entirely: ``policy(world, ctx, entity)`` alone decides after the built-in rules;
        call ``owners_only`` from it to keep ownership."""
        self._core.gate.despawn_policy = self._core.ledger.owners_only if policy is None else policy

    def owners_only(self, world: World, ctx: MutationContext, entity: EntityId) -> Any:
        """The default despawn policy: ``Authorized`` when ``ctx``'s owner (its identity,
        or its connection when anonymous) spawned ``entity`` and every entity below it,
        else ``Denied`` with the reason."""
        return self._core.ledger.owners_only(world, ctx, entity)

    def owner_of(self, entity: EntityId) -> Owner | None:
        """Who spawned ``entity``: an :class:`Owner` for an entity a client spawned,
        ``None`` for the server's own (or a missing one). Compare with ``Owner.of(ctx)``
        in a policy; :meth:`owns` does."""
        return self._core.ledger.owner_of(entity)

    def owns(self, ctx: MutationContext, entity: EntityId) -> bool:
        """Whether the client of ``ctx`` (its identity, or its connection when
        anonymous) spawned ``entity``."""
        owner = self._core.ledger.owner_of(entity)
        return owner is not None and owner == Owner.of(ctx)

    def owned_by(self, owner: Owner) -> list[EntityId]:
        """The live entities ``owner`` spawned (e.g. to despawn what an anonymous
        connection left behind: ``Owner(connection=id)``)."""
        return self._core.ledger.owned_by(owner)

    def spawn_owners(self) -> dict[EntityId, Owner]:
        """Who spawned each client-spawned entity alive, as a copy (what a state file
        saves)."""
        ledger = self._core.ledger
        ledger.catch_up()
        return ledger.owners.copy()

    def restore_spawned(self, entity: EntityId, owner: Owner) -> None:
        """``owner`` spawned ``entity`` (restored from a state file): it counts against the
        owner's and the server's spawn quotas again, charged for its components of types
        clients may write (what a SPAWN or a MUTATE would have been charged).

        Raises:
            EntityNotFound: the entity does not exist.
        """
        core = self._core
        sizes: dict[type[BaseModel], int] = {}
        for value in core.world.components_of(entity):
            reg = core.components.find(type(value))
            if reg is not None and reg.mutable:
                sizes[reg.model] = charged_size(reg, value)
        if entity not in core.ledger.records:  # (ids are never reused: once is enough)
            core.ledger.record(entity, owner, sizes)

    def holdings(self, owner: Owner | None = None) -> Holdings:
        """What ``owner`` holds spawned, entities and encoded bytes, against the
        ``max_spawned_*_per_owner`` limits (``None``: every client together, against the
        server-wide ones)."""
        return self._core.ledger.holdings(owner)

    # ------------------------------------------------------------------ inputs

    def handle(self, ctx: MutationContext, frame: list[Any], now: float) -> list[Effect]:
        """Handle a client's command frame (MUTATE, CONTROL, REQUEST, QUERY, SEND, SPAWN,
        DESPAWN) from ``ctx`` at time ``now``; returns what must happen.

        Raises:
            CommandFrameError: the frame is malformed and has no request id to answer to.
        """
        core = self._core
        try:
            command = parse_command(frame)
        except CommandFrameError as exc:
            if exc.req_id is None:
                core.take_effects()
                raise
            self._bad_frame(ctx.connection, exc.req_id, exc)
            return core.take_effects()
        req_id = getattr(command, "req_id", None)
        try:
            if isinstance(command, MutateCommand):
                self._mutations.mutate(ctx, command, now)
            elif isinstance(command, ControlCommand):
                self._control.command(ctx, command, now)
            elif isinstance(command, RequestCommand):
                self._calls.request(ctx, command, now)
            elif isinstance(command, QueryCommand):
                self._calls.query(ctx, command)
            elif isinstance(command, SendCommand):
                self._calls.send(ctx, command, now)
            elif isinstance(command, SpawnCommand):
                self._spawning.spawn(ctx, command)
            elif isinstance(command, DespawnCommand):
                self._spawning.despawn(ctx, command)
        except CommandFrameError as exc:
            self._bad_frame(ctx.connection, exc.req_id if exc.req_id is not None else 0, exc)
        except Reject as rejection:
            assert req_id is not None  # (a SEND answers its rejections itself)
            core.reply(ctx.connection, req_id, rejection.status, rejection.message, rejection.body)
        return core.take_effects()

    def _bad_frame(self, connection: int, req_id: int, exc: CommandFrameError) -> None:
        error = {"loc": exc.loc, "msg": exc.message, "type": ErrorCode.BAD_FRAME.value}
        self._core.reply(
            connection, req_id, Status.VALIDATION_ERROR, exc.message, {"errors": [error]}
        )

    def handler_finished(
        self,
        call: int,
        result: Any = None,
        error: BaseException | None = None,
        *,
        cancelled: bool = False,
    ) -> list[Effect]:
        """The async handler the shell started for ``call`` ended, with ``result``, raising
        ``error`` (``HandlerTimedOut`` when the shell cancelled it for overrunning
        ``handler_timeout``), or ``cancelled`` (its connection or the server closing: not
        answered); returns what must happen."""
        self._core.finished(call, result, error, cancelled=cancelled)
        return self._core.take_effects()

    def tick(self, now: float) -> tuple[list[Effect], float | None]:
        """Time passes: control idle for ``control_timeout`` lapses, control kept for a
        party that left for a move and did not come back within ``control_move_grace``
        is released, and control of an entity its holder no longer sees ends
        (``control_released``, reason ``not_visible``). Returns what must happen and when
        to tick next (``None``: only after the next command)."""
        due = self._control.tick(now)
        return self._core.take_effects(), due

    def connection_opened(self, connection: int, identity: Identity, now: float) -> list[Effect]:
        """A client connected (directly or through a gateway) as ``identity`` at ``now``:
        if its authenticated party left for a move and its control is still kept, this
        connection holds it from now on (``EntityControl`` says so; no notice)."""
        self._control.connection_opened(connection, identity, now)
        return self._core.take_effects()

    def connection_closed(
        self, connection: int, *, moving: bool = False, now: float | None = None
    ) -> list[Effect]:
        """``connection`` is gone: its control is released, its handlers' ends ignored.
        What it spawned stays, and (anonymous) stays counted as its owner's: against the
        server-wide limits until the server despawns it (see :meth:`owned_by`).

        Args:
            connection: The connection.
            moving: It left for a move (a drain, a gateway's client moved): an
                authenticated party's control is kept for ``control_move_grace`` seconds
                after ``now``, for the party's next connection (:meth:`connection_opened`);
                :meth:`tick` releases it past that.
            now: The time (needed with ``moving``).

        Raises:
            ValueError: ``moving`` without ``now``.
        """
        if moving and now is None:
            raise ValueError("connection_closed(moving=True) needs now= (the grace starts then)")
        self._control.connection_closed(connection, moving=moving, now=now)
        self._core.forget(connection)
        return self._core.take_effects()

    def invalidate(
        self, query: type[BaseModel], keys: Iterable[BaseModel] | None = None
    ) -> list[Effect]:
        """Tell every client to refetch ``query`` (only the given parameter sets, if any).

        Raises:
            KeyError: ``query`` is not a registered query.
        """
        self._calls.invalidate(query, keys)
        return self._core.take_effects()
