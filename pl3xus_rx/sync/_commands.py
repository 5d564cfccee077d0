"""The write path: dispatch of command frames to mutations, entity control, requests,
queries and one-way messages. No I/O.

Registrations and their builders live in ``_builders``, the control decisions in
``_control``; this module turns frames into calls and outcomes into REPLY and NOTICE frames.

Every command a client sends gets exactly one REPLY (``[8, req_id, status, message, body]``):
``ok``, ``forbidden``, ``not_found``, ``validation_error`` (with the field errors) or
``internal_error`` (a handler that raised). An ``ok`` that changed the World is sent after
the SYNC frame carrying the change, so a client that awaited it already sees its own change.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..exceptions import CommandRejected, DuplicateRegistration, FrameError, ValueTooLarge
from ..protocol import (
    ControlAction,
    EntityControl,
    ErrorCode,
    FrameKind,
    NoticeKind,
    Status,
    field_errors,
    from_wire,
    schema_hash,
    shown,
    to_wire,
)
from ..security import ANONYMOUS, Identity
from ..world import EntityId, World
from ._builders import MessageRegistration, QueryRegistration, RequestRegistration
from ._control import ControlBook, Granted
from ._engine import SyncEngine
from ._policy import Authorized, Denied, MutationContext
from ._registry import ComponentRegistration, ComponentRegistry, EntityPolicy
from ._settings import SyncSettings

__all__ = ["Authorizer", "Bound", "Commands", "HandlerTimedOut"]

logger = logging.getLogger(__name__)

R_ = TypeVar("R_")

NOTICE_INTERVAL = 1.0
"""Seconds between two ``control_requested`` notices for the same holder, requester and
entity."""

Bound = Callable[[Awaitable[Any], float], Awaitable[Any]]
"""``bound(pending, seconds)``: await ``pending`` for at most ``seconds``; past that cancel
it and raise :class:`HandlerTimedOut` (the I/O shell's job: this module does no I/O)."""

Authorizer = Callable[[World, MutationContext, EntityId, BaseModel], Any]
"""``(world, ctx, entity, value) -> Authorized | Denied``: a server-wide veto."""


SpawnPolicy = Callable[[World, MutationContext, "EntityId | None", "list[BaseModel]"], Any]
"""``(world, ctx, parent, components) -> Authorized | Denied``: may this client spawn an
entity with these (validated) components under ``parent``?"""

DespawnPolicy = Callable[[World, MutationContext, EntityId], Any]
"""``(world, ctx, entity) -> Authorized | Denied``: may this client despawn ``entity``?"""

_OFF: Any = object()  # spawning / despawning from clients not allowed


class HandlerTimedOut(Exception):
    """Raised by a ``bound`` hook: the handler overran ``handler_timeout`` (and was
    cancelled)."""


class _Reject(Exception):
    """Raised inside a command handler: answer with this status and message."""

    def __init__(self, status: Status, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body or {}


def _validated(name: str, model: type[BaseModel], payload: Any) -> Any:
    try:
        return from_wire(model, payload)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise _Reject(
            Status.VALIDATION_ERROR,
            f"{name} failed validation at {errors[0]['loc'] or '<root>'}: {errors[0]['msg']}",
            {"errors": errors},
        ) from exc


def _answer_of(exc: BaseException) -> _Reject | None:
    """The answer a handler or policy chose by raising ``Forbidden``, ``NotFound`` or
    ``InvalidValue`` (``None`` for any other exception: a failure)."""
    if not isinstance(exc, CommandRejected) or exc.status not in _CHOSEN:
        return None
    status = Status(exc.status)
    body = None
    if status is Status.VALIDATION_ERROR:
        errors = exc.errors or [{"loc": "", "msg": exc.message, "type": "value_error"}]
        body = {"errors": errors}
    return _Reject(status, exc.message, body)


_CHOSEN = {Status.FORBIDDEN.value, Status.NOT_FOUND.value, Status.VALIDATION_ERROR.value}


def _decide(policy: Callable[..., Any], *args: Any) -> Any:
    """A policy's decision; one that raises ``Forbidden`` / ``NotFound`` / ``InvalidValue``
    answers with it, one that fails otherwise answers ``internal_error``."""
    try:
        return policy(*args)
    except Exception as exc:
        answer = _answer_of(exc)
        if answer is not None:
            raise answer from None
        logger.error("a policy failed", exc_info=exc)
        raise _Reject(Status.INTERNAL_ERROR, "a policy failed") from exc


def _party(ctx: MutationContext) -> str | None:
    """Who holds control for ``ctx``: an authenticated identity's name (shared by its
    connections), or ``None`` (the connection alone)."""
    return None if ctx.identity.anonymous else ctx.identity.name


def _registered(table: Mapping[str, R_], what: str, type_name: Any) -> R_:
    reg = table.get(type_name) if isinstance(type_name, str) else None
    if reg is None:
        raise _Reject(
            Status.NOT_FOUND,
            f"unknown {what} type {shown(type_name)}; registered: {', '.join(table) or 'none'}",
        )
    return reg


class Commands:
    """Mutations, control, requests and queries for one World.

    Args:
        world: The World.
        components: The synced component types (mutations are checked against them).
        engine: The sync engine (replies are ordered after the frames of their changes).
        settings: ``control_timeout`` lives here.
        send: ``send(connection, frame)`` sends a frame at once.
        broadcast: ``broadcast(frame)`` sends a frame to every connection.
        run: Runs an awaitable (async handlers) to completion in the background.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        world: World,
        components: ComponentRegistry,
        engine: SyncEngine,
        settings: SyncSettings,
        *,
        send: Callable[[int, list[Any]], None],
        broadcast: Callable[[list[Any]], None],
        run: Callable[[int, Awaitable[None]], None],
        clock: Callable[[], float],
        identity_of: Callable[[int], Identity] = lambda connection: ANONYMOUS,
        bound: Bound | None = None,
        control_policy: EntityPolicy | None = None,
        takeover_roles: Iterable[str] = (),
    ) -> None:
        self.world = world
        self.components = components
        self.engine = engine
        self.settings = settings
        self._send = send
        self._broadcast = broadcast
        self._run = run
        self._clock = clock
        self.requests: dict[str, RequestRegistration[Any]] = {}
        self.queries: dict[str, QueryRegistration[Any]] = {}
        self.messages: dict[str, MessageRegistration] = {}
        self._identity_of = identity_of
        self._tables: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._in_flight: dict[int, int] = {}  # async handlers running, per connection
        self.replies: dict[str, int] = {}
        """Replies sent so far, by status."""
        self._notices_sent: dict[tuple[int, int, EntityId], float] = {}
        self._bound = bound
        self.control_policy = control_policy
        """Decides who may take control of an entity: ``(world, ctx, entity) -> Authorized |
        Denied`` (``None``: anyone); the authorizer is asked too, with the value
        ``EntityControl(holder=connection)``."""
        self.authorizer: Authorizer | None = None
        """A server-wide veto over every mutation and targeted request."""
        self.control = ControlBook(settings.control_timeout)
        """Who controls which entity (the World's ``EntityControl`` components mirror it)."""
        self.spawn_policy: SpawnPolicy | None = _OFF
        """Clients' SPAWN: off (the default) until :meth:`allow_spawn`."""
        self.despawn_policy: DespawnPolicy | None = _OFF
        """Clients' DESPAWN: off (the default) until :meth:`allow_despawn`."""
        self.takeover_roles = frozenset(takeover_roles)
        """Identities with one of these roles take control over another party's (who is
        told with a ``control_released`` notice, reason ``taken_over``)."""

    # ------------------------------------------------------------------ registration

    def add_request(self, reg: RequestRegistration[Any]) -> None:
        """Register a request type (see :class:`RequestBuilder`)."""
        if reg.name in self.requests:
            raise DuplicateRegistration(f"request {reg.name!r} is already registered")
        self.requests[reg.name] = reg

    def add_message(self, reg: MessageRegistration) -> None:
        """Register a one-way message type (see :class:`MessageBuilder`)."""
        if reg.name in self.messages:
            raise DuplicateRegistration(f"message {reg.name!r} is already registered")
        self.messages[reg.name] = reg

    def add_query(self, reg: QueryRegistration[Any]) -> None:
        """Register a query type (see :class:`QueryBuilder`)."""
        if reg.name in self.queries:
            raise DuplicateRegistration(f"query {reg.name!r} is already registered")
        self.queries[reg.name] = reg

    def wire_tables(self) -> dict[str, Any]:
        """The welcome's ``requests``, ``queries`` and ``one_way`` tables (computed once per
        set of registrations: every handshake sends them, and hashing a schema costs ~1 ms)."""
        key = (len(self.requests), len(self.queries), len(self.messages))
        if self._tables is None or self._tables[0] != key:
            self._tables = (key, self._build_tables())
        return self._tables[1]

    def _build_tables(self) -> dict[str, Any]:
        return {
            "requests": [
                [r.name, schema_hash(r.model), schema_hash(r.response), r.targeted]
                for r in self.requests.values()
            ],
            "queries": [
                [q.name, schema_hash(q.model), schema_hash(q.response)]
                for q in self.queries.values()
            ],
            "one_way": [[m.name, schema_hash(m.model), m.targeted] for m in self.messages.values()],
        }

    # ------------------------------------------------------------------ frames

    def handle_frame(self, connection: int, frame: list[Any]) -> None:
        """Handle a MUTATE, CONTROL, REQUEST, QUERY or SEND frame from ``connection``.

        Raises:
            FrameError: the frame is malformed and has no request id to answer to.
        """
        kind = frame[0]
        ctx = MutationContext(connection, self._identity_of(connection))
        if kind == FrameKind.SEND:
            self._one_way(ctx, frame)
            return
        if len(frame) < 2 or type(frame[1]) is not int:  # (a boolean is not an id)
            raise FrameError(f"a frame of kind {kind} must start [{kind}, req_id: int, ...]")
        req_id = frame[1]
        try:
            if kind == FrameKind.MUTATE:
                self._expect(frame, 5, "[7, req_id, type_name, entity, value]")
                self._mutate(ctx, req_id, frame[2], frame[3], frame[4])
            elif kind == FrameKind.CONTROL:
                self._expect(frame, 4, '[9, req_id, "take" | "release", entity]')
                self._control_frame(ctx, req_id, frame[2], frame[3])
            elif kind == FrameKind.REQUEST:
                self._expect(frame, 5, "[11, req_id, type_name, entity | null, payload]")
                self._request(ctx, req_id, frame[2], frame[3], frame[4])
            elif kind == FrameKind.QUERY:
                self._expect(frame, 4, "[12, req_id, type_name, params]")
                self._query(ctx, req_id, frame[2], frame[3])
            elif kind == FrameKind.SPAWN:
                self._expect(frame, 4, "[15, req_id, parent | null, {type_name: value, ...}]")
                self._spawn(ctx, req_id, frame[2], frame[3])
            elif kind == FrameKind.DESPAWN:
                self._expect(frame, 3, "[16, req_id, entity]")
                self._despawn(ctx, req_id, frame[2])
            else:
                raise FrameError(f"frame kind {kind} is not sent by clients")
        except FrameError as exc:
            error = {"loc": "", "msg": exc.message, "type": ErrorCode.BAD_FRAME.value}
            self.reply(
                connection, req_id, Status.VALIDATION_ERROR, exc.message, {"errors": [error]}
            )
        except _Reject as rejection:
            self.reply(connection, req_id, rejection.status, rejection.message, rejection.body)

    @staticmethod
    def _expect(frame: list[Any], n: int, shape: str) -> None:
        if len(frame) != n:
            raise FrameError(f"bad frame shape; expected {shape}")

    def reply(
        self,
        connection: int,
        req_id: int,
        status: Status,
        message: str = "",
        body: dict[str, Any] | None = None,
        *,
        after: type[BaseModel] | None = None,
        entity: EntityId | None = None,
        deferred: bool = False,
    ) -> None:
        """Answer a command: at once, or (``deferred``) after the flush carrying its change."""
        self.replies[status.value] = self.replies.get(status.value, 0) + 1
        frame = [FrameKind.REPLY, req_id, status.value, message, body or {}]
        if deferred:
            self.engine.defer(connection, frame, component=after, entity=entity)
        else:
            self._send(connection, frame)

    # ------------------------------------------------------------------ authorization

    def _entity(self, raw: Any) -> EntityId:
        if (
            isinstance(raw, int)
            and not isinstance(raw, bool)
            and self.world.contains(EntityId(raw))
        ):
            return EntityId(raw)
        raise _Reject(Status.NOT_FOUND, f"entity {shown(raw)} does not exist")

    def _authorize(
        self,
        ctx: MutationContext,
        entity: EntityId,
        policy: EntityPolicy | None,
        value: BaseModel | None,
    ) -> None:
        """Return if allowed; raise the ``forbidden`` answer with the reason otherwise."""
        if policy is not None:
            decision = _decide(policy, self.world, ctx, entity)
            if isinstance(decision, Denied):
                raise _Reject(Status.FORBIDDEN, decision.reason)
            if not isinstance(decision, Authorized):
                raise _Reject(
                    Status.FORBIDDEN, f"the entity policy returned {decision!r}, not Authorized"
                )
        if self.authorizer is not None and value is not None:
            decision = _decide(self.authorizer, self.world, ctx, entity, value)
            if isinstance(decision, Denied):
                raise _Reject(Status.FORBIDDEN, decision.reason)
        self.control.touch(
            ctx.connection, (entity, *self.world.ancestors(entity)), self._clock(), _party(ctx)
        )

    # ------------------------------------------------------------------ mutations

    def _mutate(
        self, ctx: MutationContext, req_id: int, type_name: Any, raw_entity: Any, payload: Any
    ) -> None:
        conn = ctx.connection
        reg = self.components.by_name(type_name) if isinstance(type_name, str) else None
        if reg is None:
            raise _Reject(
                Status.NOT_FOUND,
                f"{shown(type_name)} is not a synced component; synced: "
                f"{', '.join(self.components.names()) or 'none'}",
            )
        if reg.read_only:
            why = (
                " (control changes only through take/release)" if reg.model is EntityControl else ""
            )
            if reg.read_only_reason:
                why = f": {reg.read_only_reason}"
            raise _Reject(Status.FORBIDDEN, f"{reg.name} is read-only for clients{why}")
        value = _validated(reg.name, reg.model, payload)
        entity = self._entity(raw_entity)
        self._authorize(ctx, entity, reg.entity_policy, value)
        try:
            if reg.handler is not None:
                result = reg.handler(self.world, ctx, entity, value)
                if inspect.isawaitable(result):
                    job = self._finish_async(conn, req_id, result, reg.model, entity)
                    if not self._launch(conn, result, job):
                        self.reply(conn, req_id, Status.FORBIDDEN, self._busy())
                    return
            else:
                self.world.insert(entity, value)
        except Exception as exc:
            self._failed(conn, req_id, reg.name, exc)
            return
        self._mutated(conn, req_id, reg.model, entity)

    def _mutated(self, conn: int, req_id: int, model: type[BaseModel], entity: EntityId) -> None:
        self.reply(conn, req_id, Status.OK, after=model, entity=entity, deferred=True)
        reg = self.components.find(model)
        for query in reg.invalidates if reg is not None else ():
            self.invalidate(query)

    async def _finish_async(
        self,
        conn: int,
        req_id: int,
        pending: Awaitable[Any],
        model: type[BaseModel],
        entity: EntityId,
    ) -> None:
        try:
            await self._bounded(pending)
        except HandlerTimedOut:
            self._timed_out(conn, req_id, model.__name__)
            return
        except Exception as exc:
            self._failed(conn, req_id, model.__name__, exc)
            return
        self._mutated(conn, req_id, model, entity)

    def _launch(self, conn: int, pending: Awaitable[Any], job: Coroutine[Any, Any, None]) -> bool:
        """Run an async handler's ``job`` for ``conn``, unless the connection already has
        ``max_pending_commands`` of them running (then both are closed unstarted)."""
        limit = self.settings.max_pending_commands
        running = self._in_flight.get(conn, 0)
        if limit is not None and running >= limit:
            job.close()
            if inspect.iscoroutine(pending):
                pending.close()
            return False
        self._in_flight[conn] = running + 1

        async def counted() -> None:
            try:
                await job
            finally:
                left = self._in_flight.get(conn, 1) - 1
                if left > 0:
                    self._in_flight[conn] = left
                else:
                    self._in_flight.pop(conn, None)

        self._run(conn, counted())
        return True

    def _busy(self) -> str:
        limit = self.settings.max_pending_commands
        return (
            f"too many commands in flight (max_pending_commands={limit}): wait for their "
            "answers before sending more"
        )

    async def _bounded(self, pending: Awaitable[Any]) -> Any:
        """Await a handler within ``handler_timeout``, through the I/O shell's ``bound``."""
        limit = self.settings.handler_timeout
        if limit is None or self._bound is None:
            return await pending
        return await self._bound(pending, limit)

    def _timed_out(self, conn: int, req_id: int, name: str) -> None:
        limit = self.settings.handler_timeout
        logger.warning("the handler for %s did not finish within %g s; cancelled", name, limit)
        self.reply(
            conn,
            req_id,
            Status.TIMEOUT,
            f"the handler for {name} did not finish within {limit:g} s "
            "(SyncSettings.handler_timeout); it was cancelled",
        )

    # ------------------------------------------------------------------ spawn, despawn

    def allow_spawn(self, policy: SpawnPolicy | None = None) -> None:
        """Let clients spawn entities (SPAWN): each component must be of a synced type
        clients may write, valid, and within ``max_value_bytes``; a parent must exist and
        not be controlled by someone else; then ``policy(world, ctx, parent, components)``
        decides (``None``: every client that got this far)."""
        self.spawn_policy = policy

    def allow_despawn(self, policy: DespawnPolicy | None = None) -> None:
        """Let clients despawn entities (DESPAWN): never one that someone else controls
        (the entity, an ancestor or a descendant); then ``policy(world, ctx, entity)``
        decides (``None``: every client that got this far)."""
        self.despawn_policy = policy

    def _spawn(self, ctx: MutationContext, req_id: int, raw_parent: Any, raw: Any) -> None:
        if self.spawn_policy is _OFF:
            raise _Reject(
                Status.FORBIDDEN,
                "clients may not spawn entities on this server (the server enables it with "
                "allow_spawn)",
            )
        if not isinstance(raw, dict) or not raw:
            raise FrameError("SPAWN needs a non-empty map of component name to value")
        parent = None if raw_parent is None else self._entity(raw_parent)
        values: list[BaseModel] = []
        regs: list[ComponentRegistration[Any]] = []
        for name, payload in raw.items():
            reg = self.components.by_name(name) if isinstance(name, str) else None
            if reg is None:
                raise _Reject(Status.NOT_FOUND, f"{shown(name)} is not a synced component")
            if reg.read_only:
                raise _Reject(
                    Status.FORBIDDEN, f"{reg.name} is read-only for clients: it cannot be spawned"
                )
            values.append(_validated(reg.name, reg.model, payload))
            regs.append(reg)
        if parent is not None:
            self._not_held_by_others(ctx, parent, below=False)
        if self.spawn_policy is not None:
            decision = _decide(self.spawn_policy, self.world, ctx, parent, list(values))
            if not isinstance(decision, Authorized):
                reason = decision.reason if isinstance(decision, Denied) else "not authorized"
                raise _Reject(Status.FORBIDDEN, reason)
        try:
            entity = self.world.spawn(*values, parent=parent)
        except ValueTooLarge as exc:
            raise _Reject(Status.VALIDATION_ERROR, str(exc)) from exc
        except Exception as exc:
            self._failed(ctx.connection, req_id, "spawn", exc)
            return
        self.reply(
            ctx.connection,
            req_id,
            Status.OK,
            body={"entity": int(entity)},
            after=regs[0].model,
            entity=entity,
            deferred=True,
        )
        self._invalidate_for(regs)

    def _despawn(self, ctx: MutationContext, req_id: int, raw_entity: Any) -> None:
        if self.despawn_policy is _OFF:
            raise _Reject(
                Status.FORBIDDEN,
                "clients may not despawn entities on this server (the server enables it "
                "with allow_despawn)",
            )
        entity = self._entity(raw_entity)
        self._not_held_by_others(ctx, entity, below=True)
        if self.despawn_policy is not None:
            decision = _decide(self.despawn_policy, self.world, ctx, entity)
            if not isinstance(decision, Authorized):
                reason = decision.reason if isinstance(decision, Denied) else "not authorized"
                raise _Reject(Status.FORBIDDEN, reason)
        regs = [reg for reg in self.components if self.world.has(entity, reg.model)]
        try:
            self.world.despawn(entity)
        except Exception as exc:
            self._failed(ctx.connection, req_id, "despawn", exc)
            return
        self.reply(ctx.connection, req_id, Status.OK, deferred=True)
        self._invalidate_for(regs)

    def _invalidate_for(self, regs: Iterable[ComponentRegistration[Any]]) -> None:
        queries = {query for reg in regs for query in reg.invalidates}
        for query in queries:
            self.invalidate(query)

    def _not_held_by_others(self, ctx: MutationContext, entity: EntityId, *, below: bool) -> None:
        """Refuse (``forbidden``) if someone other than the caller controls ``entity`` or an
        ancestor (and, if ``below``, a descendant)."""
        world = self.world
        party = _party(ctx)
        around = [entity, *world.ancestors(entity)]
        if below:
            around += self._held_below(entity)
        for candidate in around:
            control = world.get(candidate, EntityControl) if world.contains(candidate) else None
            if control is None or control.holder is None:
                continue
            if control.holder == ctx.connection or (party is not None and control.by == party):
                continue
            who = control.by or f"connection {control.holder}"
            raise _Reject(Status.FORBIDDEN, f"entity {candidate} is controlled by {who}")

    # ------------------------------------------------------------------ control

    def holder(self, entity: EntityId) -> int | None:
        """The connection that controls ``entity`` itself, if any."""
        return self.control.holder(entity)

    def _held_below(self, entity: EntityId) -> list[EntityId]:
        """The held descendants of ``entity``: found from the few held entities up, not by
        walking a hierarchy that may be huge (a take must cost little)."""
        world = self.world
        return [
            held
            for held in self.control.held()
            if held != entity and world.contains(held) and entity in world.ancestors(held)
        ]

    def _mirror(self, entity: EntityId, holder: int | None, party: str | None = None) -> None:
        if self.world.contains(entity):
            self.world.insert(entity, EntityControl(holder=holder, by=party))

    def _released(self, to: Iterable[int], entity: EntityId, reason: str, **extra: Any) -> None:
        for connection in to:
            body = {"entity": entity, "reason": reason, **extra}
            self._send(connection, [FrameKind.NOTICE, NoticeKind.CONTROL_RELEASED, body])

    def _control_frame(
        self, ctx: MutationContext, req_id: int, action: Any, raw_entity: Any
    ) -> None:
        conn = ctx.connection
        entity = self._entity(raw_entity)
        party = _party(ctx)
        if action == ControlAction.TAKE:
            self._authorize(ctx, entity, self.control_policy, EntityControl(holder=conn, by=party))
            related = (*self.world.ancestors(entity), *self._held_below(entity))
            override = ctx.identity.has_role(*self.takeover_roles)
            decision = self.control.take(
                conn, entity, related, self._clock(), party=party, override=override
            )
        elif action == ControlAction.RELEASE:
            decision = self.control.release(conn, entity, party)
        else:
            raise _Reject(
                Status.VALIDATION_ERROR,
                f"control action must be 'take' or 'release', got {shown(action)}",
            )
        if isinstance(decision, Granted):
            for lost in decision.displaced:
                self._mirror(lost.entity, None)
                self._released(lost.sharers, lost.entity, "taken_over", by=ctx.identity.name)
                logger.info(
                    "%r took control of entity %s over connections %s",
                    ctx.identity.name,
                    lost.entity,
                    lost.sharers,
                )
            self._mirror(entity, decision.holder, decision.party)
            self.reply(conn, req_id, Status.OK, after=EntityControl, entity=entity, deferred=True)
            return
        for holder in decision.sharers:
            if self._notice_due(holder, conn, entity):
                self._send(
                    holder,
                    [
                        FrameKind.NOTICE,
                        NoticeKind.CONTROL_REQUESTED,
                        {"entity": decision.contested, "by": conn},
                    ],
                )
        self.reply(conn, req_id, Status.FORBIDDEN, decision.reason)

    def _notice_due(self, holder: int, requester: int, entity: EntityId) -> bool:
        """At most one ``control_requested`` per holder, requester and entity per
        :data:`NOTICE_INTERVAL` seconds: repeated takes must not flood the holder."""
        now = self._clock()
        sent = self._notices_sent
        if len(sent) > 10_000:  # bounded: forget what is old
            for key in [k for k, t in sent.items() if now - t >= NOTICE_INTERVAL]:
                del sent[key]
        key = (holder, requester, entity)
        last = sent.get(key)
        if last is not None and now - last < NOTICE_INTERVAL:
            return False
        sent[key] = now
        return True

    def connection_closed(self, connection: int) -> None:
        """Release every entity the connection controlled (and forget its notices)."""
        self._notices_sent = {
            k: t for k, t in self._notices_sent.items() if connection not in (k[0], k[1])
        }
        released, moved = self.control.connection_closed(connection)
        for entity in released:
            self._mirror(entity, None)
        for move in moved:
            self._mirror(move.entity, move.holder, move.party)

    def expire_control(self, now: float) -> float | None:
        """Release control idle for ``control_timeout``; returns when to check next."""
        if not len(self.control):
            return None
        lapsed, due = self.control.expire(now, self.world.contains)
        for expired in lapsed:
            self._mirror(expired.entity, None)
            self._released(expired.sharers or (expired.holder,), expired.entity, "inactivity")
        return due

    # ------------------------------------------------------------------ requests

    def _request(
        self, ctx: MutationContext, req_id: int, type_name: Any, raw_entity: Any, payload: Any
    ) -> None:
        conn = ctx.connection
        reg = _registered(self.requests, "request", type_name)
        request = _validated(reg.name, reg.model, payload)
        args: tuple[Any, ...] = (self.world, ctx, request)
        if reg.targeted:
            entity = self._entity(raw_entity)
            self._authorize(ctx, entity, reg.policy, request)
            args = (self.world, ctx, entity, request)
        self._call(conn, req_id, reg, args)

    def _call(
        self,
        conn: int,
        req_id: int,
        reg: RequestRegistration[Any] | QueryRegistration[Any],
        args: tuple[Any, ...],
    ) -> None:
        try:
            result = reg.handler(*args)
        except Exception as exc:
            self._failed(conn, req_id, reg.name, exc)
            return
        if inspect.isawaitable(result):
            if not self._launch(conn, result, self._finish_call(conn, req_id, reg, result)):
                self.reply(conn, req_id, Status.FORBIDDEN, self._busy())
        else:
            self._respond(conn, req_id, reg, result)

    async def _finish_call(
        self,
        conn: int,
        req_id: int,
        reg: RequestRegistration[Any] | QueryRegistration[Any],
        pending: Awaitable[Any],
    ) -> None:
        try:
            result = await self._bounded(pending)
        except HandlerTimedOut:
            self._timed_out(conn, req_id, reg.name)
            return
        except Exception as exc:
            self._failed(conn, req_id, reg.name, exc)
            return
        self._respond(conn, req_id, reg, result)

    def _failed(self, conn: int, req_id: int, name: str, exc: Exception) -> None:
        answer = _answer_of(exc)
        if answer is not None:
            logger.info("the handler for %s answered %s: %r", name, answer.status, answer.message)
            self.reply(conn, req_id, answer.status, answer.message, answer.body)
            return
        logger.error("handler for %s failed", name, exc_info=exc)
        # (the client learns that it failed, not how: internals stay in the server's log)
        self.reply(conn, req_id, Status.INTERNAL_ERROR, f"the handler for {name} failed")

    def _respond(
        self,
        conn: int,
        req_id: int,
        reg: RequestRegistration[Any] | QueryRegistration[Any],
        result: Any,
    ) -> None:
        if not isinstance(result, reg.response):
            self._failed(
                conn,
                req_id,
                reg.name,
                TypeError(f"handler returned {type(result).__name__}, not {reg.response.__name__}"),
            )
            return
        self.reply(conn, req_id, Status.OK, body={"value": to_wire(result)}, deferred=True)
        if isinstance(reg, RequestRegistration):
            for query in reg.invalidates:
                self.invalidate(query)

    # ------------------------------------------------------------------ one-way messages

    def _one_way(self, ctx: MutationContext, frame: list[Any]) -> None:
        if len(frame) != 4:
            raise FrameError("a SEND frame must be [14, type_name, entity | null, payload]")
        _, type_name, raw_entity, payload = frame
        try:
            reg = _registered(self.messages, "message", type_name)
            message = _validated(reg.name, reg.model, payload)
            args: tuple[Any, ...] = (self.world, ctx, message)
            if reg.targeted:
                entity = self._entity(raw_entity)
                self._authorize(ctx, entity, reg.policy, message)
                args = (self.world, ctx, entity, message)
            try:
                result = reg.handler(*args)
            except Exception as exc:
                answer = _answer_of(exc)
                if answer is not None:
                    raise answer from None
                logger.error("handler for message %s failed", reg.name, exc_info=exc)
                raise _Reject(Status.INTERNAL_ERROR, f"the handler for {reg.name} failed") from exc
            if inspect.isawaitable(result) and not self._launch(
                ctx.connection, result, self._quietly(reg.name, result)
            ):
                raise _Reject(Status.FORBIDDEN, self._busy())
        except _Reject as rejection:
            body = {
                "type": type_name,
                "entity": raw_entity,
                "status": rejection.status.value,
                "reason": rejection.message,
                **rejection.body,
            }
            self._send(ctx.connection, [FrameKind.NOTICE, NoticeKind.MESSAGE_REJECTED, body])

    async def _quietly(self, name: str, pending: Awaitable[Any]) -> None:
        try:
            await self._bounded(pending)
        except HandlerTimedOut:
            logger.warning("the handler for message %s did not finish in time; cancelled", name)
        except Exception:
            logger.exception("async handler for message %s failed", name)

    # ------------------------------------------------------------------ queries

    def _query(self, ctx: MutationContext, req_id: int, type_name: Any, params: Any) -> None:
        reg = _registered(self.queries, "query", type_name)
        if reg.policy is not None:
            decision = _decide(reg.policy, self.world, ctx)
            if not isinstance(decision, Authorized):
                reason = decision.reason if isinstance(decision, Denied) else "not authorized"
                raise _Reject(Status.FORBIDDEN, f"query {reg.name}: {reason}")
        query = _validated(reg.name, reg.model, params)
        args = (self.world, ctx, query) if reg.with_context else (self.world, query)
        self._call(ctx.connection, req_id, reg, args)

    def invalidate(self, query: type[BaseModel], keys: Iterable[BaseModel] | None = None) -> None:
        """Tell every client to refetch ``query`` (only the given parameter sets, if any).

        Raises:
            KeyError: ``query`` is not a registered query.
        """
        name = next((q.name for q in self.queries.values() if q.model is query), None)
        if name is None:
            raise KeyError(f"{query.__name__} is not a registered query")
        wire_keys = None if keys is None else [to_wire(k) for k in keys]
        self._broadcast([FrameKind.INVALIDATE, name, wire_keys])
