"""``pl3xus-rx inspect URL``: a live terminal view of every entity and component.

Built only on client_sync: it reads the server's welcome, makes a permissive model per
component type from the field names there, and shows the ``components`` signal of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, create_model
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pl3xus_rx.net import Network

from .provider import ConnectionStatus, SyncProvider
from .registry import ClientTypeRegistry

__all__ = ["SPARK_WIDTH", "Snapshot", "inspect", "render", "sparkline", "view_models"]

SPARK_WIDTH = 20
"""Samples a sparkline column shows (the newest at the right)."""
_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last ``width`` values as a line of block characters, scaled from their lowest
    (▁) to their highest (█); a flat series is a flat line."""
    shown = list(values)[-width:]
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    if high - low < 1e-12:
        return _BLOCKS[3] * len(shown)
    top = len(_BLOCKS) - 1
    return "".join(_BLOCKS[round((v - low) / (high - low) * top)] for v in shown)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


async def view_models(url: str, token: str | None = None) -> dict[str, type[BaseModel]]:
    """One permissive model per component type the server at ``url`` syncs (from its
    welcome): every field optional and of any type."""
    net = Network()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        cid = await net.connect(url, headers=headers)
        components = net.welcome_of(cid).body.get("components") or []
    finally:
        await net.close()
    models: dict[str, type[BaseModel]] = {}
    for _type_id, name, _hash, fields in components:
        models[name] = create_model(  # type: ignore[call-overload]
            name.replace(".", "_"), **{field: (Any, None) for field in fields}
        )
    return models


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the view shows at one moment."""

    url: str
    connection: ConnectionStatus
    stale: bool
    components: Mapping[str, Mapping[int, BaseModel]]
    age: float | None = None
    """How old the data is, in seconds (protocol v2; ``None``: unknown)."""


MAX_COLUMN = 28  # characters a column may take before its values are shortened


def _text(value: Any) -> str:
    """One field value, compactly: numbers as numbers, text as itself, the rest as JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _wanted(name: str, field: str, fields: Sequence[str] | None) -> bool:
    return not fields or field in fields or f"{name}.{field}" in fields


def render(
    snapshot: Snapshot,
    *,
    max_rows: int = 40,
    width: int = 120,
    types: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    history: Mapping[str, Mapping[int, Sequence[float]]] | None = None,
    live: bool = False,
) -> Group:
    """The view as a rich renderable: a status line and one row per entity, one column per
    field (``Type.field``) of the component types shown. ``types`` and ``fields`` choose
    (``field`` or ``Type.field``); columns that do not fit in ``width`` are left out and
    named in the caption, rather than cut to nothing. ``history`` adds a sparkline column
    per ``Type.field`` it names, from each entity's recent values. What is left out, and
    (``live``) how to quit, is said above the table."""
    state = snapshot.connection.state.value
    status = Text.assemble(
        ("pl3xus-rx inspect ", "bold"),
        snapshot.url,
        "  connection: ",
        (state, "green" if state == "open" else "red"),
        ("" if snapshot.age is None else f"  data {snapshot.age:.1f} s old"),
        ("  (stale)" if snapshot.stale else "", "bold yellow"),
    )
    chosen = {
        name: values
        for name, values in snapshot.components.items()
        if (not types or name in types) and values
    }
    entities = sorted({e for m in chosen.values() for e in m})
    shown = entities[:max_rows]
    columns: list[tuple[str, str, int]] = []  # (type, field, width)
    hidden: list[str] = []
    used = 8  # the entity column
    sparks = [h for h in (history or {}) if h.split(".", 1)[0] in chosen]
    used += sum(len(h) + 5 for h in sparks)
    for name, values in chosen.items():
        rows = [values[e] for e in shown if e in values]
        if not rows:
            continue
        for field in type(rows[0]).model_fields:
            if not _wanted(name, field, fields):
                continue
            header = f"{name}.{field}"
            natural = max(len(header), *(len(_text(getattr(v, field, None))) for v in rows))
            need = min(natural, MAX_COLUMN) + 3
            if used + need > width:
                hidden.append(header)
                continue
            used += need
            columns.append((name, field, min(natural, MAX_COLUMN)))
    count = f"{len(entities)} {'entity' if len(entities) == 1 else 'entities'}"
    # stale values are shown dimmed: what the operator sees may no longer be true
    table = Table(title=count, title_justify="left", style="dim" if snapshot.stale else "")
    table.add_column("entity", justify="right", no_wrap=True, min_width=6)
    for name, field, w in columns:
        table.add_column(f"{name}.{field}", no_wrap=True, min_width=min(w, 8), max_width=w)
    for header in sparks:
        table.add_column(f"{header} ~", no_wrap=True, min_width=SPARK_WIDTH)
    for entity in shown:
        cells = []
        for name, field, w in columns:
            value = chosen[name].get(entity)
            text = "" if value is None else _text(getattr(value, field, None))
            cells.append(text if len(text) <= w else text[: w - 1] + "…")
        for header in sparks:
            cells.append(sparkline((history or {})[header].get(entity, ())))
        table.add_row(str(entity), *cells, style="dim" if snapshot.stale else None)
    notes = []
    if len(entities) > max_rows:
        notes.append(f"{len(entities) - max_rows} more entities (--rows)")
    if hidden:
        notes.append(
            f"{len(hidden)} more columns ({', '.join(hidden[:4])}"
            f"{', ...' if len(hidden) > 4 else ''}): choose with --type / --fields"
        )
    if live:
        notes.append("q quits")
    # (above the table: a live view taller than the terminal loses its bottom lines)
    hints = Text("; ".join(notes), style="dim")
    return Group(status, hints, table) if notes else Group(status, table)


async def inspect(
    url: str,
    *,
    seconds: float | None = None,
    once: bool = False,
    console: Console | None = None,
    max_rows: int = 40,
    token: str | None = None,
    types: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    spark: Sequence[str] = (),
) -> None:
    """Show the server's state live (until Ctrl-C, or for ``seconds``); ``once`` prints
    one complete snapshot and returns. ``token`` authenticates to the server; ``types``
    and ``fields`` choose what is shown (see :func:`render`); each ``Type.field`` of
    ``spark`` (a numeric field) also gets a sparkline of its recent values, sampled at
    each refresh (4 a second).

    Raises:
        ValueError: ``types`` or ``spark`` name a type or field the server does not sync.
    """
    console = console or Console()
    models = await view_models(url, token)
    for header in spark:
        name, _, field = header.partition(".")
        if name not in models or field not in models[name].model_fields:
            raise ValueError(
                f"--spark wants Type.field of a synced type, got {header!r}; the server syncs "
                + ", ".join(f"{n}({', '.join(m.model_fields)})" for n, m in models.items())
            )
    if types:
        unknown = sorted(set(types) - set(models))
        if unknown:
            raise ValueError(
                f"the server does not sync {', '.join(unknown)}; it syncs {', '.join(models)}"
            )
        models = {name: model for name, model in models.items() if name in types}
    builder = ClientTypeRegistry.builder()
    for name, model in models.items():
        builder.register(model, name=name)
    async with SyncProvider(url, builder.build(), check_schema=False, token=token) as sync:
        signals = {name: sync.components(model) for name, model in models.items()}
        for signal in signals.values():
            signal.subscribe(lambda _: None)  # keep every subscription live

        def snapshot() -> Snapshot:
            return Snapshot(
                url,
                sync.connection.get(),
                sync.stale.get(),
                {name: signal.get() for name, signal in signals.items()},
                sync.age(),
            )

        history: dict[str, dict[int, deque[float]]] = {h: {} for h in spark}

        def sample() -> None:
            for header, series in history.items():
                name, _, field = header.partition(".")
                for entity, value in signals[name].get().items() if name in signals else ():
                    number = _number(getattr(value, field, None))
                    if number is not None:
                        series.setdefault(entity, deque(maxlen=SPARK_WIDTH)).append(number)

        def view(live: bool = False) -> Group:
            sample()
            # a live view fits the terminal (the rest is counted above the table)
            rows = min(max_rows, max(1, console.height - 8)) if live else max_rows
            return render(
                snapshot(),
                max_rows=rows,
                width=console.width,
                fields=fields,
                history=history,
                live=live,
            )

        with contextlib.suppress(TimeoutError):  # then show what has arrived
            await sync.wait_synced(timeout=10.0)  # every snapshot, even one in parts
        loop = asyncio.get_running_loop()
        if once:
            console.print(view())
            return
        end = None if seconds is None else loop.time() + seconds
        quit_ = asyncio.Event()
        with (
            _keys(loop, lambda key: quit_.set() if key in "qQ" else None),
            Live(view(live=True), console=console, refresh_per_second=4) as screen,
        ):
            while (end is None or loop.time() < end) and not quit_.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(quit_.wait(), 0.25)
                screen.update(view(live=True))


@contextlib.contextmanager
def _keys(loop: asyncio.AbstractEventLoop, on_key: Callable[[str], None]) -> Iterator[None]:
    """Hand each key pressed to ``on_key`` while inside (stdin a terminal: unbuffered, no
    echo; restored on the way out). Elsewhere (a pipe, Windows) nothing is read."""
    try:
        import termios
        import tty
    except ImportError:  # (not a POSIX system)
        yield
        return
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)

        def read() -> None:
            for key in os.read(fd, 64).decode(errors="ignore"):
                on_key(key)

        loop.add_reader(fd, read)
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
