"""examples/hmi.py driven headless with textual's pilot against a live demo cell: programs
created, renamed and deleted through requests, the list refreshed by invalidation, the
server's notifications as toasts, control and the jog pad."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import pilot_until as until

from pl3xus_rx import SyncServer
from pl3xus_rx.demo import Pose, Program, build_cell

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from hmi import Hmi

pytestmark = pytest.mark.asyncio


def names_in_world(server: SyncServer) -> list[str]:
    return sorted(p.name for _, p in server.world.query(Program))


def table_names(app: Hmi) -> list[str]:
    from textual.widgets import DataTable

    table = app.query_one("#programs", DataTable)
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


def text(app: Hmi, selector: str) -> str:
    return str(app.query_one(selector).render())


async def type_name(pilot: Any, app: Hmi, name: str) -> None:
    from textual.widgets import Input

    app.query_one("#name", Input).value = name
    await pilot.pause()


@pytest.mark.slow
async def test_the_hmi_edits_programs_and_jogs_a_robot() -> None:
    server = SyncServer()
    cell = build_cell(server, robots=2, sensors=0)
    robot = cell["robots"][0]
    async with server.serve("127.0.0.1", 0) as (host, port):
        app = Hmi(f"ws://{host}:{port}/")
        async with app.run_test(size=(130, 36)) as pilot:
            await until(pilot, lambda: "robot 1" in text(app, "#robot"), "the robot panel")
            assert "connection: open" in text(app, "#status")
            await until(pilot, lambda: app.programs.get().value is not None, "the list")
            assert table_names(app) == []

            # create: the request, the list refreshed by invalidation, a toast for everyone
            await type_name(pilot, app, "weld seam")
            await pilot.click("#create")
            await until(pilot, lambda: names_in_world(server) == ["weld seam"], "created")
            await until(pilot, lambda: table_names(app) == ["weld seam"], "listed")
            await until(pilot, lambda: any("created" in t for t in app.toasts), "a toast")
            await type_name(pilot, app, "glue")
            app.query_one("#name").focus()
            await pilot.press("enter")  # Enter in the name field creates too
            await until(
                pilot,
                lambda: table_names(app) == ["glue", "weld seam"],
                f"sorted {table_names(app)} {names_in_world(server)} {text(app, chr(35) + 'msg')}",
            )

            # a duplicate name: refused, the field named
            await type_name(pilot, app, "glue")
            await pilot.click("#create")
            await until(pilot, lambda: "exists already" in text(app, "#msg"), "refusal")
            assert names_in_world(server) == ["glue", "weld seam"]

            # the selection follows its program across refreshes: "weld seam", now row 1
            from textual.widgets import DataTable

            table = app.query_one("#programs", DataTable)
            assert table.cursor_row == 1
            # select "glue" (row 0) with the keyboard, rename it, then delete it
            table.focus()
            await pilot.press("up")
            assert table.cursor_row == 0
            await type_name(pilot, app, "glue v2")
            await pilot.click("#rename")
            await until(
                pilot,
                lambda: table_names(app) == ["glue v2", "weld seam"],
                f"renamed {table_names(app)} {text(app, chr(35) + 'msg')}",
            )
            assert any("renamed" in t for t in app.toasts)
            await pilot.click("#delete")
            await until(pilot, lambda: table_names(app) == ["weld seam"], "deleted")
            assert names_in_world(server) == ["weld seam"]
            assert any("deleted" in t for t in app.toasts)

            # the jog pad needs control
            await pilot.click("#jog-x-plus")
            await until(pilot, lambda: "does not control" in text(app, "#msg"), "no control")
            await pilot.click("#take")
            await until(pilot, lambda: "control: you" in text(app, "#robot"), "control")
            await pilot.click("#jog-x-plus")
            await until(pilot, lambda: server.world.get(robot, Pose).x == 10.0, "jogged")
            await until(pilot, lambda: "x=10" in text(app, "#robot"), "pose on screen")
            await pilot.click("#release")
            await until(pilot, lambda: "control: free" in text(app, "#robot"), "released")
            await pilot.click("#next")
            await until(pilot, lambda: "robot 2" in text(app, "#robot"), "next robot")


async def test_the_hmi_says_when_the_server_is_not_there() -> None:
    app = Hmi("ws://127.0.0.1:9/")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.5)
    assert app.return_code == 1


async def test_an_empty_or_long_program_name_is_refused_on_screen() -> None:
    """Enter, Create and Rename with a name no program can have: a line saying why, the
    HMI still running, nothing sent; a created program's name leaves the field."""
    from textual.widgets import Input

    server = SyncServer()
    build_cell(server, robots=1, sensors=0)
    async with server.serve("127.0.0.1", 0) as (host, port):
        app = Hmi(f"ws://{host}:{port}/")
        async with app.run_test(size=(130, 36)) as pilot:
            await until(pilot, lambda: app.programs.get().value is not None, "the list")
            assert app.focused is app.query_one("#name")  # type a name, Enter creates
            await type_name(pilot, app, "   ")
            await pilot.press("enter")
            await until(pilot, lambda: "create: the program name" in text(app, "#msg"), "why")
            assert "at least 1 character" in text(app, "#msg")
            await type_name(pilot, app, "x" * 41)
            await pilot.click("#create")
            await until(pilot, lambda: "at most 40 characters" in text(app, "#msg"), "too long")

            await type_name(pilot, app, "weld")
            app.query_one("#name").focus()
            await pilot.press("enter")
            await until(
                pilot,
                lambda: table_names(app) == ["weld"],
                f"created {table_names(app)} {text(app, chr(35) + 'msg')}",
            )
            await until(pilot, lambda: app.query_one("#name", Input).value == "", "cleared")

            await type_name(pilot, app, "")
            await pilot.click("#rename")  # the one row is selected
            await until(pilot, lambda: "rename: the program name" in text(app, "#msg"), "why")
            assert app.is_running
            assert names_in_world(server) == ["weld"]
