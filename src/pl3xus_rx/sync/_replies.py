"""Read your writes: replies held until the change they answer for has reached the client.
No I/O.

A command's ``ok`` is held (:meth:`HeldReplies.hold`) until every subscription of its
connection that covers the changed component of the entity has been sent its current
value: a pending change and a snapshot under way are waited for; the connection's own write
passes its subscriptions' rate caps and deadbands (marked *forced*), so a reply never waits
on a rate the client chose — an unbounded wait, and an unbounded list of waiting replies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..world import EntityId
from ._registry import ComponentRegistration
from ._subs import Client as _Client
from ._subs import Subscription as _Sub
from ._wire import encode_reply

__all__ = ["HeldReplies"]

_Held = tuple[int, int | None, EntityId | None, list[Any]]
"""(connection, component type id or None (or :data:`CURRENT`), entity or None, REPLY
frame)."""

CURRENT = -1
"""A reply held until everything its connection subscribes to is current (see
:meth:`HeldReplies.hold_until_current`)."""

Send = Callable[[int, bytes | str], object]


class HeldReplies:
    """The replies waiting for the flush that carries their change."""

    def __init__(self) -> None:
        self.waiting: list[_Held] = []
        self.new = False
        """Replies were held since the last flush (one is due)."""

    def hold(
        self,
        connection: int,
        frame: list[Any],
        reg: ComponentRegistration[Any] | None,
        entity: EntityId | None,
        client: _Client | None,
        forced_subs: set[_Sub],
    ) -> None:
        """Hold ``frame`` for ``connection`` until its subscriptions covering ``reg`` on
        ``entity`` hold the current value (``reg`` None: until the next flush)."""
        if reg is not None and entity is not None and client is not None:
            for sub in client.subs.values():
                if (
                    (sub.deadband is not None or sub.max_rate_hz is not None)
                    and sub.reg is reg
                    and (sub.entity is None or sub.entity == entity)
                ):
                    sub.forced.add(entity)
                    forced_subs.add(sub)
        self.waiting.append((connection, reg.type_id if reg else None, entity, frame))
        self.new = True

    def hold_until_current(self, connection: int, frame: list[Any]) -> None:
        """Hold ``frame`` until every subscription of ``connection`` holds the current
        state: the client within its acknowledgement window, no change or snapshot part
        still to send it (a replay's seek: the whole World moved). A subscription's own
        rate cap is not waited for (a rate the client chose: as for :meth:`hold`)."""
        self.waiting.append((connection, CURRENT, None, frame))
        self.new = True

    def awaited(self, connection: int, type_id: int) -> set[EntityId]:
        """The entities of component ``type_id`` whose change a reply to ``connection``
        waits for (a connection behind its window is sent these at once)."""
        return {
            entity
            for to, on_type, entity, _ in self.waiting
            if to == connection and on_type == type_id and entity is not None
        }

    def forget(self, connection: int) -> None:
        """``connection`` is gone: its replies with it."""
        self.waiting = [held for held in self.waiting if held[0] != connection]

    def release(
        self,
        send: Send,
        clients: Mapping[int, _Client],
        pending: Callable[[int], Mapping[EntityId, int]],
    ) -> None:
        """After a flush: send the replies whose change has reached their client."""
        self.new = False
        if not self.waiting:
            return
        waiting: list[_Held] = []
        for held in self.waiting:
            to, on_type, on_entity, reply = held
            if on_type == CURRENT:
                if not _current(clients.get(to), pending):
                    waiting.append(held)
                    continue
            elif on_type is not None and not _delivered(
                clients.get(to), on_type, on_entity, pending
            ):
                waiting.append(held)
                continue
            target = clients.get(to)
            if target is not None:
                send(to, encode_reply(target.binary, reply))
        self.waiting = waiting

    def release_all(self, send: Send, clients: Mapping[int, _Client]) -> None:
        """Send every reply still waiting, whatever it waits for (the server is shutting
        down: an answer that comes early beats none)."""
        waiting, self.waiting = self.waiting, []
        for to, _type, _entity, reply in waiting:
            target = clients.get(to)
            if target is not None:
                send(to, encode_reply(target.binary, reply))


def _current(client: _Client | None, pending: Callable[[int], Mapping[EntityId, int]]) -> bool:
    """Whether ``client`` holds the current state of everything it subscribes to."""
    if client is None:
        return True
    if client.behind:
        return False
    return not any(sub.needs_snapshot or pending(sub.reg.type_id) for sub in client.subs.values())


def _delivered(
    client: _Client | None,
    type_id: int,
    entity: EntityId | None,
    pending: Callable[[int], Mapping[EntityId, int]],
) -> bool:
    """Whether every subscription of ``client`` that covers ``entity``'s component
    ``type_id`` has been sent its current state."""
    if entity is None:
        return True
    if entity in pending(type_id):
        return False  # not flushed yet (its type may be waiting for its own rate)
    if client is None:
        return True
    for sub in client.subs.values():
        if sub.reg.type_id != type_id or (sub.entity is not None and sub.entity != entity):
            continue
        if sub.needs_snapshot and (sub.snapshot_rest is None or entity in sub.snapshot_pending):
            return False  # its snapshot has not reached the entity yet
        if entity in sub.forced:
            return False  # still to pass the subscription's rate cap or deadband
    return True
