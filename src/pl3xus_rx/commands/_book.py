"""Exclusive control of entities, as decisions: who holds what, and for how long. No I/O.

:class:`ControlBook` owns the holders and their activity clocks. It is told about the entity
tree at each call (the entity's ancestors and descendants) and answers with decisions; the
caller mirrors them into the World's ``EntityControl`` components and sends the notices. It
reads neither the World nor a clock of its own, so it can later run in another process.

Control is held by a **party**: an authenticated identity's name (so that several
connections of one operator, browser tabs, share it), or, for an anonymous client, its
connection alone. The connections of the party that took or acted on an entity are its
**sharers**; the entity is released when the last of them closes — unless it left *for a
move* (a drain: it reconnects at once, maybe elsewhere): an authenticated party's holds
are then **orphaned** until a deadline, still refusing the others' takes, and the first
connection of the party that appears (:meth:`ControlBook.adopt`) holds them again; past the
deadline they are released (:meth:`ControlBook.expire`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..world import EntityId

__all__ = ["ControlBook", "Displaced", "Expired", "Granted", "Moved", "Refused"]


@dataclass(frozen=True, slots=True)
class Displaced:
    """A take over another party's control released ``entity`` from ``sharers``."""

    entity: EntityId
    sharers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Granted:
    """The take or release happened: ``entity`` is now held by ``holder`` (``None``: free),
    the connection that asked, for ``party``.

    Attributes:
        displaced: For a take over someone else's control (a takeover role), what the
            others lost, to tell them.
    """

    entity: EntityId
    holder: int | None
    party: str | None = None
    displaced: tuple[Displaced, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """The take or release was refused.

    Attributes:
        reason: Why, for the REPLY.
        holder: For a refused take, the connection that holds the contested entity, else
            ``None`` (the notice goes to ``sharers``).
        contested: The entity held by someone else (the entity itself, an ancestor or a
            descendant), for the notice.
        sharers: The holding party's connections that took the entity or acted on it
            (these are told; its other connections are not).
    """

    reason: str
    holder: int | None = None
    contested: EntityId | None = None
    sharers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Expired:
    """Control of ``entity`` lapsed without activity; ``sharers`` held it.

    Attributes:
        abandoned: It was orphaned (its party left for a move) and nobody of the party
            came back in time: there is nobody to tell.
    """

    entity: EntityId
    holder: int
    sharers: tuple[int, ...] = ()
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class Moved:
    """The connection that held ``entity`` closed; another of its party's connections,
    ``holder``, holds it now."""

    entity: EntityId
    holder: int
    party: str | None


@dataclass(slots=True)
class _Hold:
    holder: int  # the connection that took it last
    party: str | None
    since: float  # last authorized activity
    sharers: set[int] = field(default_factory=set)
    orphaned_until: float | None = None  # its party left for a move: kept until then


class ControlBook:
    """Who controls which entity, and when each holder last acted on it.

    Args:
        timeout: Seconds without authorized activity after which control lapses (``None``:
            never).
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._holds: dict[EntityId, _Hold] = {}
        self.holds: Mapping[EntityId, object] = self._holds
        """The held entities (read-only; a cheap "is anything held?")."""

    def holder(self, entity: EntityId) -> int | None:
        """The connection that controls ``entity`` itself, if any."""
        hold = self._holds.get(entity)
        return hold.holder if hold is not None else None

    def held_by(self, connection: int) -> list[EntityId]:
        """The entities ``connection`` controls (alone or shared with its party)."""
        return [e for e, h in self._holds.items() if connection in h.sharers]

    def __len__(self) -> int:
        return len(self._holds)

    def held(self) -> list[EntityId]:
        """Every entity someone controls (orphaned ones included)."""
        return list(self._holds)

    def orphaned(self, party: str | None = None) -> dict[EntityId, float]:
        """The orphaned holds (of ``party``, or of everyone), with their deadlines."""
        return {
            entity: hold.orphaned_until
            for entity, hold in self._holds.items()
            if hold.orphaned_until is not None and (party is None or hold.party == party)
        }

    @staticmethod
    def _ours(hold: _Hold, connection: int, party: str | None) -> bool:
        return connection in hold.sharers or (party is not None and hold.party == party)

    def take(
        self,
        connection: int,
        entity: EntityId,
        related: Iterable[EntityId],
        now: float,
        *,
        party: str | None = None,
        override: bool = False,
    ) -> Granted | Refused:
        """``connection`` (of ``party``) asks for ``entity``; ``related`` are its ancestors
        and descendants (control of one covers the others, so none may be held by another
        party). With ``override`` (a takeover role) the others' control is released."""
        others: list[EntityId] = []
        for other in (entity, *related):
            hold = self._holds.get(other)
            if hold is None or self._ours(hold, connection, party):
                continue
            if not override:
                return self._refusal(other, hold)
            others.append(other)
        displaced = tuple(
            Displaced(other, tuple(sorted(self._holds.pop(other).sharers))) for other in others
        )
        hold = self._holds.get(entity)
        if hold is None:
            hold = self._holds[entity] = _Hold(connection, party, now)
        hold.holder, hold.party, hold.since = connection, party, now
        hold.sharers.add(connection)
        hold.orphaned_until = None
        return Granted(entity, connection, party, displaced)

    def blocking(
        self, connection: int, around: Iterable[EntityId], party: str | None = None
    ) -> Refused | None:
        """The first of ``around`` that another party than ``connection``'s holds, as a
        refusal (``None``: none is)."""
        for other in around:
            hold = self._holds.get(other)
            if hold is not None and not self._ours(hold, connection, party):
                return self._refusal(other, hold)
        return None

    @staticmethod
    def _refusal(entity: EntityId, hold: _Hold) -> Refused:
        who = f"{hold.party!r}" if hold.party is not None else f"connection {hold.holder}"
        if hold.orphaned_until is not None:
            who += ", who is reconnecting"
        return Refused(
            f"entity {entity} is controlled by {who}",
            hold.holder,
            entity,
            tuple(sorted(hold.sharers)),
        )

    def release(
        self, connection: int, entity: EntityId, party: str | None = None
    ) -> Granted | Refused:
        """``connection`` gives ``entity`` up, for its whole party (only the party may)."""
        hold = self._holds.get(entity)
        if hold is None or not self._ours(hold, connection, party):
            return Refused(f"connection {connection} does not hold control of entity {entity}")
        del self._holds[entity]
        return Granted(entity, None)

    def sharers(self, entity: EntityId) -> tuple[int, ...]:
        """The connections that share control of ``entity``."""
        hold = self._holds.get(entity)
        return tuple(sorted(hold.sharers)) if hold is not None else ()

    def touch(
        self, connection: int, chain: Iterable[EntityId], now: float, party: str | None = None
    ) -> bool:
        """Authorized activity of ``connection`` (of ``party``) on an entity (``chain``: the
        entity and its ancestors) keeps its party's control of them alive, and makes the
        connection one of the sharers (a tab that acts on it holds it too). Returns whether
        it shares any of them."""
        shares = False
        for candidate in chain:
            hold = self._holds.get(candidate)
            if hold is not None and self._ours(hold, connection, party):
                hold.since = now
                hold.sharers.add(connection)
                if hold.orphaned_until is not None:  # (its party is back)
                    hold.orphaned_until = None
                    hold.holder = connection
                shares = True
        return shares

    def drop_sharers(self, entity: EntityId, connections: Iterable[int]) -> Moved | None:
        """``connections`` stop sharing control of ``entity``: ``None`` if nobody holds it
        now, else who does (another sharer of the party)."""
        hold = self._holds.get(entity)
        if hold is None:
            return None
        hold.sharers.difference_update(connections)
        if not hold.sharers:
            del self._holds[entity]
            return None
        if hold.holder not in hold.sharers:
            hold.holder = min(hold.sharers)
        return Moved(entity, hold.holder, hold.party)

    def connection_closed(
        self, connection: int, *, keep_until: float | None = None
    ) -> tuple[list[EntityId], list[Moved]]:
        """``connection`` is gone: what only it held is released (returned first); what its
        party's other connections share moves to one of them (returned second). With
        ``keep_until`` (it left for a move), what only it held for an authenticated party
        is orphaned until then instead of released (in neither list: nothing changes
        until the party is back or the deadline passes)."""
        released: list[EntityId] = []
        moved: list[Moved] = []
        for entity, hold in list(self._holds.items()):
            if connection not in hold.sharers:
                continue
            hold.sharers.discard(connection)
            if not hold.sharers:
                if keep_until is not None and hold.party is not None:
                    hold.orphaned_until = keep_until
                    continue
                del self._holds[entity]
                released.append(entity)
            elif hold.holder == connection:
                hold.holder = min(hold.sharers)
                moved.append(Moved(entity, hold.holder, hold.party))
        return released, moved

    def adopt(self, connection: int, party: str, now: float) -> list[Moved]:
        """``connection`` of ``party`` appeared: it holds every orphaned hold of its party
        from now on (its activity clock restarts); returns them."""
        moved: list[Moved] = []
        for entity, hold in self._holds.items():
            if hold.orphaned_until is not None and hold.party == party:
                hold.orphaned_until = None
                hold.holder, hold.since = connection, now
                hold.sharers = {connection}
                moved.append(Moved(entity, connection, party))
        return moved

    def expire(
        self, now: float, alive: Callable[[EntityId], bool] = lambda e: True
    ) -> tuple[list[Expired], float | None]:
        """Release control idle for :attr:`timeout`, and orphaned control whose party did
        not come back by its deadline (and forget entities no longer ``alive``); returns
        what lapsed and when to check next (``None``: nothing to watch)."""
        lapsed: list[Expired] = []
        soonest: float | None = None
        timeout = self.timeout
        for entity, hold in list(self._holds.items()):
            if not alive(entity):
                del self._holds[entity]
                continue
            until = hold.orphaned_until
            due = None if timeout is None else hold.since + timeout
            if until is not None and (due is None or until < due):
                due = until  # (orphaned: whichever comes first)
            if due is None:
                continue
            if now >= due:
                del self._holds[entity]
                sharers = tuple(sorted(hold.sharers))
                lapsed.append(Expired(entity, hold.holder, sharers, until is not None))
            else:
                soonest = due if soonest is None else min(soonest, due)
        return lapsed, soonest
