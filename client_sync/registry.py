"""ClientTypeRegistry: which typed components and messages a client knows, immutable."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from pydantic import BaseModel

from pl3xus_rx.exceptions import DuplicateRegistration, NotRegistered
from pl3xus_rx.protocol import schema_hash

__all__ = ["ClientTypeRegistry", "ClientTypeRegistryBuilder"]


class ClientTypeRegistryBuilder:
    """Collects types; :meth:`build` checks them and freezes the result."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, type[BaseModel]]] = []

    def register(
        self, model: type[BaseModel], name: str | None = None
    ) -> ClientTypeRegistryBuilder:
        """Add ``model`` under ``name`` (default: its class name). Returns the builder.

        Raises:
            TypeError: ``model`` is not a pydantic model class.
        """
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{model!r} is not a pydantic BaseModel subclass")
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
        return ClientTypeRegistry(by_name)


class ClientTypeRegistry:
    """An immutable set of named pydantic types with their schema hashes.

    Create one with ``ClientTypeRegistry.builder().register(T).build()``.
    """

    def __init__(self, types: Mapping[str, type[BaseModel]]) -> None:
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
