"""Wire names and schema hashes for pydantic models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..exceptions import DuplicateRegistration, NotRegistered, UnsupportedModel

__all__ = [
    "RegisteredType",
    "TypeTable",
    "check_component",
    "from_wire",
    "schema_hash",
    "to_wire",
]

M = TypeVar("M", bound=BaseModel)


def check_component(model: type[BaseModel]) -> None:
    """Check that ``model`` can be a synced component: components travel as their declared
    fields, in order, so a model with other data is refused.

    Raises:
        UnsupportedModel: not a pydantic model, a RootModel, or ``extra='allow'``.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise UnsupportedModel(f"a synced component must be a pydantic model, got {model!r}")
    if model.__pydantic_root_model__:
        raise UnsupportedModel(
            f"{model.__qualname__} is a RootModel; a synced component needs named fields: "
            f"wrap the value in a model (e.g. class {model.__qualname__}(BaseModel): value: ...)"
        )
    if model.model_config.get("extra") == "allow":
        raise UnsupportedModel(
            f"{model.__qualname__} allows extra attributes (extra='allow'), which have no "
            "place in a component's field list on the wire; declare them as fields"
        )


def to_wire(value: BaseModel) -> dict[str, Any]:
    """A model's wire payload: its JSON-mode dump keyed by field name (never by alias, so
    that aliases and ``serialize_by_alias`` do not change the protocol), without computed
    fields (the receiver computes them; a model that forbids extra keys would refuse them)."""
    return value.model_dump(mode="json", by_alias=False, exclude_computed_fields=True)


def from_wire(model: type[M], payload: Any) -> M:
    """Validate a wire payload (keyed by field name) into ``model``.

    Raises:
        pydantic.ValidationError: the payload does not fit the model.
    """
    return model.model_validate(payload, by_alias=False, by_name=True)


def _strip_titles(node: Any) -> Any:
    # Titles are derived from class and field names; a renamed class with the same fields and
    # the same wire name must hash the same, so they are left out.
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def schema_hash(model: type[BaseModel]) -> str:
    """A stable 16-hex-digit hash of a model's JSON schema (titles excluded).

    Both ends compute it from their own model definition; equal hashes mean the field names,
    types, defaults and constraints agree.

    Args:
        model: The pydantic model class.

    Returns:
        The first 16 hex digits of the SHA-256 of the canonical JSON schema.
    """
    schema = _strip_titles(model.model_json_schema(mode="validation"))
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RegisteredType(Generic[M]):
    """A model registered under a wire name.

    Attributes:
        name: The wire name (the class name unless overridden).
        model: The pydantic model class.
        schema_hash: See :func:`schema_hash`.
        type_id: A small integer, unique within its :class:`TypeTable`, in registration order.
    """

    name: str
    model: type[M]
    schema_hash: str
    type_id: int


class TypeTable:
    """A mutable table of registered models: name ↔ model, with schema hashes and ids.

    Pure bookkeeping, no I/O. Used by ``Network`` for messages and by the sync engine for
    components.
    """

    def __init__(self, what: str = "message") -> None:
        self._what = what
        self._by_name: dict[str, RegisteredType[Any]] = {}
        self._by_model: dict[type[BaseModel], RegisteredType[Any]] = {}

    def register(self, model: type[M], name: str | None = None) -> RegisteredType[M]:
        """Register ``model`` under ``name`` (default: the class name).

        Registering the same model under the same name again returns the existing entry.

        Raises:
            TypeError: ``model`` is not a pydantic model class.
            DuplicateRegistration: the name or the model is already taken by another entry.
        """
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{model!r} is not a pydantic BaseModel subclass")
        wire_name = name if name is not None else model.__name__
        if not wire_name:
            raise ValueError("a wire name must not be empty")
        if wire_name == "__proto__":
            # (a browser client keys things by wire name; in a plain object this one is the
            # object's prototype, not a key)
            raise ValueError("'__proto__' cannot be a wire name: pass name=... with another")
        existing = self._by_name.get(wire_name)
        if existing is not None:
            if existing.model is model:
                return existing
            raise DuplicateRegistration(
                f"{self._what} name {wire_name!r} is already registered for "
                f"{existing.model.__qualname__}; pass name=... to register "
                f"{model.__qualname__} under another name"
            )
        if model in self._by_model:
            other = self._by_model[model].name
            raise DuplicateRegistration(f"{model.__qualname__} is already registered as {other!r}")
        entry: RegisteredType[M] = RegisteredType(
            wire_name, model, schema_hash(model), len(self._by_name)
        )
        self._by_name[wire_name] = entry
        self._by_model[model] = entry
        return entry

    def by_name(self, name: str) -> RegisteredType[Any] | None:
        """The entry registered under ``name``, or ``None``."""
        return self._by_name.get(name)

    def by_model(self, model: type[M]) -> RegisteredType[M]:
        """The entry for ``model``.

        Raises:
            NotRegistered: the model was never registered (the message says how to fix it).
        """
        entry = self._by_model.get(model)
        if entry is None:
            raise NotRegistered(
                f"{getattr(model, '__qualname__', model)!r} is not a registered {self._what} "
                f"type; call register_{self._what}({getattr(model, '__name__', model)}) first"
            )
        return entry

    def find_model(self, model: type[BaseModel]) -> RegisteredType[Any] | None:
        """The entry for ``model``, or ``None``."""
        return self._by_model.get(model)

    def names(self) -> list[str]:
        """All wire names, in registration order."""
        return list(self._by_name)

    def hashes(self) -> Mapping[str, str]:
        """Wire name → schema hash."""
        return {name: entry.schema_hash for name, entry in self._by_name.items()}

    def __iter__(self) -> Iterator[RegisteredType[Any]]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, model: object) -> bool:
        return model in self._by_model
