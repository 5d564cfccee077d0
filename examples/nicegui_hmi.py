"""The demo cell's operator HMI in the browser, in Python (NiceGUI): robots with their live
pose and a joint chart, take / release control, a jog pad, speed and start / stop, the program
library (a query the commands invalidate), the sensors, and the server's notifications.

    pl3xus-rx demo                                   # in one terminal
    python examples/nicegui_hmi.py                   # in another; open http://127.0.0.1:8090/

What everyone sees (robots, poses, joints, sensors, programs) comes through one provider the
whole app shares. What acts (control, jog, speed, programs) goes through the signed-in
user's own provider, under the user's own credential: against ``pl3xus-rx demo --token OP
--viewer-token VIEW``, run ``python examples/nicegui_hmi.py --viewer-token VIEW`` and sign in
with ``OP`` (to act) or ``VIEW`` (to watch). Against an open demo every browser is its own
anonymous user. Needs the extra: ``pip install "pl3xus-rx[nicegui]"``.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from nicegui import app, ui
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, QueryState
from client_sync.nicegui import (
    Bindings,
    NotSignedIn,
    PageGone,
    SharedSync,
    TooManyUsers,
    UserSyncs,
)
from pl3xus_rx import ConnectFailed
from pl3xus_rx.demo import (
    Ack,
    CreateProgram,
    DeleteProgram,
    Jog,
    JogResult,
    Joints,
    ListPrograms,
    Name,
    Pose,
    ProgramList,
    ProgramRef,
    RenameProgram,
    RobotStatus,
    Sensor,
    SetSpeed,
    Start,
    Stop,
)
from pl3xus_rx.sync import EntityControl

REGISTRY = (
    ClientTypeRegistry.builder()
    .register(Name)
    .register(Pose)
    .register(Joints)
    .register(RobotStatus)
    .register(Sensor)
    .register(EntityControl)
    .register_request(Jog, JogResult)
    .register_request(SetSpeed, Ack)
    .register_request(Start, Ack)
    .register_request(Stop, Ack)
    .register_request(CreateProgram, ProgramRef)
    .register_request(RenameProgram, ProgramRef)
    .register_request(DeleteProgram, ProgramRef)
    .register_query(ListPrograms, ProgramList)
    .build()
)
JOG_MM = 10.0


def build(url: str, *, viewer_token: str | None, sign_in: bool) -> None:
    """Declare the app's pages (served by ``ui.run``)."""
    shared = SharedSync(url, REGISTRY, token=viewer_token)
    # Signed-in users' tokens, by browser session: in memory only (never written to disk; a
    # restart signs everyone out).
    tokens: dict[str, str] = {}

    def browser() -> str:
        return str(app.storage.browser["id"])

    def credential() -> str | None:
        if sign_in:
            return tokens.get(browser())
        return f"browser-{browser()}"  # (an open server ignores it)

    users = UserSyncs(url, REGISTRY, credential=credential, max_users=20)

    @ui.page("/sign-in")
    def sign_in_page() -> None:
        ui.label("pl3xus_rx cell HMI: sign in").classes("text-h6")
        token = ui.input("your token", password=True).props("autofocus")

        def go() -> None:
            typed = str(token.value or "").strip()
            if typed:
                tokens[browser()] = typed
                ui.navigate.to("/")

        token.on("keydown.enter", go)
        ui.button("Sign in", on_click=go)

    def sign_out() -> None:
        tokens.pop(browser(), None)
        ui.navigate.to("/sign-in")

    @ui.page("/")
    async def index() -> None:
        view = shared.bindings()
        with ui.header().classes("items-center gap-4"):
            ui.label("Robot cell").classes("text-h6")
            view.connection_badge().props("id=link")
            user_line = ui.label("").classes("text-sm")
            if sign_in:
                ui.button("Sign out", on_click=sign_out).props("flat color=white id=sign-out")
        try:
            mine = await users.bindings()
        except NotSignedIn:
            ui.navigate.to("/sign-in")
            return
        except PageGone:
            return  # (nobody is looking: a bare GET, a prefetch)
        except TooManyUsers as exc:
            ui.label(f"watch only: {exc}").classes("text-negative")
            mine = None
        except ConnectFailed as exc:
            why = f"HTTP {exc.status}" if exc.status else "it did not answer"
            ui.label(f"watch only: the server refused your token ({why})").classes("text-negative")
            mine = None
        if mine is not None:
            mine.notifications()
            mine.follow(
                user_line,
                mine.provider.connection,
                lambda _: user_line.set_text(
                    f"you: {mine.provider.identity.name if mine.provider.identity else 'anonymous'}"
                    f" (#{mine.provider.connection_id})"
                ),
            )
        with ui.row().classes("w-full items-start no-wrap gap-6"):
            with ui.column().classes("w-1/2"):
                robot_panel(view, mine)
            with ui.column().classes("w-1/2"):
                programs_panel(view, mine)
                ui.label("Sensors").classes("text-subtitle1")
                view.table(Sensor, ["kind", "value", "unit"], page_size=8).element.props(
                    "id=sensors"
                )

    def robot_panel(view: Bindings, mine: Bindings | None) -> None:
        names = view.provider.components(Name)
        statuses = view.provider.components(RobotStatus)
        chosen: dict[str, int | None] = {"robot": None}
        select = ui.select({}, label="robot").classes("w-64").props("for=robot-select")

        def robots(_: Any) -> None:
            robots = {
                e: (names.get().get(e).text if names.get().get(e) else f"robot {e}")  # type: ignore[union-attr]
                for e in sorted(statuses.get())
            }
            if select.options != robots:
                select.set_options(robots)
            if chosen["robot"] not in robots and robots:
                select.set_value(next(iter(robots)))

        @ui.refreshable
        def panel() -> None:
            robot = chosen["robot"]
            if robot is None:
                ui.label("no robot yet").classes("pl3xus-missing")
                return
            with ui.card().classes("w-full"):
                view.field_text(ui.label().props("id=pose"), Pose, robot, _pose)
                view.field_text(ui.label().props("id=status"), RobotStatus, robot, _status)
                if mine is not None:
                    mine.control_badge(robot, name="control").props("id=control")
                    ui.label("speed").classes("text-sm")
                    slider = ui.slider(min=0.0, max=1.0, step=0.05).props("label id=speed")
                    mine.mutation(slider, RobotStatus, robot, "speed")
                    with ui.row().classes("gap-1"):
                        for label, dx, dy in (
                            ("x-", -JOG_MM, 0.0),
                            ("x+", JOG_MM, 0.0),
                            ("y-", 0.0, -JOG_MM),
                            ("y+", 0.0, JOG_MM),
                        ):
                            mine.request_button(label, Jog(dx=dx, dy=dy), entity=robot).props(
                                f"id=jog-{label}"
                            )
                    with ui.row().classes("gap-1"):
                        mine.request_button("Start", Start(), entity=robot).props("id=start")
                        mine.request_button("Stop", Stop(), entity=robot).props("id=stop")
                        for speed in (0.25, 0.5, 1.0):
                            mine.request_button(
                                f"{speed:.0%}", SetSpeed(speed=speed), entity=robot
                            ).props(f"id=speed-{int(speed * 100)}")
                view.chart(Joints, robot, "angles", seconds=60, title="joints (deg)").classes(
                    "w-full h-56"
                ).props("id=joints")

        def picked(event: Any) -> None:
            chosen["robot"] = event.value
            panel.refresh()

        select.on_value_change(picked)
        panel()
        # (followed last: a provider that has the robots already picks one at once, and the
        # pick must reach the panel)
        view.follow(select, statuses, robots)
        view.follow(select, names, robots)

    def programs_panel(view: Bindings, mine: Bindings | None) -> None:
        ui.label("Programs").classes("text-subtitle1")
        acting = mine if mine is not None else view
        listing = acting.provider.query(ListPrograms, ListPrograms())
        table = ui.table(
            columns=[
                {"name": "name", "label": "name", "field": "name", "align": "left"},
                {"name": "steps", "label": "steps", "field": "steps"},
            ],
            rows=[],
            row_key="program",
            selection="single",
        ).props("dense flat id=programs")

        def show(state: QueryState[ProgramList]) -> None:
            rows = [r.model_dump() for r in state.value.programs] if state.value else []
            if table.rows != rows:
                table.rows = rows
                table.update()

        acting.follow(table, listing, show)
        if mine is None:
            return
        name = ui.input("program name").props("dense for=program-name")

        def selected() -> int | None:
            program = table.selected[0].get("program") if table.selected else None
            return program if isinstance(program, int) else None

        with ui.row().classes("gap-1"):
            mine.request_button(
                "Create", lambda: CreateProgram(name=str(name.value or "").strip())
            ).props("id=create")

            # (targeted at the selected program: known at click time)
            async def rename_click() -> None:
                program = selected()
                if program is None:
                    ui.notify("select a program first")
                    return
                await _act(mine, RenameProgram(name=str(name.value or "").strip()), program)

            async def delete_click() -> None:
                program = selected()
                if program is None:
                    ui.notify("select a program first")
                    return
                await _act(mine, DeleteProgram(), program)

            ui.button("Rename", on_click=rename_click).props("id=rename")
            ui.button("Delete", on_click=delete_click).props("id=delete color=negative")


async def _act(view: Bindings, request: BaseModel, entity: int) -> None:
    from pl3xus_rx import CommandRejected, CommandTimeout, ConnectionLost

    try:
        await view.provider.request(request, entity=entity)
    except (CommandRejected, ConnectionLost, CommandTimeout) as exc:
        ui.notify(f"refused: {exc}", type="negative")


def _pose(pose: Pose) -> str:
    return f"at x={pose.x:.0f} y={pose.y:.0f} mm"


def _status(status: RobotStatus) -> str:
    return f"{status.state}, speed {status.speed:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description="The demo cell's HMI in the browser (NiceGUI).")
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8080/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--viewer-token", default=None, help="the shared, least-privileged credential"
    )
    parser.add_argument(
        "--sign-in",
        action="store_true",
        help="ask each user for their own token (a server with --token)",
    )
    args = parser.parse_args()
    build(args.url, viewer_token=args.viewer_token, sign_in=args.sign_in)
    ui.run(
        host=args.host,
        port=args.port,
        title="pl3xus_rx cell HMI",
        reload=False,
        show=False,
        storage_secret=secrets.token_hex(16),
    )


if __name__ in {"__main__", "__mp_main__"}:
    main()
