"""``pl3xus-rx inspect URL``: a live terminal view of every entity and component.

Built only on client_sync: it reads the server's welcome, makes a permissive model per
component type from the field names there, and shows the ``components`` signal of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
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

__all__ = ["Snapshot", "inspect", "render", "view_models"]


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


def _cell(value: BaseModel | None, width: int) -> str:
    if value is None:
        return ""
    text = json.dumps(value.model_dump(mode="json"), separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def render(snapshot: Snapshot, *, max_rows: int = 40, width: int = 120) -> Group:
    """The view as a rich renderable: a status line and one row per entity, one column per
    component type that any shown entity has."""
    state = snapshot.connection.state.value
    status = Text.assemble(
        ("pl3xus-rx inspect ", "bold"),
        snapshot.url,
        "  connection: ",
        (state, "green" if state == "open" else "red"),
        ("  (stale)" if snapshot.stale else ""),
    )
    entities = sorted({e for m in snapshot.components.values() for e in m})
    shown = entities[:max_rows]
    names = [n for n, m in snapshot.components.items() if any(e in m for e in shown)]
    cell_width = max(12, (width - 10) // max(1, len(names)) - 3)
    table = Table(title=f"{len(entities)} entities", title_justify="left")
    table.add_column("entity", justify="right", no_wrap=True, min_width=6)
    for name in names:
        table.add_column(name, no_wrap=True, max_width=cell_width)
    for entity in shown:
        table.add_row(
            str(entity),
            *(_cell(snapshot.components[name].get(entity), cell_width) for name in names),
        )
    if len(entities) > max_rows:
        table.caption = f"... {len(entities) - max_rows} more"
    return Group(status, table)


async def inspect(
    url: str,
    *,
    seconds: float | None = None,
    once: bool = False,
    console: Console | None = None,
    max_rows: int = 40,
    token: str | None = None,
) -> None:
    """Show the server's state live (until Ctrl-C, or for ``seconds``); ``once`` prints
    one complete snapshot and returns. ``token`` authenticates to the server."""
    console = console or Console()
    models = await view_models(url, token)
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
            )

        with contextlib.suppress(TimeoutError):  # then show what has arrived
            await sync.wait_synced(timeout=10.0)  # every snapshot, even one in parts
        loop = asyncio.get_running_loop()
        if once:
            console.print(render(snapshot(), max_rows=max_rows, width=console.width))
            return
        end = None if seconds is None else loop.time() + seconds
        with Live(
            render(snapshot(), max_rows=max_rows, width=console.width),
            console=console,
            refresh_per_second=4,
        ) as live:
            while end is None or loop.time() < end:
                await asyncio.sleep(0.25)
                live.update(render(snapshot(), max_rows=max_rows, width=console.width))
