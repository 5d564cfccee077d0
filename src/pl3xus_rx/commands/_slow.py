"""Synchronous handlers that hold the event loop.

A handler that is a plain function runs on the event loop: while it runs, no frame is read,
no flush goes out, every client waits. Each call is timed (two clock reads); one that takes
``SyncSettings.slow_handler_seconds`` or more is counted per handler and logged with the
handler's name and how long it held the loop, at most once a minute per handler. The remedy
is in docs/commands.md: an ``async`` handler, and ``asyncio.to_thread`` for work that does
not touch the World.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SlowHandlers"]

logger = logging.getLogger("pl3xus_rx.commands")

LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same handler."""


def _named(handler: Callable[..., Any]) -> str:
    module = getattr(handler, "__module__", None) or "?"
    return f"{module}.{getattr(handler, '__qualname__', type(handler).__qualname__)}"


class SlowHandlers:
    """Times synchronous handler calls.

    Attributes:
        count: Calls that held the loop past the limit, by command (``"request Jog"``).
        seconds: The longest such call, by command.

    Args:
        limit: The time a call may hold the loop, as it is now (``None``: not timed).
    """

    def __init__(self, limit: Callable[[], float | None]) -> None:
        self._limit = limit
        self.count: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._logged: dict[str, float] = {}
        self._clock = time.perf_counter

    def call(self, kind: str, name: str, handler: Callable[..., Any], *args: Any) -> Any:
        """``handler(*args)``, timed; ``kind`` and ``name`` say which command's handler it
        is (``"request"``, ``"Jog"``: joined only for a slow one)."""
        limit = self._limit()
        if limit is None:
            return handler(*args)
        clock = self._clock
        started = clock()
        try:
            return handler(*args)
        finally:
            held = clock() - started
            if held >= limit:
                self._slow(f"{kind} {name}", handler, held, limit)

    def _slow(self, what: str, handler: Callable[..., Any], held: float, limit: float) -> None:
        self.count[what] = self.count.get(what, 0) + 1
        self.seconds[what] = max(self.seconds.get(what, 0.0), held)
        now = time.monotonic()
        last = self._logged.get(what)
        if last is not None and now - last < LOG_INTERVAL:
            return
        self._logged[what] = now
        logger.warning(
            "the handler of %s (%s) held the event loop for %.3f s (slow_handler_seconds=%g): "
            "no client was served meanwhile; make it async and move work that does not touch "
            "the World to asyncio.to_thread (%d slow calls so far; logged once a minute)",
            what,
            _named(handler),
            held,
            limit,
            self.count[what],
        )
