"""SyncProvider: connects to a SyncServer and exposes typed signals of its components.

The I/O shell around :class:`client_sync.store.Store`: it owns a ``Network`` connection,
re-establishes it with exponential backoff and jitter, re-subscribes and lets the fresh
snapshots reconcile the replica, so the signals converge to the server's state. This module
is the connection core and the signals; commands (``_commands``), queries (``_queries``)
and messages (``_messages``) are rooms of their own that the provider inherits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import random
import ssl as _ssl
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeVar, cast

import reactivex
from pydantic import BaseModel
from reactivex import abc
from reactivex.disposable import Disposable

from pl3xus_rx._rx import Dispatcher, SafeSubject
from pl3xus_rx.exceptions import (
    CommandRejected,
    CommandTimeout,
    ConnectFailed,
    ConnectionClosed,
    ConnectionLost,
    ConnectionNotFound,
    NetworkStateError,
    RemoteError,
    SchemaMismatch,
)
from pl3xus_rx.net import Disconnected, Error, Network, NetworkSettings, Transport
from pl3xus_rx.net._events import ConnectionId
from pl3xus_rx.protocol import (
    CloseCode,
    EntityControl,
    NoticeKind,
    rejection_for,
    schema_hash,
)
from pl3xus_rx.security import Identity

from ._commands import MutationHandle, RequestHandle
from ._credential import Credential, TokenSource, refresh_delay
from ._freshness import Freshness
from ._history import Histories
from ._messages import Messages
from ._queries import Queries, _Query
from .registry import ClientTypeRegistry
from .session import (
    Applied,
    Beacon,
    ClientSession,
    Invalidation,
    NoticeEvent,
    Reply,
    ResyncNeeded,
    SubscriptionSpec,
    SyncArrived,
    identity_in,
    is_gap_or_bad_frame,
    welcome_problem,
)
from .signal import Signal, WritableSignal, combine
from .states import (
    Change,
    ConnectionState,
    ConnectionStatus,
    MutationState,
    MutationStatus,
    Notice,
    Notification,
    QueryState,
    QueryStatus,
    ReconnectPolicy,
)
from .store import ReplicaChange

__all__ = [
    "Change",
    "MutationHandle",
    "RequestHandle",
    "MutationState",
    "MutationStatus",
    "Notice",
    "QueryState",
    "QueryStatus",
    "ConnectionState",
    "ConnectionStatus",
    "ReconnectPolicy",
    "SyncProvider",
]

logger = logging.getLogger(__name__)

ACK_DELAY = 0.1
"""Seconds a single applied SYNC frame waits to be acknowledged (two or more: at once)."""

T = TypeVar("T", bound=BaseModel)

EMPTY: Mapping[int, Any] = MappingProxyType({})
EMPTY_NAMES: Mapping[str, Any] = MappingProxyType({})


def _field_difference(model: type[BaseModel] | None, remote: list[str] | None) -> str | None:
    """Which fields of a component differ between this end's model and the server's."""
    if model is None or remote is None:
        return None
    here = list(model.model_fields)
    missing = [f for f in remote if f not in here]
    extra = [f for f in here if f not in remote]
    parts = []
    if missing:
        parts.append(f"only the server has {', '.join(missing)}")
    if extra:
        parts.append(f"only this end has {', '.join(extra)}")
    if not parts and here != remote:
        parts.append(f"field order differs: {', '.join(here)} here, {', '.join(remote)} there")
    if not parts:
        parts.append(f"same fields ({', '.join(here)}): a type, default or constraint differs")
    return "; ".join(parts)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("reconnect loop failed", exc_info=task.exception())


class _Sub:
    """One server subscription, shared by every local observer of it (ref-counted)."""

    def __init__(
        self,
        provider: SyncProvider,
        name: str,
        model: type[BaseModel],
        entity: int | None,
        options: dict[str, float] | None = None,
    ) -> None:
        self.spec = SubscriptionSpec(name, model, entity, options or {})
        self.refs = 0
        self.sub_id = 0
        self.changes: SafeSubject[Change[Any]] = SafeSubject()
        self.signal: WritableSignal[Mapping[int, Any]] = WritableSignal(
            EMPTY,
            equals=operator.is_,
            on_first_subscribe=lambda: provider._acquire(self),
            on_last_dispose=lambda: provider._release(self),
        )


class SyncProvider(Queries, Messages, Histories):
    """A client of a :class:`pl3xus_rx.SyncServer`, with typed signals per component.

    Use it as an async context manager; entering connects (raising
    :class:`~pl3xus_rx.ConnectFailed` if the first connection fails), leaving closes.
    After that, a lost connection is re-established on its own (see :class:`ReconnectPolicy`)
    and every live subscription is renewed and reconciled; meanwhile :attr:`stale` is True
    and the signals keep their last values.

    Args:
        url: ``ws://host:port/`` of the server, or several (the gateways of a cluster,
            docs/scaling.md): the first that answers is used; after a lost connection the
            same one is tried first, then each attempt tries the next. A server that
            drains (close code 4004, ``CloseCode.MOVED``) sends the client to the next
            URL at once, without a backoff delay.
        registry: The component types this client uses.
        network: Settings of the underlying :class:`~pl3xus_rx.Network`.
        reconnect: Backoff policy.
        encoding: Wire encoding to ask for.
        transport: What moves the bytes (``pl3xus_rx.testing.MemoryTransport`` in tests).
        command_timeout: Default timeout of commands (mutations, requests, queries, control).
        check_schema: Compare the registry with the server's welcome (tools that build their
            models from the welcome itself turn it off).
        token: A credential for the server's authenticator, sent as
            ``Authorization: Bearer <token>`` with every (re)connection; or a callable
            (sync or async) returning one, asked at every connection and, when the server
            says the credential expires, again shortly before it does to refresh it in
            band (no reconnect; see :meth:`refresh_credential`).
        headers: More handshake headers.
        ssl: The TLS context for ``wss://`` URLs (default: the system's trust store).
        acknowledge: On a protocol-v2 link, acknowledge the SYNC frames applied, so that
            the server merges what changes while this client is behind and sends it the
            latest values instead of a backlog (docs/protocol.md, "Protocol v2").
        stale_after: Seconds of age (see :meth:`age`) past which :attr:`stale` turns True
            on a v2 link; ``None``: age alone never makes the data stale.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        registry: ClientTypeRegistry,
        *,
        network: NetworkSettings | None = None,
        reconnect: ReconnectPolicy | None = None,
        encoding: Literal["msgpack", "json"] = "msgpack",
        transport: Transport | None = None,
        command_timeout: float = 10.0,
        check_schema: bool = True,
        token: TokenSource | None = None,
        headers: Mapping[str, str] | None = None,
        ssl: _ssl.SSLContext | None = None,
        acknowledge: bool = True,
        stale_after: float | None = 2.0,
    ) -> None:
        self.urls: tuple[str, ...] = (url,) if isinstance(url, str) else tuple(url)
        """Where the server is: several URLs (gateways of one cluster) are tried in turn."""
        if not self.urls:
            raise ValueError("SyncProvider needs at least one URL")
        self._url_index = 0
        self._check = check_schema
        self._headers = dict(headers or {})
        self._credential = Credential(token)
        self._acknowledge = acknowledge
        self._freshness = Freshness(stale_after)
        self._arrived: list[tuple[SyncArrived, float]] = []  # waiting to be applied
        self._unacked = 0  # frames applied and not acknowledged yet
        self._ack_timer: asyncio.TimerHandle | None = None
        self._too_old = False
        self._watchdog: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._ssl = ssl
        self.registry = registry
        self.policy = reconnect if reconnect is not None else ReconnectPolicy()
        self._encoding = encoding
        self._net = Network(network, transport=transport, extension_handler=self._on_frame)
        self._net.events.subscribe(self._on_event)
        self._dispatcher = Dispatcher()
        self._session = ClientSession()
        self._subs: dict[tuple[Any, ...], _Sub] = {}
        self._by_id: dict[int, _Sub] = {}
        self._cid: ConnectionId | None = None
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self._derived: dict[Hashable, Signal[Any]] = {}
        self.connection: WritableSignal[ConnectionStatus] = WritableSignal(
            ConnectionStatus(ConnectionState.CONNECTING)
        )
        """The link's state, as a signal."""
        self.stale: WritableSignal[bool] = WritableSignal(True)
        """True while the data may be out of date: not connected, or (re)connected and the
        snapshots of the subscriptions it renewed not all complete yet (big ones arrive in
        parts), or a resync under way."""
        self.errors: SafeSubject[Exception] = SafeSubject()
        """Schema mismatches, server error answers, resyncs and rejected values, as they
        happen."""
        self.identity: Identity | None = None
        """Who the server says this client is (from its welcome; ``None`` before the first
        connection, or from a server that does not say)."""
        self.connection_id: int | None = None
        """The server's id for the current connection (from its welcome)."""
        self.resyncs = 0
        """How many times a sequence gap or a bad frame forced fresh snapshots."""
        self._synced = asyncio.Event()  # set while connected with every snapshot complete
        self.rejected_values = 0
        """Component values this end's models rejected (left out of the signals; each one
        is logged and reported on :attr:`errors` with its entity, type and reason)."""
        self.command_timeout = command_timeout
        """Default timeout, in seconds, of mutations, requests, queries and control."""
        self.notices: SafeSubject[Notice] = SafeSubject()
        """Control notices from the server (see :class:`Notice`)."""
        self.notifications: SafeSubject[Notification] = SafeSubject()
        """Notifications from the server's code (``server.notify``), in order."""
        self.mutations: WritableSignal[Mapping[tuple[int, str], MutationState]] = WritableSignal(
            MappingProxyType({})
        )
        """Mutations by (entity, component name): in flight (``loading``) or failed (``error``,
        until the next mutation of that field succeeds); a success removes its entry. For
        "saving..." marks and error marks next to fields."""
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._queries: dict[tuple[str, str], _Query] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._one_way: set[str] = set()
        self._kept_history: Mapping[str, Any] = EMPTY_NAMES

    # ------------------------------------------------------------------ life cycle

    def _next_url(self) -> None:
        self._url_index = (self._url_index + 1) % len(self.urls)

    async def __aenter__(self) -> SyncProvider:
        self._loop = asyncio.get_running_loop()
        failures = []
        for _ in self.urls:
            try:
                await self._connect_once()
                return self
            except ConnectFailed as exc:
                failures.append(exc)
                self._next_url()
        self.connection.set(ConnectionStatus(ConnectionState.CLOSED, reason="connect failed"))
        await self._net.close()
        if len(failures) == 1:
            raise failures[0]
        raise ConnectFailed("; ".join(str(f) for f in failures)) from failures[-1]

    async def start(self) -> SyncProvider:
        """Connect, or, when the server does not answer yet, keep trying in the background
        as after a lost connection (see :class:`ReconnectPolicy`) instead of raising: for
        apps that come up before their server or outlive it (dashboards). Meanwhile
        :attr:`stale` is True, :attr:`connection` says why, and signals taken now fill once
        connected. Close with :meth:`close`.

        Raises:
            ConnectFailed: the server refused the credential (HTTP 401 or 403): trying again
                would not help.
        """
        self._loop = asyncio.get_running_loop()
        try:
            await self._connect_once()
        except ConnectFailed as exc:
            if exc.status in (401, 403):
                self.connection.set(ConnectionStatus(ConnectionState.CLOSED, reason=str(exc)))
                await self._net.close()
                raise
            logger.info("%s is not there yet (%s); trying again in the background", self.url, exc)
            self._next_url()
            task = self._loop.create_task(self._reconnect_loop(str(exc)))
            task.add_done_callback(_log_failure)
            self._reconnect_task = task
        return self

    def syncs(self, model: type[BaseModel]) -> bool | None:
        """Whether the server syncs ``model`` (by its last welcome); ``None`` before the
        first one. A signal of a type it does not sync stays empty."""
        if self._session.connected or self.connection_id is not None:
            name = "EntityControl" if model is EntityControl else self.registry.name_of(model)
            return self._session.knows(name)
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reconnecting and close the connection. Safe to call twice."""
        self._closing = True
        self._stop_watchdog()
        self._plan_refresh(None)
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            await asyncio.gather(self._reconnect_task, return_exceptions=True)
            self._reconnect_task = None
        await self._net.close()
        self.stale.set(True)
        self.connection.set(ConnectionStatus(ConnectionState.CLOSED, reason="closed"))

    async def _connect_once(self) -> None:
        headers = dict(self._headers)
        try:
            token = await self._credential.token()
        except Exception as exc:
            raise ConnectFailed(f"the token callable failed: {type(exc).__name__}: {exc}") from exc
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        cid = await self._net.connect(
            self.url, encoding=self._encoding, headers=headers, ssl=self._ssl
        )
        if not self._net.has_connection(cid):  # dropped by the server right away
            raise ConnectFailed(f"{self.url} closed the connection right after the handshake")
        welcome = self._net.welcome_of(cid)
        problem = welcome_problem(welcome.body)
        if problem is not None:
            with contextlib.suppress(Exception):
                await self._net.disconnect(cid, code=1002, reason="unreadable welcome")
            raise ConnectFailed(f"{self.url} sent a WELCOME this client cannot read: {problem}")
        components = welcome.body.get("components", [])
        renew = self._session.connected_with(components)
        if self._check:
            self._check_schema(components, welcome.body)
        self._one_way = {row[0] for row in welcome.body.get("one_way") or []}
        kept = welcome.body.get("history")
        self._kept_history = MappingProxyType(dict(kept)) if isinstance(kept, dict) else EMPTY_NAMES
        self._cid = cid
        self.connection_id = welcome.connection_id
        self.identity = identity_in(welcome.body)
        interval = welcome.body.get("as_of_interval")
        beacons = (
            float(interval)
            if welcome.body.get("version") == 2
            and isinstance(interval, int | float)
            and interval > 0
            else None
        )
        self._freshness.connected(beacons, time.monotonic())
        if beacons is not None:
            self._start_watchdog(beacons)
        self._plan_refresh(welcome.body.get("expires_in") if welcome.body.get("refresh") else None)
        for frame in renew:
            self._send(frame)
        for query in self._queries.values():
            self._fetch(query)  # answers may have changed while we were away
        # stale until every renewed subscription's snapshot is complete
        self._update_stale()
        self.connection.set(ConnectionStatus(ConnectionState.OPEN))
        logger.info("connected to %s as connection %s", self.url, self.connection_id)

    def _check_schema(
        self, components: list[list[Any]], welcome: Mapping[str, Any] | None = None
    ) -> None:
        remote = {row[1]: row[2] for row in components}
        local_all = dict(self.registry.hashes)
        welcome = welcome or {}
        for key, table in (
            ("requests", self.registry.requests),
            ("queries", self.registry.queries),
        ):
            for row in welcome.get(key) or []:
                remote[row[0]] = f"{row[1]}/{row[2]}"
            for name, (model, response) in table.items():
                local_all[name] = f"{schema_hash(model)}/{schema_hash(response)}"
        remote_fields = {row[1]: list(row[3]) for row in components if len(row) > 3}
        for name, local in local_all.items():
            if remote.get(name) != local:
                detail = _field_difference(self.registry.model_of(name), remote_fields.get(name))
                mismatch = SchemaMismatch(name, local, remote.get(name), detail)
                logger.warning("schema mismatch with %s: %s", self.url, mismatch)
                self.errors.on_next(mismatch)

    def _on_event(self, event: object) -> None:
        if isinstance(event, Disconnected) and event.id == self._cid:
            self._cid = None
            self._stop_watchdog()
            if self._ack_timer is not None:
                self._ack_timer.cancel()
                self._ack_timer = None
            self._unacked = 0  # (a new connection counts its own frames)
            self._plan_refresh(None)
            self.stale.set(True)
            self._synced.clear()
            self._fail_pending(self._session.disconnected(), event.reason)
            if not self._closing:
                moved = event.code == CloseCode.MOVED
                if moved:  # (the server drains: to the next URL, at once)
                    logger.info("%s moved this client (%s); reconnecting", self.url, event.reason)
                    self._next_url()
                else:
                    logger.info("lost %s (%s); reconnecting", self.url, event.reason)
                task = asyncio.get_running_loop().create_task(
                    self._reconnect_loop(event.reason, at_once=moved)
                )
                task.add_done_callback(_log_failure)
                self._reconnect_task = task
        elif isinstance(event, Error):
            err = event.error
            if isinstance(err, SchemaMismatch) and err.local_hash is None:
                return  # a message type the server has and we do not use: not our concern
            refused = err.body.get("subscription") if isinstance(err, RemoteError) else None
            if type(refused) is int and self._session.refused(refused):
                logger.warning("the server refused subscription %d: %s", refused, err)
                self._update_stale()  # (its snapshot will never come)
            self.errors.on_next(err)

    async def _reconnect_loop(self, reason: str, *, at_once: bool = False) -> None:
        """Reconnect until connected, backing off between attempts (the first one with no
        wait when ``at_once``: the server moved this client), each to the next URL."""
        attempt = 0
        while not self._closing:
            attempt += 1
            delay = 0.0 if at_once and attempt == 1 else self.policy.delay(attempt, self._rng)
            self.connection.set(
                ConnectionStatus(ConnectionState.RECONNECTING, attempt, delay, reason)
            )
            await asyncio.sleep(delay)
            try:
                await self._connect_once()
                return
            except (ConnectFailed, ConnectionNotFound, ConnectionClosed) as exc:
                reason = str(exc)  # refused, or dropped while we were setting up: try again
                logger.debug("reconnect attempt %d to %s failed: %s", attempt, self.url, exc)
                self._next_url()  # (another gateway of the cluster, if there are several)
            except NetworkStateError:
                return  # closed meanwhile

    # ------------------------------------------------------------------ credential

    async def refresh_credential(
        self, token: str | None = None, *, timeout: float | None = None
    ) -> float | None:
        """Send the server a new credential for this connection (``token``, else one from
        the token callable), without reconnecting: it must name the same identity. The
        server's welcome says whether it takes them (``refresh``). Returns the seconds
        until the new credential expires (``None``: never).

        Raises:
            Forbidden: the server refused it (no authenticator, not valid, another
                identity); the connection is closed when the old one expires.
            ConnectionLost: not connected.
            CommandTimeout: no answer in time.
        """
        if token is None:
            token = await self._credential.token()
            if token is None:
                raise ValueError("this provider has no token to refresh with")
        body = await self._command(lambda: self._session.refresh(token), timeout)
        expires_in = body.get("expires_in")
        return float(expires_in) if isinstance(expires_in, int | float) else None

    def _plan_refresh(self, expires_in: Any) -> None:
        """Refresh ahead of ``expires_in`` seconds from now (``None``: stop planning)."""
        task, self._refresh_task = self._refresh_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if not isinstance(expires_in, int | float) or not self._credential.renewable:
            return
        task = asyncio.get_running_loop().create_task(self._refresh_later(float(expires_in)))
        task.add_done_callback(_log_failure)
        self._refresh_task = task

    async def _refresh_later(self, expires_in: float) -> None:
        deadline = time.monotonic() + expires_in
        await asyncio.sleep(refresh_delay(expires_in))
        while not self._closing:
            try:
                self._plan_refresh(await self.refresh_credential())
                logger.debug("credential refreshed on %s", self.url)
                return
            except (CommandRejected, CommandTimeout, ConnectionLost, TypeError) as exc:
                left = deadline - time.monotonic()
                logger.warning("could not refresh the credential on %s: %s", self.url, exc)
                self.errors.on_next(exc)
                if left < 2.0:
                    return  # the server closes at expiry; reconnecting asks for a new token
                await asyncio.sleep(min(left / 2, 10.0))

    # ------------------------------------------------------------------ frames

    def _on_frame(self, connection: ConnectionId, binary: bool, frame: list[Any]) -> None:
        # On the socket reader: only hand over; the work and every callback run later.
        now = time.monotonic()
        self._freshness.heard(now)
        event = self._session.receive(frame)
        if isinstance(event, SyncArrived):
            stamp = frame[3:]  # (v2: as_of, age)
            if len(stamp) == 2 and all(isinstance(v, int | float) for v in stamp):
                self._freshness.observe(now, float(stamp[0]), float(stamp[1]))
            # frames that arrive while earlier ones wait are applied with them, in one pass
            self._arrived.append((event, now))
            if len(self._arrived) == 1:
                self._dispatcher.post(self._apply_arrived, None)
        elif isinstance(event, Beacon):
            self._freshness.observe(now, event.as_of, event.age)
            self._dispatcher.post(self._beacon, event)
        elif isinstance(event, Reply):
            future = self._pending.pop(event.req_id, None)
            if future is not None and not future.done():
                future.set_result(event)  # its awaiter resumes later, on the loop
        elif isinstance(event, NoticeEvent):
            self._dispatcher.post(self._notice, event)
        elif isinstance(event, Invalidation):
            self._dispatcher.post(self._invalidated, event)

    def _notice(self, notice: NoticeEvent) -> None:
        if notice.kind == NoticeKind.NOTIFICATION:
            detail = notice.detail
            context = detail.get("context")
            self.notifications.on_next(
                Notification(
                    str(detail.get("level", "info")),
                    str(detail.get("text", "")),
                    MappingProxyType(context if isinstance(context, dict) else {}),
                )
            )
            return
        self.notices.on_next(Notice(notice.kind, notice.entity, notice.detail))
        if notice.kind == NoticeKind.MESSAGE_REJECTED:
            detail = notice.detail
            self.errors.on_next(
                rejection_for(
                    str(detail.get("status")),
                    f"{detail.get('type')}: {detail.get('reason')}",
                    detail.get("errors"),
                )
            )

    def _fail_pending(self, lost: list[int], reason: str) -> None:
        pending, self._pending = self._pending, {}
        for req_id in lost:
            future = pending.get(req_id)
            if future is not None and not future.done():
                future.set_exception(
                    ConnectionLost(
                        f"the connection to {self.url} was lost while a command was in flight "
                        f"({reason}); it may or may not have been applied and is not re-sent"
                    )
                )
                future.exception()  # retrieved here; the awaiter re-raises it

    def _apply_arrived(self, _: object) -> None:
        """Apply every SYNC frame that has arrived, each signal updated once for them all
        (a client that fell behind catches up instead of replaying each state)."""
        arrived, self._arrived = self._arrived, []
        applied: list[Applied] = []
        for event, _received in arrived:
            result = self._apply(event)
            if result is not None:
                applied.append(result)
                frame = event.frame
                if len(frame) == 5 and isinstance(frame[3], int | float):
                    self._freshness.shown(float(frame[3]))
        # the flag first: observers see whether what they are given is stale
        self._check_age()
        if arrived and self._acknowledge and self._freshness.interval is not None:
            self._unacked += len(arrived)
            self._acknowledge_soon()  # (before the observers: a slow redraw must not hold it)
        if applied:
            self._deliver(
                applied[0]
                if len(applied) == 1
                else Applied(
                    [c for a in applied for c in a.changes],
                    [r for a in applied for r in a.rejected],
                )
            )

    def _acknowledge_soon(self) -> None:
        """Acknowledge what was applied: at once when two frames or more wait for it, else
        within ``ACK_DELAY`` (about 15 acknowledgements a second at 30 flushes a second,
        well inside the server's window of frames in flight)."""
        if self._unacked >= 2:
            self._acknowledge_now()
        elif self._ack_timer is None and self._loop is not None:
            self._ack_timer = self._loop.call_later(ACK_DELAY, self._acknowledge_now)

    def _acknowledge_now(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._unacked:
            self._unacked = 0
            self._send(self._session.acknowledge())

    def _beacon(self, beacon: Beacon) -> None:
        if not self._arrived and beacon.seq == self._session.store.seq:
            self._freshness.shown(beacon.as_of)
            self._check_age()

    def _apply(self, arrived: SyncArrived) -> Applied | None:
        result = self._session.apply(arrived)
        if isinstance(result, ResyncNeeded):
            exc = result.error
            self.resyncs += 1
            if is_gap_or_bad_frame(exc):
                logger.warning("%s; asking for fresh snapshots", exc)
            else:
                logger.error(
                    "a SYNC frame could not be applied; asking for fresh snapshots", exc_info=exc
                )
            self.errors.on_next(exc)
            self._send(result.frame)
            self._synced.clear()
            self.stale.set(True)
            return None
        return result

    def _deliver(self, applied: Applied) -> None:
        if applied.rejected:
            self.rejected_values += len(applied.rejected)
            for error in applied.rejected:
                logger.warning("a synced value was left out: %s", error)
                self.errors.on_next(error)
        by_sub: dict[int, list[ReplicaChange]] = {}
        for change in applied.changes:
            by_sub.setdefault(change.subscription, []).append(change)
        store = self._session.store
        for sub_id, items in by_sub.items():
            sub = self._by_id.get(sub_id)
            if sub is None:
                continue
            # one emission per batch: a new read-only mapping, copied once per batch
            sub.signal.set(MappingProxyType(dict(store.view(sub_id))))
            if sub.changes.observers:  # build typed changes only for someone who listens
                for item in items:
                    sub.changes.on_next(Change(item.kind, item.entity, item.value))
        if not self._synced.is_set():  # after the signals: not stale means they hold it all
            self._update_stale()

    def _send(self, frame: list[Any]) -> None:
        cid = self._cid
        if cid is not None and self._net.has_connection(cid):
            self._net.send_frame(cid, frame)

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until connected and every live subscription's snapshot is complete (big ones
        arrive in parts): the signals then hold the server's full state.

        Raises:
            TimeoutError: not synced within ``timeout`` seconds.
        """
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _update_stale(self) -> None:
        """Not stale once connected and every awaited snapshot is complete (and, on a v2
        link, the data no older than ``stale_after``)."""
        if self._session.synced and self._cid is not None:
            self._synced.set()
            if not self._too_old:
                self.stale.set(False)

    # ------------------------------------------------------------------ freshness (v2)

    def age(self) -> float | None:
        """How old, in seconds, the data the signals show is: how old the server said it
        was when it sent it, plus the time since (no clock agreement needed). ``None`` on
        a protocol-v1 link, or before any data."""
        return self._freshness.age(time.monotonic())

    @property
    def as_of(self) -> float | None:
        """The server's wall-clock time (seconds since the epoch) the data the signals show
        is current as of (protocol v2; through a gateway, the authority's as the gateway
        knows it); ``None`` before any, or on a v1 link."""
        return self._freshness.as_of

    def _check_age(self) -> None:
        too_old = self._freshness.too_old(time.monotonic())
        if too_old != self._too_old:
            self._too_old = too_old
            if too_old:
                logger.info("the data from %s is older than %g s", self.url, self.age() or 0)
                self.stale.set(True)
            else:
                self._update_stale()

    def _start_watchdog(self, interval: float) -> None:
        self._stop_watchdog()
        task = asyncio.get_running_loop().create_task(self._watch(interval))
        task.add_done_callback(_log_failure)
        self._watchdog = task

    def _stop_watchdog(self) -> None:
        task, self._watchdog = self._watchdog, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _watch(self, interval: float) -> None:
        """While a v2 link lives: mark the data stale past ``stale_after``, and take the
        link as dead when it brings nothing for three beacon intervals (and 2 s)."""
        while self._cid is not None and not self._closing:
            asked = time.monotonic()
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            self._check_age()
            cid = self._cid
            if now - asked > interval:
                continue  # this loop itself was stalled: what it did not read is not lost
            if cid is not None and self._freshness.dead(now):
                logger.warning(
                    "%s sent nothing for %.1f s (3 beacon intervals, at least 2 s): the link is "
                    "dead; "
                    "reconnecting",
                    self.url,
                    now - self._freshness.heard_at,
                )
                self._watchdog = None
                self._net.abort(cid, "no frame for three beacon intervals (and 2 s)")
                return

    # ------------------------------------------------------------------ subscriptions

    def _call_on_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(fn)
        else:
            fn()

    def _acquire(self, sub: _Sub) -> None:
        def go() -> None:
            sub.refs += 1
            if sub.refs == 1:
                sub.sub_id, frame = self._session.subscribe(sub.spec)
                self._by_id[sub.sub_id] = sub
                if frame is not None:  # (None: this server does not sync the type)
                    self._send(frame)
                    self._synced.clear()  # (not stale for it: it is new, not old)

        self._call_on_loop(go)

    def _release(self, sub: _Sub) -> None:
        def go() -> None:
            sub.refs -= 1
            if sub.refs == 0:
                self._send(self._session.unsubscribe(sub.sub_id))
                self._by_id.pop(sub.sub_id, None)
                self._update_stale()

        self._call_on_loop(go)

    def _sub(
        self, model: type[BaseModel], entity: int | None, options: dict[str, float] | None = None
    ) -> _Sub:
        # EntityControl is synced by every server; the user need not register it.
        name = "EntityControl" if model is EntityControl else self.registry.name_of(model)
        key = (model, entity, tuple(sorted((options or {}).items())))
        sub = self._subs.get(key)
        if sub is None:
            if not self._session.knows(name) and self._cid is not None:
                logger.warning("the server does not sync %s; its signal will stay empty", name)
            sub = self._subs[key] = _Sub(self, name, model, entity, options)
        return sub

    # ------------------------------------------------------------------ hooks

    def components(
        self,
        model: type[T],
        *,
        max_rate_hz: float | None = None,
        deadband: float | None = None,
    ) -> Signal[Mapping[int, T]]:
        """Every entity's ``model`` component: a read-only mapping, one emission per batch.

        The server subscription lives while the signal is observed.

        Args:
            model: The component type.
            max_rate_hz: This subscription's own cap on updates per second (the server
                conflates in between).
            deadband: Skip updates whose numeric fields all moved less than this.

        Raises:
            NotRegistered: ``model`` is not in the registry.
        """
        options: dict[str, float] = {}
        if max_rate_hz is not None:
            options["max_rate_hz"] = max_rate_hz
        if deadband is not None:
            options["deadband"] = deadband
        return cast(Signal[Mapping[int, T]], self._sub(model, None, options).signal)

    def entities(self) -> Signal[Mapping[int, Mapping[type[BaseModel], BaseModel]]]:
        """Every entity with its components of every registered type the server syncs
        (a wildcard subscription): ``{entity: {Model: value, ...}}``, one emission per
        batch. Each type's server subscription lives while the signal is observed.

        Types the server does not sync (by the welcome) are left out.
        """
        signal = self._derived.get("entities")
        if signal is None:
            models = [
                m for m in self.registry if self._session.store.knows(self.registry.name_of(m))
            ]
            parents = [self.components(m) for m in models]

            def merge(values: list[Mapping[int, BaseModel]]) -> Mapping[int, Any]:
                out: dict[int, dict[type[BaseModel], BaseModel]] = {}
                for model, mapping in zip(models, values, strict=True):
                    for entity, value in mapping.items():
                        out.setdefault(entity, {})[model] = value
                return MappingProxyType({e: MappingProxyType(c) for e, c in sorted(out.items())})

            signal = self._derived["entities"] = combine(parents, merge)
        return cast(Signal[Mapping[int, Mapping[type[BaseModel], BaseModel]]], signal)

    def components_where(
        self, model: type[T], predicate: Callable[[T], bool]
    ) -> Signal[Mapping[int, T]]:
        """The entities whose ``model`` component satisfies ``predicate``."""

        def select(m: Mapping[int, T]) -> Mapping[int, T]:
            return MappingProxyType({e: v for e, v in m.items() if predicate(v)})

        return self.components(model).map(select)

    def entity_component(self, model: type[T], entity: int) -> Signal[T | None]:
        """One entity's ``model`` component, or ``None`` while it has none."""
        key = ("entity", model, entity)
        signal = self._derived.get(key)
        if signal is None:
            base = cast(Signal[Mapping[int, T]], self._sub(model, entity).signal)
            signal = self._derived[key] = base.map(lambda m: m.get(entity))
        return cast(Signal[T | None], signal)

    def control(self, entity: int) -> Signal[int | None]:
        """Who controls ``entity``: the holder's connection id (compare with
        :attr:`connection_id`) or ``None``."""
        key = ("control", entity)
        signal = self._derived.get(key)
        if signal is None:
            base = self.entity_component(EntityControl, entity)
            signal = self._derived[key] = base.map(lambda c: c.holder if c else None)
        return cast(Signal[int | None], signal)

    def component_changes(self, model: type[T]) -> reactivex.Observable[Change[T]]:
        """Typed changes (inserted / updated / removed / despawned) of ``model``, for
        consumers that keep their own view. The server subscription lives while observed."""
        sub = self._sub(model, None)

        def subscribe(
            observer: abc.ObserverBase[Change[T]], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            self._acquire(sub)
            inner = sub.changes.subscribe(observer)

            def dispose() -> None:
                inner.dispose()
                self._release(sub)

            return Disposable(dispose)

        return reactivex.create(subscribe)

    def resync(self) -> None:
        """Ask the server for fresh snapshots of every subscription."""
        self._send(self._session.resync())

    @property
    def network(self) -> Network:
        """The underlying network (statistics, events)."""
        return self._net
