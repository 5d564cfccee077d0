"""What every room of the command layer shares: the World, the gate, the effects being
collected, the replies and the handlers in flight. No I/O."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..protocol import FrameKind, Status
from ..security import Identity
from ..sync._policy import FaultLog
from ..sync._registry import ComponentRegistry
from ..sync._settings import SyncSettings
from ..world import EntityId, World
from ._book import ControlBook
from ._effects import Broadcast, Effect, HandlerTimedOut, Hold, Reject, Send, Start, answer_of
from ._gate import Gate
from ._quota import SpawnLedger
from ._slow import SlowHandlers

__all__ = ["Core"]

logger = logging.getLogger(__name__)

_REPLY = FrameKind.REPLY
_OK = Status.OK._value_
_VALIDATION_ERROR = Status.VALIDATION_ERROR._value_


@dataclass(slots=True)
class _Call:
    connection: int
    name: str
    done: Callable[[Any], None]  # with the handler's result
    req_id: int | None  # (None: a one-way message, answered by nobody)


class Core:
    """The command layer's shared state (one per server)."""

    def __init__(self, world: World, components: ComponentRegistry, settings: SyncSettings) -> None:
        self.world = world
        self.components = components
        self.settings = settings
        self.faults = FaultLog()
        self.slow = SlowHandlers(lambda: self.settings.slow_handler_seconds)
        """Policies that failed (raised something else than a documented answer)."""
        self.control = ControlBook(settings.control_timeout)
        """Who controls which entity (the World's ``EntityControl`` components mirror it)."""
        self.gate = Gate(world, components, self.control, self.faults)
        """The one access decision for every targeted command."""
        self.ledger = SpawnLedger(world)
        """Who spawned which entity, and what each owner holds (the spawn quotas)."""
        self.replies: dict[str, int] = {}
        """Replies sent so far, by status."""
        self.out: list[Effect] = []
        self._calls: dict[int, _Call] = {}
        self._next_call = 0
        self.in_flight: dict[int, int] = {}
        """Async handlers running, per connection."""
        self.identities: dict[int, Identity] = self.gate.identities
        """Who each connection that shares control is (control ends when it stops seeing
        what it holds)."""

    def take_effects(self) -> list[Effect]:
        """What was collected since the last call."""
        out, self.out = self.out, []
        return out

    # ------------------------------------------------------------------ answers

    def hold_ok(
        self, connection: int, req_id: int, model: type[BaseModel], entity: EntityId
    ) -> None:
        """``ok``, after the flush that carries the change of ``model`` on ``entity`` (the
        hot path of :meth:`reply`)."""
        replies = self.replies
        replies[_OK] = replies.get(_OK, 0) + 1
        self.out.append(Hold(connection, [_REPLY, req_id, _OK, "", {}], model, entity))

    def reply(
        self,
        connection: int,
        req_id: int,
        status: Status,
        message: str = "",
        body: dict[str, Any] | None = None,
        *,
        after: type[BaseModel] | None = None,
        entity: EntityId | None = None,
        held: bool = False,
    ) -> None:
        """Answer a command: at once, or (``held``) after the flush carrying its change."""
        value = status._value_  # (not .value: a property, slow on the hot path)
        self.replies[value] = self.replies.get(value, 0) + 1
        if value == _VALIDATION_ERROR and (body is None or not body.get("errors")):
            # every validation_error names what was wrong in its errors list (the protocol)
            item = {"loc": "", "msg": message, "type": "value_error"}
            body = {**(body or {}), "errors": [item]}
        frame = [_REPLY, req_id, value, message, body or {}]
        if held:
            self.out.append(Hold(connection, frame, after, entity))
        else:
            self.out.append(Send(connection, frame))

    def send(self, connection: int, frame: list[Any]) -> None:
        """Send ``frame`` to ``connection`` now."""
        self.out.append(Send(connection, frame))

    def broadcast(self, frame: list[Any]) -> None:
        """Send ``frame`` to every client."""
        self.out.append(Broadcast(frame))

    def failed(self, conn: int, req_id: int, name: str, exc: BaseException) -> None:
        """A handler raised ``exc``: its chosen answer, else ``internal_error`` (the
        details stay in the server's log)."""
        answer = answer_of(exc)
        if answer is not None:
            logger.info("the handler for %s answered %s: %r", name, answer.status, answer.message)
            self.reply(conn, req_id, answer.status, answer.message, answer.body)
            return
        if isinstance(exc, HandlerTimedOut):
            limit = self.settings.handler_timeout
            logger.warning("the handler for %s did not finish within %s s; cancelled", name, limit)
            self.reply(
                conn,
                req_id,
                Status.TIMEOUT,
                f"the handler for {name} did not finish within {limit:g} s "
                "(SyncSettings.handler_timeout); it was cancelled",
            )
            return
        logger.error("handler for %s failed", name, exc_info=exc)
        self.reply(conn, req_id, Status.INTERNAL_ERROR, f"the handler for {name} failed")

    # ------------------------------------------------------------------ async handlers

    def launch(
        self,
        conn: int,
        req_id: int | None,
        name: str,
        pending: Awaitable[Any],
        done: Callable[[Any], None],
    ) -> None:
        """Have the shell run ``pending`` (an async handler's result) for ``conn``; ``done``
        gets its result. Past ``max_pending_commands`` per connection it is closed
        unstarted and the command refused (``forbidden``)."""
        limit = self.settings.max_pending_commands
        running = self.in_flight.get(conn, 0)
        if limit is not None and running >= limit:
            if inspect.iscoroutine(pending):
                pending.close()
            raise Reject(
                Status.FORBIDDEN,
                f"too many commands in flight (max_pending_commands={limit}): wait for their "
                "answers before sending more",
            )
        self.in_flight[conn] = running + 1
        self._next_call += 1
        call = self._next_call
        self._calls[call] = _Call(conn, name, done, req_id)
        self.out.append(Start(call, conn, name, pending, self.settings.handler_timeout))

    def finished(
        self,
        call: int,
        result: Any = None,
        error: BaseException | None = None,
        *,
        cancelled: bool = False,
    ) -> None:
        """The handler of ``call`` ended: with ``result``, raising ``error``, or
        ``cancelled`` (its connection or the server closing: nobody is answered)."""
        pending = self._calls.pop(call, None)
        if pending is None:
            return  # its connection closed meanwhile
        conn = pending.connection
        left = self.in_flight.get(conn, 1) - 1
        if left > 0:
            self.in_flight[conn] = left
        else:
            self.in_flight.pop(conn, None)
        if cancelled:
            return
        if error is None:
            pending.done(result)
        elif pending.req_id is not None:
            self.failed(conn, pending.req_id, pending.name, error)
        elif isinstance(error, HandlerTimedOut):
            logger.warning(
                "the handler for message %s did not finish in time; cancelled", pending.name
            )
        else:
            logger.error("async handler for message %s failed", pending.name, exc_info=error)

    def forget(self, connection: int) -> None:
        """``connection`` closed: its handlers' ends are not answered."""
        self.in_flight.pop(connection, None)
        self.identities.pop(connection, None)
        for call in [c for c, p in self._calls.items() if p.connection == connection]:
            del self._calls[call]
