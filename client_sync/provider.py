"""SyncProvider: connects to a SyncServer and exposes typed signals of its components.

The I/O shell around :class:`client_sync.store.Store`: it owns a ``Network`` connection,
re-establishes it with exponential backoff and jitter, re-subscribes and lets the fresh
snapshots reconcile the replica, so the signals converge to the server's state.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import operator
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Generic, Literal, TypeVar, cast

import reactivex
from pydantic import BaseModel
from reactivex import abc
from reactivex.disposable import Disposable

from pl3xus_rx._rx import Dispatcher, SafeSubject
from pl3xus_rx.exceptions import (
    ConnectFailed,
    FrameError,
    NetworkStateError,
    SchemaMismatch,
)
from pl3xus_rx.net import Disconnected, Error, Network, NetworkSettings, Transport
from pl3xus_rx.net._events import ConnectionId

from .registry import ClientTypeRegistry
from .signal import Signal, WritableSignal
from .store import ReplicaChange, ReplicaChangeKind, SequenceGap, Store

__all__ = [
    "Change",
    "ConnectionState",
    "ConnectionStatus",
    "ReconnectPolicy",
    "SyncProvider",
]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

EMPTY: Mapping[int, Any] = MappingProxyType({})


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("reconnect loop failed", exc_info=task.exception())


class ConnectionState(enum.Enum):
    """Where the provider's link to the server is."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """The value of :attr:`SyncProvider.connection`.

    Attributes:
        state: The state.
        attempt: While reconnecting, the attempt number (1, 2, ...).
        delay: While reconnecting, the wait before this attempt, in seconds.
        reason: Why the link went down (or why the last attempt failed).
    """

    state: ConnectionState
    attempt: int = 0
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with jitter.

    The n-th attempt waits ``min(max_delay, initial_delay * multiplier ** (n - 1))``, scaled
    by a random factor in ``[1 - jitter, 1]`` so that many clients do not reconnect in step.
    """

    initial_delay: float = 0.1
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before attempt number ``attempt`` (from 1)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """A typed change seen by the client.

    Attributes:
        kind: inserted, updated, removed (component) or despawned (entity).
        entity: The entity id.
        value: The new value, or the last one for removed / despawned.
    """

    kind: ReplicaChangeKind
    entity: int
    value: T | None


class _Sub:
    """One server subscription, shared by every local observer of it (ref-counted)."""

    def __init__(
        self, provider: SyncProvider, name: str, model: type[BaseModel], entity: int | None
    ) -> None:
        self.name = name
        self.model = model
        self.entity = entity
        self.refs = 0
        self.sub_id = 0
        self.changes: SafeSubject[Change[Any]] = SafeSubject()
        self.signal: WritableSignal[Mapping[int, Any]] = WritableSignal(
            EMPTY,
            equals=operator.is_,
            on_first_subscribe=lambda: provider._acquire(self),
            on_last_dispose=lambda: provider._release(self),
        )


class SyncProvider:
    """A client of a :class:`pl3xus_rx.SyncServer`, with typed signals per component.

    Use it as an async context manager; entering connects (raising
    :class:`~pl3xus_rx.ConnectFailed` if the first connection fails), leaving closes.
    After that, a lost connection is re-established on its own (see :class:`ReconnectPolicy`)
    and every live subscription is renewed and reconciled; meanwhile :attr:`stale` is True
    and the signals keep their last values.

    Args:
        url: ``ws://host:port/`` of the server.
        registry: The component types this client uses.
        network: Settings of the underlying :class:`~pl3xus_rx.Network`.
        reconnect: Backoff policy.
        encoding: Wire encoding to ask for.
        transport: What moves the bytes (``pl3xus_rx.testing.MemoryTransport`` in tests).
    """

    def __init__(
        self,
        url: str,
        registry: ClientTypeRegistry,
        *,
        network: NetworkSettings | None = None,
        reconnect: ReconnectPolicy | None = None,
        encoding: Literal["msgpack", "json"] = "msgpack",
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.registry = registry
        self.policy = reconnect if reconnect is not None else ReconnectPolicy()
        self._encoding = encoding
        self._net = Network(network, transport=transport)
        self._net.extension_handler = self._on_frame
        self._net.events.subscribe(self._on_event)
        self._dispatcher = Dispatcher()
        self._store = Store([])
        self._subs: dict[tuple[type[BaseModel], int | None], _Sub] = {}
        self._by_id: dict[int, _Sub] = {}
        self._next_sub_id = 1
        self._cid: ConnectionId | None = None
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self._derived: dict[tuple[Any, ...], Signal[Any]] = {}
        self.connection: WritableSignal[ConnectionStatus] = WritableSignal(
            ConnectionStatus(ConnectionState.CONNECTING)
        )
        """The link's state, as a signal."""
        self.stale: WritableSignal[bool] = WritableSignal(True)
        """True while the data may be out of date (not connected, or not yet synced)."""
        self.errors: SafeSubject[Exception] = SafeSubject()
        """Schema mismatches, server error answers and resyncs, as they happen."""
        self.connection_id: int | None = None
        """The server's id for the current connection (from its welcome)."""
        self.resyncs = 0
        """How many times a sequence gap or a bad frame forced fresh snapshots."""

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> SyncProvider:
        self._loop = asyncio.get_running_loop()
        try:
            await self._connect_once()
        except ConnectFailed:
            self.connection.set(ConnectionStatus(ConnectionState.CLOSED, reason="connect failed"))
            await self._net.close()
            raise
        return self

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
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            await asyncio.gather(self._reconnect_task, return_exceptions=True)
            self._reconnect_task = None
        await self._net.close()
        self.stale.set(True)
        self.connection.set(ConnectionStatus(ConnectionState.CLOSED, reason="closed"))

    async def _connect_once(self) -> None:
        cid = await self._net.connect(self.url, encoding=self._encoding)
        welcome = self._net.welcome_of(cid)
        components = welcome.body.get("components", [])
        if not isinstance(components, list):
            raise ConnectFailed(f"{self.url} sent no component table; is it a SyncServer?")
        self._store.rebind(components)
        self._check_schema(components)
        self._cid = cid
        self.connection_id = welcome.connection_id
        for sub in self._subs.values():
            if sub.refs > 0:
                self._send_subscribe(sub)
        self.stale.set(False)
        self.connection.set(ConnectionStatus(ConnectionState.OPEN))
        logger.info("connected to %s as connection %s", self.url, self.connection_id)

    def _check_schema(self, components: list[list[Any]]) -> None:
        remote = {row[1]: row[2] for row in components}
        for model in self.registry:
            name = self.registry.name_of(model)
            local = self.registry.hashes[name]
            if remote.get(name) != local:
                mismatch = SchemaMismatch(name, local, remote.get(name))
                logger.warning("schema mismatch with %s: %s", self.url, mismatch)
                self.errors.on_next(mismatch)

    def _on_event(self, event: object) -> None:
        if isinstance(event, Disconnected) and event.id == self._cid:
            self._cid = None
            self.stale.set(True)
            if not self._closing:
                logger.info("lost %s (%s); reconnecting", self.url, event.reason)
                task = asyncio.get_running_loop().create_task(self._reconnect_loop(event.reason))
                task.add_done_callback(_log_failure)
                self._reconnect_task = task
        elif isinstance(event, Error):
            err = event.error
            if isinstance(err, SchemaMismatch) and err.local_hash is None:
                return  # a message type the server has and we do not use: not our concern
            self.errors.on_next(err)

    async def _reconnect_loop(self, reason: str) -> None:
        attempt = 0
        while not self._closing:
            attempt += 1
            delay = self.policy.delay(attempt, self._rng)
            self.connection.set(
                ConnectionStatus(ConnectionState.RECONNECTING, attempt, delay, reason)
            )
            await asyncio.sleep(delay)
            try:
                await self._connect_once()
                return
            except ConnectFailed as exc:
                reason = str(exc)
                logger.debug("reconnect attempt %d to %s failed: %s", attempt, self.url, exc)
            except NetworkStateError:
                return  # closed meanwhile

    # ------------------------------------------------------------------ frames

    def _on_frame(self, connection: ConnectionId, binary: bool, frame: list[Any]) -> None:
        # On the socket reader: only hand over; the work and every callback run later.
        if frame[0] != 5:
            raise FrameError(f"frame kind {frame[0]} is not sent by servers")
        self._dispatcher.post(self._apply, frame)

    def _apply(self, frame: list[Any]) -> None:
        try:
            changes = self._store.apply(frame)
        except (SequenceGap, FrameError) as exc:
            self.resyncs += 1
            logger.warning("%s; asking for fresh snapshots", exc)
            self.errors.on_next(exc)
            self._send([6, None])
            return
        by_sub: dict[int, list[ReplicaChange]] = {}
        for change in changes:
            by_sub.setdefault(change.subscription, []).append(change)
        for sub_id, items in by_sub.items():
            sub = self._by_id.get(sub_id)
            if sub is None:
                continue
            # one emission per batch: a new read-only mapping, copied once per batch
            sub.signal.set(MappingProxyType(dict(self._store.view(sub_id))))
            if sub.changes.observers:  # build typed changes only for someone who listens
                for item in items:
                    sub.changes.on_next(Change(item.kind, item.entity, item.value))

    def _send(self, frame: list[Any]) -> None:
        cid = self._cid
        if cid is not None and self._net.has_connection(cid):
            self._net.send_frame(cid, frame)

    def _send_subscribe(self, sub: _Sub) -> None:
        self._send([3, sub.sub_id, sub.name, sub.entity, {}])

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
                sub.sub_id = self._next_sub_id
                self._next_sub_id += 1
                self._by_id[sub.sub_id] = sub
                self._store.add_subscription(sub.sub_id, sub.name, sub.model, sub.entity)
                self._send_subscribe(sub)

        self._call_on_loop(go)

    def _release(self, sub: _Sub) -> None:
        def go() -> None:
            sub.refs -= 1
            if sub.refs == 0:
                self._send([4, sub.sub_id])
                self._store.remove_subscription(sub.sub_id)
                self._by_id.pop(sub.sub_id, None)

        self._call_on_loop(go)

    def _sub(self, model: type[BaseModel], entity: int | None) -> _Sub:
        name = self.registry.name_of(model)  # raises NotRegistered with the fix
        key = (model, entity)
        sub = self._subs.get(key)
        if sub is None:
            if not self._store.knows(name) and self._cid is not None:
                logger.warning("the server does not sync %s; its signal will stay empty", name)
            sub = self._subs[key] = _Sub(self, name, model, entity)
        return sub

    # ------------------------------------------------------------------ hooks

    def components(self, model: type[T]) -> Signal[Mapping[int, T]]:
        """Every entity's ``model`` component: a read-only mapping, one emission per batch.

        The server subscription lives while the signal is observed.

        Raises:
            NotRegistered: ``model`` is not in the registry.
        """
        return cast(Signal[Mapping[int, T]], self._sub(model, None).signal)

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
        self._send([6, None])

    @property
    def network(self) -> Network:
        """The underlying network (statistics, events)."""
        return self._net
