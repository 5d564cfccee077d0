"""SyncServer end to end over real sockets, with a plain test client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import pytest_asyncio
from conftest import UNIT
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from client_sync import ClientTypeRegistry, SyncProvider
from client_sync.store import Store
from pl3xus_rx import EntityControl, NetworkSettings, SyncServer, SyncSettings
from pl3xus_rx.protocol import JSON_SUBPROTOCOL, schema_hash

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class Position(BaseModel):
    x: float
    y: float


class Status(BaseModel):
    text: str


class Hidden(BaseModel):
    secret: str


class PlainClient:
    """A client that speaks the protocol by hand and keeps a Store."""

    def __init__(self, ws: ClientConnection, json_mode: bool = False) -> None:
        self.ws = ws
        self.json = json_mode
        self.welcome: dict[str, Any] = {}
        self.store: Store | None = None
        self.frames: list[Any] = []

    async def recv(self) -> Any:
        data = await asyncio.wait_for(self.ws.recv(), 5 * UNIT)
        return json.loads(data) if isinstance(data, str) else msgpack.unpackb(data)

    async def send(self, frame: list[Any]) -> None:
        await self.ws.send(json.dumps(frame) if self.json else msgpack.packb(frame))

    async def start(self) -> None:
        welcome = await self.recv()
        assert welcome[0] == 1
        self.welcome = welcome[1]
        self.store = Store(self.welcome["components"])

    async def subscribe(
        self, sub: int, model: type[BaseModel], entity: int | None = None, **options: Any
    ) -> None:
        assert self.store is not None
        self.store.add_subscription(sub, model.__name__, model, entity)
        await self.send([3, sub, model.__name__, entity, options])

    async def next_sync(self) -> Any:
        frame = await self.recv()
        self.frames.append(frame)
        if frame[0] == 5:
            assert self.store is not None
            self.store.apply(frame)
        return frame


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[SyncServer, str]]:
    srv = SyncServer(
        NetworkSettings(rate_limit_per_second=None), SyncSettings(max_update_rate_hz=100)
    )
    srv.sync_component(Position)
    srv.sync_component(Status)
    async with srv.serve("127.0.0.1", 0) as (host, port):
        yield srv, f"ws://{host}:{port}/"


async def connect(url: str, json_mode: bool = False) -> PlainClient:
    kwargs: dict[str, Any] = {"compression": None}
    if json_mode:
        kwargs["subprotocols"] = [JSON_SUBPROTOCOL]
    ws = await ws_connect(url, **kwargs)
    client = PlainClient(ws, json_mode)
    await client.start()
    return client


async def test_welcome_lists_components_with_ids_and_hashes(
    server: tuple[SyncServer, str],
) -> None:
    _, url = server
    client = await connect(url)
    assert client.welcome["components"] == [
        [0, "EntityControl", schema_hash(EntityControl), ["holder", "by"]],
        [1, "Position", schema_hash(Position), ["x", "y"]],
        [2, "Status", schema_hash(Status), ["text"]],
    ]
    assert client.welcome["requests"] == []
    assert [q[0] for q in client.welcome["queries"]] == [
        "pl3xus.last_message",  # for late joiners of published messages
        "pl3xus.history",  # the past of types that keep it; then DevTools'
        "pl3xus.tree",
        "pl3xus.schemas",
        "pl3xus.connections",
    ]
    await client.ws.close()


async def test_snapshot_then_live_updates(server: tuple[SyncServer, str]) -> None:
    srv, url = server
    world = srv.world
    a = world.spawn(Position(x=1, y=1), Status(text="idle"), Hidden(secret="s"))
    client = await connect(url)
    await client.subscribe(1, Position)
    frame = await client.next_sync()
    assert frame[1] == 1 and frame[2][0][1] == 3  # seq 1, snapshot complete
    assert client.store is not None and client.store.view(1) == {a: Position(x=1, y=1)}
    for i in range(10):  # conflated into at most a few frames
        world.insert(a, Position(x=i, y=i))
    while client.store.view(1)[a] != Position(x=9, y=9):
        await client.next_sync()
    assert len(client.frames) <= 3
    b = world.spawn(Position(x=5, y=5))
    world.remove(a, Position)
    while a in client.store.view(1) or b not in client.store.view(1):
        await client.next_sync()
    seqs = [f[1] for f in client.frames]
    assert seqs == list(range(1, len(seqs) + 1))
    await client.ws.close()


async def test_one_frame_per_connection_per_flush(server: tuple[SyncServer, str]) -> None:
    srv, url = server
    e = srv.world.spawn(Position(x=0, y=0), Status(text="a"))
    client = await connect(url)
    await client.subscribe(1, Position)
    await client.subscribe(2, Status)
    await client.subscribe(3, Position, entity=e)
    assert client.store is not None
    while not all(client.store.complete(s) for s in (1, 2, 3)):
        await client.next_sync()
    srv.world.insert(e, Position(x=1, y=1))
    srv.world.insert(e, Status(text="b"))
    frame = await client.next_sync()
    assert sorted(g[0] for g in frame[2]) == [1, 2, 3]  # three groups, one frame
    await client.ws.close()


async def test_unknown_component_is_refused_by_name(server: tuple[SyncServer, str]) -> None:
    _, url = server
    client = await connect(url)
    await client.send([3, 9, "Hidden", None, {}])
    err = await client.recv()
    assert err[0] == 2 and err[1]["code"] == "unknown_component"
    assert err[1]["subscription"] == 9 and "Position, Status" in err[1]["message"]
    await client.subscribe(1, Status)  # the connection goes on
    assert (await client.next_sync())[0] == 5
    await client.ws.close()


async def test_json_client(server: tuple[SyncServer, str]) -> None:
    srv, url = server
    e = srv.world.spawn(Status(text="hello"))
    client = await connect(url, json_mode=True)
    await client.subscribe(4, Status)
    await client.next_sync()
    assert client.store is not None and client.store.view(4) == {e: Status(text="hello")}
    srv.world.insert(e, Status(text="bye"))
    frame = await client.next_sync()
    assert frame == [5, 2, [[4, 0, [[e, ["bye"]]], [], []]]]
    await client.ws.close()


async def test_disconnect_drops_subscriptions(server: tuple[SyncServer, str]) -> None:
    srv, url = server
    client = await connect(url)
    await client.subscribe(1, Position)
    await client.next_sync()
    assert srv.engine.statistics().subscriptions == 1
    await client.ws.close()
    for _ in range(200):
        if srv.engine.statistics().subscriptions == 0:
            break
        await asyncio.sleep(0.01)
    assert srv.engine.statistics().subscriptions == 0
    srv.world.spawn(Position(x=1, y=1))  # nobody to send to: no error


async def test_flush_rate_is_capped() -> None:
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=20))
    srv.sync_component(Position)
    e = srv.world.spawn(Position(x=0, y=0))
    async with srv.serve("127.0.0.1", 0) as (host, port):
        client = await connect(f"ws://{host}:{port}/")
        await client.subscribe(1, Position)
        await client.next_sync()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(1, 31):  # 30 changes over ~0.3 s
            srv.world.insert(e, Position(x=i, y=0))
            await asyncio.sleep(0.01)
        assert client.store is not None
        while client.store.view(1)[e].x != 30:
            await client.next_sync()
        elapsed = loop.time() - start
        # at most one frame per 50 ms (+1 for the edge)
        assert len(client.frames) - 1 <= elapsed / 0.05 + 2
        assert len(client.frames) - 1 < 30
        await client.ws.close()


async def test_a_slow_type_waiting_does_not_delay_the_others() -> None:
    srv = SyncServer(sync=SyncSettings(max_update_rate_hz=100))
    srv.sync_component(Position)
    srv.sync_component_builder(Status).max_update_rate_hz(0.1).build()  # every 10 s at most
    e = srv.world.spawn(Position(x=0, y=0), Status(text="a"))
    async with srv.serve("127.0.0.1", 0) as (host, port):
        client = await connect(f"ws://{host}:{port}/")
        await client.subscribe(1, Position)
        await client.subscribe(2, Status)
        assert client.store is not None
        while not (client.store.complete(1) and client.store.complete(2)):
            await client.next_sync()
        srv.world.insert(e, Status(text="b"))  # goes out at once, then Status waits 10 s
        while client.store.view(2)[e].text != "b":
            await client.next_sync()
        srv.world.insert(e, Status(text="c"))  # held: a flush is scheduled 10 s from now
        await asyncio.sleep(0.05)
        srv.world.insert(e, Position(x=1, y=1))  # due now, not when Status is
        frame = await client.next_sync()  # (times out after 5 s: well before 10 s)
        assert client.store.view(1)[e] == Position(x=1, y=1)
        assert client.store.view(2)[e].text == "b" and [g[0] for g in frame[2]] == [1]
        await client.ws.close()


async def test_absurd_options_and_ids_are_named_errors_not_server_faults(
    server: tuple[SyncServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    _srv, url = server
    big = "9" * 400
    async with ws_connect(url, subprotocols=[JSON_SUBPROTOCOL]) as ws:  # type: ignore[list-item]
        await asyncio.wait_for(ws.recv(), 5 * UNIT)
        await ws.send(f'[3, 1, "Position", null, {{"deadband": {big}}}]')
        err = json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))
        assert err[1]["code"] == "subscription_error" and err[1]["field"] == "deadband"
        assert len(err[1]["message"]) < 200
    async with ws_connect(url) as ws:
        await asyncio.wait_for(ws.recv(), 5 * UNIT)
        await ws.send(msgpack.packb([3, 2, "Position", None, {1: 2, "x": 3}]))
        err = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT), strict_map_key=False)
        assert (
            err[1]["code"] == "subscription_error" and "unknown subscription" in err[1]["message"]
        )
    assert not [r for r in caplog.records if r.exc_info]  # no traceback from client input


async def test_sync_settings_change_while_serving() -> None:
    from pl3xus_rx import SettingsError

    server = SyncServer()
    server.sync_component(Position)
    e = server.world.spawn(Position(x=0, y=0))
    async with server.serve("127.0.0.1", 0) as (host, port):
        registry = ClientTypeRegistry.builder().register(Position).build()
        async with SyncProvider(f"ws://{host}:{port}/", registry) as sync:
            seen: list[Any] = []
            sync.components(Position).subscribe(seen.append)
            await sync.wait_synced(10)
            new = server.update_settings(max_update_rate_hz=4, control_timeout=60)
            assert new.max_update_rate_hz == 4 and server.engine.settings is new
            assert server.commands.control.timeout == 60
            before = server.engine.statistics().flushes
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < 1.0:  # 1 s of changes at 4 flushes/s
                server.world.insert(e, Position(x=loop.time(), y=0))
                await asyncio.sleep(0.005)
            elapsed = loop.time() - start
            flushes = server.engine.statistics().flushes - before
            # the cap holds (the default would allow 60 a second)
            assert 1 <= flushes <= elapsed * 4 + 2, (flushes, elapsed)
        with pytest.raises(SettingsError, match="max_update_rate_hz"):
            server.update_settings(max_update_rate_hz=0)
        with pytest.raises(SettingsError, match="no_such_setting"):
            server.update_settings(no_such_setting=1)
        assert server.settings.max_update_rate_hz == 4
