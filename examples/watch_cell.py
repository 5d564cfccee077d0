"""Watch the demo cell from a terminal; optionally take control of a robot and jog it.

    pl3xus-rx demo                                  # in one terminal
    python examples/watch_cell.py ws://127.0.0.1:8080/ --seconds 5 --jog

Prints each robot's state, speed and pose, and how many sensors are live, once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from client_sync import ClientTypeRegistry, SyncProvider
from pl3xus_rx import CommandRejected, ConnectFailed
from pl3xus_rx.demo import Jog, JogResult, Name, Pose, RobotStatus, Sensor


async def main(url: str, seconds: float, jog: bool) -> None:
    registry = (
        ClientTypeRegistry.builder()
        .register(Name)
        .register(Pose)
        .register(RobotStatus)
        .register(Sensor)
        .register_request(Jog, JogResult)
        .build()
    )
    async with SyncProvider(url, registry) as sync:
        names, poses = sync.components(Name), sync.components(Pose)
        statuses, sensors = sync.components(RobotStatus), sync.components(Sensor)
        for signal in (names, poses, statuses, sensors):
            signal.subscribe(lambda _: None)  # keep the subscriptions live
        sync.connection.subscribe(lambda s: print(f"[connection: {s.state.value}]"))
        await asyncio.sleep(0.5)
        if jog and statuses.get():
            robot = sorted(statuses.get())[0]
            try:
                await sync.take_control(robot)
                print("jogged to", await sync.request(Jog(dx=25, dy=0), entity=robot))
            except CommandRejected as exc:
                print("could not jog:", exc)
        for _ in range(max(1, int(seconds))):
            for robot, status in sorted(statuses.get().items()):
                pose = poses.get().get(robot)
                name = names.get().get(robot)
                label = name.text if name else f"entity {robot}"
                where = f"({pose.x:.0f}, {pose.y:.0f}) θ={pose.theta:.2f}" if pose else "?"
                print(f"{label:10} {status.state:8} speed {status.speed:.2f} at {where}")
            print(f"{len(sensors.get())} sensors live; stale={sync.stale.get()}")
            await asyncio.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8080/")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--jog", action="store_true", help="take control of robot 1 and jog it")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.url, args.seconds, args.jog))
    except KeyboardInterrupt:
        sys.exit(130)
    except ConnectFailed as exc:
        sys.exit(f"watch_cell: {exc}")
