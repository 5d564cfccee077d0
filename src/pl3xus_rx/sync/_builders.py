"""Builders and registrations of requests, one-way messages and queries. No I/O.

``server.request(T)``, ``server.message(T)`` and ``server.query(Q)`` return these builders;
``register(handler)`` hands the finished registration to the command layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar, get_type_hints

from pydantic import BaseModel

from ..protocol import response_of
from ._policy import default_entity_policy
from ._registry import EntityPolicy

__all__ = [
    "CommandRegistrar",
    "MessageBuilder",
    "MessageRegistration",
    "QueryBuilder",
    "QueryRegistration",
    "RequestBuilder",
    "RequestRegistration",
]

R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class RequestRegistration(Generic[R]):
    """A request type: its model, response model, and who may send it."""

    name: str
    model: type[BaseModel]
    response: type[R]
    targeted: bool
    policy: EntityPolicy | None
    handler: Callable[..., Any]
    invalidates: tuple[type[BaseModel], ...] = ()


@dataclass(frozen=True, slots=True)
class MessageRegistration:
    """A one-way message type: no response; a rejection is answered with a notice."""

    name: str
    model: type[BaseModel]
    targeted: bool
    policy: EntityPolicy | None
    handler: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class QueryRegistration(Generic[R]):
    """A query type: its parameter model, response model and handler."""

    name: str
    model: type[BaseModel]
    response: type[R]
    handler: Callable[..., Any]
    policy: QueryPolicy | None = None
    with_context: bool = False
    """The handler takes ``(world, ctx, params)``: it answers per identity."""


QueryPolicy = Callable[..., Any]
"""``(world, ctx) -> Authorized | Denied``: who may ask a query."""


def _positional(handler: Callable[..., Any]) -> int:
    """How many positional arguments ``handler`` needs (a ``*args`` counts as many)."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return 2
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            count += 1
    return count


class CommandRegistrar(Protocol):
    """Where builders put what they build (the command layer, :class:`Commands`)."""

    def add_request(self, reg: RequestRegistration[Any]) -> None:
        """Register a request type."""
        ...

    def add_message(self, reg: MessageRegistration) -> None:
        """Register a one-way message type."""
        ...

    def add_query(self, reg: QueryRegistration[Any]) -> None:
        """Register a query type."""
        ...


def _response_type(
    handler: Callable[..., Any],
    explicit: type[BaseModel] | None,
    model: type[BaseModel],
    what: str,
) -> type[BaseModel]:
    """The response: ``.returns(...)``, the one the model names (``Request[R]``,
    ``Query[R]``; the two must agree), or the handler's return annotation."""
    named = response_of(model)
    if explicit is not None:
        if named is not None and explicit is not named:
            raise TypeError(
                f"{what} names {named.__name__} as its response; .returns() says "
                f"{explicit.__name__}"
            )
        return explicit
    if named is not None:
        return named
    try:
        ret = get_type_hints(handler).get("return")
    except Exception:  # another annotation does not resolve (a local class): try the return
        ret = getattr(handler, "__annotations__", {}).get("return")
        if isinstance(ret, str):
            ret = getattr(handler, "__globals__", {}).get(ret)
    if isinstance(ret, type) and issubclass(ret, BaseModel):
        return ret
    raise TypeError(
        f"cannot tell the response type of {what}: annotate the handler's return type with a "
        "pydantic model, or call .returns(Model)"
    )


class _TargetedBuilder:
    """What request and message builders share: a wire name, targeting and a policy."""

    def __init__(self, commands: CommandRegistrar, model: type[BaseModel]) -> None:
        self._commands = commands
        self._model = model
        self._name: str | None = None
        self._targeted = False
        self._policy: EntityPolicy | None = None

    def name(self, name: str) -> Self:
        """Use this wire name instead of the class name."""
        self._name = name
        return self

    def targeted(self) -> Self:
        """It names an entity and is authorized per entity."""
        self._targeted = True
        return self

    def with_default_entity_policy(self) -> Self:
        """Only the client that controls the entity (or an ancestor) may send it."""
        self._policy = default_entity_policy
        return self

    def with_entity_policy(self, policy: EntityPolicy) -> Self:
        """Authorize with ``policy(world, ctx, entity)`` (targeted ones only)."""
        self._policy = policy
        return self

    def _check_policy(self, what: str) -> None:
        """An entity policy needs an entity: on an untargeted type it would never be asked."""
        if self._policy is not None and not self._targeted:
            raise TypeError(
                f"{what} {self._name or self._model.__name__!r} has an entity policy but names "
                "no entity, so the policy would never be consulted: add .targeted() (the "
                "client then sends it with entity=...), or drop the policy (the server's "
                "authorizer still applies)"
            )


class RequestBuilder(_TargetedBuilder, Generic[R]):
    """``server.request(T)...register(handler)``: a typed request with a response."""

    def __init__(self, commands: CommandRegistrar, model: type[BaseModel]) -> None:
        super().__init__(commands, model)
        self._response: type[BaseModel] | None = None
        self._invalidates: tuple[type[BaseModel], ...] = ()

    def returns(self, response: type[R]) -> Self:
        """The response model (else taken from the handler's return annotation)."""
        self._response = response
        return self

    def invalidates(self, *queries: type[BaseModel]) -> Self:
        """On success, tell clients to refetch these query types."""
        self._invalidates = queries
        return self

    def register(self, handler: Callable[..., R | Awaitable[R]]) -> RequestRegistration[R]:
        """Register ``handler(world, ctx, request)`` (or ``(world, ctx, entity, request)``
        when targeted), sync or async, returning the response model (the one a
        ``Request[R]`` model names, ``.returns()``, or the handler's annotation)."""
        self._check_policy("request")
        name = self._name or self._model.__name__
        response = _response_type(handler, self._response, self._model, f"request {name}")
        reg: RequestRegistration[Any] = RequestRegistration(
            name,
            self._model,
            response,
            self._targeted,
            self._policy,
            handler,
            self._invalidates,
        )
        self._commands.add_request(reg)
        return reg


class MessageBuilder(_TargetedBuilder):
    """``server.message(T)...register(handler)``: a one-way, authorized typed message."""

    def register(self, handler: Callable[..., Any]) -> MessageRegistration:
        """Register ``handler(world, ctx, message)`` (``(world, ctx, entity, message)`` when
        targeted), sync or async; its return value is ignored."""
        self._check_policy("message")
        reg = MessageRegistration(
            self._name or self._model.__name__, self._model, self._targeted, self._policy, handler
        )
        self._commands.add_message(reg)
        return reg


class QueryBuilder(Generic[R]):
    """``server.query(Q).register(handler)``: a cached, invalidatable query."""

    def __init__(self, commands: CommandRegistrar, model: type[BaseModel]) -> None:
        self._commands = commands
        self._model = model
        self._name: str | None = None
        self._response: type[BaseModel] | None = None
        self._policy: QueryPolicy | None = None

    def name(self, name: str) -> QueryBuilder[R]:
        """Use this wire name instead of the class name."""
        self._name = name
        return self

    def returns(self, response: type[R]) -> QueryBuilder[R]:
        """The response model (else taken from the handler's return annotation)."""
        self._response = response
        return self

    def with_policy(self, policy: QueryPolicy) -> QueryBuilder[R]:
        """Answer only clients that ``policy(world, ctx)`` authorizes (``ctx.identity``
        says who asks); others get ``forbidden`` with the reason."""
        self._policy = policy
        return self

    def register(self, handler: Callable[..., R | Awaitable[R]]) -> QueryRegistration[R]:
        """Register ``handler(world, params)`` (sync or async) returning the response; a
        handler with three parameters is called ``handler(world, ctx, params)``, to answer
        according to who asks (``ctx.identity``)."""
        name = self._name or self._model.__name__
        response = _response_type(handler, self._response, self._model, f"query {name}")
        reg: QueryRegistration[Any] = QueryRegistration(
            name, self._model, response, handler, self._policy, _positional(handler) >= 3
        )
        self._commands.add_query(reg)
        return reg
