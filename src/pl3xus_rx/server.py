"""SyncServer: a World, the sync engine and a Network, with the flush loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

import reactivex
from pydantic import BaseModel

from ._beacons import Beacons
from ._delivery import Delivery, RemoteSink
from ._handlers import Handlers
from .commands import (
    Authorizer,
    Broadcast,
    Commands,
    DespawnPolicy,
    Effect,
    Hold,
    Send,
    SpawnPolicy,
    Start,
)
from .devtools._install import install as install_devtools
from .exceptions import FrameError, NotFound, StateConflict
from .instruments import Instrument, Reporter
from .metrics import CONTENT_TYPE, ServerMetrics
from .net import (
    Connected,
    Disconnected,
    HealthCheck,
    HttpRequest,
    HttpResponse,
    Network,
    NetworkSettings,
    NetworkState,
    Transport,
)
from .net._events import ConnectionId
from .protocol import (
    CLIENT_COMMAND_KINDS,
    HISTORY_QUERY,
    LAST_MESSAGE_QUERY,
    CloseCode,
    EntityControl,
    FrameKind,
    HistoryPart,
    HistoryQuery,
    LastMessage,
    LastMessageQuery,
    NoticeKind,
    NotificationLevel,
    Query,
    RegisteredType,
    Request,
    Status,
    codec_for_subprotocol,
    error_frame,
    shown,
    to_wire,
)
from .recording._writer import RecordSettings, ServerRecorder
from .security import ADMIN_ROLE, Authenticator, Identity
from .state import Migration, StateLoaded, StateSaved, StateSettings, StateStatistics
from .state._keeper import StateKeeper
from .sync import (
    ComponentBuilder,
    ComponentRegistration,
    ComponentRegistry,
    EntityPolicy,
    FlushedChanges,
    MessageBuilder,
    MutationContext,
    QueryBuilder,
    RequestBuilder,
    SyncEngine,
    SyncSettings,
)
from .sync._access import sees_entity
from .sync._history import History
from .sync._wire import encode_frame
from .web import ClientAssets
from .world import EntityId, World

__all__ = ["SyncServer"]

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

MAX_FORWARDED = 4096
"""Commands a gateway remembers as forwarded and unanswered, per client (for ``drain``): past
it the oldest is forgotten (its REPLY, if it ever comes, still goes through)."""

_REPLY, _SEND = FrameKind.REPLY, FrameKind.SEND


class SyncServer:
    """The server: owns the :class:`World`, syncs registered components to subscribers.

    Changes collect between flushes; a flush runs as soon as the event loop is free after a
    change, never more often than ``SyncSettings.max_update_rate_hz``, and sends at most one
    frame per connection.

    Args:
        network: Transport settings.
        sync: Flush settings.
        transport: What moves bytes (default WebSockets; ``pl3xus_rx.testing`` has one in
            memory).
        authenticate: Who may connect: ``fn(request) -> Identity`` (sync or async; see
            :mod:`pl3xus_rx.security`). Without one the server is in protected mode: loopback
            clients only, unless ``NetworkSettings(allow_anonymous=True)``.
        control_policy: Who may take control of an entity: ``(world, ctx, entity) ->
            Authorized | Denied`` (``None``: anyone the authorizer allows).
        control_takeover_roles: Identities with one of these roles take control even when
            another party holds it (the loser gets a ``control_released`` notice with
            reason ``taken_over``); everyone else is refused while it is held.
        devtools: Serve DevTools at ``/devtools`` and its queries (``pl3xus.tree``,
            ``pl3xus.schemas``, ``pl3xus.connections``). With an authenticator, all need an
            identity with the ``admin`` role.
        metrics: Serve ``GET /metrics`` (Prometheus text format); with an authenticator it
            needs an identity with the ``admin`` role, like DevTools.
        state: Keep the World in this file across restarts (docs/persistence.md): restored
            by :meth:`load_state` (or at :meth:`serve`, if the application did not call
            it), saved every ``state_settings.save_interval`` seconds while serving and
            once more at shutdown. Only an authority persists; a gateway refuses it.
        state_settings: How the state file is kept (:class:`~pl3xus_rx.state.StateSettings`).
        record: Record everything the server syncs into this file while it serves, or as
            :class:`~pl3xus_rx.recording.RecordSettings` say (docs/recording.md):
            ``pl3xus-rx replay`` serves it again.
    """

    def __init__(
        self,
        network: NetworkSettings | None = None,
        sync: SyncSettings | None = None,
        *,
        transport: Transport | None = None,
        authenticate: Authenticator | None = None,
        control_policy: EntityPolicy | None = None,
        control_takeover_roles: tuple[str, ...] = (),
        devtools: bool = True,
        metrics: bool = True,
        state: str | os.PathLike[str] | None = None,
        state_settings: StateSettings | None = None,
        record: str | os.PathLike[str] | RecordSettings | None = None,
    ) -> None:
        self.world = World()
        """The single source of truth."""
        self._authenticated = False
        self.net = Network(
            network,
            transport=transport,
            welcome_extra=self._welcome_extra,
            extension_handler=self._on_frame,
        )
        """The network layer (plain typed messages work on it too)."""
        self._to = Delivery(self.net)
        self.settings = sync if sync is not None else SyncSettings()
        self.registry = ComponentRegistry()
        """The synced component types."""
        self.engine = SyncEngine(self.world, self.registry, self.settings, wake=self._wake)
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        # each connection's context (its id and identity), made at its first frame
        self._contexts: dict[int, MutationContext] = {}
        self._control_timer: asyncio.TimerHandle | None = None
        self._clock = time.monotonic
        self.as_of_source: Callable[[], float | tuple[float, float]] | None = None
        """Where the World's data comes from, when not from this server: ``fn() -> wall
        time`` the data is current as of, or ``(as_of, age)`` when the source's clock is
        not this machine's (a gateway: the authority's flush time, and how long ago it
        heard it by its own clock); protocol-v2 frames say it. ``None``: this server's own
        flush time."""
        self._stamp_failed = False
        self.welcome_info: dict[str, Any] = {}
        """Extra keys every WELCOME carries (a replay server's ``replay``)."""
        self.recorder: ServerRecorder | None = None
        """The recorder (``SyncServer(record=...)``), or ``None``."""
        if record is not None:
            settings = record if isinstance(record, RecordSettings) else RecordSettings(record)
            self.recorder = ServerRecorder(self.engine, self.world, self.registry, settings)
        self._beacons = Beacons(
            self.engine, self.net, self._to.send_data, lambda: self._clock(), self._stamp
        )
        self.commands = Commands(
            self.world,
            self.registry,
            self.settings,
            control_policy=control_policy,
            takeover_roles=control_takeover_roles,
        )
        """Mutations, control, requests, queries, messages, spawn and despawn (sans-I/O:
        frames in, effects out; this server carries the effects out)."""
        self.registry.add(EntityControl)  # synced like any component, never client-writable
        if authenticate is not None:
            self.authenticate(authenticate)
        self._handlers = Handlers(self.net.spawn, self._handler_finished)
        self._last_messages: dict[str, dict[str, Any]] = {}
        self._forward: Callable[[ConnectionId, list[Any]], None] | None = None
        self._visibility_sink: Callable[[type[BaseModel] | None, EntityId | None], None] | None = (
            None
        )
        # a gateway's clients' commands forwarded, whose REPLY has not come back (req ids)
        self._forwarded: dict[int, dict[int, None]] = {}
        self._moving: set[int] = set()  # connections whose next close is a move
        self._idle: asyncio.Event | None = None  # set once nothing is in flight (drain)
        self._drained: asyncio.Event | None = None  # drain() under way (or done)
        self._moving_out = False  # drain() is closing every connection
        self._install_last_message()
        self.history = History(self.world, self.registry, lambda: self.settings.history_bytes)
        """The history the types built with ``.history(...)`` keep (its ``statistics()``)."""
        self.registry.listeners.append(self._keep_history)
        self._install_history()
        self.client_assets = ClientAssets()
        """The browser client's files (``/pl3xus.js``...; docs/web.md), served to any origin."""
        for path in self.client_assets.paths:
            self.net.add_route(path, self.client_assets.serve)
        if devtools:
            self._install_devtools()
        # tells the instruments (None while there are none: the hot paths call nothing)
        self._reporter: Reporter | None = None
        self.metrics: ServerMetrics | None = None
        """The ``/metrics`` instrument (its Prometheus registry is ``.registry``; ``None`` when
        switched off)."""
        if metrics:
            self._install_metrics()
        self.net.events.subscribe(self._on_event)
        self._state: StateKeeper | None = None
        if state is not None:
            self._state = StateKeeper(
                state,
                state_settings if state_settings is not None else StateSettings(),
                self.world,
                self.registry,
                self.commands,
            )
            self.net.add_health_check("state_file", self._state.health)

    # ------------------------------------------------------------------ registration

    def sync_component(self, model: type[C], name: str | None = None) -> ComponentRegistration[C]:
        """Sync ``model`` to subscribers, read-only for clients."""
        return self.registry.add(model, name=name)

    def sync_component_builder(self, model: type[C]) -> ComponentBuilder[C]:
        """A builder for finer control; finish with ``.build()``."""
        return ComponentBuilder(self.registry, model)

    def register_message(self, model: type[C], name: str | None = None) -> RegisteredType[C]:
        """Register a plain message type on the network layer."""
        return self.net.register_message(model, name)

    @overload
    def request(self, model: type[Request[R]]) -> RequestBuilder[R]: ...
    @overload
    def request(self, model: type[BaseModel]) -> RequestBuilder[Any]: ...
    def request(self, model: type[BaseModel]) -> RequestBuilder[Any]:
        """Register a request type: ``server.request(T).targeted()...register(handler)``
        (typed by the response a :class:`~pl3xus_rx.protocol.Request` model names)."""
        return RequestBuilder(self.commands, model)

    def message(self, model: type[BaseModel]) -> MessageBuilder:
        """Register a one-way, authorized message type:
        ``server.message(T).targeted().with_default_entity_policy().register(handler)``.
        A rejected message is answered with a ``message_rejected`` notice."""
        return MessageBuilder(self.commands, model)

    @overload
    def query(self, model: type[Query[R]]) -> QueryBuilder[R]: ...
    @overload
    def query(self, model: type[BaseModel]) -> QueryBuilder[Any]: ...
    def query(self, model: type[BaseModel]) -> QueryBuilder[Any]:
        """Register a query type: ``server.query(Q).register(handler)`` (typed by the
        response a :class:`~pl3xus_rx.protocol.Query` model names)."""
        return QueryBuilder(self.commands, model)

    def publish(self, message: BaseModel) -> int:
        """Broadcast ``message`` to every client and keep it as its type's last value: a
        client that connects later starts from it (``sync.message_log(T)``,
        ``sync.last_message(T)``). Returns how many connections took it.

        Raises:
            NotRegistered: the type was not registered (``register_message``).
        """
        entry = self.net.message_types.by_model(type(message))
        self._last_messages[entry.name] = to_wire(message)
        return self.net.broadcast(message)

    def allow_spawn(self, policy: SpawnPolicy | None = None) -> None:
        """Let clients spawn entities (``sync.spawn(...)``; off by default). Each component
        must be of a synced type clients may write (``read_only=False``) and valid; the
        spawn quotas must allow it (``SyncSettings.max_spawned_*``); a parent must exist, not
        be controlled by someone else, and the new entity be no deeper than
        ``max_spawn_depth``; then ``policy(world, ctx, parent, components) -> Authorized |
        Denied`` decides (``None``: allowed, except under another client's entity). The
        reply carries the new entity's id; the
        entity remembers who spawned it (``server.commands.owner_of``)."""
        self.commands.allow_spawn(policy)

    def allow_despawn(self, policy: DespawnPolicy | None = None) -> None:
        """Let clients despawn entities (``sync.despawn(entity)``; off by default), never one
        someone else controls (it, an ancestor or a descendant). Without a ``policy`` a client
        may despawn only what it spawned (and only if everything below is its own too), never
        the server's entities; a ``policy(world, ctx, entity) -> Authorized | Denied``
        replaces that rule entirely (call ``server.commands.owners_only`` from it to keep
        ownership)."""
        self.commands.allow_despawn(policy)

    def flushed(self, model: type[C]) -> reactivex.Observable[FlushedChanges[C]]:
        """What each flush sends of the synced type ``model``, as an Observable of
        :class:`~pl3xus_rx.sync.FlushedChanges` (its changes since the type's last flush,
        conflated): tap, record or forward exactly what its subscribers receive. (The
        World's ``changes(T)`` is every change as it happens, before conflation.)

        Raises:
            NotRegistered: ``model`` is not synced.
        """
        return self.engine.flushed(model)

    def invalidate(self, query: type[BaseModel], keys: list[BaseModel] | None = None) -> None:
        """Tell clients to refetch ``query`` (only these parameter sets, if given)."""
        self._apply(self.commands.invalidate(query, keys))

    @property
    def authorizer(self) -> Authorizer | None:
        """A server-wide veto ``(world, ctx, entity, value) -> Authorized | Denied`` over
        every mutation, targeted request and one-way message, and every take of control
        (``value`` is then ``EntityControl(holder=..., by=...)``)."""
        return self.commands.authorizer

    @authorizer.setter
    def authorizer(self, fn: Authorizer | None) -> None:
        self.commands.authorizer = fn

    def authenticate(self, authenticator: Authenticator) -> None:
        """Authenticate every client at the handshake (see :meth:`Network.authenticate`);
        policies and the authorizer then see ``ctx.identity``."""
        self.net.authenticate(authenticator)
        self._authenticated = True

    @property
    def authenticator(self) -> Authenticator | None:
        """The authenticator every handshake passes (``None``: protected mode)."""
        return self.net.authenticator

    def disconnect(self, *, identity: Identity | str, reason: str) -> int:
        """Close every connection of ``identity`` (an :class:`Identity`, or its name) on
        this server, with close code 4003 (``CloseCode.DISCONNECTED``) and ``reason`` (a
        revoked user, say); returns how many. Control they held is released as on any
        close. A scaled-out cluster: call it on each gateway too (a gateway's clients are
        its own connections). Refusing the identity's next handshake is the
        authenticator's business."""
        return self.net.disconnect_identity(identity, reason)

    def identity_of(self, connection: int) -> Identity:
        """Who the client on ``connection`` is (a gateway's client too)."""
        return self._to.identity_of(connection)

    def address_of(self, connection: int) -> str | None:
        """Where the client on ``connection`` connected from (``"host:port"``; ``None`` for a
        gateway's client or a connection that is gone)."""
        cid = ConnectionId(connection)
        if not self.net.has_connection(cid):
            return None
        request = self.net.request_of(cid)
        return request.remote if request is not None else None

    # ------------------------------------------------------------------ operations

    def add_health_check(self, name: str, check: Callable[[], HealthCheck]) -> None:
        """Report ``check()`` under ``name`` in ``/healthz``: ``"checks": {name: {"ok":
        ..., **detail}}``, and 503 ``"status": "unhealthy"`` while any check is not ok.
        While it says ``admit=False``, new WebSocket handshakes are refused with 503 and
        its ``detail["reason"]`` (live connections go on; refusals are counted like any
        other). It is called at every ``/healthz`` request and every handshake, on the
        event loop: keep it cheap, never block. One that raises counts as not ok (logged,
        at most once per ``NetworkSettings.warning_interval``) and refuses nobody.

        Raises:
            DuplicateRegistration: a check of that name is installed.
        """
        self.net.add_health_check(name, check)

    def remove_health_check(self, name: str) -> None:
        """Stop asking the health check ``name`` (nothing happens if there is none)."""
        self.net.remove_health_check(name)

    def in_flight(self) -> int:
        """Commands not answered yet: async handlers running (for this server's clients and
        its gateways'), and on a gateway (:meth:`forward_commands`) the commands forwarded
        whose REPLY has not come back. (A reply held for the next flush is answered: the
        flush sends it.)"""
        forwarded = self._forwarded
        waiting = sum(len(ids) for ids in forwarded.values()) if forwarded else 0
        return self.commands.in_flight() + waiting

    def connection_moving(self, connection: int) -> None:
        """The next close of ``connection`` (a direct client) is a move, not a departure:
        an authenticated client's control is kept for ``SyncSettings.control_move_grace``
        seconds, for the first connection of the same identity that comes (here or, on a
        gateway's authority, through any gateway). :meth:`drain` marks every connection
        so; for a gateway's client, see ``remote_left(..., moving=True)``."""
        if self.net.has_connection(ConnectionId(connection)):
            self._moving.add(connection)

    async def drain(self, timeout: float, reason: str = "server draining") -> None:
        """Move every client away, for a restart or a scale-down without losing anyone's
        work: new handshakes are refused at once (503, naming ``reason``) and ``/healthz``
        answers 503 ``"status": "draining"`` (a load balancer stops sending clients); the
        commands in flight (:meth:`in_flight`) get up to ``timeout`` seconds to be
        answered; a last flush sends every change and held reply; then every connection is
        closed with 4004 (``CloseCode.MOVED``) and ``reason``, which tells a
        ``SyncProvider`` to reconnect at once, to its next URL. Their control is kept for
        ``SyncSettings.control_move_grace`` seconds (:meth:`connection_moving`). A command
        that arrives once the drain began is not applied and answered ``internal_error``
        saying so (the client sends it again once reconnected): what is in flight is
        finished, nothing new is started.

        Returns when every connection is closed; the server keeps refusing handshakes
        until ``serve()`` ends (leaving the ``async with`` after a drain is quick). A
        second call waits for the first. Cancelling stops the wait; the server stays
        draining.

        Raises:
            ValueError: ``timeout`` is negative or not a number.
        """
        if not timeout >= 0 or not math.isfinite(timeout):
            raise ValueError(f"drain(timeout=...) takes seconds, 0 or more; got {timeout!r}")
        if self._drained is not None:
            await self._drained.wait()
            return
        if self.net.state in (NetworkState.CLOSING, NetworkState.CLOSED):
            return  # (closing already: every connection goes anyway)
        self._drained = drained = asyncio.Event()
        done = False
        try:
            self.net.start_draining(reason)
            if self.in_flight():
                started = time.monotonic()
                self._idle = idle = asyncio.Event()
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(idle.wait(), timeout)
                finally:
                    self._idle = None
                left = self.in_flight()
                if left:
                    logger.warning(
                        "drain: %d command(s) still unanswered after %.1f s; closing anyway",
                        left,
                        time.monotonic() - started,
                    )
            self._moving_out = True
            try:
                self._moving.update(int(c) for c in self.net.connections)
                self._last_flush()
                logger.info(
                    "drain: moving %d connection(s) away (%s)", len(self.net.connections), reason
                )
                await self.net.close_connections(CloseCode.MOVED, reason)
                done = True
            finally:
                self._moving_out = False
        finally:
            if not done:  # (cancelled: a later call drains again)
                self._drained = None
            drained.set()

    # ------------------------------------------------------------------ state file

    def _keeper(self, call: str) -> StateKeeper:
        if self._state is None:
            raise StateConflict(
                f"{call} needs a state file: create the server with SyncServer(state=PATH)"
            )
        return self._state

    @property
    def state_path(self) -> str | None:
        """The state file (its real path), or ``None`` without one."""
        return self._state.path if self._state is not None else None

    def load_state(self) -> StateLoaded | None:
        """Restore the World from the state file (``SyncServer(state=PATH)``): entities with
        their ids and parents, the saved component values, and who spawned client-spawned
        entities. Call it once, after registering the components (and any
        :meth:`migrate_state` / :meth:`drop_state`) and before spawning anything; spawn the
        initial entities only when it returns ``None``. :meth:`serve` calls it if the
        application did not (then the World must be empty).

        Returns:
            What was restored, or ``None`` when there is no file yet (a first start).

        Raises:
            StateUnreadable: the file is not a state file, is cut short or corrupt, or was
                written in a newer format (nothing was loaded; the file is left alone).
            StateSchemaChanged: saved types changed shape; names them and their fields.
            StateRestoreFailed: a saved value does not validate any more.
            StateConflict: no state file, loaded already, the World is not empty, or
                another process uses the file.
            StateWriteFailed: the file's lock cannot be created (a missing folder).
        """
        return self._keeper("load_state()").load()

    async def save_state(self) -> StateSaved:
        """Save the World to the state file now (while serving, saves also come every
        ``save_interval`` and at shutdown). The snapshot is taken on the loop; it is
        encoded and written in a thread, atomically. Cancelling stops the wait, not the
        save.

        Raises:
            StateWriteFailed: it could not be written (the file before is left whole).
            StateConflict: the server has no state file.
        """
        saved = await self._keeper("save_state()").save(force=True)
        assert saved is not None
        return saved

    def migrate_state(self, type_: str | type[BaseModel], fn: Migration | None = None) -> None:
        """Load the values the state file holds of ``type_`` (a synced model, or the wire
        name it was saved under) even though its shape changed since they were saved:
        with ``fn(saved: dict) -> dict | model`` applied to each (``saved`` holds the
        saved fields by name), or without one as they are (new fields take their
        defaults, removed ones are ignored). Each result is validated. Values saved in the
        current shape load as usual, so it may stay in place. Call it before
        :meth:`load_state`."""
        self._keeper("migrate_state()").migrations[type_] = fn

    def drop_state(self, type_: str | type[BaseModel]) -> None:
        """Forget the values the state file holds of ``type_`` (a synced model, or the wire
        name it was saved under) if its shape changed since they were saved, or it is no
        longer synced, rather than refuse to start (the entities stay, without them; the
        next save no longer holds them). Values saved in the current shape load as usual.
        Call it before :meth:`load_state`."""
        self._keeper("drop_state()").drops[type_] = None

    def state_statistics(self) -> StateStatistics:
        """How the state file has been kept: the last load, saves written, skipped and
        failed, the last save and the last error.

        Raises:
            StateConflict: the server has no state file.
        """
        return self._keeper("state_statistics()").statistics()

    # ------------------------------------------------------------------ scale-out hooks

    def remote_joined(self, connection: int, identity: Identity, sink: RemoteSink) -> None:
        """A client of a gateway connected (scale-out): commands from it arrive through
        :meth:`remote_frame`, and what this server sends it goes to ``sink(connection,
        msgpack_frame)``. ``connection`` must not collide with this server's own ids."""
        self._to.remote[connection] = (sink, identity)
        self.engine.add_client(connection, binary=True, identity=identity)
        if self._reporter is not None:  # (instruments hear of a gateway's clients too)
            self._reporter.report("connection_opened", connection, identity)
        self._joined(connection, identity)

    def remote_frame(self, connection: int, frame: list[Any]) -> bool:
        """A command frame (MUTATE, CONTROL, REQUEST, QUERY, SEND, SPAWN, DESPAWN) from a
        gateway's client, handled as if it came from a direct client: same policies, same
        identity, answers to its sink. Anything else is refused with an ERROR frame.
        Returns ``False`` (nothing done) when ``connection`` is not a known gateway client."""
        remote = self._to.remote.get(connection)
        if remote is None:
            return False
        try:
            if not frame or frame[0] not in CLIENT_COMMAND_KINDS:
                raise FrameError("a gateway forwards command frames only")
            self._command(MutationContext(connection, remote[1]), frame)
        except FrameError as exc:
            self._to.send_frame(connection, error_frame(exc.to_wire()))
        return True

    def remote_left(self, connection: int, *, moving: bool = False) -> None:
        """A gateway's client went away: its control is released, its handlers cancelled.

        Args:
            connection: The gateway's client.
            moving: It left for a move (its gateway drains: it reconnects at once,
                through another): an authenticated client's control is kept for
                ``SyncSettings.control_move_grace`` seconds, and the first connection of
                the same identity that joins (:meth:`remote_joined`, or directly) holds
                it again. Anonymous clients lose it at once, as on any leave.
        """
        if self._to.remote.pop(connection, None) is None:
            return
        if self._reporter is not None:
            self._reporter.connection_closed(connection)
        self._handlers.cancel(connection)
        self._left(connection, moving)
        self.engine.remove_client(connection)

    def remote_connections(self) -> list[int]:
        """The gateway clients this server knows."""
        return list(self._to.remote)

    def on_broadcast(self, sink: Callable[[bytes], None] | None) -> None:
        """Also hand every frame broadcast to all clients (invalidations, notifications
        to all) to ``sink(msgpack_frame)``: an authority tells its gateways' clients."""
        self._to.broadcast_sink = sink

    def on_visibility_changed(
        self, sink: Callable[[type[BaseModel] | None, EntityId | None], None] | None
    ) -> None:
        """Also hand every :meth:`visibility_changed` call to ``sink(component, entity)``:
        an authority tells its gateways, which apply read access at the edge."""
        self._visibility_sink = sink

    def forward_commands(self, sink: Callable[[ConnectionId, list[Any]], None] | None) -> None:
        """Hand client command frames to ``sink(connection, frame)`` instead of handling
        them here: a gateway forwards them to the authority.

        Raises:
            StateConflict: this server has a state file: a gateway's World is a replica of
                its authority's, rebuilt from it at every start; only the authority
                persists.
        """
        if sink is not None and self._state is not None:
            raise StateConflict(
                f"this server keeps a state file ({self._state.path}) but forwards its "
                "commands (a gateway): a gateway's World is a replica of its authority's, "
                "rebuilt from it at every start, and never persists. Give state= to the "
                "authority's server only (docs/persistence.md, Scale-out)",
                path=self._state.path,
            )
        self._forward = sink
        self.history.paused = sink is not None  # (the authority keeps it and answers)
        if sink is not None:
            self.history.clear()

    def deliver(self, connection: int, frame: list[Any], *, current: bool = False) -> None:
        """Send ``frame`` to a client of this server: a REPLY waits for this server's next
        flush (so the changes it answers for reach the client first); others go at once.
        (A gateway relays the authority's frames with it.) ``current``: a REPLY waits
        until everything the client subscribes to is current (a replay's seek)."""
        if frame and frame[0] == _REPLY:
            self._unforward(connection, frame)
            if self._moving_out:  # (no flush is coming before the close)
                self._to.send_frame(connection, frame)
            else:
                self.engine.defer(connection, frame, current=current)
        else:
            self._to.send_frame(connection, frame)

    def update_settings(self, **changes: Any) -> SyncSettings:
        """Change sync settings while serving (``max_update_rate_hz=10`` to calm every
        flush, ``control_timeout=60``...); the next flush and the next command use them.
        Returns the new settings.

        Raises:
            SettingsError: an unknown setting or a bad value (named).
        """
        updated = SyncSettings(**{**self.settings.model_dump(), **changes})
        self.settings = self.engine.settings = self.commands.settings = updated
        self._wake()
        return updated

    def notify(
        self,
        text: str,
        *,
        level: str = "info",
        context: dict[str, Any] | None = None,
        connection: int | None = None,
        identity: Identity | str | None = None,
    ) -> int:
        """Tell people something (a toast in an HMI): to one ``connection``, to every
        connection of an ``identity`` (or identity name), or to everyone. ``level`` is
        ``info``, ``success``, ``warning`` or ``error``; ``context`` is any JSON-able map
        (the entity, a job id...). Clients receive them in order on
        ``SyncProvider.notifications``. Returns how many connections it went to.

        Raises:
            ValueError: an unknown level, or a context that cannot be sent.
        """
        try:
            kind = NotificationLevel(level)
        except ValueError:
            known = ", ".join(v.value for v in NotificationLevel)
            raise ValueError(f"unknown notification level {level!r}; use one of {known}") from None
        body = {"level": kind.value, "text": text, "context": dict(context or {})}
        frame = [FrameKind.NOTICE, NoticeKind.NOTIFICATION, body]
        try:
            encoded = {True: encode_frame(True, frame), False: encode_frame(False, frame)}
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"this notification cannot be sent: {exc}") from exc
        name = identity.name if isinstance(identity, Identity) else identity
        return self._to.send_encoded(encoded, connection=connection, identity=name)

    def visibility_changed(
        self, component: type[BaseModel] | None = None, entity: EntityId | None = None
    ) -> None:
        """Something a ``visible_to`` rule reads changed other than the component itself
        (another component, the identity's rights): evaluate the rules again at the next
        flush, of ``component`` (default: every restricted type) for ``entity`` (default:
        every entity). Clients get what became visible, and removals of what did not stay;
        a holder that no longer sees an entity loses its control (``not_visible``). An
        authority passes it on to its gateways (:meth:`on_visibility_changed`)."""
        self.engine.visibility_changed(component, entity)
        if self._visibility_sink is not None:
            self._visibility_sink(component, entity)
        if len(self.commands.control):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # not serving: the next command or flush checks
            loop.call_soon(self._release_unseen)

    def _release_unseen(self) -> None:
        effects, _ = self.commands.tick(self._clock())
        self._apply(effects)

    def sees(self, identity: Identity, entity: EntityId) -> bool:
        """Whether ``identity`` may see ``entity``: at least one of its synced components
        other than ``EntityControl`` (whose visibility follows the entity's). Commands that
        target an entity decide with this (hidden answers as missing)."""
        return sees_entity(self.world, self.registry, identity, entity)

    # ------------------------------------------------------------------ plumbing

    def _admin(self, identity: Identity) -> bool:
        # Without an authenticator the network admitted only loopback (or, deliberately,
        # anonymous) clients; with one, DevTools needs the admin role.
        return not self._authenticated or identity.has_role(ADMIN_ROLE)

    # ------------------------------------------------------------------ instruments

    def instrument(self, instrument: Instrument) -> None:
        """Install ``instrument`` (see :mod:`pl3xus_rx.instruments`): it is told of
        connections, refused handshakes, frames, command answers, flushes and
        subscriptions from now on. ``/metrics`` is one;
        :class:`~pl3xus_rx.instruments.AuditLog` another."""
        if self._reporter is None:
            self._reporter = Reporter()
            self.engine.on_subscription = self._subscription_changed
            self.net.refusal_listeners.append(self._refused)
        self._reporter.instruments = (*self._reporter.instruments, instrument)

    def remove_instrument(self, instrument: Instrument) -> None:
        """Stop telling ``instrument``; with none left the hot paths report nothing."""
        reporter = self._reporter
        if reporter is None:
            return
        reporter.instruments = tuple(i for i in reporter.instruments if i is not instrument)
        if not reporter.instruments:
            self._reporter = None
            self.engine.on_subscription = None
            self.net.refusal_listeners.remove(self._refused)

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        """The installed instruments."""
        return self._reporter.instruments if self._reporter is not None else ()

    def _refused(self, request: HttpRequest, response: HttpResponse) -> None:
        if self._reporter is not None:
            self._reporter.refused(request.remote, response.status, response.body)

    def _subscription_changed(
        self, connection: int, type_name: str, entity: int | None, opened: bool
    ) -> None:
        if self._reporter is not None:
            self._reporter.subscription(connection, type_name, entity, opened)

    def _install_metrics(self) -> None:
        self.metrics = metrics = ServerMetrics(self.net, self.engine, self.commands)
        self.instrument(metrics)

        async def serve_metrics(request: HttpRequest) -> HttpResponse:
            found = await self.net.identify(request)
            if isinstance(found, HttpResponse):
                return found
            if not self._admin(found):
                return HttpResponse(403, f"/metrics needs the {ADMIN_ROLE!r} role\n")
            return HttpResponse(200, metrics.render(), CONTENT_TYPE)

        self.net.add_route("/metrics", serve_metrics)

    def _install_last_message(self) -> None:
        def last_message(world: World, query: LastMessageQuery) -> LastMessage:
            if self.net.message_types.by_name(query.type) is None:
                raise NotFound(f"{shown(query.type)} is not a message type of this server")
            return LastMessage(value=self._last_messages.get(query.type))

        self.query(LastMessageQuery).name(LAST_MESSAGE_QUERY).returns(LastMessage).register(
            last_message
        )

    def _keep_history(self, reg: ComponentRegistration[Any]) -> None:
        if reg.history is not None:
            self.history.keep(reg)
            self.engine.hook(self.history, [reg.model])

    def _install_history(self) -> None:
        def history(world: World, ctx: MutationContext, query: HistoryQuery) -> HistoryPart:
            return self.history.answer(query, ctx.identity)

        self.query(HistoryQuery).name(HISTORY_QUERY).returns(HistoryPart).register(history)

    def _install_devtools(self) -> None:
        install_devtools(
            net=self.net,
            engine=self.engine,
            registry=self.registry,
            query=self.query,
            sees=self.sees,
            admin=self._admin,
            remote=lambda: [(c, identity) for c, (_, identity) in self._to.remote.items()],
            commands=self.commands,
        )

    def _welcome_extra(self, connection: ConnectionId) -> dict[str, Any]:
        identity = self.net.identity_of(connection)
        v2: dict[str, Any] = {}
        if self.net.protocol_version(connection) >= 2:
            settings = self.settings
            v2["as_of_interval"] = settings.as_of_interval
            v2["window"] = {
                "seconds": settings.ack_window_seconds,
                "bytes": settings.ack_window_bytes,
                "frames": settings.ack_window_frames,
            }
        kept = self.history.welcome()
        return {
            **v2,
            **({"history": kept} if kept else {}),
            "components": self.registry.wire_table(),
            **self.commands.wire_tables(),
            "identity": {
                "name": identity.name,
                "roles": sorted(identity.roles),
                "anonymous": identity.anonymous,
            },
            **self.welcome_info,
        }

    def _on_frame(self, connection: ConnectionId, binary: bool, frame: list[Any]) -> None:
        if self._reporter is not None and self._reporter.frames:
            self._reporter.report("frame_received", connection, frame[0])
        ctx = self._contexts.get(connection)
        if ctx is None:  # its first frame: who it is, once
            ctx = self._context(connection, binary)
        if frame[0] in CLIENT_COMMAND_KINDS:
            if self._moving_out or self._drained is not None:
                # (draining: what is in flight is finished, nothing new is started: a
                # command forwarded now could be applied after its client is gone)
                self._not_now(connection, frame)
            elif self._forward is not None:
                if frame[0] != _SEND and len(frame) > 1 and type(frame[1]) is int:
                    self._forwarding(connection, frame[1])  # (before: a REPLY may come at once)
                self._forward(connection, frame)
            else:
                self._command(ctx, frame)
        else:
            self.engine.handle_frame(connection, binary, frame)

    def handle_here(self, connection: int, frame: list[Any]) -> None:
        """Handle a client's command frame on this server after all: what a
        :meth:`forward_commands` sink keeps local (a replay server answers DevTools' and
        the built-in read-only queries itself). A connection that is gone is ignored."""
        self._unforward(connection, frame)
        ctx = self._contexts.get(connection)
        if ctx is not None:
            self._command(ctx, frame)

    def _unforward(self, connection: int, frame: list[Any]) -> None:
        """``frame`` answers (or takes back) a forwarded command: no longer waited for."""
        forwarded = self._forwarded.get(connection)
        if forwarded is not None and len(frame) > 1 and type(frame[1]) is int:
            forwarded.pop(frame[1], None)
            if not forwarded:
                del self._forwarded[connection]
            if self._idle is not None:
                self._answered()

    def _forwarding(self, connection: int, req_id: int) -> None:
        forwarded = self._forwarded.get(connection)
        if forwarded is None:
            forwarded = self._forwarded[connection] = {}
        elif len(forwarded) >= MAX_FORWARDED:
            del forwarded[next(iter(forwarded))]  # (bounded: the oldest is forgotten)
        forwarded[req_id] = None

    def _not_now(self, connection: int, frame: list[Any]) -> None:
        """A command that came while ``drain`` closes every connection: not applied, and
        answered so (the client sends it again once it reconnected)."""
        if frame[0] == _SEND or len(frame) < 2 or type(frame[1]) is not int:
            return  # (a one-way message: nobody waits for an answer)
        text = "not applied: this server is draining; send it again once reconnected"
        self._to.send_frame(connection, [_REPLY, frame[1], Status.INTERNAL_ERROR.value, text, {}])

    def _command(self, ctx: MutationContext, frame: list[Any]) -> None:
        """A client's command frame: through the command layer, its effects carried out."""
        reporter = self._reporter
        if reporter is not None and not reporter.commands:
            reporter = None  # (nobody listens to answers: /metrics alone)
        if reporter is not None:
            reporter.asked(ctx, frame)
        effects = self.commands.handle(ctx, frame, self._clock())
        if reporter is not None and frame[0] == FrameKind.SEND:
            reporter.answered_send(ctx, frame, effects)
        if effects:
            self._apply(effects)
        if self.commands.control.holds:
            self._schedule_control_check()

    def _apply(self, effects: list[Effect]) -> None:
        """Carry out what the command layer asked for."""
        if self._reporter is not None and self._reporter.commands:
            self._reporter.answers_in(effects)
        for effect in effects:
            if type(effect) is Hold:  # (the hot path: an ok waiting for its flush)
                if self._moving_out:  # (no flush is coming before the close)
                    self._to.send_frame(effect.connection, effect.frame)
                    continue
                self.engine.defer(
                    effect.connection,
                    effect.frame,
                    component=effect.component,
                    entity=effect.entity,
                )
            elif isinstance(effect, Send):
                self._to.send_frame(effect.connection, effect.frame)
            elif isinstance(effect, Broadcast):
                self._to.broadcast_frame(effect.frame)
            elif isinstance(effect, Start):
                self._handlers.start(effect)

    def _reschedule_control_check(self) -> None:
        """Check control again now and set the timer afresh (a deadline sooner than the
        timer's may have come: a hold kept for a move)."""
        if self._control_timer is not None:
            self._control_timer.cancel()
            self._control_timer = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving: the next command or flush checks
        self._schedule_control_check()

    def _schedule_control_check(self) -> None:
        if self._control_timer is not None:
            return
        effects, due = self.commands.tick(self._clock())
        self._apply(effects)
        if due is None:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            self._control_timer = None
            self._schedule_control_check()

        self._control_timer = loop.call_later(max(0.0, due - self._clock()), check)

    def _context(self, connection: ConnectionId, binary: bool) -> MutationContext:
        """A new client's context, and its record in the engine (a v2 one is beaconed)."""
        ctx = self._contexts[connection] = MutationContext(connection, self.identity_of(connection))
        version = self.net.protocol_version(connection)
        self.engine.add_client(connection, binary=binary, identity=ctx.identity, version=version)
        if version >= 2:
            self._beacons.start()
        return ctx

    def _on_event(self, event: object) -> None:
        if (
            isinstance(event, Connected)
            and event.id not in self._contexts
            and self.net.protocol_version(event.id) >= 2
        ):
            # a v2 client hears from the server even before it asks for anything (a
            # silent link is a dead one to it)
            subprotocol = self.net.connection_statistics(event.id).subprotocol
            self._context(event.id, codec_for_subprotocol(subprotocol).binary)
        if self._reporter is not None:
            if isinstance(event, Connected):
                self._reporter.report("connection_opened", event.id, self.identity_of(event.id))
            elif isinstance(event, Disconnected):
                self._reporter.connection_closed(event.id)
        if isinstance(event, Connected):
            if self.net.has_connection(event.id):
                self._joined(event.id, self.identity_of(event.id))
        elif isinstance(event, Disconnected):
            self._handlers.cancel(event.id)  # nobody is left to answer
            moving = event.id in self._moving
            self._moving.discard(event.id)
            self._left(event.id, moving)
            self.engine.remove_client(event.id)
            self._contexts.pop(event.id, None)

    def _joined(self, connection: int, identity: Identity) -> None:
        """A client (direct or a gateway's) is here: it may hold its party's control kept
        for a move."""
        effects = self.commands.connection_opened(connection, identity, self._clock())
        if effects:
            self._apply(effects)

    def _left(self, connection: int, moving: bool) -> None:
        """A client (direct or a gateway's) is gone, for a move or for good."""
        if moving:
            effects = self.commands.connection_closed(connection, moving=True, now=self._clock())
        else:
            effects = self.commands.connection_closed(connection)
        self._apply(effects)
        self._forwarded.pop(connection, None)
        if self._idle is not None:
            self._answered()
        if moving and self.commands.control.holds:
            self._reschedule_control_check()  # (the grace's end is a deadline to watch)

    def _handler_finished(self, call: int, **end: Any) -> None:
        self._apply(self.commands.handler_finished(call, **end))
        if self._idle is not None:
            self._answered()

    def _answered(self) -> None:
        """Something in flight was answered (or its client left): ``drain`` may go on."""
        idle = self._idle
        if idle is not None and not self.in_flight():
            idle.set()

    def _wake(self) -> None:
        handle = self._handle
        if handle is not None and not isinstance(handle, asyncio.TimerHandle):
            return  # a flush is already queued to run as soon as the loop is free
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # changes before serve(): the first subscription's snapshot covers them
        delay = self.engine.next_flush_delay(self._clock())
        if delay is None:
            return
        if handle is not None:
            # A flush is scheduled for later (a rate-capped type waiting); this one may be
            # due sooner.
            if loop.time() + delay >= handle.when() - 1e-4:
                return
            handle.cancel()
        if delay <= 0:
            self._handle = loop.call_soon(self._flush)
        else:
            self._handle = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._handle = None
        reporter = self._reporter
        if reporter is not None:
            frames, nbytes = self.engine.sent()
        started = time.perf_counter()
        try:
            self.engine.flush_into(self._clock(), self._to.flush_sink(), self._stamp(), chunks=True)
        except Exception:
            logger.exception("flush failed")
        if self.commands.control.holds:  # whoever stopped seeing what it holds loses it
            effects, _ = self.commands.tick(self._clock())
            self._apply(effects)
        if reporter is not None:
            frames_now, bytes_now = self.engine.sent()
            seconds = time.perf_counter() - started
            reporter.report("flushed", seconds, frames_now - frames, bytes_now - nbytes)
        self._wake()  # held or rate-limited changes still waiting

    def _stamp(self) -> tuple[float, float]:
        """``(as_of, age)`` of the World's data now (protocol v2)."""
        wall = time.time()
        source = self.as_of_source
        if source is None:
            return wall, 0.0
        try:
            found = source()
            if isinstance(found, tuple):
                as_of, age = float(found[0]), float(found[1])
            else:
                as_of = float(found)
                age = wall - as_of
            if not (math.isfinite(as_of) and math.isfinite(age)):  # (JSON has no inf, NaN)
                raise ValueError(f"{found!r} is not a time")
        except Exception:
            if not self._stamp_failed:  # (once: it would fail at every flush)
                self._stamp_failed = True
                logger.exception("as_of_source failed; the flush time stands in")
            return wall, 0.0
        return as_of, max(0.0, age)

    # ------------------------------------------------------------------ serving

    @asynccontextmanager
    async def serve(
        self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None
    ) -> AsyncIterator[tuple[str, int]]:
        """Listen on ``host:port`` for the duration of the ``async with``; closes gracefully.
        With ``ssl``, over TLS (``wss://``; DevTools and ``/healthz`` over ``https://``).

        With a state file, the World is loaded first (unless :meth:`load_state` was
        called), saves start, and a last save follows the shutdown.

        Yields:
            The bound (host, port).

        Raises:
            StateError: the state file cannot be loaded, or saves cannot be written (the
                server does not listen).
        """
        keeper = self._state
        if keeper is not None:
            await keeper.start()
        recorder = self.recorder
        try:
            address = await self.net.listen(host, port, ssl=ssl)
        except BaseException:
            if keeper is not None:
                await keeper.stop()
            raise
        if recorder is not None:
            try:
                recorder.origin = f"{address[0]}:{address[1]}"
                recorder.start()
            except BaseException:
                await self.net.close()
                if keeper is not None:
                    await keeper.stop()
                raise
        try:
            yield address
        finally:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            if self._control_timer is not None:
                self._control_timer.cancel()
                self._control_timer = None
            self._beacons.stop()
            self._last_flush()
            if recorder is not None:
                recorder.stop()
            await self.net.close()
            if keeper is not None:
                await keeper.stop()  # (after the close: no command changes the World now)

    def _last_flush(self) -> None:
        """Before the shutdown closes every connection: one more flush (whatever the rate
        cap), then every reply still waiting, so no command applied goes unanswered."""
        send = self._to.send_data
        try:
            self.engine.flush_into(
                max(self._clock(), self.engine.next_flush_allowed()),
                send,
                self._stamp(),
                chunks=True,
            )
            self.engine.release_deferred(send)
        except Exception:
            logger.exception("the last flush failed")
