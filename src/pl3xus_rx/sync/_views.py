"""Visibility views: what each visibility class of identities sees of each restricted type
(``visible_to``), kept up to date as changes and rechecks come. No I/O.

A :class:`View` holds the entities every up-to-date subscription of its class holds; the
engine filters each flush's changes through it once (:meth:`Views.changes`) and its
subscriptions share the groups built from that. ``EntityControl``'s views follow their
entity's visibility, which other types' changes move: :attr:`Views.moved` collects the
entities they changed, and :meth:`Views.recheck_control` has their control evaluated again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from pydantic import BaseModel

from ..protocol import EntityControl
from ..security import Identity
from ..world import DESPAWNED, FINAL, REMOVED, UPSERTED, EntityId, World
from ._policy import FAULTS
from ._registry import ComponentRegistration, ComponentRegistry
from ._subs import Subscription as _Sub
from ._subs import View

__all__ = ["Views"]

_UPSERT, _DESPAWNED, _REMOVED, _FINAL = UPSERTED, DESPAWNED, REMOVED, FINAL


class Views:
    """Every view of every restricted type, and what must be evaluated again.

    Args:
        world: The World.
        registry: The synced types.
        control_watched: Called when ``EntityControl`` gets its first view (the engine then
            tracks every type, whose changes move entities' visibility).
        wake: Called when a recheck needs a flush.
    """

    def __init__(
        self,
        world: World,
        registry: ComponentRegistry,
        control_watched: Callable[[], None],
        wake: Callable[[], None],
    ) -> None:
        self.world = world
        self.registry = registry
        self._control_watched = control_watched
        self._wake = wake
        self.by_type: dict[int, dict[Hashable, View]] = {}
        """Restricted type id -> visibility class key -> view."""
        self.recheck: dict[int, set[EntityId] | None] = {}
        """Restricted types whose visibility must be evaluated again (``None``: every
        entity)."""
        self.moved: set[EntityId] = set()
        """Entities other types changed in this flush (their control is rechecked)."""

    def control_id(self) -> int:
        """``EntityControl``'s type id (-1 if it is not synced)."""
        control = self.registry.find(EntityControl)
        return control.type_id if control is not None else -1

    def watching_control(self) -> bool:
        """Whether ``EntityControl`` is watched through a view."""
        return self.control_id() in self.by_type

    def view_for(self, reg: ComponentRegistration[Any], identity: Identity) -> View | None:
        """The view of ``reg`` that ``identity`` belongs to (``None``: it sees everything)."""
        vis = reg.visibility
        if vis is None or vis.sees_all(identity):
            return None
        nothing = vis.rule is None
        if not nothing:
            try:
                key: Hashable = ("rule", vis.key(identity))
            except Exception as exc:  # a failing key: this identity sees nothing of it
                FAULTS.failed(f"the key of {vis.label}", exc)
                nothing = True
        if nothing:
            key = ("nothing",)
        views = self.by_type.setdefault(reg.type_id, {})
        view = views.get(key)
        if view is None:
            if reg.model is EntityControl and not views:
                self._control_watched()
            view = views[key] = View(reg, key, identity, nothing)
            if not nothing:
                world = self.world
                view.visible = {e for e in world.peek(reg.model) if view.sees(world, e)}
        return view

    def left(self, view: View, sub: _Sub) -> bool:
        """``sub`` leaves ``view``; returns True if that was the last view of
        ``EntityControl`` (nobody watches control through one any more)."""
        view.subs.discard(sub)
        if view.subs:
            return False
        views = self.by_type[view.reg.type_id]
        del views[view.key]
        if views:
            return False
        del self.by_type[view.reg.type_id]
        self.recheck.pop(view.reg.type_id, None)
        if view.reg.model is EntityControl:
            self.moved.clear()
            return True
        return False

    def changed(
        self, component: type[BaseModel] | None = None, entity: EntityId | None = None
    ) -> None:
        """Evaluate visibility rules again at the next flush: of ``component`` (default:
        every restricted type; ``EntityControl`` follows any), for ``entity`` (default:
        every entity)."""
        if component is not None:
            type_ids: tuple[int, ...] = (self.registry.get(component).type_id,)
            control_id = self.control_id()
            if control_id not in (-1, type_ids[0]):
                # an entity's control is seen by those who see the entity
                type_ids = (*type_ids, control_id)
        else:
            type_ids = tuple(self.by_type)
        for type_id in type_ids:
            if type_id not in self.by_type:
                continue  # nobody watches it through a rule
            if entity is None:
                self.recheck[type_id] = None
            else:
                marked = self.recheck.get(type_id, set())
                if marked is not None:
                    marked.add(entity)
                    self.recheck[type_id] = marked
        if self.recheck:
            self._wake()

    def changes(
        self, view: View, pending: dict[EntityId, int], recheck: Iterable[EntityId] | None
    ) -> dict[EntityId, int]:
        """``pending`` as the view's subscriptions see it: changes of entities they may see,
        removals of those they stop seeing, upserts of those they start seeing (in
        :attr:`View.fresh`), and nothing about the rest. Updates the view."""
        view.fresh = set()
        if view.nothing:
            return {}
        world = self.world
        stored = world.peek(view.reg.model)
        visible = view.visible
        out: dict[EntityId, int] = {}
        for entity, change in pending.items():
            had = entity in visible
            if change & _FINAL == _UPSERT and entity in stored and view.sees(world, entity):
                if had:
                    out[entity] = change
                else:
                    visible.add(entity)
                    view.fresh.add(entity)
                    out[entity] = _UPSERT
            elif had:
                visible.discard(entity)
                final = change & _FINAL
                out[entity] = _DESPAWNED if final == _DESPAWNED else _REMOVED
        if recheck is not None:
            for entity in recheck:
                if entity in pending:
                    continue
                had = entity in visible
                now = entity in stored and view.sees(world, entity)
                if now and not had:
                    visible.add(entity)
                    view.fresh.add(entity)
                    out[entity] = _UPSERT
                elif had and not now:
                    visible.discard(entity)
                    out[entity] = _REMOVED
        return out

    def recheck_control(self, control_id: int) -> None:
        """Entities whose other components changed in this flush may have become visible or
        hidden: their ``EntityControl`` is evaluated again (it is re-evaluated anyway when
        it changes itself, so nothing about a hidden entity's control ever goes out)."""
        moved, self.moved = self.moved, set()
        if not moved:
            return
        held = self.world.peek(EntityControl)
        marked = self.recheck.get(control_id, set())
        if marked is None:
            return  # every entity is rechecked already
        marked.update(e for e in moved if e in held)
        if marked:
            self.recheck[control_id] = marked

    def still_seen(
        self, view: View, entries: list[tuple[EntityId, Any]]
    ) -> list[tuple[EntityId, Any]]:
        """``entries`` of a control view that the view's identity still sees, by the live
        rules: an entity's visibility moves with changes this view may not have been told
        of yet. Those it no longer sees are rechecked (their holders get removals)."""
        world = self.world
        kept = [(e, v) for e, v in entries if view.sees(world, e)]
        if len(kept) < len(entries):
            gone = {e for e, _ in entries} - {e for e, _ in kept}
            marked = self.recheck.get(view.reg.type_id, set())
            if marked is not None:
                marked.update(gone)
                self.recheck[view.reg.type_id] = marked
        return kept
