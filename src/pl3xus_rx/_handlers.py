"""Handler supervision: the async command handlers under way, per connection.

Each runs as a task within its timeout; its end (result, error or cancellation) goes back
to the command layer; a connection that leaves has its handlers cancelled (nobody is left
to answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .commands import HandlerTimedOut, Start

__all__ = ["Handlers"]

_T = TypeVar("_T")

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
"""``spawn(coroutine, name)``: start a task the server's network keeps and reports on."""

Finished = Callable[..., None]
"""``finished(call, result=... | error=... | cancelled=True)``: a handler's end."""


async def _bound(pending: Awaitable[_T], seconds: float) -> _T:
    """Await a handler for at most ``seconds``; past that it is cancelled."""
    try:
        async with asyncio.timeout(seconds) as scope:
            return await pending
    except TimeoutError as exc:
        if scope.expired():
            raise HandlerTimedOut from exc
        raise  # the handler's own TimeoutError: a failure like any other


class Handlers:
    """The async handlers under way, by connection.

    Args:
        spawn: Starts a task (the network's, so that it is awaited at shutdown).
        finished: Told how each handler ended (the command layer's ``handler_finished``
            with its effects carried out).
    """

    def __init__(self, spawn: Spawn, finished: Finished) -> None:
        self._spawn = spawn
        self._finished = finished
        self.tasks: dict[int, set[asyncio.Task[None]]] = {}
        """Connection -> its handlers' tasks under way (none: no entry)."""

    def start(self, start: Start) -> None:
        """Run ``start``'s handler within its timeout; report its end."""
        connection, call, finished = start.connection, start.call, self._finished

        async def run() -> None:
            try:
                if start.timeout is None:
                    result = await start.pending
                else:
                    result = await _bound(start.pending, start.timeout)
            except asyncio.CancelledError:
                finished(call, cancelled=True)
                raise
            except Exception as exc:
                finished(call, error=exc)
            else:
                finished(call, result=result)

        task = self._spawn(run(), f"command handler for connection {connection}")
        tasks = self.tasks.setdefault(connection, set())
        tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not tasks and self.tasks.get(connection) is tasks:
                del self.tasks[connection]

        task.add_done_callback(done)

    def cancel(self, connection: int) -> None:
        """Cancel every handler ``connection`` started (it left)."""
        for task in list(self.tasks.get(connection, ())):
            task.cancel()
