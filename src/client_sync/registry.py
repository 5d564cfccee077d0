"""ClientTypeRegistry: which typed components and messages a client knows, immutable."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from pydantic import BaseModel

from pl3xus_rx.exceptions import DuplicateRegistration, NotRegistered
from pl3xus_rx.protocol import check_component, declared_response, schema_hash

__all__ = ["ClientTypeRegistry", "ClientTypeRegistryBuilder"]


class ClientTypeRegistryBuilder:
    """Collects types; :meth:`build` checks them and freezes the result."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, type[BaseModel]]] = []
        self._requests: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {}
        self._queries: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {}
        self._messages: dict[str, type[BaseModel]] = {}

    def register_message(
        self, model: type[BaseModel], name: str | None = None
    ) -> ClientTypeRegistryBuilder:
        """Add a one-way message type (for ``sync.send``) under ``name``: needed when the
        server registered it under a wire name of its own (``server.message(T).name(...)``);
        by default a message goes under its class name.

        Raises:
            TypeError: ``model`` is not a pydantic model.
            DuplicateRegistration: another type already has that name.
        """
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{model!r} is not a pydantic BaseModel subclass")
        wire = name if name is not None else model.__name__
        if self._messages.get(wire, model) is not model:
            raise DuplicateRegistration(f"two message types are registered as {wire!r}")
        self._messages[wire] = model
        return self

    def register_request(
        self,
        model: type[BaseModel],
        response: type[BaseModel] | None = None,
        name: str | None = None,
    ) -> ClientTypeRegistryBuilder:
        """Add a request type with its response type (for ``sync.request``); a
        :class:`~pl3xus_rx.protocol.Request` model names its own.

        Raises:
            TypeError: no response type (neither given nor named by the model), or one that
                differs from the model's.
        """
        self._add_command(self._requests, "request", model, response, name)
        return self

    def register_query(
        self,
        model: type[BaseModel],
        response: type[BaseModel] | None = None,
        name: str | None = None,
    ) -> ClientTypeRegistryBuilder:
        """Add a query (parameter) type with its response type (for ``sync.query``); a
        :class:`~pl3xus_rx.protocol.Query` model names its own.

        Raises:
            TypeError: as for :meth:`register_request`.
        """
        self._add_command(self._queries, "query", model, response, name)
        return self

    @staticmethod
    def _add_command(
        table: dict[str, tuple[type[BaseModel], type[BaseModel]]],
        what: str,
        model: type[BaseModel],
        response: type[BaseModel] | None,
        name: str | None,
    ) -> None:
        response = declared_response(model, response, what)
        for t in (model, response):
            if not (isinstance(t, type) and issubclass(t, BaseModel)):
                raise TypeError(f"{t!r} is not a pydantic BaseModel subclass")
        wire = name if name is not None else model.__name__
        if wire in table and table[wire] != (model, response):
            raise DuplicateRegistration(f"two {what} types are registered as {wire!r}")
        table[wire] = (model, response)

    def register(
        self, model: type[BaseModel], name: str | None = None
    ) -> ClientTypeRegistryBuilder:
        """Add ``model`` under ``name`` (default: its class name). Returns the builder.

        Raises:
            UnsupportedModel: ``model`` cannot be a component (not a pydantic model, a
                RootModel, or it allows extra attributes); a ``TypeError``.
        """
        check_component(model)
        self._entries.append((name if name is not None else model.__name__, model))
        return self

    def build(self) -> ClientTypeRegistry:
        """Freeze the registry.

        Raises:
            DuplicateRegistration: two different types share a name, or one type has two
                names.
        """
        by_name: dict[str, type[BaseModel]] = {}
        by_model: dict[type[BaseModel], str] = {}
        for name, model in self._entries:
            if by_name.get(name, model) is not model:
                raise DuplicateRegistration(
                    f"two types are registered as {name!r}: {by_name[name].__qualname__} and "
                    f"{model.__qualname__}; pass name=... to one of them"
                )
            if by_model.get(model, name) != name:
                raise DuplicateRegistration(
                    f"{model.__qualname__} is registered twice, as {by_model[model]!r} and {name!r}"
                )
            by_name[name] = model
            by_model[model] = name
        return ClientTypeRegistry(by_name, self._requests, self._queries, self._messages)


class ClientTypeRegistry:
    """An immutable set of named pydantic types with their schema hashes.

    Create one with ``ClientTypeRegistry.builder().register(T).build()``.
    """

    def __init__(
        self,
        types: Mapping[str, type[BaseModel]],
        requests: Mapping[str, tuple[type[BaseModel], type[BaseModel]]] | None = None,
        queries: Mapping[str, tuple[type[BaseModel], type[BaseModel]]] | None = None,
        messages: Mapping[str, type[BaseModel]] | None = None,
    ) -> None:
        self.requests: Mapping[str, tuple[type[BaseModel], type[BaseModel]]] = MappingProxyType(
            dict(requests or {})
        )
        """Request name -> (request model, response model)."""
        self.queries: Mapping[str, tuple[type[BaseModel], type[BaseModel]]] = MappingProxyType(
            dict(queries or {})
        )
        """Query name -> (parameter model, response model)."""
        self.messages: Mapping[str, type[BaseModel]] = MappingProxyType(dict(messages or {}))
        """One-way message name -> model (those registered with ``register_message``)."""
        self._message_names = {model: name for name, model in self.messages.items()}
        self._by_name: Mapping[str, type[BaseModel]] = MappingProxyType(dict(types))
        self._by_model = {model: name for name, model in types.items()}
        self._hashes = MappingProxyType({n: schema_hash(m) for n, m in types.items()})

    @staticmethod
    def builder() -> ClientTypeRegistryBuilder:
        """A new, empty builder."""
        return ClientTypeRegistryBuilder()

    def name_of(self, model: type[BaseModel]) -> str:
        """The wire name of ``model``.

        Raises:
            NotRegistered: ``model`` is not in this registry (the message says how to add it).
        """
        name = self._by_model.get(model)
        if name is None:
            label = getattr(model, "__name__", repr(model))
            raise NotRegistered(
                f"{label} is not registered with this ClientTypeRegistry; add "
                f"`.register({label})` to the builder"
            )
        return name

    def message_name(self, model: type[BaseModel]) -> str:
        """The wire name ``sync.send`` uses for a message of type ``model``: the one given
        to ``register_message``, else its class name."""
        return self._message_names.get(model, model.__name__)

    def request_of(self, model: type[BaseModel]) -> tuple[str, type[BaseModel]]:
        """``(wire name, response model)`` of a request type.

        Raises:
            NotRegistered: not registered (the message says how to add it).
        """
        return self._command_of(self.requests, model, "register_request")

    def query_of(self, model: type[BaseModel]) -> tuple[str, type[BaseModel]]:
        """``(wire name, response model)`` of a query type.

        Raises:
            NotRegistered: not registered (the message says how to add it).
        """
        return self._command_of(self.queries, model, "register_query")

    @staticmethod
    def _command_of(
        table: Mapping[str, tuple[type[BaseModel], type[BaseModel]]],
        model: type[BaseModel],
        method: str,
    ) -> tuple[str, type[BaseModel]]:
        for name, (m, response) in table.items():
            if m is model:
                return name, response
        label = getattr(model, "__name__", repr(model))
        base = "Request" if method == "register_request" else "Query"
        raise NotRegistered(
            f"{label} is not registered with this ClientTypeRegistry; add "
            f"`.{method}({label})` to the builder (for a {base}[Response] model; else "
            f"`.{method}({label}, ResponseModel)`)"
        )

    def model_of(self, name: str) -> type[BaseModel] | None:
        """The type registered under ``name``, or ``None``."""
        return self._by_name.get(name)

    @property
    def hashes(self) -> Mapping[str, str]:
        """Wire name → schema hash, for checking against a server's welcome."""
        return self._hashes

    def __contains__(self, model: object) -> bool:
        return model in self._by_model

    def __iter__(self) -> Iterator[type[BaseModel]]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)
