"""The terminal robot dashboard, driven headless with textual's pilot against a live cell."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conftest import pilot_until as until

from pl3xus_rx import SyncServer
from pl3xus_rx.demo import Joints, Pose, RobotStatus, build_cell

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from robot_dashboard import RobotDashboard

pytestmark = pytest.mark.asyncio


def text(app: RobotDashboard, selector: str) -> str:
    """What a widget shows now ("" while it does not exist yet)."""
    from textual.css.query import NoMatches

    try:
        return str(app.query_one(selector).render())
    except NoMatches:
        return ""


@pytest.mark.slow
async def test_dashboard_controls_a_robot() -> None:
    server = SyncServer()
    cell = build_cell(server, robots=2, sensors=0)
    first = cell["robots"][0]
    async with server.serve("127.0.0.1", 0) as (host, port):
        app = RobotDashboard(f"ws://{host}:{port}/")
        async with app.run_test(size=(110, 24)) as pilot:
            await until(
                pilot, lambda: "robot 2" in text(app, f"#robot-{cell['robots'][1]}"), "robot panels"
            )
            assert "connection: open" in text(app, "#status")
            panel = f"#robot-{first}"
            assert "control: free" in text(app, panel)
            await pilot.press("d")  # jog without control: refused, with the reason
            await until(pilot, lambda: "does not control" in text(app, "#msg"), "refusal")
            await pilot.press("t")
            await until(pilot, lambda: "control: you" in text(app, panel), "control")
            await pilot.press("d")
            await until(pilot, lambda: server.world.get(first, Pose).x == 10.0, "jog x+")
            await until(pilot, lambda: "x=10" in text(app, panel), "pose on screen")
            await pilot.press("plus")
            await until(pilot, lambda: server.world.get(first, RobotStatus).speed == 0.6, "faster")
            await pilot.press("x")
            await until(pilot, lambda: "stopped" in text(app, panel), "stopped")
            # the first joint's angle over the last seconds, as a sparkline
            for step in range(8):
                server.world.insert(first, Joints(angles=(10.0 * step, 0, 0, 0, 0, 0)))
                await pilot.pause(0.15)

            def trend() -> str:
                line = next(x for x in text(app, panel).splitlines() if x.startswith("joint 1"))
                return line.removeprefix("joint 1 ")

            await until(pilot, lambda: trend().endswith("█"), "the sparkline's high end")
            assert "▁" in trend() and len(set(trend())) >= 4, trend()  # rising
            await pilot.press("n")  # the second robot: not ours
            await pilot.press("g")
            await until(
                pilot,
                lambda: "start:" in text(app, "#msg") and "does not control" in text(app, "#msg"),
                "refused start",
            )
            await asyncio.sleep(0)


def panels(app: RobotDashboard) -> str:
    return " | ".join(str(w.render()) for w in app.query(".robot"))


async def test_dashboard_survives_a_server_restart() -> None:
    first = SyncServer()
    build_cell(first, robots=1, sensors=0)
    ctx = first.serve("127.0.0.1", 0)
    host, port = await ctx.__aenter__()
    app = RobotDashboard(f"ws://{host}:{port}/")
    app.sync.policy = type(app.sync.policy)(initial_delay=0.05, max_delay=0.2)
    async with app.run_test(size=(110, 24)) as pilot:
        await until(pilot, lambda: "robot 1" in panels(app), "first cell")
        await ctx.__aexit__(None, None, None)
        await until(pilot, lambda: "(stale)" in text(app, "#status"), "stale shown")
        second = SyncServer()
        build_cell(second, robots=2, sensors=0)
        async with second.serve(host, port):
            await until(
                pilot,
                lambda: "robot 2" in panels(app) and "(stale)" not in text(app, "#status"),
                "reconnected to the new cell",
            )
            assert "connection: open" in text(app, "#status")
