"""Drain: a server moves its clients away without losing their work. New handshakes are
refused, commands in flight are answered, every client is closed with 4004 and reconnects
at once to its next URL; an authenticated party's control survives the move (kept for
``control_move_grace``, held again by its next connection; the command layer's part is
in test_control_moves)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack
import pytest
from conftest import UNIT, http_get, wait_until
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, ConnectionState, ReconnectPolicy, SyncProvider
from pl3xus_rx import (
    ConnectFailed,
    EntityControl,
    Identity,
    Network,
    SyncServer,
    SyncSettings,
    bearer_tokens,
)
from pl3xus_rx.protocol import CloseCode, FrameKind

ANN = Identity.of("ann", "operator")
BOB = Identity.of("bob", "operator")


class Speed(BaseModel):
    value: float


class Wait(BaseModel):
    seconds: float


class Done(BaseModel):
    ok: bool


# ---------------------------------------------------------------------- a gateway's clients


@pytest.mark.asyncio
async def test_a_gateway_client_that_moves_keeps_control_through_remote_left_and_joined() -> None:
    server = SyncServer(sync=SyncSettings(control_move_grace=0.3))
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    robot = server.world.spawn(Speed(value=1))
    other = server.world.spawn(Speed(value=1))
    got: list[Any] = []

    def sink(connection: int, data: bytes) -> None:
        got.append((connection, msgpack.unpackb(data, strict_map_key=False)))

    def replies(connection: int) -> dict[int, list[Any]]:
        return {f[1]: f for c, f in got if c == connection and f[0] == FrameKind.REPLY}

    a, b, c = (7 << 32) + 1, (8 << 32) + 1, (7 << 32) + 2
    async with server.serve("127.0.0.1", 0):
        server.remote_joined(a, ANN, sink)
        server.remote_frame(a, [FrameKind.CONTROL, 1, "take", robot])
        server.remote_frame(a, [FrameKind.CONTROL, 2, "take", other])
        await wait_until(lambda: len(replies(a)) == 2)
        server.remote_left(a, moving=True)
        server.remote_joined(b, BOB, sink)
        server.remote_frame(b, [FrameKind.CONTROL, 1, "take", robot])
        await wait_until(lambda: 1 in replies(b))
        assert replies(b)[1][2] == "forbidden" and "reconnecting" in replies(b)[1][3]
        server.remote_joined(c, ANN, sink)  # ann is back, through another gateway
        assert server.world.get(robot, EntityControl) == EntityControl(holder=c, by="ann")
        server.remote_frame(c, [FrameKind.MUTATE, 1, "Speed", robot, {"value": 3}])
        await wait_until(lambda: 1 in replies(c))
        assert replies(c)[1][2] == "ok"
        # leaving for a move with nobody back: released after the grace (a timer)
        server.remote_left(c, moving=True)
        assert server.world.get(other, EntityControl) == EntityControl(holder=c, by="ann")
        await wait_until(
            lambda: server.world.get(other, EntityControl) == EntityControl(), 5 * UNIT
        )
        assert server.world.get(robot, EntityControl) == EntityControl()


@pytest.mark.asyncio
async def test_a_gateway_counts_forwarded_commands_until_their_reply() -> None:
    server = SyncServer()
    forwarded: list[tuple[int, list[Any]]] = []
    server.forward_commands(lambda conn, frame: forwarded.append((int(conn), frame)))
    async with server.serve("127.0.0.1", 0) as (_, port):
        client = Network()
        cid = await client.connect(f"ws://127.0.0.1:{port}/")
        client.send_frame(cid, [FrameKind.MUTATE, 5, "Speed", 1, {"value": 1}])
        client.send_frame(cid, [FrameKind.SEND, "Hello", None, {}])  # (one-way: no reply)
        client.send_frame(cid, [FrameKind.QUERY, 6, "Q", {}])
        await wait_until(lambda: len(forwarded) == 3)
        assert server.in_flight() == 2
        (conn, _), *_ = forwarded
        drained = asyncio.ensure_future(server.drain(10 * UNIT))
        await asyncio.sleep(0.05)
        assert not drained.done()
        server.deliver(conn, [FrameKind.REPLY, 5, "ok", "", {}])
        assert server.in_flight() == 1
        server.deliver(conn, [FrameKind.REPLY, 6, "ok", "", {"value": None}])
        assert server.in_flight() == 0
        await asyncio.wait_for(drained, 5 * UNIT)
        await client.close()


# ---------------------------------------------------------------------- drain, end to end

REGISTRY = ClientTypeRegistry.builder().register(Speed).register_request(Wait, Done).build()
TOKENS = {"ann-token": ANN}


def make_server(calls: list[float], started: asyncio.Event) -> SyncServer:
    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    server.sync_component_builder(Speed).with_default_entity_policy().build()

    async def wait(world: Any, ctx: Any, request: Wait) -> Done:
        calls.append(request.seconds)
        started.set()
        await asyncio.sleep(request.seconds)
        return Done(ok=True)

    server.request(Wait).register(wait)
    return server


@pytest.mark.asyncio
async def test_drain_answers_what_is_in_flight_and_moves_the_client_to_its_next_url(
    monkeypatch: pytest.MonkeyPatch, loop_errors: list[Any]
) -> None:
    calls_a: list[float] = []
    calls_b: list[float] = []
    started = asyncio.Event()
    a, b = make_server(calls_a, started), make_server(calls_b, asyncio.Event())
    a.world.spawn(Speed(value=1))
    b.world.spawn(Speed(value=2))
    replies: list[int] = []
    original = SyncProvider._on_frame

    def counting(self: SyncProvider, connection: Any, binary: bool, frame: list[Any]) -> None:
        if frame[0] == FrameKind.REPLY:
            replies.append(frame[1])
        original(self, connection, binary, frame)

    monkeypatch.setattr(SyncProvider, "_on_frame", counting)
    async with a.serve("127.0.0.1", 0) as (_, port_a), b.serve("127.0.0.1", 0) as (_, port_b):
        urls = [f"ws://127.0.0.1:{port_a}/", f"ws://127.0.0.1:{port_b}/"]
        slow = ReconnectPolicy(initial_delay=30.0, jitter=0.0)  # (a backoff would show)
        async with SyncProvider(urls, REGISTRY, token="ann-token", reconnect=slow) as sync:
            speeds = sync.components(Speed)
            speeds.subscribe(lambda _: None)
            await sync.wait_synced(5 * UNIT)
            assert [s.value for s in speeds.get().values()] == [1]
            first = sync.connection_id
            states: list[ConnectionState] = []
            sync.connection.subscribe(lambda s: states.append(s.state))
            asked = asyncio.ensure_future(sync.request(Wait(seconds=0.3)))
            await asyncio.wait_for(started.wait(), 5 * UNIT)
            assert a.in_flight() == 1
            draining = asyncio.ensure_future(a.drain(10 * UNIT, reason="restarting"))
            await asyncio.sleep(0.05)
            # draining: /healthz says so, and nobody new gets in
            status, _, body = await http_get(port_a, "/healthz")
            assert status == 503 and json.loads(body)["status"] == "draining"
            with pytest.raises(ConnectFailed, match=r"503.*draining \(restarting\)"):
                await Network().connect(urls[0])
            assert not asked.done()
            assert await asyncio.wait_for(asked, 5 * UNIT) == Done(ok=True)
            await asyncio.wait_for(draining, 5 * UNIT)
            await wait_until(lambda: sync.url == urls[1])  # (told to move: at once)
            await sync.wait_synced(5 * UNIT)
            assert [s.value for s in speeds.get().values()] == [2]  # B's world now
            assert sync.url == urls[1] and b.net.connections and first is not None
            assert ConnectionState.RECONNECTING in states
            assert replies.count(replies[-1]) == 1 and len(replies) == 1  # exactly one answer
            assert calls_a == [0.3] and calls_b == []
            assert a.net.connections == [] and a.net.statistics().refused >= 1
            await a.drain(1.0)  # (again: done already)
    assert a.net.state.value == "closed"  # leaving serve() after a drain closes as ever


@pytest.mark.asyncio
async def test_drain_closes_with_4004_and_keeps_an_authenticated_clients_control() -> None:
    server = SyncServer(authenticate=bearer_tokens(TOKENS))
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    robot = server.world.spawn(Speed(value=1))
    async with server.serve("127.0.0.1", 0) as (_, port):
        client = Network()
        events: list[Any] = []
        client.events.subscribe(events.append)
        cid = await client.connect(
            f"ws://127.0.0.1:{port}/", headers={"Authorization": "Bearer ann-token"}
        )
        client.send_frame(cid, [FrameKind.CONTROL, 1, "take", robot])
        await wait_until(lambda: server.commands.holder(robot) is not None)
        await asyncio.wait_for(server.drain(1.0, reason="moving you"), 5 * UNIT)
        await wait_until(lambda: any(getattr(e, "code", None) for e in events))
        (closed,) = [e for e in events if getattr(e, "code", None)]
        assert closed.code == CloseCode.MOVED and "moving you" in closed.reason
        assert server.world.get(robot, EntityControl) == EntityControl(holder=int(cid), by="ann")
        assert server.commands.control.orphaned("ann")
        await client.close()


@pytest.mark.asyncio
async def test_a_command_that_comes_while_the_connections_close_is_not_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = SyncServer()
    server.sync_component_builder(Speed).with_default_entity_policy().build()
    robot = server.world.spawn(Speed(value=1))
    sent: list[Any] = []
    async with server.serve("127.0.0.1", 0):
        monkeypatch.setattr(server._to, "send_frame", lambda c, f: sent.append(f))
        server._moving_out = True
        server._on_frame(1, True, [FrameKind.MUTATE, 4, "Speed", robot, {"value": 9}])  # type: ignore[arg-type]
        server._on_frame(1, True, [FrameKind.SEND, "Hello", None, {}])  # type: ignore[arg-type]
        server._moving_out = False
    assert server.world.get(robot, Speed) == Speed(value=1)
    assert [f[:3] for f in sent] == [[FrameKind.REPLY, 4, "internal_error"]]
    assert "draining" in sent[0][3]


@pytest.mark.asyncio
async def test_a_provider_with_one_url_comes_back_at_once_after_4004() -> None:
    server = SyncServer()
    server.sync_component(Speed)
    async with server.serve("127.0.0.1", 0) as (_, port):
        url = f"ws://127.0.0.1:{port}/"
        async with SyncProvider(
            url, REGISTRY, reconnect=ReconnectPolicy(initial_delay=30.0, jitter=0.0)
        ) as sync:
            first = sync.connection_id
            conn = server.net.connections[0]
            await server.net.disconnect(conn, code=CloseCode.MOVED, reason="moving")
            await wait_until(lambda: sync.connection_id not in (None, first), 5 * UNIT)
