"""An operator HMI for the demo cell, in the terminal (textual): the robot-program library
with create / rename / delete through requests and a list that refreshes after each command
(a query the requests invalidate), the server's notifications as toasts, and a robot panel
with take / release control and a jog pad.

    pl3xus-rx demo                                 # in one terminal
    python examples/hmi.py ws://127.0.0.1:8080/    # in another

Click the buttons (or Tab to them and press Enter). Type a name and press Enter (or
Create) to add a program; select a row, type a new name and press Rename; Delete removes
the selected program. With a token: ``python examples/hmi.py URL --token op-secret``.
Needs `textual` (installed by `pip install -e ".[dev]"`, or `pip install textual`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Input, Static

from client_sync import ClientTypeRegistry, QueryStatus, SyncProvider
from pl3xus_rx import CommandRejected, ConnectFailed, ConnectionLost
from pl3xus_rx.demo import (
    CreateProgram,
    DeleteProgram,
    Jog,
    JogResult,
    ListPrograms,
    Name,
    Pose,
    ProgramList,
    ProgramRef,
    RenameProgram,
    RobotStatus,
)
from pl3xus_rx.sync import EntityControl

REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Name)
    .register(Pose)
    .register(RobotStatus)
    .register(EntityControl)
    .register_request(Jog, JogResult)
    .register_request(CreateProgram, ProgramRef)
    .register_request(RenameProgram, ProgramRef)
    .register_request(DeleteProgram, ProgramRef)
    .register_query(ListPrograms, ProgramList)
    .build()
)

N = TypeVar("N", bound=BaseModel)

Severity = Literal["information", "warning", "error"]
SEVERITY: dict[str, Severity] = {
    "info": "information",
    "success": "information",
    "warning": "warning",
    "error": "error",
}
JOG_MM = 10.0


class Hmi(App[None]):
    """Programs on the left, the selected robot on the right."""

    CSS = """
    #status { background: $boost; padding: 0 1; }
    #body { height: 1fr; }
    #programs-pane { width: 3fr; padding: 0 1; }
    #robot-pane { width: 2fr; padding: 0 1; border-left: solid $secondary; }
    #programs { height: 1fr; }
    #robot { height: auto; padding: 1 0; }
    #robot.stale { color: $text-muted; }
    .row { height: auto; }
    .row Button { margin: 0 1 0 0; min-width: 8; }
    #msg { padding: 0 1; color: $warning; height: auto; }
    """
    BINDINGS: ClassVar[list[Any]] = [("ctrl+q", "quit", "quit")]

    def __init__(self, url: str, token: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.sync = SyncProvider(url, REGISTRY, token=token)
        self.connected = False
        self.watching: list[Any] = []
        self.robot_index = 0
        self.toasts: list[str] = []  # what was shown as a toast (also for tests)
        self.rows: list[int] = []  # program entity per table row

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="status")
        with Horizontal(id="body"):
            with Vertical(id="programs-pane"):
                yield Static("Programs")
                yield DataTable(id="programs", cursor_type="row")
                yield Input(placeholder="program name", id="name")
                with Horizontal(classes="row"):
                    yield Button("Create", id="create", variant="primary")
                    yield Button("Rename", id="rename")
                    yield Button("Delete", id="delete", variant="error")
            with Vertical(id="robot-pane"):
                yield Static("", id="robot")
                with Horizontal(classes="row"):
                    yield Button("Next robot", id="next")
                    yield Button("Take", id="take", variant="success")
                    yield Button("Release", id="release")
                with Horizontal(classes="row"):
                    yield Button("x-", id="jog-x-minus")
                    yield Button("x+", id="jog-x-plus")
                    yield Button("y-", id="jog-y-minus")
                    yield Button("y+", id="jog-y-plus")
        yield Static("", id="msg")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#programs", DataTable).add_columns("id", "name", "steps")
        self.query_one("#name", Input).focus()  # type a name, Enter creates
        try:
            await self.sync.__aenter__()
        except ConnectFailed as exc:  # say why, and leave
            self.exit(return_code=1, message=f"hmi: {exc}")
            return
        self.connected = True
        self.statuses = self.sync.components(RobotStatus)
        self.poses = self.sync.components(Pose)
        self.names = self.sync.components(Name)
        self.controls = self.sync.components(EntityControl)
        self.programs = self.sync.query(ListPrograms, ListPrograms())
        redraw: list[Any] = [
            self.statuses,
            self.poses,
            self.names,
            self.controls,
            self.sync.connection,
            self.sync.stale,
        ]
        self.watching = [signal.subscribe(lambda _: self.redraw()) for signal in redraw]
        self.watching.append(self.programs.subscribe(lambda _: self.show_programs()))
        self.watching.append(self.sync.notifications.subscribe(self.toast))

    async def on_unmount(self) -> None:
        for subscription in self.watching:
            subscription.dispose()
        if self.connected:
            await self.sync.close()

    # ------------------------------------------------------------------ views

    def toast(self, notification: Any) -> None:
        self.toasts.append(notification.text)
        self.notify(notification.text, severity=SEVERITY.get(notification.level, "information"))

    def show_programs(self) -> None:
        state = self.programs.get()
        if state.value is None:
            return
        table = self.query_one("#programs", DataTable)
        selected = self.selected_program()
        table.clear()
        self.rows = [row.program for row in state.value.programs]
        for row in state.value.programs:
            table.add_row(str(row.program), row.name, str(row.steps))
        if selected in self.rows:
            table.move_cursor(row=self.rows.index(selected))
        if state.status is QueryStatus.ERROR:
            self.say(f"programs: {state.error}")

    def robots(self) -> list[int]:
        return sorted(self.statuses.get())

    def robot(self) -> int | None:
        robots = self.robots()
        if not robots:
            return None
        self.robot_index %= len(robots)
        return robots[self.robot_index]

    def redraw(self) -> None:
        conn = self.sync.connection.get()
        stale = self.sync.stale.get()
        age = self.sync.age()
        self.query_one("#status", Static).update(
            f"{self.url}  connection: {conn.state.value}"
            + ("  (stale)" if stale else "")
            + ("" if age is None else f"  data {age:.1f} s old")
            + f"  you are #{self.sync.connection_id}"
        )
        self.query_one("#robot", Static).set_class(stale, "stale")
        robot = self.robot()
        if robot is None:
            self.query_one("#robot", Static).update("no robots")
            return
        name = self.names.get().get(robot)
        status = self.statuses.get().get(robot)
        pose = self.poses.get().get(robot)
        control = self.controls.get().get(robot)
        holder = control.holder if control else None
        who = (
            "free"
            if holder is None
            else "you"
            if holder == self.sync.connection_id
            else f"#{holder}"
        )
        self.query_one("#robot", Static).update(
            f"{name.text if name else robot}\n"
            f"state: {status.state if status else '?'}  speed {status.speed if status else 0:.1f}\n"
            f"at x={pose.x if pose else 0:.0f} y={pose.y if pose else 0:.0f}\n"
            f"control: {who}"
        )

    def say(self, text: str) -> None:
        self.query_one("#msg", Static).update(text)

    def selected_program(self) -> int | None:
        table = self.query_one("#programs", DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    # ------------------------------------------------------------------ commands

    def run_command(
        self, label: str, command: Awaitable[Any], then: Callable[[], None] | None = None
    ) -> None:
        async def go() -> None:
            try:
                result = await command
            except (CommandRejected, ConnectionLost) as exc:
                self.say(f"{label}: {exc}")
                return
            self.say(f"{label}: ok" + (f" ({result})" if result is not None else ""))
            if then is not None:
                then()

        self.run_worker(go(), exclusive=False)

    def name_typed(self) -> str:
        return self.query_one("#name", Input).value.strip()

    def named(self, label: str, model: type[N]) -> N | None:
        """``model`` with the name typed, or ``None`` (and why, in the message line) if the
        name is not one a program can have."""
        try:
            return model(name=self.name_typed())
        except ValidationError as exc:
            problem = exc.errors()[0]
            self.say(f"{label}: the program name {problem['msg'].lower()}")
            return None

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        self.create()

    def create(self) -> None:
        request = self.named("create", CreateProgram)
        if request is not None:
            self.run_command("create", self.sync.request(request), then=self.clear_name)

    def clear_name(self) -> None:
        """Empty the name field (a program was created: ready for the next one)."""
        self.query_one("#name", Input).value = ""

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        program = self.selected_program()
        robot = self.robot()
        if button == "create":
            self.create()
        elif button == "rename" and program is not None:
            rename = self.named("rename", RenameProgram)
            if rename is not None:
                self.run_command("rename", self.sync.request(rename, entity=program))
        elif button == "delete" and program is not None:
            self.run_command("delete", self.sync.request(DeleteProgram(), entity=program))
        elif button in ("rename", "delete"):
            self.say(f"{button}: select a program first")
        elif button == "next":
            self.robot_index += 1
            self.redraw()
        elif robot is None:
            self.say("no robot")
        elif button == "take":
            self.run_command("take", self.sync.take_control(robot))
        elif button == "release":
            self.run_command("release", self.sync.release_control(robot))
        elif button.startswith("jog-"):
            axis, sign = button[4], 1.0 if button.endswith("plus") else -1.0
            jog = Jog(
                dx=sign * JOG_MM if axis == "x" else 0.0, dy=sign * JOG_MM if axis == "y" else 0.0
            )
            self.run_command("jog", self.sync.request(jog, entity=robot))


def main() -> int:
    parser = argparse.ArgumentParser(description="An operator HMI for the demo cell.")
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8080/")
    parser.add_argument("--token", default=None, help="bearer token for the server")
    args = parser.parse_args()
    app = Hmi(args.url, token=args.token)
    try:
        app.run()
    except KeyboardInterrupt:
        return 130
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
