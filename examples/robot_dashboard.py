"""A terminal HMI for the demo cell: a panel per robot with a sparkline of its first joint's
angle; take control, jog, set speed, start and stop through targeted requests. It keeps
working across a server restart.

    pl3xus-rx demo                                   # in one terminal
    python examples/robot_dashboard.py ws://127.0.0.1:8080/

Keys: n / p select the next / previous robot; t take control, r release;
a d jog x by -10 / +10 mm, w s jog y by +10 / -10 mm; + - change speed; g start, x stop; q quit.
Needs `textual` (installed by `pip install -e ".[dev]"`, or `pip install textual`).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Awaitable
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Static

from client_sync import ClientTypeRegistry, SyncProvider
from client_sync.inspect import sparkline
from pl3xus_rx import CommandRejected, ConnectFailed, ConnectionLost
from pl3xus_rx.demo import (
    Ack,
    Jog,
    JogResult,
    Joints,
    Name,
    Pose,
    RobotStatus,
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
    .register(EntityControl)
    .register_request(Jog, JogResult)
    .register_request(SetSpeed, Ack)
    .register_request(Start, Ack)
    .register_request(Stop, Ack)
    .build()
)


class RobotDashboard(App[None]):
    """One panel per robot, live; commands on the selected one."""

    CSS = """
    .robot { border: round $secondary; padding: 0 1; margin: 0 1; }
    .robot.selected { border: heavy $accent; }
    .robot.stale { color: $text-muted; }
    #status { background: $boost; padding: 0 1; }
    #msg { padding: 0 1; color: $warning; }
    """
    BINDINGS: ClassVar[list[Any]] = [
        ("n", "select(1)", "next"),
        ("p", "select(-1)", "previous"),
        ("t", "take", "take control"),
        ("r", "release", "release"),
        ("a", "jog(-10, 0)", "x-"),
        ("d", "jog(10, 0)", "x+"),
        ("w", "jog(0, 10)", "y+"),
        ("s", "jog(0, -10)", "y-"),
        ("plus", "speed(0.1)", "faster"),
        ("minus", "speed(-0.1)", "slower"),
        ("g", "start", "start"),
        ("x", "stop", "stop"),
        ("q", "quit", "quit"),
    ]

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.sync = SyncProvider(url, REGISTRY)
        self.selected = 0
        self.watching: list[Any] = []
        self.connected = False
        self.joint1: dict[int, deque[float]] = {}  # the last 30 samples (3 s) per robot

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="status")
        yield Vertical(id="robots")
        yield Static("", id="msg")
        yield Footer()

    async def on_mount(self) -> None:
        try:
            await self.sync.__aenter__()
        except ConnectFailed as exc:  # say why, and leave
            self.exit(return_code=1, message=f"robot_dashboard: {exc}")
            return
        self.connected = True
        self.statuses = self.sync.components(RobotStatus)
        self.poses = self.sync.components(Pose)
        self.names = self.sync.components(Name)
        self.controls = self.sync.components(EntityControl)
        self.joints = self.sync.components(Joints)
        self.joints.subscribe(lambda _: None)  # sampled ten times a second, below
        self.set_interval(0.1, self.sample)
        self.watching = [
            signal.subscribe(lambda _: self.redraw())
            for signal in (
                self.statuses,
                self.poses,
                self.names,
                self.controls,
                self.sync.connection,
                self.sync.stale,
            )
        ]

    async def on_unmount(self) -> None:
        for subscription in self.watching:
            subscription.dispose()
        if self.connected:
            await self.sync.close()

    def sample(self) -> None:
        for entity, joints in self.joints.get().items():
            series = self.joint1.setdefault(entity, deque(maxlen=30))
            series.append(joints.angles[0])
        self.redraw()

    def robots(self) -> list[int]:
        return sorted(self.statuses.get())

    def redraw(self) -> None:
        conn = self.sync.connection.get()
        is_stale = self.sync.stale.get()
        stale = " (stale)" if is_stale else ""
        age = self.sync.age()
        old = "" if age is None else f"  data {age:.1f} s old"
        self.query_one("#status", Static).update(
            f"{self.url}  connection: {conn.state.value}{stale}{old}  "
            f"you are #{self.sync.connection_id}"
        )
        box = self.query_one("#robots", Vertical)
        robots = self.robots()
        panels = {int(w.id[6:]): w for w in box.query(".robot").results(Static) if w.id}
        for entity in robots:
            if entity not in panels:
                panels[entity] = Static("", id=f"robot-{entity}", classes="robot")
                box.mount(panels[entity])
        for entity, panel in panels.items():
            if entity not in robots:
                panel.remove()
                continue
            status = self.statuses.get().get(entity)
            pose = self.poses.get().get(entity)
            name = self.names.get().get(entity)
            control = self.controls.get().get(entity)
            holder = control.holder if control else None
            who = (
                "free"
                if holder is None
                else ("you" if holder == self.sync.connection_id else f"#{holder}")
            )
            where = f"x={pose.x:.0f} y={pose.y:.0f} θ={pose.theta:.2f}" if pose else "?"
            state = f"{status.state} speed {status.speed:.1f}" if status else "?"
            trend = sparkline(self.joint1.get(entity, ()), width=30)
            panel.update(
                f"{name.text if name else entity}: {state}  at {where}  control: {who}\n"
                f"joint 1 {trend}"
            )
            panel.set_class(robots.index(entity) == self.selected, "selected")
            panel.set_class(is_stale, "stale")  # what it shows may no longer be true

    def current(self) -> int | None:
        robots = self.robots()
        if not robots:
            return None
        self.selected %= len(robots)
        return robots[self.selected]

    def say(self, text: str) -> None:
        self.query_one("#msg", Static).update(text)

    def run_command(self, label: str, command: Awaitable[Any]) -> None:
        async def go() -> None:
            try:
                result = await command
                self.say(f"{label}: ok" + (f" ({result})" if result is not None else ""))
            except (CommandRejected, ConnectionLost) as exc:
                self.say(f"{label}: {exc}")

        self.run_worker(go(), exclusive=False)

    def action_select(self, step: int) -> None:
        self.selected += step
        self.current()
        self.redraw()

    def action_take(self) -> None:
        if (robot := self.current()) is not None:
            self.run_command("take", self.sync.take_control(robot))

    def action_release(self) -> None:
        if (robot := self.current()) is not None:
            self.run_command("release", self.sync.release_control(robot))

    def action_jog(self, dx: float, dy: float) -> None:
        if (robot := self.current()) is not None:
            self.run_command("jog", self.sync.request(Jog(dx=dx, dy=dy), entity=robot))

    def action_speed(self, delta: float) -> None:
        robot = self.current()
        status = self.statuses.get().get(robot) if robot is not None else None
        if robot is not None and status is not None:
            speed = round(min(1.0, max(0.0, status.speed + delta)), 2)
            self.run_command("speed", self.sync.request(SetSpeed(speed=speed), entity=robot))

    def action_start(self) -> None:
        if (robot := self.current()) is not None:
            self.run_command("start", self.sync.request(Start(), entity=robot))

    def action_stop(self) -> None:
        if (robot := self.current()) is not None:
            self.run_command("stop", self.sync.request(Stop(), entity=robot))


if __name__ == "__main__":
    app = RobotDashboard(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/")
    app.run()
    sys.exit(app.return_code or 0)
