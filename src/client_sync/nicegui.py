"""Live NiceGUI pages from a :class:`~client_sync.SyncProvider` (the ``nicegui`` extra:
``pip install "pl3xus-rx[nicegui]"``; docs/dashboards.md).

Two kinds of provider, because read access and control belong to an identity, not to the app:

- :class:`SharedSync`: one provider for the whole app, started and stopped with it, under a
  least-privileged credential (a viewer's). Every browser tab shares its subscriptions, so a
  thousand tabs cost the server one client. For views of types without ``visible_to``: what it
  sees, every visitor sees.
- :class:`UserSyncs`: a provider per signed-in user (the NiceGUI session mapped to the user's
  own pl3xus credential), capped in number and closed a while after the user's last tab. For
  views of restricted types, and for anything that mutates or takes control.

A page asks either for its :class:`Bindings`: what keeps the page's elements current with the
provider. Each bound element is redrawn at most ``rate_hz`` times a second (default 10; the
latest value wins, never a backlog), greyed while the data is stale (the server away), and
says so in place when its type is not on the server or its entity is gone. Bindings end with
the page (its NiceGUI client) or with their element.

Everything runs on NiceGUI's own event loop: the provider, the signals and the redraws.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

import reactivex.abc
import reactivex.disposable
from nicegui import Client, context, ui
from nicegui import app as nicegui_app
from nicegui.element import Element
from pydantic import BaseModel, ValidationError

from pl3xus_rx.exceptions import (
    CommandRejected,
    CommandTimeout,
    ConnectionLost,
    Pl3xusError,
)
from pl3xus_rx.protocol import EntityControl

from .provider import SyncProvider
from .registry import ClientTypeRegistry
from .signal import Signal, WritableSignal
from .states import ConnectionState, Notification

__all__ = [
    "DEFAULT_RATE_HZ",
    "STALE_CLASS",
    "Bindings",
    "LiveTable",
    "NotSignedIn",
    "PageGone",
    "SharedSync",
    "TooManyUsers",
    "UserSyncs",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_RATE_HZ = 10.0
"""How often, at most, a bound element is redrawn (per element, per second)."""
STALE_CLASS = "pl3xus-stale"
"""The CSS class bound elements carry while their data may be out of date."""
MISSING_CLASS = "pl3xus-missing"
"""The CSS class an element carries while what it shows is not there (type, entity)."""

_CSS = f"""
.{STALE_CLASS} {{ opacity: 0.45; filter: grayscale(1); transition: opacity 0.3s; }}
.{MISSING_CLASS} {{ color: #9e9e9e; font-style: italic; }}
.pl3xus-cell {{ font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; padding: 2px 8px; }}
.pl3xus-head {{ font-weight: 600; border-bottom: 1px solid #ccc; padding: 2px 8px; }}
.pl3xus-refusal {{ color: #c10015; font-size: 0.8em; min-height: 1.2em; }}
"""

_NotifyType = Literal["positive", "negative", "warning", "info"]
_NOTIFY_TYPES: dict[str, _NotifyType] = {
    "info": "info",
    "success": "positive",
    "warning": "warning",
    "error": "negative",
}


class NotSignedIn(Pl3xusError):
    """A page asked for its user's provider, and the user has no credential (not signed in)."""


class TooManyUsers(Pl3xusError):
    """A user's provider was asked for while ``max_users`` others were open."""


class PageGone(Pl3xusError):
    """A page asked for its user's provider, and its browser never connected (a bare GET,
    a prefetch) or left: nothing is opened for it."""


# ---------------------------------------------------------------------------------- throttle


class _Redraw:
    """Redraw one element from one signal at most ``rate_hz`` times a second, with the
    latest value (values in between are skipped, not queued)."""

    def __init__(
        self,
        owner: Bindings,
        element: Element,
        signal: reactivex.Observable[Any],
        draw: Callable[[Any], object],
        rate_hz: float,
    ) -> None:
        self.owner = owner
        self.element = element
        self._draw = draw
        self._period = 1.0 / rate_hz
        self._last = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._value: Any = None
        self._has_value = False
        self.draws = 0
        """How many times the element was redrawn (for tests and benchmarks)."""
        self._subscription: reactivex.abc.DisposableBase | None = None
        self._subscription = signal.subscribe(self._changed)

    def _changed(self, value: Any) -> None:
        self._value = value
        self._has_value = True
        if self._timer is not None:
            return  # (a redraw is due: it will take this value)
        due = self._last + self._period
        delay = due - time.monotonic()
        if delay <= 0:
            self.redraw()
        else:
            self._timer = asyncio.get_running_loop().call_later(delay, self._redraw_due, due)

    def _redraw_due(self, due: float) -> None:
        drawn = self.draws
        self.redraw()
        if self.draws != drawn:
            # (the next slot counts from when this one was due, not from when the loop got
            # round to it: late timers would otherwise lower the rate, ~10 % on a busy loop;
            # but never less than half a period after this draw, after a long stall)
            self._last = max(due, self._last - self._period / 2)

    def redraw(self) -> None:
        """Draw the latest value now (also when the page's state changes)."""
        if self._timer is not None:
            self._timer.cancel()  # (drawn now: a redraw that was due would be one too many)
            self._timer = None
        if self.element.is_deleted:
            self.dispose()
            return
        if not self._has_value:
            return
        if self.draws and not self.owner.client.has_socket_connection:
            self.owner.behind = True  # (nobody to send it to: redrawn when the page connects)
            return
        self._last = time.monotonic()
        self.draws += 1
        try:
            self._draw(self._value)
        except Exception:  # (a format function's bug: logged, the page goes on)
            logger.exception("drawing %s failed", type(self.element).__name__)

    def dispose(self) -> None:
        """Stop following the signal."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.dispose()
        self.owner._forget(self)


# ---------------------------------------------------------------------------------- bindings


def _set_text(element: Element, text: str) -> None:
    if getattr(element, "text", None) != text:
        element.set_text(text)  # type: ignore[attr-defined, unused-ignore]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:,.2f}"
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={_format_value(v)}" for k, v in value)
    if isinstance(value, tuple | list):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


class LiveTable:
    """A paged table of every entity's component: rows come and go with the entities, and
    only the visible page's changed cells are sent to the browser (one label per cell, redrawn
    when its text changes). Made by :meth:`Bindings.table`."""

    def __init__(
        self,
        owner: Bindings,
        signal: Signal[Mapping[int, Any]],
        fields: Sequence[str],
        *,
        page_size: int,
        rate_hz: float,
        model: type[BaseModel] | None,
        formats: Mapping[str, Callable[[Any], str]],
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be 1 or more, got {page_size}")
        self.fields = tuple(fields)
        self.page_size = page_size
        self.page = 0
        """The page shown (from 0)."""
        self._owner = owner
        self._model = model
        self._formats = dict(formats)
        self._rows: Mapping[int, Any] = {}
        self.element = ui.column().classes("gap-1 pl3xus-table")
        """The table's outermost element."""
        with self.element:
            columns = 1 + len(self.fields)
            with ui.grid(columns=columns).classes("gap-0 w-full") as self.grid:
                for head in ("entity", *self.fields):
                    ui.label(head).classes("pl3xus-head")
                self.cells: list[list[Any]] = [
                    [ui.label("").classes("pl3xus-cell") for _ in range(columns)]
                    for _ in range(page_size)
                ]
            with ui.row().classes("items-center gap-2"):
                self._prev = ui.button("<", on_click=lambda: self.show_page(self.page - 1))
                self._prev.props("flat dense")
                self.status = ui.label("").classes("text-sm")
                self._next = ui.button(">", on_click=lambda: self.show_page(self.page + 1))
                self._next.props("flat dense")
        self._redraw = owner._follow(self.element, signal, self._draw, rate_hz)

    @property
    def draws(self) -> int:
        """How many times the table was redrawn."""
        return self._redraw.draws

    @property
    def entities(self) -> list[int]:
        """Every entity in the table, in row order."""
        return sorted(self._rows)

    def visible(self) -> list[list[str]]:
        """The cells of the page as shown: one list of texts per row."""
        return [[cell.text for cell in row] for row in self.cells if row[0].text]

    def show_page(self, page: int) -> None:
        """Show page ``page`` (from 0; clamped to the pages there are)."""
        self.page = page
        self._draw(self._rows)

    def _cell(self, field: str, value: Any) -> str:
        fmt = self._formats.get(field)
        part = getattr(value, field, None) if value is not None else None
        if part is None:
            return "—"
        return fmt(part) if fmt is not None else _format_value(part)

    def _draw(self, rows: Mapping[int, Any]) -> None:
        self._rows = rows
        entities = sorted(rows)
        pages = max(1, -(-len(entities) // self.page_size))
        self.page = min(max(self.page, 0), pages - 1)
        start = self.page * self.page_size
        shown = entities[start : start + self.page_size]
        for row, cells in enumerate(self.cells):
            if row < len(shown):
                entity = shown[row]
                value = rows[entity]
                texts = [str(entity), *(self._cell(f, value) for f in self.fields)]
            else:
                texts = [""] * len(cells)
            for cell, text in zip(cells, texts, strict=True):
                _set_text(cell, text)
        missing = self._model is not None and self._owner.provider.syncs(self._model) is False
        if missing:
            status = "not on the server"
        elif not entities:
            status = "no entities"
        else:
            status = f"{start + 1} to {start + len(shown)} of {len(entities)}"
        _set_text(self.status, status)
        if missing:
            self.status.classes(add=MISSING_CLASS)
        else:
            self.status.classes(remove=MISSING_CLASS)
        self._prev.set_enabled(self.page > 0)
        self._next.set_enabled(self.page < pages - 1)


class Bindings:
    """What keeps one NiceGUI page's elements current with one provider.

    Get it from :meth:`SharedSync.bindings` or :meth:`UserSyncs.bindings` inside a page
    function (one per page and provider). Every element it binds is redrawn at most
    ``rate_hz`` times a second with the latest value, greyed (class :data:`STALE_CLASS`) while
    the provider is stale, and released with the page.

    Args:
        provider: Where the data comes from and the commands go.
        client: The NiceGUI page (default: the one being built).
        rate_hz: The default redraw rate of the elements it binds.
    """

    def __init__(
        self, provider: SyncProvider, *, client: Client | None = None, rate_hz: float = 10.0
    ) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        self.provider = provider
        self.client = client if client is not None else context.client
        self.rate_hz = rate_hz
        self.stale = True
        """Whether the page shows its elements as stale now."""
        self._redraws: set[_Redraw] = set()
        self._elements: list[Element] = []
        self._closed = False
        with self.client:
            ui.add_css(_CSS)
        self._watch = [
            provider.stale.subscribe(self._stale_changed),
            provider.connection.subscribe(lambda _: self._refresh_all()),
        ]
        self.behind = False
        """Whether redraws were skipped while the page had no connection to its browser."""
        self.client.on_delete(self.close)
        self.client.on_connect(self._connected)

    # ------------------------------------------------------------------ plumbing

    def _follow(
        self,
        element: Element,
        signal: reactivex.Observable[Any],
        draw: Callable[[Any], object],
        rate_hz: float | None,
    ) -> _Redraw:
        rate = self.rate_hz if rate_hz is None else rate_hz
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate_hz must be > 0, got {rate!r}")
        for gone in [r for r in self._redraws if r.element.is_deleted]:
            gone.dispose()  # (a refreshed part of the page: its signals are let go)
        self._elements = [e for e in self._elements if not e.is_deleted]
        self._elements.append(element)
        if self.stale:
            element.classes(add=STALE_CLASS)
        redraw = _Redraw(self, element, signal, draw, rate)
        if not self._closed:
            self._redraws.add(redraw)
        else:
            redraw.dispose()
        return redraw

    def follow(
        self,
        element: Element,
        signal: reactivex.Observable[T],
        draw: Callable[[T], object],
        *,
        rate_hz: float | None = None,
    ) -> Element:
        """Call ``draw(value)`` with the signal's latest value at most ``rate_hz`` times a
        second, while ``element`` lives (greyed while stale): for views the other methods do
        not cover (a query's answer in a ``ui.table``, a custom drawing)."""
        self._follow(element, signal, draw, rate_hz)
        return element

    def _forget(self, redraw: _Redraw) -> None:
        self._redraws.discard(redraw)

    def _stale_changed(self, stale: bool) -> None:
        self.stale = stale
        alive = [e for e in self._elements if not e.is_deleted]
        self._elements = alive
        for element in alive:
            element.classes(add=STALE_CLASS) if stale else element.classes(remove=STALE_CLASS)
        self._refresh_all()

    def _connected(self) -> None:
        if self.behind:
            self.behind = False
            self._refresh_all()

    def _refresh_all(self) -> None:
        for redraw in list(self._redraws):
            redraw.redraw()

    @property
    def bound(self) -> int:
        """How many elements this page keeps current now."""
        return len(self._redraws)

    def close(self) -> None:
        """Stop every binding of the page (done for you when the page goes)."""
        self._closed = True
        for subscription in self._watch:
            subscription.dispose()
        self._watch = []
        for redraw in list(self._redraws):
            redraw.dispose()
        self._elements = []

    def _missing(self, model: type[BaseModel]) -> bool:
        return self.provider.syncs(model) is False

    # ------------------------------------------------------------------ reading

    def text(
        self,
        element: Element,
        signal: reactivex.Observable[T | None],
        format: Callable[[T], str] = _format_value,
        *,
        missing: str = "—",
        rate_hz: float | None = None,
    ) -> Element:
        """Keep ``element``'s text (a label, a badge, a chip...) as ``format(value)`` of the
        signal's latest value; ``missing`` while the value is ``None``."""

        def draw(value: Any) -> None:
            if value is None:
                _set_text(element, missing)
                element.classes(add=MISSING_CLASS)
            else:
                _set_text(element, format(value))
                element.classes(remove=MISSING_CLASS)

        self._follow(element, signal, draw, rate_hz)
        return element

    def field_text(
        self,
        element: Element,
        model: type[M],
        entity: int,
        format: Callable[[M], str] = _format_value,
        *,
        rate_hz: float | None = None,
    ) -> Element:
        """Keep ``element``'s text as ``format`` of one entity's component; it says so in
        place when the server does not sync ``model`` or the entity has none (despawned)."""
        signal = self.provider.entity_component(model, entity)
        seen = [False]

        def draw(value: M | None) -> None:
            if value is not None:
                seen[0] = True
                _set_text(element, format(value))
                element.classes(remove=MISSING_CLASS)
                return
            if self._missing(model):
                why = f"{model.__name__}: not on the server"
            elif seen[0] and not self.stale:
                why = f"entity {entity}: gone (no {model.__name__} now)"
            else:
                why = "—"
            _set_text(element, why)
            element.classes(add=MISSING_CLASS)

        self._follow(element, signal, draw, rate_hz)
        return element

    def table(
        self,
        model: type[M],
        fields: Sequence[str] | None = None,
        *,
        signal: Signal[Mapping[int, M]] | None = None,
        page_size: int = 20,
        formats: Mapping[str, Callable[[Any], str]] | None = None,
        rate_hz: float | None = None,
    ) -> LiveTable:
        """A paged table of every entity's ``model`` (or of ``signal``, e.g.
        ``provider.components_where(...)``), with the chosen ``fields`` (default: all).
        Only the visible page's changed cells go to the browser; the server is asked for no
        more than ``rate_hz`` updates of ``model`` a second (it conflates in between)."""
        chosen = list(fields) if fields is not None else list(model.model_fields)
        unknown = [f for f in chosen if f not in model.model_fields]
        if unknown:
            raise ValueError(f"{model.__name__} has no field(s) {', '.join(unknown)}")
        rate = self.rate_hz if rate_hz is None else rate_hz
        # (the server sends no more than the table shows: it conflates in between)
        source = signal if signal is not None else self.provider.components(model, max_rate_hz=rate)
        return LiveTable(
            self,
            source,
            chosen,
            page_size=page_size,
            rate_hz=rate,
            model=model,
            formats=formats or {},
        )

    def chart(
        self,
        model: type[M],
        entity: int,
        field: str,
        *,
        seconds: float = 60.0,
        max_points: int = 300,
        title: str | None = None,
        rate_hz: float | None = None,
    ) -> Any:
        """A live line chart (echarts) of one entity's numeric ``field`` (a sequence of
        numbers draws one line each): the last ``seconds``, at most ``max_points`` points a
        line, starting with the server's past when its welcome says it keeps history of
        ``model``. Returns the ``ui.echart``."""
        if field not in model.model_fields:
            raise ValueError(f"{model.__name__} has no field {field!r}")
        name = self.provider.registry.name_of(model)
        kept = name in self.provider.history_kept
        signal: Signal[tuple[tuple[float, Any], ...]]
        if kept:
            signal = self.provider.history(
                model, entity, field, seconds=seconds, max_points=max_points
            )
        else:
            signal = _live_points(self.provider, model, entity, field, seconds, max_points)
        chart = ui.echart(
            {
                "animation": False,
                "title": {
                    "text": title or f"{model.__name__}.{field} of {entity}",
                    "left": 8,
                    "textStyle": {"fontSize": 13},
                },
                "grid": {"left": 48, "right": 16, "top": 32, "bottom": 28},
                "tooltip": {"trigger": "axis"},
                "xAxis": {"type": "time"},
                "yAxis": {"type": "value", "scale": True},
                "series": [],
            }
        ).classes("pl3xus-chart")

        def draw(points: tuple[tuple[float, Any], ...]) -> None:
            lines: list[list[tuple[float, float]]] = []
            for t, value in points:
                values = value if isinstance(value, tuple | list) else (value,)
                while len(lines) < len(values):
                    lines.append([])
                ms = t * 1000.0
                for line, v in zip(lines, values, strict=False):
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        line.append((ms, float(v)))
            series = chart.options["series"]
            del series[len(lines) :]
            for i, line in enumerate(lines):
                if i == len(series):
                    series.append(
                        {"type": "line", "showSymbol": False, "name": f"{field}[{i}]", "data": []}
                    )
                # (tuples, not lists: NiceGUI wraps every list put in the options in an
                # ObservableList, and socketio walks lists looking for bytes; 300 points
                # as lists cost ~1.5 ms a redraw, as tuples ~0.05 ms; the JSON is the same)
                series[i]["data"] = tuple(line)
            if len(lines) == 1:
                series[0]["name"] = field
            if not points and self._missing(model):
                chart.options["title"]["subtext"] = f"{model.__name__}: not on the server"
            elif not points:
                chart.options["title"]["subtext"] = "no data"
            else:
                chart.options["title"].pop("subtext", None)
            chart.update()

        self._follow(chart, signal, draw, rate_hz)
        return chart

    # ------------------------------------------------------------------ acting

    def mutation(
        self,
        element: Any,
        model: type[M],
        entity: int,
        field: str,
        *,
        control_of: int | None = None,
        event: str | None = None,
        rate_hz: float | None = None,
    ) -> Element:
        """Bind a value element (``ui.slider``, ``ui.number``, ``ui.input``, ``ui.switch``...)
        to one entity's component field, both ways: it shows the server's value, and a
        change by the user (its ``event``, e.g. a slider's release) is sent as a mutation of
        that field. Editable only while this page's provider holds control of ``control_of``
        (default: ``entity``); a refusal is shown under the element. ``event`` defaults to
        ``change`` for sliders, inputs and numbers (a slider on release, a field when it
        loses focus) and to the value's own update event for the rest (switches, selects)."""
        if event is None:
            event = (
                "change"
                if isinstance(element, ui.slider | ui.input | ui.number)
                else f"update:{getattr(element, 'VALUE_PROP', 'model-value')}"
            )
        if field not in model.model_fields:
            raise ValueError(f"{model.__name__} has no field {field!r}")
        holder = entity if control_of is None else control_of
        value_signal = self.provider.entity_component(model, entity)
        control = self.provider.control(holder)
        refusal = ui.label("").classes("pl3xus-refusal")
        state: dict[str, Any] = {"busy": False, "error": ""}

        def mine() -> bool:
            me = self.provider.connection_id
            return me is not None and control.get() == me

        def draw(_: Any) -> None:
            current = value_signal.get()
            if current is not None and not state["busy"]:
                shown = getattr(current, field)
                if element.value != shown:
                    element.set_value(shown)
            element.set_enabled(mine() and current is not None and not self.stale)
            if state["busy"]:
                text = "saving…"
            elif state["error"]:
                text = state["error"]
            elif current is None and self._missing(model):
                text = f"{model.__name__}: not on the server"
            elif current is None:
                text = ""
            elif not mine():
                text = "take control to change it"
            else:
                text = ""
            _set_text(refusal, text)

        async def changed() -> None:
            current = value_signal.get()
            if current is None:
                return
            wanted = element.value
            if wanted == getattr(current, field):
                return
            try:
                value = type(current).model_validate({**current.model_dump(), field: wanted})
            except ValidationError as exc:
                state["error"] = f"{field}: {exc.errors()[0]['msg']}"
                draw(None)
                return
            state["busy"], state["error"] = True, ""
            draw(None)
            try:
                await self.provider.mutate(entity, value)
            except (CommandRejected, ConnectionLost, CommandTimeout) as exc:
                state["error"] = f"refused: {exc}"
            finally:
                state["busy"] = False
            draw(None)

        def control_changed(_: Any) -> None:
            state["error"] = ""  # (a refusal for lack of control is old news now)
            draw(None)

        element.on(event, changed)
        self._follow(element, value_signal, draw, rate_hz)
        self._follow(refusal, control, control_changed, rate_hz)
        return cast(Element, element)

    def request_button(
        self,
        text: str,
        request: BaseModel | Callable[[], BaseModel],
        *,
        entity: int | None = None,
        done: Callable[[Any], Any] | None = None,
    ) -> Any:
        """A button that sends ``request`` (or what ``request()`` makes, at each click;
        targeted at ``entity`` if given): loading while it is on its way, then the answer
        or the refusal beside it (and ``done(answer)`` called). Returns the ``ui.button``."""
        with ui.row().classes("items-center gap-1 no-wrap"):
            button = ui.button(text)
            result = ui.label("").classes("text-sm")

        async def click() -> None:
            try:
                payload = request() if callable(request) else request
            except ValidationError as exc:
                _set_text(result, f"invalid: {exc.errors()[0]['msg']}")
                result.classes(add="text-negative", remove="text-positive")
                return
            except Exception as exc:  # (the page's own factory: shown, and the page goes on)
                logger.warning("making the request of %r failed: %r", text, exc)
                _set_text(result, f"invalid: {exc}")
                result.classes(add="text-negative", remove="text-positive")
                return
            button.props("loading")
            _set_text(result, "")
            try:
                answer = await self.provider.request(payload, entity=entity)
            except (CommandRejected, ConnectionLost, CommandTimeout) as exc:
                _set_text(result, f"refused: {exc}")
                result.classes(add="text-negative", remove="text-positive")
            else:
                _set_text(result, "ok")
                result.classes(add="text-positive", remove="text-negative")
                if done is not None:
                    outcome = done(answer)
                    if isinstance(outcome, Awaitable):
                        await outcome
            finally:
                button.props(remove="loading")

        button.on_click(click)

        def draw(stale: bool) -> None:
            button.set_enabled(not stale)

        self._follow(button, self.provider.stale, draw, None)
        return button

    def control_badge(self, entity: int, *, name: str | None = None) -> Element:
        """Who holds control of ``entity`` (you, another identity, nobody), with Take and
        Release. Returns the row holding them."""
        control_signal = self.provider.entity_component(EntityControl, entity)
        with ui.row().classes("items-center gap-2 no-wrap") as row:
            ui.label(name or f"entity {entity}")
            badge = ui.badge("…")
            take = ui.button("Take").props("dense")
            release = ui.button("Release").props("dense flat")
            note = ui.label("").classes("pl3xus-refusal")
        take.on_click(lambda: self._control(entity, True, note))
        release.on_click(lambda: self._control(entity, False, note))

        def draw(control: EntityControl | None) -> None:
            holder = control.holder if control is not None else None
            if holder is None:
                text, color = "free", "grey"
            elif holder == self.provider.connection_id:
                text, color = "you", "positive"
            else:
                who = control.by if control is not None and control.by else None
                text, color = (f"{who} (#{holder})" if who else f"#{holder}"), "warning"
            _set_text(badge, text)
            badge.props(f"color={color}")
            take.set_enabled(holder != self.provider.connection_id and not self.stale)
            release.set_enabled(holder == self.provider.connection_id and not self.stale)

        self._follow(badge, control_signal, draw, None)
        return row

    async def _control(self, entity: int, take: bool, note: Any) -> None:
        try:
            if take:
                await self.provider.take_control(entity)
            else:
                await self.provider.release_control(entity)
        except (CommandRejected, ConnectionLost, CommandTimeout) as exc:
            _set_text(note, f"refused: {exc}")
        else:
            _set_text(note, "")

    # ------------------------------------------------------------------ the page

    def notifications(self, *, per_second: float = 2.0) -> None:
        """Show the server's notifications (``server.notify``) on this page as NiceGUI
        notifications, while the page lives: at most ``per_second`` a second (a burst
        beyond that is summed up in one "and N more", with the last one's text), so a
        flood of notifications cannot bury or freeze the page."""
        if not (math.isfinite(per_second) and per_second > 0):
            raise ValueError(f"per_second must be > 0, got {per_second!r}")
        period = 1.0 / per_second
        state: dict[str, Any] = {"next": 0.0, "held": 0, "last": None, "timer": None}

        def toast(text: str, level: str) -> None:
            if self._closed or getattr(self.client, "_deleted", False):
                return
            with self.client:
                ui.notify(text, type=_NOTIFY_TYPES.get(level, "info"))

        def release() -> None:
            state["timer"] = None
            held, last = state["held"], state["last"]
            state["held"], state["last"] = 0, None
            if held == 0 or last is None:
                return
            state["next"] = time.monotonic() + period
            more = f" (and {held - 1} more)" if held > 1 else ""
            toast(last.text + more, last.level)

        def show(notification: Notification) -> None:
            now = time.monotonic()
            if now >= state["next"] and state["held"] == 0:
                state["next"] = now + period
                toast(notification.text, notification.level)
                return
            state["held"] += 1
            state["last"] = notification
            if state["timer"] is None:
                delay = max(0.0, state["next"] - now)
                state["timer"] = asyncio.get_running_loop().call_later(delay, release)

        def stop() -> None:
            if state["timer"] is not None:
                state["timer"].cancel()

        self._watch.append(self.provider.notifications.subscribe(show))
        self._watch.append(reactivex.disposable.Disposable(stop))

    def connection_badge(self) -> Element:
        """A badge saying how the link to the server is: live, stale, reconnecting."""
        badge = ui.badge("…")

        def draw(_: Any) -> None:
            status = self.provider.connection.get()
            if status.state is ConnectionState.OPEN and not self.stale:
                text, color = "live", "positive"
            elif status.state is ConnectionState.OPEN:
                text, color = "stale", "warning"
            else:
                text, color = status.state.value, "negative"
            _set_text(badge, text)
            badge.props(f"color={color}")

        self._follow(badge, self.provider.connection, draw, None)
        # (not greyed itself: it is what says why the rest is)
        self._elements.remove(badge)
        badge.classes(remove=STALE_CLASS)
        return badge


def _live_points(
    provider: SyncProvider,
    model: type[M],
    entity: int,
    field: str,
    seconds: float,
    max_points: int,
) -> Signal[tuple[tuple[float, Any], ...]]:
    """A trend kept on this side only (a server without history of ``model``)."""
    component = provider.entity_component(model, entity)
    held: list[reactivex.abc.DisposableBase] = []

    def arrived(value: M | None) -> None:
        if value is None:
            return
        t = provider.as_of or time.time()
        points = signal.get()
        kept = [p for p in points[-(max_points - 1) :] if p[0] >= t - seconds] if points else []
        kept.append((t, getattr(value, field, None)))
        signal.set(tuple(kept))

    def start() -> None:
        held.append(component.subscribe(arrived))

    def stop() -> None:
        while held:
            held.pop().dispose()

    signal: WritableSignal[tuple[tuple[float, Any], ...]] = WritableSignal(
        (), on_first_subscribe=start, on_last_dispose=stop
    )
    return signal


# ---------------------------------------------------------------------------------- providers


class SharedSync:
    """One provider for the whole NiceGUI app: connected when the app starts (or as soon as
    the server is there: it keeps trying), closed when it stops.

    Give it the least-privileged credential that shows what the pages show (a viewer's):
    every visitor of every page sees what it sees. Views of restricted types (``visible_to``)
    and anything that acts belong on a :class:`UserSyncs` provider.

    Args:
        url: The server (or several gateways).
        registry: The types the pages use.
        token: The shared credential (or a callable giving one).
        app: The NiceGUI app (default: ``nicegui.app``).
        rate_hz: The default redraw rate of the pages' bound elements.
        **options: More :class:`~client_sync.SyncProvider` arguments.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        registry: ClientTypeRegistry,
        *,
        token: Any = None,
        app: Any = None,
        rate_hz: float = DEFAULT_RATE_HZ,
        **options: Any,
    ) -> None:
        self.provider = SyncProvider(url, registry, token=token, **options)
        """The shared provider (its signals are shared by every page)."""
        self.rate_hz = rate_hz
        self._pages: dict[str, Bindings] = {}
        target = app if app is not None else nicegui_app
        if target.is_started:  # (made after the app started: start now)
            _keep(asyncio.get_running_loop().create_task(self.start()))
        else:
            target.on_startup(self.start)
        target.on_shutdown(self.stop)

    async def start(self) -> None:
        """Connect (done for you when the app starts)."""
        await self.provider.start()

    async def stop(self) -> None:
        """Close (done for you when the app stops)."""
        for page in list(self._pages.values()):
            page.close()
        self._pages.clear()
        await self.provider.close()

    def bindings(self, client: Client | None = None) -> Bindings:
        """The current page's :class:`Bindings` to the shared provider."""
        return _page_bindings(self._pages, self.provider, client, self.rate_hz)


def _page_bindings(
    pages: dict[str, Bindings], provider: SyncProvider, client: Client | None, rate_hz: float
) -> Bindings:
    page = client if client is not None else context.client
    bindings = pages.get(page.id)
    if bindings is None or bindings._closed:
        bindings = pages[page.id] = Bindings(provider, client=page, rate_hz=rate_hz)
        page.on_delete(lambda: pages.pop(page.id, None))
    return bindings


class _User:
    def __init__(self, provider: SyncProvider) -> None:
        self.provider = provider
        self.pages: dict[str, Bindings | None] = {}  # (None: no bindings asked for yet)
        self.started: asyncio.Task[SyncProvider] | None = None
        self.closing: asyncio.TimerHandle | None = None


class UserSyncs:
    """A provider per signed-in user: control and read access belong to the user's own
    identity, not to the app.

    ``credential()`` is called in the page being built and returns the user's pl3xus
    credential (kept by your sign-in page), or ``None`` when nobody is signed in. A provider
    is opened only once the page's browser has connected (a bare GET opens nothing), and it
    belongs to one browser session and credential: the tabs of one browser share it, while
    two browsers signed in with the same credential each have their own (control is held by
    a connection, so one of them cannot act under the other's control). It closes ``linger``
    seconds after its last tab. At most ``max_users`` are open at once: the next is refused
    (:class:`TooManyUsers`; a session whose tabs are all gone makes room first), so a crowd
    of sign-ins cannot open unbounded server connections from this process.

    Args:
        url: The server (or several gateways).
        registry: The types the pages use.
        credential: The signed-in user's credential, or ``None``.
        session: The browser session a page belongs to (default: NiceGUI's browser id,
            ``app.storage.browser["id"]``, which needs ``ui.run(storage_secret=...)``;
            without it, a credential's sessions share one provider).
        max_users: How many users' providers may be open at once.
        connect_timeout: Seconds a page's browser has to connect before
            :class:`PageGone` (nothing is opened for a page nobody shows).
        linger: Seconds a provider stays open after its user's last page went.
        app: The NiceGUI app (default: ``nicegui.app``): all are closed when it stops.
        rate_hz: The default redraw rate of the pages' bound elements.
        **options: More :class:`~client_sync.SyncProvider` arguments.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        registry: ClientTypeRegistry,
        *,
        credential: Callable[[], str | None],
        session: Callable[[], str | None] | None = None,
        max_users: int = 20,
        connect_timeout: float = 10.0,
        linger: float = 30.0,
        app: Any = None,
        rate_hz: float = DEFAULT_RATE_HZ,
        **options: Any,
    ) -> None:
        if max_users < 1:
            raise ValueError(f"max_users must be 1 or more, got {max_users}")
        self.url = url
        self.registry = registry
        self.credential = credential
        self.session = session if session is not None else _browser_id
        self.max_users = max_users
        self.connect_timeout = connect_timeout
        self.linger = linger
        self.rate_hz = rate_hz
        self._options = options
        self._users: dict[str, _User] = {}
        target = app if app is not None else nicegui_app
        target.on_shutdown(self.stop)

    @property
    def open(self) -> int:
        """How many users' providers are open now."""
        return len(self._users)

    async def provider(self, client: Client | None = None) -> SyncProvider:
        """The signed-in user's provider, connected (or trying to: the server may be away).

        Raises:
            NotSignedIn: ``credential()`` gave nothing.
            PageGone: the page's browser did not connect within ``connect_timeout``.
            TooManyUsers: ``max_users`` others are open.
            ConnectFailed: the server refused the credential.
        """
        page = client if client is not None else context.client
        with page:
            token = self.credential()
            session = self.session() or ""
        if not token:
            raise NotSignedIn("sign in first: there is no credential for this page's user")
        try:
            await page.connected(timeout=self.connect_timeout)
        except TimeoutError:
            raise PageGone(
                f"the page's browser did not connect in {self.connect_timeout} s"
            ) from None
        if page.is_deleted:
            raise PageGone("the page's browser left")
        key = hashlib.sha256(f"{session}\0{token}".encode()).hexdigest()
        user = self._users.get(key)
        if user is None:
            if len(self._users) >= self.max_users:
                self._evict_one()  # (a user whose tabs are all gone makes room)
            if len(self._users) >= self.max_users:
                logger.warning("refused a provider: %d users' providers are open", self.max_users)
                raise TooManyUsers(
                    f"{self.max_users} users are signed in on this dashboard; try again later"
                )
            provider = SyncProvider(self.url, self.registry, token=token, **self._options)
            user = self._users[key] = _User(provider)
            user.started = asyncio.get_running_loop().create_task(provider.start())
        if user.closing is not None:
            user.closing.cancel()
            user.closing = None
        if page.id not in user.pages:
            user.pages[page.id] = None
            page.on_delete(lambda: self._page_gone(key, page.id))
        assert user.started is not None
        try:
            return await asyncio.shield(user.started)
        except Exception:
            if self._users.get(key) is user:
                del self._users[key]
            raise

    async def bindings(self, client: Client | None = None) -> Bindings:
        """The current page's :class:`Bindings` to its user's provider (see
        :meth:`provider` for what it raises)."""
        page = client if client is not None else context.client
        provider = await self.provider(page)
        user = next(u for u in self._users.values() if u.provider is provider)
        bindings = user.pages.get(page.id)
        if not isinstance(bindings, Bindings) or bindings._closed:
            bindings = user.pages[page.id] = Bindings(provider, client=page, rate_hz=self.rate_hz)
        return bindings

    def _page_gone(self, key: str, page_id: str) -> None:
        user = self._users.get(key)
        if user is None:
            return
        bindings = user.pages.pop(page_id, None)
        if isinstance(bindings, Bindings):
            bindings.close()
        if not user.pages and user.closing is None:
            loop = asyncio.get_running_loop()
            user.closing = loop.call_later(self.linger, lambda: self._close_user(key))

    def _evict_one(self) -> None:
        for key, user in self._users.items():
            if not user.pages:
                if user.closing is not None:
                    user.closing.cancel()
                    user.closing = None
                self._close_user(key)
                return

    def _close_user(self, key: str) -> None:
        user = self._users.get(key)
        if user is None or user.pages:
            return
        del self._users[key]
        task = asyncio.get_running_loop().create_task(user.provider.close())
        _keep(task)

    async def stop(self) -> None:
        """Close every user's provider (done for you when the app stops)."""
        users, self._users = list(self._users.values()), {}
        for user in users:
            if user.closing is not None:
                user.closing.cancel()
            for bindings in user.pages.values():
                if isinstance(bindings, Bindings):
                    bindings.close()
            if user.started is not None and not user.started.done():
                user.started.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await user.provider.close()


def _browser_id() -> str | None:
    """NiceGUI's id of the browser session of the page being built, if it keeps one."""
    try:
        value = nicegui_app.storage.browser.get("id")
    except (RuntimeError, AssertionError, KeyError):  # (no storage_secret: no browser storage)
        return None
    return value if isinstance(value, str) else None


_TASKS: set[asyncio.Task[Any]] = set()


def _keep(task: asyncio.Task[Any]) -> None:
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
