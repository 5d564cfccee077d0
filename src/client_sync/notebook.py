"""Live pl3xus_rx data in Jupyter: a table of a component type and a chart of one field.

Install the extra (``pip install "pl3xus-rx[notebook]"``), then, in notebook cells (top-level
``await``)::

    from client_sync import notebook
    sync = await notebook.connect("ws://127.0.0.1:8080/", registry)
    display(sync.table(Sensor, fields=["value", "ok"]))   # every entity's Sensor, paged
    display(sync.plot(Sensor, 3, "value", seconds=60))    # entity 3's value, a live line

The widgets are `anywidget <https://anywidget.dev>`_ widgets rather than plain ipywidgets:
each one is a small ES module of our own (``client_sync/web/``, in the wheel) that travels
with the widget's state, so it needs no CDN, no front-end extension of ours and no network,
and works offline in JupyterLab, Notebook 7 and VS Code; and its state is traitlets, as in
any ipywidget, so only the traits that changed go to the front-end.

Everything runs on the kernel's own asyncio loop, the one top-level ``await`` runs on: the
provider's connection, the signal callbacks and the widgets' redraws (``loop.call_later``).
No thread is started. A widget redraws at most ``rate_hz`` times a second (default
:data:`DEFAULT_RATE_HZ`; never twice within ``1 / rate_hz`` s), each time with the latest
values (what came between is skipped, never queued), and only when its data changed. While
the provider is stale (the server away, a resync) the widgets are greyed; a type the server
does not sync, or an entity that is gone, is said in the widget (no exception in the
kernel). ``widget.close()`` drops its subscriptions; ``await sync.close()`` closes every
widget and the connection.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel
from reactivex import abc

try:
    import anywidget
    import traitlets
except ImportError as exc:  # (the module is for users of the extra)
    raise ImportError(
        'client_sync.notebook needs the notebook extra: pip install "pl3xus-rx[notebook]"'
    ) from exc

from .provider import SyncProvider
from .registry import ClientTypeRegistry
from .signal import Signal

__all__ = ["DEFAULT_RATE_HZ", "LivePlot", "LiveTable", "NotebookSync", "connect"]

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

DEFAULT_RATE_HZ = 10.0
"""The most redraws a widget sends its front-end per second, unless told (``rate_hz``)."""

_WEB = Path(__file__).resolve().parent / "web"


class _Throttle:
    """Runs ``fn`` soon after :meth:`poke`, never twice within ``1 / rate_hz`` seconds, on
    ``loop``.

    Pokes while a run is planned only mark it wanted: ``fn`` reads the latest state when it
    runs, so the latest value wins and nothing queues. The first poke after a quiet spell
    runs at once (on the next loop turn). Not thread-safe: poke from the loop.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, rate_hz: float, fn: Callable[[], None]
    ) -> None:
        self.interval = 1.0 / rate_hz
        self._loop = loop
        self._fn = fn
        self._timer: asyncio.TimerHandle | None = None
        self._last = -math.inf  # when the last run ran
        self.closed = False

    def poke(self) -> None:
        """Ask for a run (latest state); no-op when one is already planned."""
        if self._timer is not None or self.closed:
            return
        delay = max(0.0, self._last + self.interval - self._loop.time())
        self._timer = self._loop.call_later(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        if self.closed:
            return
        self._last = self._loop.time()
        self._fn()

    def close(self) -> None:
        """Cancel a planned run; later pokes do nothing."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "create notebook widgets on the provider's running loop: in a notebook cell "
            "(the kernel's loop) or in a coroutine"
        ) from None


def _check_rate(rate_hz: float) -> None:
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz must be a positive number of redraws a second, got {rate_hz!r}")


def _check_fields(model: type[BaseModel], fields: Sequence[str]) -> None:
    unknown = [f for f in fields if f not in model.model_fields]
    if unknown:
        raise ValueError(
            f"{model.__name__} has no field {', '.join(map(repr, unknown))}; "
            f"its fields are {', '.join(model.model_fields)}"
        )


def _cell(value: Any) -> Any:
    """A value as the front-end can show it: JSON numbers, strings, booleans, null."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return _cell(value.value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


def _number(value: Any) -> float | None:
    """A chart's y: a finite number (a boolean as 0 or 1), else ``None``."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class _Live(anywidget.AnyWidget):  # type: ignore[misc, unused-ignore]
    """What both widgets share: the loop, the throttle, the subscriptions, stale and status."""

    _css = _WEB / "notebook.css"
    _closed = True  # (until made: a widget whose making failed closes its comm alone)

    _from_frontend: frozenset[str] = frozenset()
    # (the traits a front-end may change; the rest are the kernel's, and a front-end's
    # change of them is dropped: see set_state)

    title = traitlets.Unicode("").tag(sync=True)
    """What the widget shows (the type, and the entity and field of a chart)."""
    stale = traitlets.Bool(True).tag(sync=True)
    """True while the provider's data may be out of date (the widget is greyed)."""
    status = traitlets.Unicode("").tag(sync=True)
    """Why the widget shows nothing, or less than expected ("" when all is well)."""

    def __init__(
        self,
        provider: SyncProvider,
        loop: asyncio.AbstractEventLoop,
        rate_hz: float,
        **traits: Any,
    ) -> None:
        self._links: list[abc.DisposableBase] = []
        self._rendering = False
        super().__init__(**traits)
        self.provider = provider
        """The provider this widget follows."""
        self.rate_hz = rate_hz
        """The most redraws a second this widget sends its front-end."""
        self._loop = loop
        self._throttle = _Throttle(loop, rate_hz, self._render_safely)
        self._on_close: Callable[[Any], None] | None = None
        self._complete = False  # whether this widget's snapshots have come once
        self._waiting: asyncio.Task[None] | None = None
        self._closed = False

    def _follow(self, signal: Signal[Any]) -> None:
        """Redraw (throttled) whenever ``signal`` changes, until closed."""
        self._links.append(signal.subscribe(lambda _: self._throttle.poke()))

    def _follow_provider(self) -> None:
        """Follow stale and the connection; once the snapshots of the subscriptions just
        taken are in, say what is missing (before, "no entity" may only be "not yet")."""
        self._follow(self.provider.stale)
        self._follow(self.provider.connection)
        self._waiting = self._loop.create_task(self._snapshots_in())

    async def _snapshots_in(self) -> None:
        await self.provider.wait_synced()
        self._complete = True
        self._throttle.poke()

    def _poke_from_anywhere(self) -> None:
        """Plan a redraw from any thread (front-end messages may come on another one)."""
        if not self._closed and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._throttle.poke)

    def _render_safely(self) -> None:
        if self._closed:
            return
        self._rendering = True
        try:
            with self.hold_sync():  # every changed trait in one message
                self.stale = self.provider.stale.get()
                self._render()
        except Exception as exc:  # a widget must not break the kernel's loop
            logger.exception("%s could not redraw", type(self).__name__)
            self.status = f"could not redraw: {type(exc).__name__}: {exc}"
        finally:
            self._rendering = False

    def _render(self) -> None:
        raise NotImplementedError

    def _not_synced(self, model: type[BaseModel]) -> str:
        """A status line when the server (by its last welcome) does not sync ``model``."""
        if self.provider.syncs(model) is False:
            return f"the server does not sync {model.__name__}"
        return ""

    def close(self) -> None:
        """Stop following the provider and close the widget (its front-end views go)."""
        if not self._closed:
            self._closed = True
            self._throttle.close()
            if self._waiting is not None:
                self._waiting.cancel()
            links, self._links = self._links, []
            for link in links:
                link.dispose()
            if self._on_close is not None:
                self._on_close(self)
        super().close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply a front-end's changes: only to the traits it may change (a table's
        ``page``); what it sends for the others (columns, rows, field...) is dropped, so a
        front-end cannot change what the kernel reads or shows."""
        allowed = {k: v for k, v in sync_data.items() if k in self._from_frontend}
        if len(allowed) != len(sync_data):
            logger.debug(
                "dropped a front-end's change of %r", sorted(set(sync_data) - set(allowed))
            )
        if allowed:
            super().set_state(allowed)


class LiveTable(_Live):
    """A live, paged table of every entity's ``model`` component: one row per entity (by
    id), one column per field; rows come and go with the entities.

    Only the page on show is in the widget's state, and a redraw sends only the traits that
    changed (``rows`` is reassigned only when the page's content changed). The front-end's
    page buttons set :attr:`page`. Create with :meth:`NotebookSync.table`.

    Args:
        provider: A connected provider (on the running loop).
        model: The component type (registered with the provider's registry).
        fields: The columns (default: every field of ``model``).
        page_size: Rows per page.
        rate_hz: The most redraws a second (default :data:`DEFAULT_RATE_HZ`); the server is
            asked for no more updates of ``model`` than this, too.

    Raises:
        NotRegistered: ``model`` is not in the provider's registry.
        ValueError: a field ``model`` does not have, ``page_size`` or ``rate_hz`` out of
            range.
        RuntimeError: not called on a running loop.
    """

    _esm = _WEB / "notebook_table.js"
    _from_frontend = frozenset({"page"})

    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """``["entity", *fields]``."""
    rows = traitlets.List(traitlets.List()).tag(sync=True)
    """The page on show: ``[entity, value, ...]`` per row, by entity id."""
    page = traitlets.Int(0).tag(sync=True)
    """The page on show, from 0 (the front-end sets it)."""
    page_size = traitlets.Int(20, min=1, max=1000).tag(sync=True)
    """Rows per page (1 to 1000; set it to change the page's length)."""
    page_count = traitlets.Int(1).tag(sync=True)
    """How many pages (at least 1)."""
    total = traitlets.Int(0).tag(sync=True)
    """How many entities have the component."""

    def __init__(
        self,
        provider: SyncProvider,
        model: type[BaseModel],
        fields: Sequence[str] | None = None,
        *,
        page_size: int = 20,
        rate_hz: float = DEFAULT_RATE_HZ,
    ) -> None:
        loop = _running_loop()
        _check_rate(rate_hz)
        chosen = list(model.model_fields) if fields is None else list(fields)
        _check_fields(model, chosen)
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be 1 to 1000 rows, got {page_size}")
        values = provider.components(model, max_rate_hz=rate_hz)  # (NotRegistered now)
        super().__init__(
            provider,
            loop,
            rate_hz,
            title=model.__name__,
            columns=["entity", *chosen],
            page_size=page_size,
        )
        self.model = model
        """The component type shown."""
        self.fields = tuple(chosen)
        """The fields shown, in column order."""
        self._values: Signal[Mapping[int, BaseModel]] = values
        self._follow(values)
        self._follow_provider()
        self.observe(self._page_asked, names=["page", "page_size"])

    def _page_asked(self, change: Mapping[str, Any]) -> None:
        if not self._rendering:
            self._poke_from_anywhere()

    def _render(self) -> None:
        values = self._values.get()
        size = self.page_size
        total = len(values)
        page_count = max(1, -(-total // size))
        page = min(max(self.page, 0), page_count - 1)
        shown = sorted(values)[page * size : (page + 1) * size]
        fields = self.fields
        rows = [[e, *(_cell(getattr(values[e], f, None)) for f in fields)] for e in shown]
        if page != self.page:
            self.page = page
        self.total = total
        self.page_count = page_count
        if rows != self.rows:
            self.rows = rows
        self.status = self._not_synced(self.model) or (
            f"no entity has {self.model.__name__}"
            if not total and self._complete and not self.stale
            else ""
        )


class LivePlot(_Live):
    """A live line chart of one numeric field of one entity's component, over the last
    ``seconds``, drawn on a canvas by the widget's own script.

    When the server keeps history of the type (its welcome says so:
    :attr:`SyncProvider.history_kept`), the chart starts with the past ``seconds`` from the
    server and goes on live; otherwise it starts empty. At most ``max_points`` points are
    kept and sent. ``t`` is the server's time of the data (protocol v2), else this
    machine's. Create with :meth:`NotebookSync.plot`.

    Args:
        provider: A connected provider (on the running loop).
        model: The component type.
        entity: The entity.
        field: A numeric field of ``model`` (a boolean is drawn as 0 or 1).
        seconds: How far back the chart reaches.
        max_points: The most points kept and sent.
        rate_hz: The most redraws a second (default :data:`DEFAULT_RATE_HZ`).

    Raises:
        NotRegistered: ``model`` is not in the provider's registry.
        ValueError: ``model`` has no ``field``; ``seconds``, ``max_points`` or ``rate_hz``
            out of range.
        RuntimeError: not called on a running loop.
    """

    _esm = _WEB / "notebook_plot.js"

    field = traitlets.Unicode("").tag(sync=True)
    """The field drawn."""
    seconds = traitlets.Float(60.0).tag(sync=True)
    """How far back the chart reaches."""
    points = traitlets.List(traitlets.List(traitlets.Float())).tag(sync=True)
    """``[t, y]`` pairs, oldest first (``t``: seconds since the epoch)."""
    latest = traitlets.Float(None, allow_none=True).tag(sync=True)
    """The newest value (``None`` before any)."""

    def __init__(
        self,
        provider: SyncProvider,
        model: type[BaseModel],
        entity: int,
        field: str,
        *,
        seconds: float = 60.0,
        max_points: int = 300,
        rate_hz: float = DEFAULT_RATE_HZ,
    ) -> None:
        loop = _running_loop()
        _check_rate(rate_hz)
        _check_fields(model, [field])
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        if max_points < 2:
            raise ValueError(f"max_points must be 2 or more, got {max_points}")
        name = provider.registry.name_of(model)  # (NotRegistered now)
        kept = provider.history_kept.get(name)
        from_server = isinstance(kept, Mapping) and (
            kept.get("fields") is None or field in (kept.get("fields") or ())
        )
        super().__init__(
            provider,
            loop,
            rate_hz,
            title=f"{model.__name__} {entity} · {field}",
            field=field,
            seconds=float(seconds),
        )
        self.model = model
        """The component type."""
        self.entity = entity
        """The entity drawn."""
        self.max_points = max_points
        """The most points kept and sent."""
        self.from_server = from_server
        """Whether the chart starts with the server's history."""
        self._seen = False  # whether the entity ever had the component here
        self._live: deque[tuple[float, Any]] = deque(maxlen=max_points)
        self._component = provider.entity_component(model, entity)
        self._history: Signal[tuple[tuple[float, Any], ...]] | None = None
        if from_server:
            self._history = provider.history(
                model, entity, field, seconds=seconds, max_points=max_points
            )
            self._follow(self._history)
            self._follow(self._component)
        else:
            self._links.append(self._component.subscribe(self._arrived))
        self._follow_provider()

    def _arrived(self, value: BaseModel | None) -> None:
        """A live value, when the server keeps no history (else the history signal has it)."""
        if value is not None:
            as_of = self.provider.as_of
            t = float(as_of) if as_of is not None else time.time()
            if not self._live or self._live[-1][0] <= t:
                self._live.append((t, getattr(value, self.field, None)))
        self._throttle.poke()

    def _render(self) -> None:
        value = self._component.get()
        if value is not None:
            self._seen = True
        raw: Sequence[tuple[float, Any]] = (
            self._history.get() if self._history is not None else self._live
        )
        newest = raw[-1][0] if raw else 0.0
        points: list[list[float]] = []
        wrong: Any = None
        for t, v in raw:
            y = _number(v)
            if y is None:
                wrong = v if v is not None else wrong
            elif t >= newest - self.seconds:
                points.append([t, y])
        if len(points) > self.max_points:
            points = points[-self.max_points :]
        if points != self.points:
            self.points = points
        self.latest = _number(getattr(value, self.field, None)) if value is not None else None
        entity, model = self.entity, self.model.__name__
        status = self._not_synced(self.model)
        if not status and value is None and self._seen:
            status = f"entity {entity} is gone (it has no {model} now)"
        elif not status and value is None and self._complete and not self.stale:
            status = f"entity {entity} has no {model}"
        elif not status and wrong is not None:
            status = f"{self.field} is not a number here ({type(wrong).__name__})"
        self.status = status


class NotebookSync:
    """A connected :class:`SyncProvider` that makes notebook widgets of its data.

    Made by :func:`connect`. ``await sync.close()`` (or leaving ``async with sync:``)
    closes every widget it made and the connection.
    """

    def __init__(self, provider: SyncProvider) -> None:
        self.provider = provider
        """The provider itself (signals, commands, ``stale``, ``connection``)."""
        self._widgets: list[LiveTable | LivePlot] = []

    def _own(self, widget: LiveTable | LivePlot) -> None:
        widget._on_close = self._widgets.remove
        self._widgets.append(widget)

    def table(
        self,
        model: type[T],
        fields: Sequence[str] | None = None,
        *,
        page_size: int = 20,
        rate_hz: float = DEFAULT_RATE_HZ,
    ) -> LiveTable:
        """A live table of every entity's ``model`` (see :class:`LiveTable`); show it with
        ``display(...)`` or as a cell's last expression."""
        widget = LiveTable(self.provider, model, fields, page_size=page_size, rate_hz=rate_hz)
        self._own(widget)
        return widget

    def plot(
        self,
        model: type[T],
        entity: int,
        field: str,
        *,
        seconds: float = 60.0,
        max_points: int = 300,
        rate_hz: float = DEFAULT_RATE_HZ,
    ) -> LivePlot:
        """A live line chart of ``entity``'s ``model.field`` (see :class:`LivePlot`)."""
        widget = LivePlot(
            self.provider,
            model,
            entity,
            field,
            seconds=seconds,
            max_points=max_points,
            rate_hz=rate_hz,
        )
        self._own(widget)
        return widget

    @property
    def widgets(self) -> tuple[LiveTable | LivePlot, ...]:
        """The widgets made and not closed yet."""
        return tuple(self._widgets)

    async def close(self) -> None:
        """Close every widget made here, then the connection. Safe to call twice; safe to
        cancel (the widgets are closed first, at once)."""
        for widget in list(self._widgets):
            widget.close()
        await self.provider.close()

    async def __aenter__(self) -> NotebookSync:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        status = self.provider.connection.get()
        return (
            f"<NotebookSync {self.provider.url} {status.state.value}"
            f"{' stale' if self.provider.stale.get() else ''}, {len(self._widgets)} widgets>"
        )


class _Connecting:
    """What :func:`connect` returns: await it, or enter it with ``async with``."""

    def __init__(self, provider: SyncProvider) -> None:
        self._provider = provider
        self._sync: NotebookSync | None = None

    async def _open(self) -> NotebookSync:
        await self._provider.__aenter__()
        self._sync = NotebookSync(self._provider)
        return self._sync

    def __await__(self) -> Generator[Any, None, NotebookSync]:
        return self._open().__await__()

    async def __aenter__(self) -> NotebookSync:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sync is not None:
            await self._sync.close()


def connect(
    url: str | Sequence[str], registry: ClientTypeRegistry, **provider_kwargs: Any
) -> _Connecting:
    """Connect to a server for notebook widgets: ``sync = await connect(url, registry)`` in
    a cell (top-level ``await``), or ``async with connect(url, registry) as sync:``.

    Args:
        url: The server's URL (or several: see :class:`SyncProvider`).
        registry: The component types used.
        **provider_kwargs: More :class:`SyncProvider` options (``token``,
            ``stale_after``, ``reconnect``...).

    Returns:
        An awaitable of a :class:`NotebookSync`, also usable with ``async with``.

    Raises:
        ConnectFailed: on awaiting, when the server cannot be reached.
    """
    return _Connecting(SyncProvider(url, registry, **provider_kwargs))
