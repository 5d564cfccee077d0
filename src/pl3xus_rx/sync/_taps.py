"""Taps on the flushes: what each flush sent of one component type, as an Observable. No I/O.

:meth:`SyncEngine.flushed <pl3xus_rx.sync.SyncEngine.flushed>` hands these out (scale-out
publishes them, recorders record them); the engine pushes one batch per type and flush.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import reactivex
from pydantic import BaseModel
from reactivex import abc as rx_abc
from reactivex.disposable import Disposable

from .._rx import SafeSubject
from ..world import DESPAWNED, FINAL, UPSERTED, EntityId, World
from ._registry import ComponentRegistration

__all__ = ["FlushHook", "FlushedChanges", "Taps"]

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class FlushedChanges(Generic[C]):
    """What one flush sent of one component type: its changes since the last flush of the
    type, conflated (an entity changed ten times appears once, with its latest value).

    It is what a subscriber of the whole type that sees every entity (no ``visible_to``
    rule hiding some, no rate cap or deadband of its own) receives in that flush.

    Attributes:
        component: The component type.
        upserts: Entities whose component is now this value (inserted or updated).
        removed: Entities that lost the component (they live on).
        despawned: Entities that were despawned.
    """

    component: type[C]
    upserts: Mapping[EntityId, C]
    removed: tuple[EntityId, ...]
    despawned: tuple[EntityId, ...]


class FlushHook:
    """Sees, inside each flush, the changes of the component types it was hooked on, as
    the engine holds them (``entity -> change code``, the World's stored entries current),
    before any model instance is built: what a recorder or a history needs without paying
    for :class:`FlushedChanges`. Hooked with :meth:`SyncEngine.hook
    <pl3xus_rx.sync.SyncEngine.hook>`; both methods run inside the flush and must be quick
    and must not change the World. One that raises is logged and the flush goes on."""

    def changes(self, reg: ComponentRegistration[Any], pending: Mapping[EntityId, int]) -> None:
        """``reg``'s changes in this flush (``pending``: entity -> change code, read-only;
        ``code & FINAL`` is ``UPSERTED``, ``REMOVED`` or ``DESPAWNED``)."""

    def flushed(self, as_of: float) -> None:
        """The flush that gave :meth:`changes` its changes is done; its data is current as
        of ``as_of`` (wall-clock seconds, the time protocol-v2 frames carry)."""


class Taps:
    """The tapped types: type id -> the subject its observers share (in ``by_type``).

    Args:
        world: The World the batches read values from.
        opened: Called with a type's registration when its first observer comes (its
            changes must be tracked from then on).
        closed: Called with a type id when its last observer leaves.
    """

    def __init__(
        self,
        world: World,
        opened: Callable[[ComponentRegistration[Any]], None],
        closed: Callable[[int], None],
    ) -> None:
        self.world = world
        self.by_type: dict[int, SafeSubject[FlushedChanges[Any]]] = {}
        self._opened = opened
        self._closed = closed

    def observable(self, reg: ComponentRegistration[C]) -> reactivex.Observable[FlushedChanges[C]]:
        """The batches of ``reg``'s type, from the next flush on (each observer shares the
        type's subject)."""
        type_id = reg.type_id

        def subscribe(
            observer: rx_abc.ObserverBase[FlushedChanges[C]],
            scheduler: rx_abc.SchedulerBase | None = None,
        ) -> rx_abc.DisposableBase:
            tap = self.by_type.get(type_id)
            if tap is None:
                tap = self.by_type[type_id] = SafeSubject()
                self._opened(reg)
            inner = tap.subscribe(observer)

            def dispose() -> None:
                inner.dispose()
                if self.by_type.get(type_id) is tap and not tap.observers:
                    del self.by_type[type_id]
                    self._closed(type_id)

            return Disposable(dispose)

        return reactivex.create(subscribe)

    def batch(self, reg: ComponentRegistration[Any], pending: dict[EntityId, int]) -> Any:
        """The :class:`FlushedChanges` of ``pending`` (entity -> change code) as the World
        holds them now."""
        world, model = self.world, reg.model
        upserts: dict[EntityId, Any] = {}
        removed: list[EntityId] = []
        despawned: list[EntityId] = []
        for entity, code in pending.items():
            final = code & FINAL
            if final == UPSERTED:
                value = world.get(entity, model)
                if value is not None:
                    upserts[entity] = value
            elif final == DESPAWNED:
                despawned.append(entity)
            else:
                removed.append(entity)
        return FlushedChanges(model, MappingProxyType(upserts), tuple(removed), tuple(despawned))
