"""What the command layer asks its shell to do, and the answers it builds. No I/O.

Every input of :class:`~pl3xus_rx.commands.Commands` returns a list of effects (``tick``
with when to tick next): frames
to send now (:class:`Send`), replies to hold until the flush that carries their change
(:class:`Hold`), frames for every client (:class:`Broadcast`) and async handlers to start
(:class:`Start`). The shell (``SyncServer``) carries them out; starting, bounding and timing
out handlers is its job, and it reports each end with ``Commands.handler_finished``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from ..exceptions import CommandRejected
from ..protocol import Status, field_errors, from_wire
from ..sync._policy import FaultLog
from ..world import EntityId

__all__ = [
    "Broadcast",
    "Effect",
    "Hold",
    "HandlerTimedOut",
    "Reject",
    "Send",
    "Start",
    "answer_of",
    "decide",
    "validated",
]


class Send(NamedTuple):
    """Send ``frame`` to ``connection`` now."""

    connection: int
    frame: list[Any]


class Hold(NamedTuple):
    """Send the REPLY ``frame`` to ``connection`` after the flush that carries the change
    it answers for (``component`` of ``entity``; ``None``: the next flush)."""

    connection: int
    frame: list[Any]
    component: type[BaseModel] | None = None
    entity: EntityId | None = None


class Broadcast(NamedTuple):
    """Send ``frame`` to every client (a gateway's clients too)."""

    frame: list[Any]


class Start(NamedTuple):
    """Run the async handler ``pending`` for ``connection`` within ``handler_timeout``
    (``timeout``; ``None``: unbounded), then report its end with
    ``Commands.handler_finished(call, ...)``. Cancelled with its connection."""

    call: int
    connection: int
    name: str
    pending: Awaitable[Any]
    timeout: float | None


Effect = Send | Hold | Broadcast | Start


class HandlerTimedOut(Exception):
    """A handler overran ``handler_timeout`` and was cancelled (the shell reports it with
    ``Commands.handler_finished(call, error=HandlerTimedOut())``)."""


class Reject(Exception):
    """Raised inside the command layer: answer with this status and message."""

    def __init__(self, status: Status, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body or {}


def validated(name: str, model: type[BaseModel], payload: Any) -> Any:
    """``payload`` as a ``model``, or the ``validation_error`` answer naming the field."""
    try:
        return from_wire(model, payload)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise Reject(
            Status.VALIDATION_ERROR,
            f"{name} failed validation at {errors[0]['loc'] or '<root>'}: {errors[0]['msg']}",
            {"errors": errors},
        ) from exc


_CHOSEN = {Status.FORBIDDEN.value, Status.NOT_FOUND.value, Status.VALIDATION_ERROR.value}


def answer_of(exc: BaseException) -> Reject | None:
    """The answer a handler or policy chose by raising ``Forbidden``, ``NotFound`` or
    ``InvalidValue`` (``None`` for any other exception: a failure)."""
    if not isinstance(exc, CommandRejected) or exc.status not in _CHOSEN:
        return None
    status = Status(exc.status)
    body = None
    if status is Status.VALIDATION_ERROR:
        errors = exc.errors or [{"loc": "", "msg": exc.message, "type": "value_error"}]
        body = {"errors": errors}
    return Reject(status, exc.message, body)


NOT_AUTHORIZED = "not authorized"
"""The answer to a command whose policy failed (raised something else than a documented
answer): a refusal that says nothing of the failure."""


def decide(
    faults: FaultLog, what: str | tuple[str, ...], policy: Callable[..., Any], *args: Any
) -> Any:
    """A policy's decision. One that raises ``Forbidden`` / ``NotFound`` / ``InvalidValue``
    answers with it; one that fails otherwise is a refusal (``forbidden``), counted and
    logged in ``faults`` under ``what`` (parts are joined only then: the hot path builds
    no text)."""
    try:
        return policy(*args)
    except Exception as exc:
        answer = answer_of(exc)
        if answer is not None:
            raise answer from None
        faults.failed(what if isinstance(what, str) else "".join(what), exc)
        raise Reject(Status.FORBIDDEN, NOT_AUTHORIZED) from None
