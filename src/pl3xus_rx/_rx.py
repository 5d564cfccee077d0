"""Reactive plumbing shared by the network and sync layers (no I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import abc
from reactivex.subject import Subject

__all__ = ["Dispatcher", "SafeSubject"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SafeSubject(Subject[T]):
    """A Subject in which one subscriber's exception never reaches the source or the others.

    If an observer's ``on_next`` raises, the exception is handed to that observer's
    ``on_error`` (and logged), and that observer is detached. The emitter and every other
    observer carry on.
    """

    def _on_next_core(self, value: T) -> None:
        with self.lock:
            observers = self.observers.copy()
        for observer in observers:
            try:
                observer.on_next(value)
            except Exception as exc:  # a user callback raised
                self._fail_observer(observer, exc)

    def _fail_observer(self, observer: abc.ObserverBase[T], exc: Exception) -> None:
        logger.warning(
            "subscriber %r raised %s in on_next; detaching it",
            observer,
            type(exc).__name__,
            exc_info=exc,
        )
        with self.lock:
            if observer in self.observers:
                self.observers.remove(observer)
        # The default on_error re-raises; the error is logged above already.
        with contextlib.suppress(Exception):
            observer.on_error(exc)


class Dispatcher:
    """Runs emissions later on the event loop, outside the caller's stack.

    The transport reader calls :meth:`post`; the emissions run from a ``call_soon`` callback,
    so a slow or raising subscriber never runs on (or kills) the reader.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def post(self, emit: Callable[[Any], None], value: Any) -> None:
        """Queue ``emit(value)`` to run soon on the running loop."""
        self._queue.append((emit, value))
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None or loop.is_closed():
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
        # Only what is queued now; posts made by subscribers run in the next round.
        for _ in range(len(queue)):
            emit, value = queue.popleft()
            try:
                emit(value)
            except Exception:
                logger.exception("an emission raised; it was dropped")
