"""The component registry: which component types are synced, and how."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

from ..exceptions import DuplicateRegistration, NotRegistered
from ..protocol import EntityControl, TypeTable, check_component
from ..security import Identity
from ._access import control_visibility
from ._history_spec import HistorySpec, history_spec
from ._policy import Visibility, VisibilityRule, default_entity_policy, identity_key

__all__ = [
    "ComponentBuilder",
    "ComponentRegistration",
    "ComponentRegistry",
    "EntityPolicy",
]

C = TypeVar("C", bound=BaseModel)

EntityPolicy = Callable[..., Any]
"""``(world, ctx, entity) -> Authorized | Denied``; evaluated for client mutations."""


_NATIVE = (int, float, str, bool, type(None))


def _json_native(model: type[BaseModel]) -> bool:
    if model.model_config.get("extra") == "allow" or model.__pydantic_root_model__:
        return False
    for info in model.model_fields.values():
        args = (
            get_args(info.annotation)
            if get_origin(info.annotation) in (Union, UnionType)
            else (info.annotation,)
        )
        if not all(isinstance(a, type) and a in _NATIVE for a in args):
            return False
        if info.serialization_alias or info.alias:
            return False
    return not model.__pydantic_decorators__.field_serializers and not (
        model.__pydantic_decorators__.model_serializers
    )


@dataclass(frozen=True, slots=True)
class ComponentRegistration(Generic[C]):
    """How one component type is synced.

    Attributes:
        model: The pydantic model.
        name: Its wire name.
        type_id: Its small integer id (from the welcome's component table).
        schema_hash: See :func:`pl3xus_rx.protocol.schema_hash`.
        read_only: Clients may not mutate it (the default; secure by default).
        targeted: Mutations must name an entity and pass the entity policy.
        entity_policy: Authorizes a client's mutation of one entity, if mutation is allowed.
        handler: Called with a client's mutation instead of writing the World, if set.
        max_update_rate_hz: This type's own flush rate cap, if lower than the global one.
        field_deltas: After the snapshot, send only the fields that changed.
        fields: The model's field names, in wire order.
        json_native: Every field is a plain int, float, str or bool (optionally ``None``), so
            the stored values need no serializer (a fast path).
        invalidates: Queries that clients refetch after a successful client mutation.
        visibility: Who may see it (``None``: every client that may connect).
        read_only_reason: Said to a client whose mutation a read-only type refuses.
        persist: A server with a state file saves its values (``False``: live data that
            is not saved, such as sensor readings; never for ``EntityControl``).
        history: What the server keeps of its past (``None``: nothing; see
            :meth:`ComponentBuilder.history`).
    """

    model: type[C]
    name: str
    type_id: int
    schema_hash: str
    read_only: bool
    targeted: bool
    entity_policy: EntityPolicy | None
    handler: Callable[..., Any] | None
    max_update_rate_hz: float | None
    field_deltas: bool
    fields: tuple[str, ...]
    json_native: bool = False
    invalidates: tuple[type[BaseModel], ...] = ()
    visibility: Visibility | None = None
    read_only_reason: str | None = None
    persist: bool = True
    history: HistorySpec | None = None

    @property
    def mutable(self) -> bool:
        """Whether clients may ask to change it (still subject to its policy)."""
        return not self.read_only


class ComponentRegistry:
    """Every synced component type, by model, name and type id."""

    def __init__(self) -> None:
        self._table = TypeTable("component")
        self._regs: dict[type[BaseModel], ComponentRegistration[Any]] = {}
        self._by_id: dict[int, ComponentRegistration[Any]] = {}
        self._by_name: dict[str, ComponentRegistration[Any]] = {}
        self.listeners: list[Callable[[ComponentRegistration[Any]], None]] = []
        """Called with each new registration (the sync engine installs its checks)."""

    def add(
        self,
        model: type[C],
        *,
        name: str | None = None,
        read_only: bool = True,
        targeted: bool = False,
        entity_policy: EntityPolicy | None = None,
        handler: Callable[..., Any] | None = None,
        max_update_rate_hz: float | None = None,
        field_deltas: bool = False,
        invalidates: tuple[type[BaseModel], ...] = (),
        visibility: Visibility | None = None,
        read_only_reason: str | None = None,
        persist: bool = True,
        history: HistorySpec | None = None,
    ) -> ComponentRegistration[C]:
        """Register ``model``; see :class:`ComponentBuilder` for the options.

        Raises:
            DuplicateRegistration: the model or the name is already registered.
            UnsupportedModel: a RootModel, or a model that allows extra attributes.
            ValueError: a rate that is not positive.
        """
        check_component(model)
        if model in self._regs:
            raise DuplicateRegistration(
                f"{model.__qualname__} is already synced as {self._regs[model].name!r}"
            )
        if max_update_rate_hz is not None and not max_update_rate_hz > 0:  # (NaN too)
            raise ValueError(f"max_update_rate_hz must be > 0, got {max_update_rate_hz}")
        entry = self._table.register(model, name)
        if model is EntityControl:
            read_only = True  # never writable by a client, whatever the builder said
            # seen by those who see its entity, whatever the builder said
            visibility = control_visibility(self)
            persist = False  # who holds control is about live connections: never saved
            history = None
        elif visibility is not None:
            visibility = dataclasses.replace(visibility, label=f"visible_to of {entry.name}")
        reg = ComponentRegistration(
            model=model,
            name=entry.name,
            type_id=entry.type_id,
            schema_hash=entry.schema_hash,
            read_only=read_only,
            targeted=targeted,
            entity_policy=entity_policy,
            handler=handler,
            max_update_rate_hz=max_update_rate_hz,
            field_deltas=field_deltas,
            fields=tuple(model.model_fields),
            json_native=_json_native(model),
            invalidates=invalidates,
            visibility=visibility,
            read_only_reason=read_only_reason,
            persist=persist,
            history=history,
        )
        self._regs[model] = reg
        self._by_id[reg.type_id] = reg
        self._by_name[reg.name] = reg
        for listener in self.listeners:
            listener(reg)
        return reg

    def get(self, model: type[C]) -> ComponentRegistration[C]:
        """The registration of ``model``.

        Raises:
            NotRegistered: it is not synced (the message says how to sync it).
        """
        reg = self._regs.get(model)
        if reg is None:
            label = getattr(model, "__name__", repr(model))
            raise NotRegistered(
                f"{label} is not a synced component; call server.sync_component({label})"
            )
        return reg

    def find(self, model: type[BaseModel]) -> ComponentRegistration[Any] | None:
        """The registration of ``model``, or ``None``."""
        return self._regs.get(model)

    def by_id(self, type_id: int) -> ComponentRegistration[Any] | None:
        """The registration with this type id, or ``None``."""
        return self._by_id.get(type_id)

    def by_name(self, name: str) -> ComponentRegistration[Any] | None:
        """The registration with this wire name, or ``None``."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """Every wire name, in registration order."""
        return list(self._by_name)

    def wire_table(self) -> list[list[Any]]:
        """``[[type_id, name, schema_hash, fields], ...]`` for the welcome."""
        return [[r.type_id, r.name, r.schema_hash, list(r.fields)] for r in self._regs.values()]

    def __iter__(self) -> Iterator[ComponentRegistration[Any]]:
        return iter(list(self._regs.values()))

    def __len__(self) -> int:
        return len(self._regs)


class ComponentBuilder(Generic[C]):
    """Fluent registration of one component type; finish with :meth:`build`.

    A component is read-only for clients unless the builder allows mutation, which it does
    when an entity policy or a handler is set (and :meth:`read_only` was not called).
    """

    def __init__(
        self,
        registry: ComponentRegistry,
        model: type[C],
        on_build: Callable[[ComponentRegistration[Any]], None] | None = None,
    ) -> None:
        self._registry = registry
        self._model = model
        self._on_build = on_build
        self._name: str | None = None
        self._read_only = False
        self._targeted = False
        self._policy: EntityPolicy | None = None
        self._handler: Callable[..., Any] | None = None
        self._rate: float | None = None
        self._deltas = False
        self._invalidates: tuple[type[BaseModel], ...] = ()
        self._visibility: Visibility | None = None
        self._read_only_reason: str | None = None
        self._persist = True
        self._history: HistorySpec | None = None

    def name(self, name: str) -> ComponentBuilder[C]:
        """Sync under this wire name instead of the class name."""
        self._name = name
        return self

    def read_only(self, reason: str | None = None) -> ComponentBuilder[C]:
        """Clients may never mutate it (also the default when no policy or handler is set);
        ``reason`` is said to a client whose mutation is refused."""
        self._read_only = True
        self._read_only_reason = reason
        return self

    def targeted(self) -> ComponentBuilder[C]:
        """Mutations name one entity and are authorized per entity."""
        self._targeted = True
        return self

    def with_default_entity_policy(self) -> ComponentBuilder[C]:
        """Allow mutation by the client that controls the entity (or an ancestor)."""
        self._policy = default_entity_policy
        return self

    def with_entity_policy(self, policy: EntityPolicy) -> ComponentBuilder[C]:
        """Allow mutation when ``policy(world, ctx, entity)`` authorizes it."""
        self._policy = policy
        return self

    def with_handler(self, handler: Callable[..., Any]) -> ComponentBuilder[C]:
        """Route client mutations to ``handler`` instead of writing the World."""
        self._handler = handler
        return self

    def max_update_rate_hz(self, hz: float) -> ComponentBuilder[C]:
        """Cap this type's updates at ``hz`` flushes per second."""
        self._rate = hz
        return self

    def invalidates(self, *queries: type[BaseModel]) -> ComponentBuilder[C]:
        """After a client's successful mutation, tell clients to refetch these queries."""
        self._invalidates = queries
        return self

    def visible_to(
        self,
        *who: str | VisibilityRule,
        key: Callable[[Identity], Hashable] | None = None,
    ) -> ComponentBuilder[C]:
        """Restrict who sees this component: role names (an identity with any of them sees
        every entity's value, others none), or one rule ``(world, identity, entity) -> bool``
        evaluated per entity when its value changes (tell the server about other reasons
        with ``SyncServer.visibility_changed``). Subscriptions, snapshots and the tree query
        then carry only what the connection's identity may see; an entity that stops being
        visible goes to the client as a removal.

        ``key(identity)`` says which identities the rule treats alike (default: same name,
        roles and claims); connections with equal keys share one encoded view.
        """
        if len(who) == 1 and callable(who[0]):
            self._visibility = Visibility(rule=who[0], key=key or identity_key)
        elif who and all(isinstance(w, str) for w in who):
            self._visibility = Visibility(roles=frozenset(who))  # type: ignore[arg-type]
        else:
            raise TypeError("visible_to takes role names, or one rule (world, identity, entity)")
        return self

    def field_deltas(self) -> ComponentBuilder[C]:
        """After the snapshot, send only the changed fields (for large values)."""
        self._deltas = True
        return self

    def persist(self, enabled: bool = True) -> ComponentBuilder[C]:
        """Whether a server with a state file (``SyncServer(state=PATH)``) saves this
        type's values (the default). ``persist(False)`` for live data that a restart
        should not bring back, such as sensor readings: the entities stay (with their
        other components), without this one, for the application to fill in again."""
        self._persist = bool(enabled)
        return self

    def history(
        self, seconds: float = 600.0, fields: tuple[str, ...] | list[str] | None = None
    ) -> ComponentBuilder[C]:
        """Keep the past of this type on the server: what each flush sent, for ``seconds``
        (at most 30 days), of the numeric ``fields`` named (``None``: whole values).
        Clients ask for it with ``sync.history(T, entity, field)`` (built-in query
        ``pl3xus.history``); the welcome says which types keep it. Every type's history
        together stays within ``SyncSettings.history_bytes`` (the oldest points go first).

        Raises:
            ValueError: ``seconds`` out of range, or a field the model lacks or that is
                not numeric.
        """

        self._history = history_spec(
            self._model, seconds, tuple(fields) if fields is not None else None
        )
        return self

    def build(self) -> ComponentRegistration[C]:
        """Register the component with the options chosen."""
        mutable = not self._read_only and (self._policy is not None or self._handler is not None)
        reg = self._registry.add(
            self._model,
            name=self._name,
            read_only=not mutable,
            targeted=self._targeted,
            entity_policy=self._policy,
            handler=self._handler,
            max_update_rate_hz=self._rate,
            field_deltas=self._deltas,
            invalidates=self._invalidates,
            visibility=self._visibility,
            read_only_reason=self._read_only_reason,
            persist=self._persist,
            history=self._history,
        )
        if self._on_build is not None:
            self._on_build(reg)
        return reg
