"""Signal: a value you can read now and observe, like a Leptos read signal, on reactivex.

No I/O. A signal holds its current value; subscribing gives the current value at once and
then every change (BehaviorSubject semantics), only when the value really changed.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable

__all__ = ["Signal", "WritableSignal", "async_iter", "combine"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")


class Signal(reactivex.Observable[T], Generic[T]):
    """A read-only value with changes.

    ``get()`` is safe from any thread. Emissions happen on the thread that sets the value
    (the provider's event loop). A subscriber whose ``on_next`` raises gets the exception in
    its ``on_error`` and is detached; the others carry on.
    """

    def __init__(
        self,
        initial: T,
        *,
        equals: Callable[[Any, Any], bool] = operator.eq,
        on_first_subscribe: Callable[[], None] | None = None,
        on_last_dispose: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._value = initial
        self._equals = equals
        self._observers: list[abc.ObserverBase[T]] = []
        self._lock = threading.RLock()
        self._on_first = on_first_subscribe
        self._on_last = on_last_dispose

    def get(self) -> T:
        """The current value (safe from any thread)."""
        return self._value

    @property
    def observed(self) -> bool:
        """Whether anyone is subscribed."""
        return bool(self._observers)

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        with self._lock:
            self._observers.append(observer)
            first = len(self._observers) == 1
        if first and self._on_first is not None:
            self._on_first()
        self._deliver(observer, self._value)

        def dispose() -> None:
            with self._lock:
                if observer not in self._observers:
                    return
                self._observers.remove(observer)
                last = not self._observers
            if last and self._on_last is not None:
                self._on_last()

        return Disposable(dispose)

    def _deliver(self, observer: abc.ObserverBase[T], value: T) -> None:
        try:
            observer.on_next(value)
        except Exception as exc:
            logger.warning(
                "signal subscriber raised %s; detaching it", type(exc).__name__, exc_info=exc
            )
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)
                    last = not self._observers
                else:
                    last = False
            try:
                observer.on_error(exc)
            except Exception:  # the default on_error re-raises; logged above
                logger.debug("on_error of a detached subscriber raised", exc_info=True)
            if last and self._on_last is not None:
                self._on_last()

    def _set(self, value: T) -> bool:
        old = self._value
        if old is value or self._equals(old, value):
            return False
        self._value = value
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            self._deliver(observer, value)
        return True

    def map(
        self, fn: Callable[[T], U], *, equals: Callable[[Any, Any], bool] = operator.eq
    ) -> Signal[U]:
        """A derived signal: ``fn`` of this one's value, emitting only when the result
        changes. Observing it observes this signal (so server subscriptions stay live)."""
        return _Derived(self, fn, equals)

    def __aiter__(self) -> AsyncIterator[T]:
        return async_iter(self)


class WritableSignal(Signal[T]):
    """A signal its owner can set (the provider's own state signals)."""

    def set(self, value: T) -> bool:
        """Set the value; emits if it changed. Returns whether it changed."""
        return self._set(value)


class _Derived(Signal[U]):
    def __init__(
        self, parent: Signal[T], fn: Callable[[T], U], equals: Callable[[Any, Any], bool]
    ) -> None:
        self._parent = parent
        self._fn = fn
        self._link: abc.DisposableBase | None = None
        super().__init__(
            fn(parent.get()),
            equals=equals,
            on_first_subscribe=self._attach,
            on_last_dispose=self._detach,
        )

    def get(self) -> U:
        if self._link is None:  # not observed: compute from the parent now
            return self._fn(self._parent.get())
        return self._value

    def _attach(self) -> None:
        self._value = self._fn(self._parent.get())

        def follow(value: Any) -> None:
            self._set(self._fn(value))

        self._link = self._parent.subscribe(follow)

    def _detach(self) -> None:
        if self._link is not None:
            self._link.dispose()
            self._link = None


def combine(
    parents: Sequence[Signal[Any]],
    fn: Callable[[list[Any]], U],
    *,
    equals: Callable[[Any, Any], bool] = operator.eq,
) -> Signal[U]:
    """A signal of ``fn`` of several signals' values (in order), emitting when the result
    changes. Observing it observes every parent (so their server subscriptions stay live)."""
    return _Combined(list(parents), fn, equals)


class _Combined(Signal[U]):
    def __init__(
        self,
        parents: list[Signal[Any]],
        fn: Callable[[list[Any]], U],
        equals: Callable[[Any, Any], bool],
    ) -> None:
        self._parents = parents
        self._fn = fn
        self._links: list[abc.DisposableBase] = []
        super().__init__(
            fn([p.get() for p in parents]),
            equals=equals,
            on_first_subscribe=self._attach,
            on_last_dispose=self._detach,
        )

    def get(self) -> U:
        if not self._links:  # not observed: compute from the parents now
            return self._fn([p.get() for p in self._parents])
        return self._value

    def _attach(self) -> None:
        def follow(_: Any) -> None:
            if len(self._links) == len(self._parents):  # (not while attaching)
                self._set(self._fn([p.get() for p in self._parents]))

        for parent in self._parents:
            self._links.append(parent.subscribe(follow))
        self._value = self._fn([p.get() for p in self._parents])

    def _detach(self) -> None:
        links, self._links = self._links, []
        for link in links:
            link.dispose()


class _Feed:
    """What an Observable pushed and not yet taken, and the subscription pushing it."""

    __slots__ = ("queue", "ready", "subscription")

    def __init__(self, source: reactivex.Observable[Any]) -> None:
        queue: deque[tuple[str, Any]] = deque()
        ready = asyncio.Event()
        self.queue = queue
        self.ready = ready
        self.subscription: abc.DisposableBase | None = None

        def push(kind: str, value: Any) -> None:
            queue.append((kind, value))
            ready.set()

        self.subscription = source.subscribe(
            on_next=lambda v: push("next", v),
            on_error=lambda e: push("error", e),
            on_completed=lambda: push("done", None),
        )

    def dispose(self) -> None:
        subscription, self.subscription = self.subscription, None
        self.queue.clear()
        if subscription is not None:
            subscription.dispose()


async def _next(feed: _Feed) -> Any:
    queue = feed.queue
    while not queue:
        if feed.subscription is None:
            raise StopAsyncIteration
        feed.ready.clear()
        await feed.ready.wait()
    kind, value = queue.popleft()
    if kind == "next":
        return value
    feed.dispose()
    if kind == "error":
        raise value
    raise StopAsyncIteration


class _ObservableIterator(AsyncIterator[T]):
    """The iterator behind :func:`async_iter`. Not an async generator: one of those is
    closed by the loop's finalizer, one or more loop turns after the ``async for`` is left.
    This one is owned by the ``async for`` alone (neither the observer nor a pending
    ``__anext__``, whose frames a cancellation's traceback keeps, refers to it), so CPython
    drops it, and :meth:`__del__` disposes the subscription, the moment the loop is left."""

    __slots__ = ("_feed",)

    def __init__(self, source: reactivex.Observable[T]) -> None:
        self._feed = _Feed(source)

    def __aiter__(self) -> _ObservableIterator[T]:
        return self

    def __anext__(self) -> Coroutine[Any, Any, T]:
        return _next(self._feed)

    async def aclose(self) -> None:
        """Stop iterating and dispose the subscription."""
        self._feed.dispose()

    def __del__(self) -> None:
        self._feed.dispose()


def async_iter(source: reactivex.Observable[T]) -> AsyncIterator[T]:
    """Iterate an Observable with ``async for``; stops when it completes, raises its error.

    Items are buffered while the loop body runs. Leaving the loop (``break``, ``return``,
    an exception, cancellation) disposes the subscription at once, on every Python version.
    Must run on the loop the Observable emits on.
    """
    return _ObservableIterator(source)
