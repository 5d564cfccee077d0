"""The client's commands: mutations, requests, spawn and despawn, control — each a frame
with a request id, answered by one REPLY. A room of :class:`~client_sync.SyncProvider`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast, overload

from pydantic import BaseModel

from pl3xus_rx.exceptions import CommandTimeout, ConnectionLost
from pl3xus_rx.net import Network
from pl3xus_rx.net._events import ConnectionId
from pl3xus_rx.protocol import ControlAction, Request, from_wire, to_wire

from .registry import ClientTypeRegistry
from .session import ClientSession, Reply
from .signal import WritableSignal
from .states import MutationState, MutationStatus, RequestState, RequestStatus

__all__ = ["Commands", "MutationHandle", "RequestHandle"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class MutationHandle(Generic[T]):
    """Mutations of one component type with a state signal, for UIs (a button that shows
    loading, then success or the error). Create with :meth:`SyncProvider.mutation`."""

    def __init__(self, provider: Commands, model: type[T]) -> None:
        self._provider = provider
        self.model = model
        self.state: WritableSignal[MutationState] = WritableSignal(
            MutationState(MutationStatus.IDLE)
        )
        """idle → loading → success | error."""

    async def mutate(self, entity: int, value: T, *, timeout: float | None = None) -> None:
        """Like :meth:`SyncProvider.mutate`, tracking the state; errors are raised too."""
        self.state.set(MutationState(MutationStatus.LOADING))
        try:
            await self._provider.mutate(entity, value, timeout=timeout)
        except Exception as exc:
            self.state.set(MutationState(MutationStatus.ERROR, exc))
            raise
        self.state.set(MutationState(MutationStatus.SUCCESS))


class RequestHandle(Generic[R]):
    """Calls of one request type, answered with an ``R``, with a state signal, for UIs (a
    "Load program" button that shows pending, then the answer or the error). Create with
    :meth:`SyncProvider.request_handle`."""

    def __init__(self, provider: Commands, model: type[BaseModel]) -> None:
        self._provider = provider
        self.model = model
        self.state: WritableSignal[RequestState[R]] = WritableSignal(
            RequestState(RequestStatus.IDLE)
        )
        """idle → pending → ok | error; ``value`` keeps the last answer."""

    async def call(
        self, request: BaseModel, *, entity: int | None = None, timeout: float | None = None
    ) -> R:
        """Like :meth:`SyncProvider.request` (``timeout`` for this call), tracking the
        state; errors are raised too."""
        last = self.state.get().value
        self.state.set(RequestState(RequestStatus.PENDING, last))
        try:
            value = await self._provider.request(request, entity=entity, timeout=timeout)
        except Exception as exc:
            self.state.set(RequestState(RequestStatus.ERROR, last, exc))
            raise
        self.state.set(RequestState(RequestStatus.OK, value))
        return cast(R, value)


class Commands:
    """Commands to the server and their futures (the provider's connection core supplies
    the link: :attr:`_net`, :attr:`_cid`, :attr:`_session`)."""

    registry: ClientTypeRegistry
    command_timeout: float
    mutations: WritableSignal[Mapping[tuple[int, str], MutationState]]
    _net: Network
    _session: ClientSession
    _cid: ConnectionId | None
    _pending: dict[int, asyncio.Future[Reply]]
    urls: tuple[str, ...]
    _url_index: int

    @property
    def url(self) -> str:
        """The URL in use (or tried next)."""
        return self.urls[self._url_index]

    async def _command(
        self, build: Callable[[], tuple[int, list[Any]]], timeout: float | None
    ) -> dict[str, Any]:
        cid = self._cid
        if cid is None or not self._net.has_connection(cid):
            raise ConnectionLost(f"not connected to {self.url}; the command was not sent")
        req_id, frame = build()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        self._net.send_frame(cid, frame)
        wait = self.command_timeout if timeout is None else timeout
        try:
            reply = await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            self._forget(req_id)
            raise CommandTimeout(
                f"no answer from {self.url} within {wait:g} s; the server may still apply it"
            ) from None
        except asyncio.CancelledError:
            self._forget(req_id)
            raise
        error = reply.error()
        if error is not None:
            raise error
        return dict(reply.body)

    def _forget(self, req_id: int) -> None:
        self._pending.pop(req_id, None)
        self._session.forget(req_id)

    async def mutate(self, entity: int, value: BaseModel, *, timeout: float | None = None) -> None:
        """Ask the server to set ``entity``'s component to ``value``.

        Returns once the server applied it; by then this client's signals already show it.
        Cancelling is safe (the answer is then ignored).

        Raises:
            NotRegistered: the type is not in the registry.
            Forbidden: read-only, the entity policy refused, or control is held elsewhere.
            NotFound: no such entity (or the server does not sync the type).
            InvalidValue: the value failed the server's validation (``errors`` names fields).
            ServerError: the server's handler failed.
            ConnectionLost: the link dropped before the answer (never re-sent).
            CommandTimeout: no answer in time.
        """
        name = self.registry.name_of(type(value))
        payload = to_wire(value)
        key = (entity, name)
        self._mutation_state(key, MutationState(MutationStatus.LOADING))
        try:
            await self._command(lambda: self._session.mutate(name, entity, payload), timeout)
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._mutation_state(key, MutationState(MutationStatus.ERROR, exc))
            else:  # cancelled: nothing to show
                self._mutation_state(key, None)
            raise
        self._mutation_state(key, None)

    def _mutation_state(self, key: tuple[int, str], state: MutationState | None) -> None:
        states = dict(self.mutations.get())
        if state is None:
            if key not in states:
                return
            del states[key]
        else:
            states[key] = state
        self.mutations.set(MappingProxyType(states))

    @overload
    def request_handle(self, model: type[Request[R]]) -> RequestHandle[R]: ...
    @overload
    def request_handle(self, model: type[BaseModel]) -> RequestHandle[Any]: ...
    def request_handle(self, model: type[BaseModel]) -> RequestHandle[Any]:
        """A handle for calls of request ``model`` with a state signal (idle / pending / ok /
        error) and the last answer, for UIs (typed by the response a
        :class:`~pl3xus_rx.protocol.Request` model names).

        Raises:
            NotRegistered: the request type is not in the registry (``register_request``).
        """
        self.registry.request_of(model)
        return RequestHandle(self, model)

    def mutation(self, model: type[T]) -> MutationHandle[T]:
        """A handle for mutations of ``model`` with a state signal (idle / loading /
        success / error), for UIs."""
        self.registry.name_of(model)
        return MutationHandle(self, model)

    @overload
    async def request(
        self, request: Request[R], *, entity: int | None = None, timeout: float | None = None
    ) -> R: ...
    @overload
    async def request(
        self, request: BaseModel, *, entity: int | None = None, timeout: float | None = None
    ) -> Any: ...
    async def request(
        self, request: BaseModel, *, entity: int | None = None, timeout: float | None = None
    ) -> Any:
        """Send a request (targeted at ``entity`` if given) and return the typed response
        (typed for mypy too when the model is a :class:`~pl3xus_rx.protocol.Request`:
        ``class Boost(Request[Boosted])`` makes ``await sync.request(Boost(...))`` a
        ``Boosted``).

        Raises:
            NotRegistered: the request type is not in the registry (``register_request``).
            CommandRejected: the server refused it (see :meth:`mutate` for the subclasses).
            ConnectionLost: the link dropped before the answer.
            CommandTimeout: no answer in time.
        """
        name, response = self.registry.request_of(type(request))
        payload = to_wire(request)
        body = await self._command(lambda: self._session.request(name, entity, payload), timeout)
        return from_wire(response, body.get("value"))

    async def spawn(
        self, *components: BaseModel, parent: int | None = None, timeout: float | None = None
    ) -> int:
        """Ask the server to create an entity with ``components`` (under ``parent``) and
        return its id; by then this client's subscriptions of those types already hold it.
        The server must allow it (``SyncServer.allow_spawn``).

        Raises:
            NotRegistered: a component type is not in the registry.
            ValueError: two components of one type.
            Forbidden: not allowed (spawning off, a read-only type, the parent controlled
                by someone else, the server's policy), with the reason.
            NotFound: the parent, or a type the server does not sync.
            InvalidValue: a value the server refused (names the field).
        """
        names = [self.registry.name_of(type(c)) for c in components]
        if len(set(names)) != len(names):
            raise ValueError("spawn() got two components of the same type")
        payload = {name: to_wire(c) for name, c in zip(names, components, strict=True)}
        body = await self._command(lambda: self._session.spawn(parent, payload), timeout)
        return int(body["entity"])

    async def despawn(self, entity: int, *, timeout: float | None = None) -> None:
        """Ask the server to despawn ``entity`` (and its children); answered after the
        server's next flush, which tells subscribers. The server must allow it
        (``SyncServer.allow_despawn``).

        Raises:
            Forbidden: not allowed (off, controlled by someone else, the server's policy).
            NotFound: no such entity.
        """
        await self._command(lambda: self._session.despawn(entity), timeout)

    async def take_control(self, entity: int, *, timeout: float | None = None) -> None:
        """Take exclusive control of ``entity`` (and its children).

        Raises:
            Forbidden: someone else holds it (or an ancestor or descendant); they are told.
            NotFound: no such entity.
        """
        await self._command(lambda: self._session.control(ControlAction.TAKE, entity), timeout)

    async def release_control(self, entity: int, *, timeout: float | None = None) -> None:
        """Give up control of ``entity``.

        Raises:
            Forbidden: this client does not hold it.
        """
        await self._command(lambda: self._session.control(ControlAction.RELEASE, entity), timeout)
