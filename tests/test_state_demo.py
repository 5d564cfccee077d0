"""The demo with a state file: programs, speeds and robot states survive a restart; sensor
readings and joint angles start afresh; a damaged file stops ``pl3xus-rx demo`` with one
line."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from conftest import UNIT
from test_demo import command, start_demo

from pl3xus_rx import SyncServer
from pl3xus_rx.demo import (
    CellInfo,
    Conveyor,
    Joints,
    Pose,
    Program,
    RobotStatus,
    Sensor,
    build_cell,
)

pytestmark = pytest.mark.asyncio


async def test_the_demo_cell_comes_back_but_its_live_readings_do_not(tmp_path: Path) -> None:
    path = tmp_path / "cell.state"
    first = SyncServer(state=path)
    cell = build_cell(first, robots=2, sensors=6, sensor_updates=100)
    assert cell["restored"] is False
    world = first.world
    robot = cell["robots"][1]
    world.insert(robot, RobotStatus(state="running", speed=0.9))
    world.insert(robot, Pose(x=12, y=34, theta=1))
    world.insert(robot, Joints(angles=(1, 2, 3, 4, 5, 6)))
    program = world.spawn(Program(name="weld", steps=12), parent=cell["cell"])
    sensor = cell["sensors"][0]
    world.insert(sensor, world.get(sensor, Sensor).model_copy(update={"value": 77.7}))  # type: ignore[union-attr]
    world.insert(cell["conveyor"], Conveyor(running=False, parts=41))
    rates = [world.get(s, Sensor).rate_hz for s in cell["sensors"]]  # type: ignore[union-attr]
    await first.save_state()

    second = SyncServer(state=path)
    again = build_cell(second, robots=5, sensors=50, sensor_updates=100)  # saved counts win
    world = second.world
    assert again["restored"] is True
    assert again["cell"] == cell["cell"] and again["robots"] == cell["robots"]
    assert again["sensors"] == cell["sensors"] and again["conveyor"] == cell["conveyor"]
    assert world.get(cell["cell"], CellInfo) == CellInfo(robots=2, sensors=6)
    assert world.get(robot, RobotStatus) == RobotStatus(state="running", speed=0.9)
    assert world.get(robot, Pose) == Pose(x=12, y=34, theta=1)
    assert world.get(program, Program) == Program(name="weld", steps=12)
    assert world.get(cell["conveyor"], Conveyor) == Conveyor(running=False, parts=41)
    # live readings: fresh, at the rates the cell had
    assert world.get(robot, Joints) == Joints(angles=(0.0, -45.0, 90.0, 0.0, 45.0, 0.0))
    fresh = world.get(sensor, Sensor)
    assert fresh is not None and fresh.value == 40.0 and fresh.kind == "temperature"
    assert [world.get(s, Sensor).rate_hz for s in again["sensors"]] == rates  # type: ignore[union-attr]
    # and a new program gets an id the first life never used
    assert world.spawn(Program(name="new")) > program


@pytest.mark.slow
async def test_pl3xus_rx_demo_state_restarts_warm_and_refuses_a_damaged_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "demo.state"
    for restored in (False, True):
        proc, _stdout, head = await start_demo("--sensors", "4", "--state", str(path), lines=5)
        try:
            state_line = head[4]
            assert state_line.split()[:2] == ["State:", str(path)]
            assert ("restored from it" in state_line) is restored
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 20 * UNIT)
        assert proc.returncode == 0
        assert path.exists()
    path.write_bytes(path.read_bytes()[:-5])  # cut short
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "demo",
        "--port",
        "0",
        "--state",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30 * UNIT)
    assert proc.returncode == 1
    assert "Traceback" not in err.decode()
    assert err.decode().startswith(f"pl3xus-rx demo: {path} is cut short")


async def test_pl3xus_rx_state_prints_what_a_file_holds_or_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from pl3xus_rx.__main__ import _state

    path = tmp_path / "cell.state"
    server = SyncServer(state=path)
    build_cell(server, robots=2, sensors=3)
    await server.save_state()
    assert _state(argparse.Namespace(path=str(path))) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: state format 1, written ") and "by pl3xus-rx" in out[0]
    assert out[1].startswith("  7 entities (next id 8), 6 with a parent; 0 spawned")
    rows = {line.split()[0]: line.split()[1] for line in out[3:]}
    assert rows["Name"] == "7" and rows["RobotStatus"] == "2" and "Sensor" not in rows
    path.write_bytes(b"garbage")
    assert _state(argparse.Namespace(path=str(path))) == 1
    err = capsys.readouterr().err
    assert err.startswith("pl3xus-rx state: ") and "is not a pl3xus_rx state file" in err
