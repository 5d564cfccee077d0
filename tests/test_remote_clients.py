"""The SyncServer hooks a scale-out authority uses for its gateways' clients, without NATS:
commands answered through a sink, with the client's identity; broadcasts; leaving."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from pydantic import BaseModel

from pl3xus_rx import EntityControl, Identity, SyncServer
from pl3xus_rx.protocol import FrameKind

pytestmark = pytest.mark.asyncio

REMOTE = (7 << 32) + 1


class Speed(BaseModel):
    value: float


async def test_a_gateway_client_is_answered_through_its_sink() -> None:
    server = SyncServer()
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    robot = server.world.spawn(Speed(value=1))
    got: list[Any] = []

    def sink(connection: int, data: bytes) -> None:
        got.append((connection, msgpack.unpackb(data, strict_map_key=False)))

    everyone: list[Any] = []
    server.on_broadcast(lambda data: everyone.append(msgpack.unpackb(data)))
    async with server.serve("127.0.0.1", 0):
        server.remote_joined(REMOTE, Identity.of("ann", "operator"), sink)
        assert server.identity_of(REMOTE).name == "ann"
        server.remote_frame(REMOTE, [FrameKind.CONTROL, 1, "take", robot])
        server.remote_frame(REMOTE, [FrameKind.MUTATE, 2, "Speed", robot, {"value": 4}])
        for _ in range(100):
            if len(got) >= 2:
                break
            await __import__("asyncio").sleep(0.01)
        replies = {frame[1]: frame[2] for _, frame in got if frame[0] == FrameKind.REPLY}
        assert replies == {1: "ok", 2: "ok"}
        assert server.world.get(robot, Speed) == Speed(value=4)
        control = server.world.get(robot, EntityControl)
        assert control == EntityControl(holder=REMOTE, by="ann")
        # not a command: an ERROR frame, nothing else
        server.remote_frame(REMOTE, [FrameKind.SUBSCRIBE, 1, "Speed", None, {}])
        assert got[-1][1][0] == FrameKind.ERROR
        # a broadcast (a notification to all) goes to the broadcast sink once
        server.notify("shift change")
        assert everyone and everyone[-1][2]["text"] == "shift change"
        # leaving releases control
        server.remote_left(REMOTE)
        assert server.remote_connections() == []
        assert server.world.get(robot, EntityControl).holder is None  # type: ignore[union-attr]
        server.remote_frame(REMOTE, [FrameKind.CONTROL, 3, "take", robot])  # unknown: dropped
        assert server.world.get(robot, EntityControl).holder is None  # type: ignore[union-attr]
