"""`pl3xus-rx inspect`: a live terminal view built only on client_sync signals."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import pytest
from conftest import UNIT
from pydantic import BaseModel
from rich.console import Console

from client_sync.inspect import inspect
from pl3xus_rx import SyncServer


class Position(BaseModel):
    x: float
    y: float


class Label(BaseModel):
    text: str


@pytest.mark.asyncio
async def test_inspect_shows_every_entity_and_component() -> None:
    server = SyncServer()
    server.sync_component(Position)
    server.sync_component(Label)
    a = server.world.spawn(Position(x=1.5, y=2), Label(text="robot a"))
    server.world.spawn(Label(text="lonely label"))
    async with server.serve("127.0.0.1", 0) as (host, port):
        out = io.StringIO()
        console = Console(file=out, width=140, color_system=None)
        await inspect(f"ws://{host}:{port}/", once=True, console=console)
        text = out.getvalue()
        assert f"ws://{host}:{port}/  connection: open" in text
        assert "2 entities" in text
        assert "Position" in text and "Label" in text
        assert '{"x":1.5,"y":2.0}' in text and '{"text":"robot a"}' in text
        assert '{"text":"lonely label"}' in text

        # live mode: a change made while it runs shows up in a later frame
        out = io.StringIO()
        console = Console(file=out, width=140, color_system=None, force_terminal=True)

        async def move() -> None:
            await asyncio.sleep(0.6)
            server.world.insert(a, Position(x=42, y=0))

        mover = asyncio.create_task(move())
        await inspect(f"ws://{host}:{port}/", seconds=1.2, console=console)
        await mover
        assert '{"x":42.0,"y":0.0}' in out.getvalue()


def test_inspect_command_reports_an_unreachable_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", "inspect", "ws://127.0.0.1:9/", "--once"],
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    assert result.returncode == 1
    assert "pl3xus-rx inspect: ConnectFailed" in result.stderr and "Traceback" not in result.stderr
