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
from dataclasses import dataclass
from typing import Any

from .protocol import shown
from .security import Identity

__all__ = ["AUDIT_LOGGER", "AuditLog", "CommandAnswer", "Instrument"]

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
        entity: The entity it named, as sent (``None``: none).
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
        """A flush took ``seconds`` and queued ``frames`` frames of ``nbytes`` bytes."""

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
            "entity": entity if entity is None or type(entity) is int else shown(entity),
            "status": answer.status,
            "seconds": round(answer.seconds, 6),
        }
        self._logger.info("%s", json.dumps(record, ensure_ascii=True))
