"""A greedy client pays for the server time it takes, and what it sent before being cut off
is still answered."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import pytest
from conftest import UNIT, wait_until
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from pl3xus_rx import NetworkSettings, SyncServer
from pl3xus_rx.protocol import ErrorCode, FrameKind, Status

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Speed(BaseModel):
    value: float


class Heavy(BaseModel):
    n: int


class Count(BaseModel):
    n: int


async def read_all(ws: Any, until_closed: bool = True) -> tuple[list[Any], int | None]:
    """Every frame until the server closes (bounded), and the close code."""
    frames: list[Any] = []
    try:
        while True:
            data = await asyncio.wait_for(ws.recv(), 10 * UNIT)
            frames.append(msgpack.unpackb(data, strict_map_key=False))
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd is not None else None


async def test_costly_frames_are_charged_by_the_time_they_take() -> None:
    """Each query keeps the server busy for many frame times: the connection is not read
    again until it has paid for them (TCP pushes back on the sender), so a greedy client is
    slowed to its share, and every query still gets exactly one answer: none is dropped
    because its turn came right after a costly one."""
    settings = NetworkSettings(
        rate_limit_per_second=1000, rate_limit_burst=100, rate_limit_frame_time=0.000005
    )
    server = SyncServer(settings)
    world_size = 3000
    busy = 0.0

    def heavy(world: Any, query: Heavy) -> Count:
        nonlocal busy
        started = time.perf_counter()
        n = sum(1 for _ in world.entities()) + query.n
        busy += time.perf_counter() - started
        return Count(n=n)

    server.query(Heavy).register(heavy)
    for i in range(world_size):
        server.world.spawn(Speed(value=i))
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        ws_connect(f"ws://{host}:{port}/", compression=None) as ws,
    ):
        await ws.recv()  # welcome
        sent = 100
        started = time.monotonic()
        for i in range(sent):
            await ws.send(msgpack.packb([FrameKind.QUERY, i, "Heavy", {"n": 0}]))
        answered: set[int] = set()
        while len(answered) < sent:
            frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30 * UNIT))
            assert frame[0] == FrameKind.REPLY, frame  # (no rate_limited ERROR)
            assert frame[2] == Status.OK and frame[4]["value"]["n"] == world_size
            assert frame[1] not in answered
            answered.add(frame[1])
        elapsed = time.monotonic() - started
        # the queries cost busy / frame_time frames beyond the burst, paid at 1000 a second
        owed = (busy / 0.000005 - 100 - sent) / 1000
        assert owed > 0.5, f"the handler was too quick to test the charge ({busy:.4f} s)"
        assert elapsed >= 0.8 * owed, (elapsed, owed)


async def test_commands_accepted_before_a_rate_limit_close_are_answered() -> None:
    settings = NetworkSettings(
        rate_limit_per_second=20,
        rate_limit_burst=30,
        rate_limit_max_violations=10,
        rate_limit_frame_time=None,
    )
    server = SyncServer(settings)

    def any_client(world: Any, ctx: Any, entity: Any) -> Any:
        from pl3xus_rx import Authorized

        return Authorized()

    server.sync_component_builder(Speed).with_entity_policy(any_client).build()
    robot = server.world.spawn(Speed(value=0))
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        ws_connect(f"ws://{host}:{port}/", compression=None) as ws,
    ):
        await ws.recv()  # welcome
        sent = 200
        for i in range(sent):
            frame = [FrameKind.MUTATE, i, "Speed", robot, {"value": float(i)}]
            try:
                await ws.send(msgpack.packb(frame))
            except ConnectionClosed:
                break
        frames, code = await read_all(ws)
    assert code == 1008
    replies = [f for f in frames if f[0] == FrameKind.REPLY]
    refused = [f for f in frames if f[0] == FrameKind.ERROR]
    assert all(f[1]["code"] == ErrorCode.RATE_LIMITED for f in refused)
    assert len({r[1] for r in replies}) == len(replies) >= 30  # the burst, each answered once
    assert all(r[2] == Status.OK for r in replies)
    # the last accepted value is the world's: nothing accepted was lost or left unanswered
    last = max(r[1] for r in replies)
    await wait_until(lambda: server.world.get(robot, Speed) is not None)
    assert server.world.get(robot, Speed) == Speed(value=float(last))
