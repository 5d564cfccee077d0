"""Exclusive control of entities, as decisions: who holds what, and for how long. No I/O.

:class:`ControlBook` owns the holders and their activity clocks. It is told about the entity
tree at each call (the entity's ancestors and descendants) and answers with decisions; the
caller mirrors them into the World's ``EntityControl`` components and sends the notices. It
reads neither the World nor a clock of its own, so it can later run in another process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..world import EntityId

__all__ = ["ControlBook", "Expired", "Granted", "Refused"]


@dataclass(frozen=True, slots=True)
class Granted:
    """The take or release happened: ``entity`` is now held by ``holder`` (``None``: free)."""

    entity: EntityId
    holder: int | None


@dataclass(frozen=True, slots=True)
class Refused:
    """The take or release was refused.

    Attributes:
        reason: Why, for the REPLY.
        holder: For a refused take, who holds the contested entity (to be told that someone
            asked), else ``None``.
        contested: The entity held by someone else (the entity itself, an ancestor or a
            descendant), for the notice.
    """

    reason: str
    holder: int | None = None
    contested: EntityId | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    """Control of ``entity`` by ``holder`` lapsed without activity."""

    entity: EntityId
    holder: int


class ControlBook:
    """Who controls which entity, and when each holder last acted on it.

    Args:
        timeout: Seconds without authorized activity after which control lapses (``None``:
            never).
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._holders: dict[EntityId, int] = {}
        self._last_activity: dict[EntityId, float] = {}

    def holder(self, entity: EntityId) -> int | None:
        """The connection that controls ``entity`` itself, if any."""
        return self._holders.get(entity)

    def held_by(self, connection: int) -> list[EntityId]:
        """The entities ``connection`` controls."""
        return [e for e, h in self._holders.items() if h == connection]

    def __len__(self) -> int:
        return len(self._holders)

    def take(
        self, connection: int, entity: EntityId, related: Iterable[EntityId], now: float
    ) -> Granted | Refused:
        """``connection`` asks for ``entity``; ``related`` are its ancestors and descendants
        (control of one covers the others, so none may be held by someone else)."""
        for other in (entity, *related):
            holder = self._holders.get(other)
            if holder is not None and holder != connection:
                return Refused(
                    f"entity {other} is controlled by connection {holder}", holder, other
                )
        self._holders[entity] = connection
        self._last_activity[entity] = now
        return Granted(entity, connection)

    def release(self, connection: int, entity: EntityId) -> Granted | Refused:
        """``connection`` gives ``entity`` up (only its holder may)."""
        if self._holders.get(entity) != connection:
            return Refused(f"connection {connection} does not hold control of entity {entity}")
        self._drop(entity)
        return Granted(entity, None)

    def touch(self, connection: int, chain: Iterable[EntityId], now: float) -> None:
        """Authorized activity of ``connection`` on an entity (``chain``: the entity and its
        ancestors) keeps its control of them alive."""
        for candidate in chain:
            if self._holders.get(candidate) == connection:
                self._last_activity[candidate] = now

    def connection_closed(self, connection: int) -> list[EntityId]:
        """Release everything ``connection`` held; returns those entities."""
        released = self.held_by(connection)
        for entity in released:
            self._drop(entity)
        return released

    def expire(
        self, now: float, alive: Callable[[EntityId], bool] = lambda e: True
    ) -> tuple[list[Expired], float | None]:
        """Release control idle for :attr:`timeout` (and forget entities no longer
        ``alive``); returns what lapsed and when to check next (``None``: nothing to
        watch)."""
        lapsed: list[Expired] = []
        soonest: float | None = None
        for entity, holder in list(self._holders.items()):
            if not alive(entity):
                self._drop(entity)
                continue
            if self.timeout is None:
                continue
            last = self._last_activity[entity]
            if now - last >= self.timeout:
                self._drop(entity)
                lapsed.append(Expired(entity, holder))
            else:
                due = last + self.timeout
                soonest = due if soonest is None else min(soonest, due)
        return lapsed, soonest

    def _drop(self, entity: EntityId) -> None:
        self._holders.pop(entity, None)
        self._last_activity.pop(entity, None)
