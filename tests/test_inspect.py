"""`pl3xus-rx inspect`: a live terminal view built only on client_sync signals."""

from __future__ import annotations

import asyncio
import io
import os
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
        for header in ("Position.x", "Position.y", "Label.text"):
            assert header in text
        row = next(line for line in text.splitlines() if "robot a" in line)
        assert "1.5" in row and " 2 " in row
        assert "lonely label" in text

        # only some types and fields
        out = io.StringIO()
        console = Console(file=out, width=140, color_system=None)
        await inspect(
            f"ws://{host}:{port}/", once=True, console=console, types=["Position"], fields=["x"]
        )
        text = out.getvalue()
        assert "Position.x" in text and "Position.y" not in text and "Label" not in text
        assert "1 entity" in text and "1 entities" not in text
        with pytest.raises(ValueError, match="does not sync Nope; it syncs"):
            await inspect(f"ws://{host}:{port}/", once=True, console=console, types=["Nope"])

        # live mode: a change made while it runs shows up in a later frame
        out = io.StringIO()
        console = Console(file=out, width=140, color_system=None, force_terminal=True)

        async def move() -> None:
            await asyncio.sleep(0.6)
            server.world.insert(a, Position(x=42, y=0))

        mover = asyncio.create_task(move())
        await inspect(f"ws://{host}:{port}/", seconds=1.2, console=console)
        await mover
        assert any("42" in line for line in out.getvalue().splitlines() if "Position" not in line)


@pytest.mark.slow
def test_inspect_command_reports_an_unreachable_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pl3xus_rx", "inspect", "ws://127.0.0.1:9/", "--once"],
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    assert result.returncode == 1
    assert "pl3xus-rx inspect: ConnectFailed" in result.stderr and "Traceback" not in result.stderr


def test_narrow_terminals_leave_columns_out_rather_than_cut_values_to_nothing() -> None:
    from client_sync.inspect import Snapshot, render
    from client_sync.states import ConnectionState, ConnectionStatus

    class Sensor(BaseModel):
        kind: str
        value: float
        unit: str
        rate_hz: float

    class Name(BaseModel):
        text: str

    components = {
        "Name": {i: Name(text=f"temperature {i}") for i in range(3)},
        "Sensor": {
            i: Sensor(kind="temperature", value=40.123, unit="°C", rate_hz=10) for i in range(3)
        },
    }
    snapshot = Snapshot("ws://x/", ConnectionStatus(ConnectionState.OPEN), False, components)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(render(snapshot, width=80))
    text = out.getvalue()
    assert "temperature 0" in text and "temperature" in text.split("Sensor.kind")[-1]
    assert "40.123" in text
    assert "more columns" in text and "--type / --fields" in text  # what did not fit is named
    assert max(len(line) for line in text.splitlines()) <= 80

    # stale data is said so, with its age, and dimmed
    def colored(stale: bool) -> str:
        snap = Snapshot(
            "ws://x/", ConnectionStatus(ConnectionState.OPEN), stale, components, age=3.24
        )
        out = io.StringIO()
        Console(file=out, width=80, color_system="standard", force_terminal=True).print(
            render(snap, width=80)
        )
        return out.getvalue()

    text = colored(True)
    assert "data 3.2 s old" in text and "(stale)" in text
    assert text.count("\x1b[2m") > colored(False).count("\x1b[2m") + 2  # its rows dimmed


def test_sparkline_scales_from_lowest_to_highest() -> None:
    from client_sync.inspect import sparkline

    assert sparkline([]) == ""
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5.0, 5.0, 5.0]) == "▄▄▄"  # flat
    assert sparkline(range(100), width=4) == "▁▃▆█"  # the newest 4, scaled among themselves
    assert sparkline([10, -10, 10]) == "█▁█"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_inspect_draws_a_sparkline_of_a_numeric_field() -> None:
    server = SyncServer()
    server.sync_component(Position)
    a = server.world.spawn(Position(x=0, y=0))

    async def climb() -> None:
        for step in range(1, 12):
            await asyncio.sleep(0.15)
            server.world.insert(a, Position(x=step, y=0))

    async with server.serve("127.0.0.1", 0) as (host, port):
        out = io.StringIO()
        console = Console(file=out, width=140, color_system=None, force_terminal=True)
        climber = asyncio.create_task(climb())
        await inspect(f"ws://{host}:{port}/", seconds=2.0, console=console, spark=["Position.x"])
        await climber
        assert "Position.x ~" in out.getvalue()
        lines = [line for line in out.getvalue().splitlines() if "█" in line]
        assert lines, out.getvalue()[-2000:]
        spark = lines[-1].split("│")[-2].strip()  # the last column of the last frame
        assert spark[0] == "▁" and spark[-1] == "█" and len(set(spark)) >= 4  # rising
        with pytest.raises(ValueError, match=r"--spark wants Type\.field"):
            await inspect(f"ws://{host}:{port}/", once=True, console=console, spark=["Position.z"])


@pytest.mark.slow
@pytest.mark.asyncio
async def test_q_quits_the_live_view_in_a_terminal() -> None:
    """``pl3xus-rx inspect URL`` in a real terminal (a pseudo-terminal here): the hint says
    how to quit, and pressing q ends it at once, leaving the terminal as it was."""
    import os
    import pty
    import termios

    server = SyncServer()
    server.sync_component(Label)
    server.world.spawn(Label(text="robot a"))
    async with server.serve("127.0.0.1", 0) as (host, port):
        leader, follower = pty.openpty()
        before = termios.tcgetattr(follower)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pl3xus_rx",
            "inspect",
            f"ws://{host}:{port}/",
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env={**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm"},
        )
        seen = b""
        loop = asyncio.get_running_loop()
        try:
            for _ in range(200):  # (up to 20 s: the interpreter starts, connects, draws)
                chunk = await loop.run_in_executor(None, _read_some, leader)
                seen += chunk
                if b"q quits" in seen and b"robot a" in seen:
                    break
            assert b"q quits" in seen and b"robot a" in seen, seen[-500:]
            os.write(leader, b"q")
            code = await asyncio.wait_for(proc.wait(), 10)
            assert code == 0
            assert termios.tcgetattr(follower)[3] == before[3]  # echo and line mode are back
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            os.close(leader)
            os.close(follower)


def _read_some(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], 0.1)
    return os.read(fd, 4096) if ready else b""
