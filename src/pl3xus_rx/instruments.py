"""Instruments: what a server tells whoever watches it — metrics, an audit log, a recorder.

An :class:`Instrument` overrides the methods it cares about; every other one does nothing.
``server.instrument(instrument)`` installs one (``/metrics`` is one, installed by default);
with none installed the server's hot paths call nothing at all.

:class:`AuditLog` ships here: every command a client sent and how it was answered, as one
JSON line through :mod:`logging` (logger ``pl3xus_rx.audit``), off until installed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .commands import Effect, Hold, Send
from .protocol import REQ_ID_MAX, REQ_ID_MIN, FrameKind, NoticeKind, shown
from .security import Identity
from .sync import MutationContext

__all__ = [
    "ACTIVITY_LOGGER",
    "AUDIT_LOGGER",
    "ActivityLog",
    "AuditLog",
    "CommandAnswer",
    "Instrument",
    "Reporter",
]

logger = logging.getLogger(__name__)

AUDIT_LOGGER = "pl3xus_rx.audit"
"""The logger :class:`AuditLog` writes to."""


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """A client command and its answer.

    Attributes:
        connection: Who sent it.
        identity: Its identity.
        kind: The command kind's name (``"MUTATE"``, ``"CONTROL"``...).
        type_name: The component, request, query or message type it named (``None``:
            CONTROL, DESPAWN; or not a string).
        entity: The entity it named: an integer as sent, anything else as the text of
            :func:`~pl3xus_rx.protocol.shown` (cut short; ``None``: none).
        status: The answer (``"ok"``, ``"forbidden"``, ``"not_found"``...).
        seconds: From the frame's arrival to its answer (an async handler's time
            included; a reply held for the flush that carries its change counts until it
            was decided, not until it was sent).
    """

    connection: int
    identity: Identity
    kind: str
    type_name: str | None
    entity: Any
    status: str
    seconds: float


class Instrument:
    """What a server reports, each method a no-op until overridden. Methods are called on
    the server's event loop and must return quickly (queue the work otherwise); one that
    raises is logged and does not stop the others."""

    def connection_opened(self, connection: int, identity: Identity) -> None:
        """A client connected (after the handshake admitted ``identity``)."""

    def connection_closed(self, connection: int) -> None:
        """A client's connection ended."""

    def handshake_refused(self, remote: str, status: int, reason: str) -> None:
        """A handshake was refused with HTTP ``status`` (authentication, origin, protected
        mode, limits)."""

    def frame_received(self, connection: int, kind: int) -> None:
        """A sync or command frame arrived (SUBSCRIBE, MUTATE...; plain typed messages are
        the network layer's ``messages``)."""

    def command_answered(self, answer: CommandAnswer) -> None:
        """A client command was answered (or, for a SEND, handled)."""

    def flushed(self, seconds: float, frames: int, nbytes: int) -> None:
        """A flush took ``seconds`` and built ``frames`` SYNC frames of ``nbytes`` bytes."""

    def subscription_opened(self, connection: int, type_name: str, entity: int | None) -> None:
        """A client subscribed to ``type_name`` (of one ``entity``, or all)."""

    def subscription_closed(self, connection: int, type_name: str) -> None:
        """A client's subscription ended (unsubscribed, or the connection closed)."""


class AuditLog(Instrument):
    """Every client command and its answer, as a JSON line (time, connection, identity,
    kind, type, entity, status, seconds) at INFO on the ``pl3xus_rx.audit`` logger. Values
    a client chose are cut to 60 characters. Route the logger where audits go (a file
    handler, syslog); it propagates to the root logger unless told otherwise.

    Args:
        refusals: Also log refused commands (default), not only the applied ones.
    """

    def __init__(self, *, refusals: bool = True) -> None:
        self.refusals = refusals
        self._logger = logging.getLogger(AUDIT_LOGGER)

    def command_answered(self, answer: CommandAnswer) -> None:
        if not self.refusals and answer.status != "ok":
            return
        entity = answer.entity
        record = {
            "time": round(time.time(), 6),
            "connection": answer.connection,
            "identity": answer.identity.name,
            "anonymous": answer.identity.anonymous,
            "kind": answer.kind,
            "type": None if answer.type_name is None else answer.type_name[:60],
            "entity": _entity_text(entity),
            "status": answer.status,
            "seconds": round(answer.seconds, 6),
        }
        self._logger.info("%s", json.dumps(record, ensure_ascii=True))


ACTIVITY_LOGGER = "pl3xus_rx.activity"
"""The logger :class:`ActivityLog` writes to."""

_MAX_PACED = 100_000  # connections an ActivityLog keeps a pace for, at most


class ActivityLog(Instrument):
    """Who came, what they did, who left — one readable line each at INFO on the
    ``pl3xus_rx.activity`` logger (``pl3xus-rx demo`` and ``gateway`` install it at their
    default log level): connections with their identity, subscriptions, every command with
    its answer and time. (Refused handshakes are logged by the network, as warnings.)

    A busy client cannot flood the log: at most ``per_second`` lines per connection per
    second; the rest are counted and said in one line when the next second begins. Values a
    client chose are cut to 60 characters.

    Args:
        per_second: Lines per connection per second, at most.
        address_of: Where a connection comes from (``"host:port"``), for its first line
            (``ActivityLog(address_of=server.address_of)``).
    """

    def __init__(
        self, *, per_second: int = 5, address_of: Callable[[int], str | None] | None = None
    ) -> None:
        self.per_second = per_second
        self._address_of = address_of
        self._logger = logging.getLogger(ACTIVITY_LOGGER)
        self._who: dict[int, str] = {}
        # connection -> (the second it is in, lines in it, lines held back)
        self._pace: dict[int, tuple[int, int, int]] = {}

    def _say(self, connection: int, text: str, *args: Any) -> None:
        second = int(time.monotonic())
        if len(self._pace) > _MAX_PACED and connection not in self._pace:
            self._pace.clear()  # (a gateway's clients are never told closed here: bounded)
        start, lines, held = self._pace.get(connection, (second, 0, 0))
        if start != second:
            if held:
                self._logger.info("%s: %d more lines not shown", self._name(connection), held)
            start, lines, held = second, 0, 0
        if lines >= self.per_second:
            self._pace[connection] = (start, lines, held + 1)
            return
        self._pace[connection] = (start, lines + 1, held)
        self._logger.info(text, *args)

    def _name(self, connection: int) -> str:
        return self._who.get(connection, f"client #{connection}")

    def connection_opened(self, connection: int, identity: Identity) -> None:
        if len(self._who) > _MAX_PACED:
            self._who.clear()
        who = "anonymous" if identity.anonymous else f"identity {identity.name!r}"
        self._who[connection] = f"client #{connection} ({who})"
        where = self._address_of(connection) if self._address_of is not None else None
        self._say(
            connection, "%s connected%s", self._who[connection], f" from {where}" if where else ""
        )

    def connection_closed(self, connection: int) -> None:
        held = self._pace.pop(connection, (0, 0, 0))[2]
        name = self._who.pop(connection, f"client #{connection}")
        more = f" ({held} more lines not shown)" if held else ""
        self._logger.info("%s left%s", name, more)

    def subscription_opened(self, connection: int, type_name: str, entity: int | None) -> None:
        where = "" if entity is None else f" of entity {entity}"
        self._say(connection, "%s subscribed to %r%s", self._name(connection), type_name, where)

    def command_answered(self, answer: CommandAnswer) -> None:
        target = "" if answer.entity is None else f" on {_entity_text(answer.entity)}"
        what = answer.kind if answer.type_name is None else f"{answer.kind} {answer.type_name!r}"
        self._say(
            answer.connection,
            "%s: %s%s -> %s (%.1f ms)",
            self._name(answer.connection),
            what[:80],
            target,
            answer.status,
            answer.seconds * 1000,
        )


def _entity_text(entity: Any) -> Any:
    """A command's entity for a log: an integer (or null) as it is, text (already
    :func:`~pl3xus_rx.protocol.shown` by the reporter) cut to 60 characters, anything else
    shown."""
    if entity is None or type(entity) is int:
        return entity
    return entity[:60] if type(entity) is str else shown(entity)


_TYPED_KINDS = frozenset((FrameKind.MUTATE, FrameKind.REQUEST, FrameKind.QUERY))
_ENTITY_AT = {
    FrameKind.MUTATE: 3,
    FrameKind.CONTROL: 3,
    FrameKind.REQUEST: 3,
    FrameKind.SPAWN: 2,
    FrameKind.DESPAWN: 2,
}
_MAX_WAITING = 100_000


def _listens(instruments: tuple[Instrument, ...], method: str) -> bool:
    """Whether one of ``instruments`` overrides ``method`` (else calling it does nothing)."""
    default = getattr(Instrument, method)
    return any(getattr(type(i), method, default) is not default for i in instruments)


def _kind_name(kind: Any) -> str:
    try:
        return FrameKind(kind).name
    except ValueError:
        return str(kind)


class Reporter:
    """A server's side of its instruments: tells each one (an instrument that raises is
    logged and the others are still told), and pairs each command with its answer. The
    server has one only while instruments are installed."""

    def __init__(self) -> None:
        self._instruments: tuple[Instrument, ...] = ()
        self.frames = self.commands = False
        """Whether some instrument listens to frames / to command answers (the hot paths
        skip what nobody listens to: ``/metrics`` alone listens to flushes only)."""
        # commands waiting for their answer: connection -> req_id -> what and since when
        self._waiting: dict[int, dict[int, tuple[Identity, str, str | None, Any, float]]] = {}
        self._count = 0  # entries in _waiting

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        """The instruments told."""
        return self._instruments

    @instruments.setter
    def instruments(self, instruments: tuple[Instrument, ...]) -> None:
        self._instruments = instruments
        self.frames = _listens(instruments, "frame_received")
        self.commands = _listens(instruments, "command_answered")
        if not self.commands:
            self._waiting.clear()
            self._count = 0

    def report(self, method: str, *args: Any) -> None:
        """Call ``method`` of every instrument with ``args``."""
        for instrument in self._instruments:
            try:
                getattr(instrument, method)(*args)
            except Exception:
                logger.exception("instrument %r failed in %s", instrument, method)

    def refused(self, remote: str, status: int, body: bytes | str) -> None:
        """A handshake was refused."""
        text = body if isinstance(body, str) else body.decode("utf-8", "replace")
        self.report("handshake_refused", remote, status, text.strip())

    def subscription(
        self, connection: int, type_name: str, entity: int | None, opened: bool
    ) -> None:
        """A subscription opened or closed."""
        if opened:
            self.report("subscription_opened", connection, type_name, entity)
        else:
            self.report("subscription_closed", connection, type_name)

    def asked(self, ctx: MutationContext, frame: list[Any]) -> None:
        """A command frame arrived: remember it until its REPLY."""
        kind = frame[0]
        if kind == FrameKind.SEND or len(frame) < 3:
            return
        req_id = frame[1]
        if type(req_id) is not int or not REQ_ID_MIN <= req_id <= REQ_ID_MAX:
            return  # (answered with an ERROR, never a REPLY: nothing to pair)
        type_name = frame[2] if kind in _TYPED_KINDS and isinstance(frame[2], str) else None
        at = _ENTITY_AT.get(kind)
        entity = frame[at] if at is not None and len(frame) > at else None
        if entity is not None and type(entity) is not int:
            entity = shown(entity)  # (what a client chose: kept small)
        if self._count < _MAX_WAITING:  # (bounded: answers normally come at once)
            waiting = self._waiting.setdefault(ctx.connection, {})
            if req_id not in waiting:
                self._count += 1
            waiting[req_id] = (
                ctx.identity,
                _kind_name(kind),
                type_name[:80] if type_name is not None else None,
                entity,
                time.perf_counter(),
            )

    def answers_in(self, effects: list[Effect]) -> None:
        """Report the REPLYs among ``effects`` as answers of the commands they answer."""
        if not self._waiting:
            return
        for effect in effects:
            if isinstance(effect, Send | Hold) and effect.frame[0] == FrameKind.REPLY:
                waiting = self._waiting.get(effect.connection)
                asked = waiting.pop(effect.frame[1], None) if waiting is not None else None
                if asked is not None:
                    self._count -= 1
                    if not waiting:
                        del self._waiting[effect.connection]
                    identity, kind, type_name, entity, started = asked
                    answer = CommandAnswer(
                        effect.connection,
                        identity,
                        kind,
                        type_name,
                        entity,
                        str(effect.frame[2]),
                        time.perf_counter() - started,
                    )
                    self.report("command_answered", answer)

    def answered_send(self, ctx: MutationContext, frame: list[Any], effects: list[Effect]) -> None:
        """Report a SEND: ``ok``, or the status of its ``message_rejected`` notice."""
        status = "ok"
        for effect in effects:
            if (
                isinstance(effect, Send)
                and effect.connection == ctx.connection
                and effect.frame[0] == FrameKind.NOTICE
                and effect.frame[1] == NoticeKind.MESSAGE_REJECTED
            ):
                status = str(effect.frame[2]["status"])
        type_name = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else None
        entity = frame[2] if len(frame) > 2 else None
        answer = CommandAnswer(ctx.connection, ctx.identity, "SEND", type_name, entity, status, 0.0)
        self.report("command_answered", answer)

    def connection_closed(self, connection: int) -> None:
        """A connection ended: told, and its unanswered commands forgotten."""
        self.report("connection_closed", connection)
        self._count -= len(self._waiting.pop(connection, {}))
