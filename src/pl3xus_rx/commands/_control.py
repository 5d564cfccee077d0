"""CONTROL: taking and releasing exclusive control of entities, its expiry, and its end
when the holder goes or stops seeing the entity. No I/O.

The decisions are the control book's (``_book``) and the gate's; this room mirrors them
into the World's ``EntityControl`` components and tells the parties concerned.

A connection that leaves *for a move* (a drain) keeps its authenticated party's control
for ``SyncSettings.control_move_grace`` seconds: the holds are orphaned (``EntityControl``
unchanged, others' takes refused, "who is reconnecting"), and the first connection of the
party that appears — or one that is already there — becomes their holder
(``EntityControl.holder`` is its id now; no notice: the synced ``EntityControl`` says it).
Nobody of the party back by then: released, nobody told.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..protocol import (
    ControlAction,
    ControlCommand,
    EntityControl,
    FrameKind,
    NoticeKind,
    Status,
)
from ..security import ANONYMOUS, Identity
from ..sync._policy import MutationContext
from ..world import EntityId
from ._book import Granted
from ._core import Core
from ._effects import Reject
from ._gate import ControlRefused, party_of

__all__ = ["NOTICE_INTERVAL", "Control"]

logger = logging.getLogger(__name__)

NOTICE_INTERVAL = 1.0
"""Seconds between two ``control_requested`` notices for the same holder, requester and
entity."""


class Control:
    """Take, release, expiry and the end of control (connection gone, entity hidden)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        core.gate.release_unseen = self.release_unseen
        self._notices_sent: dict[tuple[int, int, EntityId], float] = {}
        # each authenticated party's live connections, in the order they came
        self._parties: dict[str, dict[int, Identity]] = {}
        self._party_of: dict[int, str] = {}

    def command(self, ctx: MutationContext, command: ControlCommand, now: float) -> None:
        """Handle one CONTROL frame."""
        core = self.core
        conn, req_id, action = ctx.connection, command.req_id, command.action
        party = party_of(ctx)
        if action == ControlAction.TAKE:
            try:
                entity, related, override = core.gate.take(ctx, command.entity)
            except ControlRefused as refusal:
                refused = refusal.refused
                for holder in refused.sharers:
                    if refused.contested is not None and self._notice_due(
                        holder, conn, refused.contested, now
                    ):
                        body = {"entity": refused.contested, "by": conn}
                        core.send(holder, [FrameKind.NOTICE, NoticeKind.CONTROL_REQUESTED, body])
                raise
            decision = core.control.take(conn, entity, related, now, party=party, override=override)
        else:  # RELEASE (parse_command let no other action through)
            entity = core.gate.release(ctx, command.entity)
            decision = core.control.release(conn, entity, party)
        if not isinstance(decision, Granted):
            raise Reject(Status.FORBIDDEN, decision.reason)
        core.identities[conn] = ctx.identity  # (its sight is checked while it holds)
        for lost in decision.displaced:
            self._mirror(lost.entity, None)
            self._released(lost.sharers, lost.entity, "taken_over", by=ctx.identity.name)
            logger.info(
                "%r took control of entity %s over connections %s",
                ctx.identity.name,
                lost.entity,
                lost.sharers,
            )
        self._mirror(entity, decision.holder, decision.party)
        core.reply(conn, req_id, Status.OK, after=EntityControl, entity=entity, held=True)

    def _mirror(self, entity: EntityId, holder: int | None, party: str | None = None) -> None:
        world = self.core.world
        if world.contains(entity):
            world.insert(entity, EntityControl(holder=holder, by=party))

    def _released(self, to: Iterable[int], entity: EntityId, reason: str, **extra: Any) -> None:
        for connection in to:
            body = {"entity": entity, "reason": reason, **extra}
            self.core.send(connection, [FrameKind.NOTICE, NoticeKind.CONTROL_RELEASED, body])

    def _notice_due(self, holder: int, requester: int, entity: EntityId, now: float) -> bool:
        """At most one ``control_requested`` per holder, requester and entity per
        :data:`NOTICE_INTERVAL` seconds: repeated takes must not flood the holder."""
        sent = self._notices_sent
        if len(sent) > 10_000:  # bounded: forget what is old
            for key in [k for k, t in sent.items() if now - t >= NOTICE_INTERVAL]:
                del sent[key]
        key = (holder, requester, entity)
        last = sent.get(key)
        if last is not None and now - last < NOTICE_INTERVAL:
            return False
        sent[key] = now
        return True

    def connection_opened(self, connection: int, identity: Identity, now: float) -> None:
        """A client connected (directly or through a gateway): an authenticated one holds
        its party's orphaned control from now on."""
        if self._party_of.get(connection, identity.name) != identity.name:
            self._forget_party(connection)  # (introduced again, as someone else)
        if identity.anonymous:
            return
        self._parties.setdefault(identity.name, {})[connection] = identity
        self._party_of[connection] = identity.name
        book = self.core.control
        if book.holds and book.orphaned(identity.name):
            self._adopt(connection, identity, now)

    def _adopt(self, connection: int, identity: Identity, now: float) -> None:
        moved = self.core.control.adopt(connection, identity.name, now)
        if moved:
            self.core.identities[connection] = identity  # (its sight is checked while it holds)
            logger.info(
                "connection %s of %r holds its party's control again: entities %s",
                connection,
                identity.name,
                [m.entity for m in moved],
            )
        for move in moved:
            self._mirror(move.entity, move.holder, move.party)

    def connection_closed(
        self, connection: int, *, moving: bool = False, now: float | None = None
    ) -> None:
        """Release every entity the connection controlled (and forget its notices); for a
        move (``moving``, at time ``now``), its authenticated party's control is kept for
        ``control_move_grace`` seconds instead (see the module's docstring)."""
        self._notices_sent = {
            k: t for k, t in self._notices_sent.items() if connection not in (k[0], k[1])
        }
        party = self._forget_party(connection)
        grace = self.core.settings.control_move_grace
        keep_until = now + grace if moving and now is not None and grace > 0 else None
        released, moved = self.core.control.connection_closed(connection, keep_until=keep_until)
        for entity in released:
            self._mirror(entity, None)
        for move in moved:
            self._mirror(move.entity, move.holder, move.party)
        others = self._parties.get(party) if party is not None else None
        if keep_until is not None and others and now is not None:
            # the party is here already (it came back before its old connection was
            # known to be gone): its latest connection holds the orphans at once
            latest, identity = next(reversed(others.items()))
            self._adopt(latest, identity, now)

    def _forget_party(self, connection: int) -> str | None:
        """``connection`` is no longer one of its party's; returns the party."""
        party = self._party_of.pop(connection, None)
        if party is not None:
            conns = self._parties[party]
            del conns[connection]
            if not conns:
                del self._parties[party]
        return party

    def tick(self, now: float) -> float | None:
        """Release control idle for ``control_timeout``, and control of entities a holder no
        longer sees; returns when to check next."""
        book = self.core.control
        if not len(book):
            return None
        self.release_unseen()
        lapsed, due = book.expire(now, self.core.world.contains)
        for expired in lapsed:
            self._mirror(expired.entity, None)
            if expired.abandoned:
                logger.info(
                    "control of entity %s released: its party did not come back from a move",
                    expired.entity,
                )
                continue
            self._released(expired.sharers or (expired.holder,), expired.entity, "inactivity")
        return due

    def release_unseen(self, entities: Iterable[EntityId] | None = None) -> None:
        """Control held by a connection whose identity no longer sees the entity ends
        (``control_released``, reason ``not_visible``): nobody controls what it cannot see.
        Of ``entities`` (default: every held entity)."""
        book, gate, identities = self.core.control, self.core.gate, self.core.identities
        for entity in book.held() if entities is None else list(entities):
            if not self.core.world.contains(entity):
                continue
            blind = [
                c
                for c in book.sharers(entity)
                if not gate.sees(identities.get(c, ANONYMOUS), entity)
            ]
            if not blind:
                continue
            released = book.drop_sharers(entity, blind)
            if released is None:
                self._mirror(entity, None)
            else:
                self._mirror(entity, released.holder, released.party)
            self._released(blind, entity, "not_visible")
