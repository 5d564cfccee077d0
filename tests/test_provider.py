"""SyncProvider against a real SyncServer on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from conftest import wait_until
from pydantic import BaseModel, field_validator

from client_sync import (
    Change,
    ClientTypeRegistry,
    ConnectionState,
    ReconnectPolicy,
    ReplicaChangeKind,
    SyncProvider,
)
from pl3xus_rx import ConnectFailed, NotRegistered, SchemaMismatch, SyncServer, SyncSettings

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]

FAST = ReconnectPolicy(initial_delay=0.02, max_delay=0.2)


class Position(BaseModel):
    x: float
    y: float


class Status(BaseModel):
    text: str


REGISTRY = ClientTypeRegistry.builder().register(Position).register(Status).build()


def make_server(max_snapshot_items: int = 20_000) -> SyncServer:
    srv = SyncServer(
        sync=SyncSettings(max_update_rate_hz=200, max_snapshot_items=max_snapshot_items)
    )
    srv.sync_component(Position)
    srv.sync_component(Status)
    return srv


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[SyncServer, str]]:
    srv = make_server()
    async with srv.serve("127.0.0.1", 0) as (host, port):
        yield srv, f"ws://{host}:{port}/"


async def until(cond: Callable[[], Any], what: str = "") -> None:
    await wait_until(cond, 5, what)


async def test_components_snapshot_then_updates(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    a = srv.world.spawn(Position(x=1, y=1))
    async with SyncProvider(url, REGISTRY) as sync:
        assert sync.connection.get().state is ConnectionState.OPEN and not sync.stale.get()
        positions = sync.components(Position)
        emissions: list[Any] = []
        positions.subscribe(emissions.append)
        await until(lambda: positions.get() == {a: Position(x=1, y=1)}, "snapshot")
        b = srv.world.spawn(Position(x=2, y=2))
        srv.world.insert(a, Position(x=5, y=5))
        await until(lambda: positions.get() == {a: Position(x=5, y=5), b: Position(x=2, y=2)})
        srv.world.despawn(a)
        await until(lambda: a not in positions.get())
        assert len(emissions) <= 4  # initial, snapshot, at most one per batch after
        with pytest.raises(TypeError):
            positions.get()[b] = Position(x=0, y=0)  # type: ignore[index]


async def test_entity_component_and_where(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    a = srv.world.spawn(Position(x=1, y=0), Status(text="idle"))
    b = srv.world.spawn(Position(x=-1, y=0))
    async with SyncProvider(url, REGISTRY) as sync:
        one = sync.entity_component(Status, a)
        seen: list[Any] = []
        one.subscribe(seen.append)
        right = sync.components_where(Position, lambda p: p.x > 0)
        right_seen: list[Any] = []
        right.subscribe(right_seen.append)
        await until(lambda: one.get() == Status(text="idle"))
        await until(lambda: set(right.get()) == {a})
        srv.world.insert(b, Position(x=3, y=0))
        srv.world.remove(a, Status)
        await until(lambda: set(right.get()) == {a, b} and one.get() is None)
        assert seen[0] is None and seen[-1] is None and Status(text="idle") in seen


async def test_component_changes_are_typed(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    a = srv.world.spawn(Status(text="a"))
    async with SyncProvider(url, REGISTRY) as sync:
        changes: list[Change[Status]] = []
        sync.component_changes(Status).subscribe(changes.append)
        await until(lambda: changes)
        srv.world.insert(a, Status(text="b"))
        await until(lambda: len(changes) == 2)
        srv.world.remove(a, Status)
        await until(lambda: len(changes) == 3)
        b = srv.world.spawn(Status(text="c"))
        await until(lambda: len(changes) == 4)
        srv.world.despawn(b)
        await until(lambda: len(changes) == 5)
    kinds = [c.kind for c in changes]
    assert kinds == [
        ReplicaChangeKind.INSERTED,
        ReplicaChangeKind.UPDATED,
        ReplicaChangeKind.REMOVED,
        ReplicaChangeKind.INSERTED,
        ReplicaChangeKind.DESPAWNED,
    ]
    assert changes[1].value == Status(text="b") and changes[1].entity == a


async def test_server_subscription_is_reference_counted(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    async with SyncProvider(url, REGISTRY) as sync:
        signal = sync.components(Position)
        assert srv.engine.statistics().subscriptions == 0  # nobody observes yet
        first = signal.subscribe(lambda _: None)
        second = sync.component_changes(Position).subscribe(lambda _: None)
        await until(lambda: srv.engine.statistics().subscriptions == 1)
        first.dispose()
        await asyncio.sleep(0.05)
        assert srv.engine.statistics().subscriptions == 1
        second.dispose()  # the last one: unsubscribed on the server
        await until(lambda: srv.engine.statistics().subscriptions == 0)


async def test_unregistered_type_raises_with_the_fix(served: tuple[SyncServer, str]) -> None:
    class Other(BaseModel):
        a: int

    _, url = served
    async with SyncProvider(url, REGISTRY) as sync:
        with pytest.raises(NotRegistered, match=r"\.register\(Other\)"):
            sync.components(Other)


async def test_schema_mismatch_is_reported_by_name(served: tuple[SyncServer, str]) -> None:
    class Status(BaseModel):
        text: str
        level: int

    class Missing(BaseModel):
        q: int

    _, url = served
    registry = ClientTypeRegistry.builder().register(Status).register(Missing).build()
    errors: list[Exception] = []
    sync = SyncProvider(url, registry)
    sync.errors.subscribe(errors.append)
    async with sync:
        await until(lambda: len(errors) >= 2)
    by_name = {e.type_name: e for e in errors if isinstance(e, SchemaMismatch)}
    assert set(by_name) == {"Status", "Missing"}
    # the server's Status has only `text`: the error says which fields differ
    assert by_name["Status"].detail == "only this end has level"
    assert "only this end has level" in str(by_name["Status"])
    assert by_name["Missing"].detail is None  # the server does not sync it at all


async def test_first_connect_failure_raises() -> None:
    with pytest.raises(ConnectFailed):
        async with SyncProvider("ws://127.0.0.1:9/", REGISTRY):
            pass


async def test_sequence_gap_triggers_a_resync(served: tuple[SyncServer, str]) -> None:
    srv, url = served
    a = srv.world.spawn(Position(x=0, y=0))
    async with SyncProvider(url, REGISTRY) as sync:
        positions = sync.components(Position)
        positions.subscribe(lambda _: None)
        await until(lambda: a in positions.get())
        client = next(iter(srv.engine._clients.values()))  # simulate a lost frame
        client.seq += 1
        srv.world.insert(a, Position(x=7, y=7))
        await until(lambda: sync.resyncs == 1)
        await until(lambda: positions.get().get(a) == Position(x=7, y=7))


async def test_server_restart_every_client_converges() -> None:
    srv = make_server()
    host, port = "127.0.0.1", 0
    a = srv.world.spawn(Position(x=1, y=1), Status(text="old"))
    gone = srv.world.spawn(Position(x=9, y=9))
    ctx = srv.serve(host, port)
    host, port = await ctx.__aenter__()
    url = f"ws://{host}:{port}/"
    providers = [SyncProvider(url, REGISTRY, reconnect=FAST) for _ in range(3)]
    signals = []
    for p in providers:
        await p.__aenter__()
        sig = p.components(Position)
        sig.subscribe(lambda _: None)
        signals.append(sig)
    await until(lambda: all(len(s.get()) == 2 for s in signals), "first sync")
    states: list[ConnectionState] = []
    providers[0].connection.subscribe(lambda s: states.append(s.state))

    await ctx.__aexit__(None, None, None)  # the server goes away
    await until(lambda: all(p.stale.get() for p in providers), "stale")
    assert all(len(s.get()) == 2 for s in signals)  # last state kept while stale

    # A new server process would have a new world: different entities and values.
    srv2 = make_server()
    fresh = srv2.world.spawn(Position(x=-1, y=-1))  # entity 1 again, another value
    srv2.world.spawn(Status(text="no position"))  # entity 2 now has no Position
    async with srv2.serve(host, port):
        await until(lambda: all(not p.stale.get() for p in providers), "reconnected")
        expected = dict(srv2.world.query(Position))
        await until(lambda: all(dict(s.get()) == expected for s in signals), "converged")
        assert gone not in signals[0].get()  # what the new snapshot lacks is removed
        assert signals[0].get()[fresh] == Position(x=-1, y=-1) and fresh == a
        assert ConnectionState.RECONNECTING in states and states[-1] is ConnectionState.OPEN
        for p in providers:
            await p.close()


async def test_a_snapshot_in_parts_after_a_restart_reconciles() -> None:
    srv = make_server(max_snapshot_items=7)
    old = [srv.world.spawn(Position(x=i, y=0)) for i in range(40)]
    async with srv.serve("127.0.0.1", 0) as (host, port):
        url = f"ws://{host}:{port}/"
        async with SyncProvider(url, REGISTRY, reconnect=FAST) as sync:
            positions = sync.components(Position)
            positions.subscribe(lambda _: None)
            await sync.wait_synced(timeout=5)  # the first sync, in 6 parts
            assert len(positions.get()) == 40
            srv2 = make_server(max_snapshot_items=7)
            new = [srv2.world.spawn(Position(x=-i, y=1)) for i in range(25)]
            await srv.net.close()  # the server goes away ...
            await until(lambda: sync.stale.get(), "stale")
            seen_when_fresh: list[dict[int, Position]] = []
            sync.stale.subscribe(
                lambda stale: None if stale else seen_when_fresh.append(dict(positions.get()))
            )
            async with srv2.serve(host, port):  # ... and another comes back, smaller
                expected = dict(srv2.world.query(Position))
                await until(lambda: dict(positions.get()) == expected, "converged")
                assert set(positions.get()) == set(new) == set(old[:25])
                await until(lambda: not sync.stale.get(), "fresh")
                # stale until the last part: never "fresh" with a partial view
                assert seen_when_fresh == [expected]


async def test_a_raising_callback_does_not_hurt_the_connection(
    served: tuple[SyncServer, str],
) -> None:
    srv, url = served
    a = srv.world.spawn(Position(x=0, y=0))
    async with SyncProvider(url, REGISTRY) as sync:
        positions = sync.components(Position)
        errors: list[Exception] = []

        def bad(m: Any) -> None:
            if a in m:
                raise RuntimeError("dashboard bug")

        positions.subscribe(on_next=bad, on_error=errors.append)
        good: list[Any] = []
        positions.subscribe(good.append)
        await until(lambda: errors)
        srv.world.insert(a, Position(x=1, y=1))
        await until(lambda: positions.get()[a] == Position(x=1, y=1))
        assert sync.connection.get().state is ConnectionState.OPEN
        assert str(errors[0]) == "dashboard bug" and len(good) >= 2


class PickyPosition(BaseModel):
    """The server's Position with a client-side validator (validators are not in the
    schema, so the hashes agree): some values the server sends are refused here."""

    x: float
    y: float

    @field_validator("x")
    @classmethod
    def not_negative(cls, x: float) -> float:
        if x < 0:
            raise ValueError("x must not be negative here")
        return x


async def test_values_the_client_rejects_are_left_out_without_resync_loops(
    served: tuple[SyncServer, str],
) -> None:
    srv, url = served
    good, bad = srv.world.spawn(Position(x=1, y=1)), srv.world.spawn(Position(x=-1, y=0))
    registry = ClientTypeRegistry.builder().register(PickyPosition, name="Position").build()
    errors: list[Exception] = []
    async with SyncProvider(url, registry) as sync:
        sync.errors.subscribe(errors.append)
        positions = sync.components(PickyPosition)
        positions.subscribe(lambda _: None)
        await until(lambda: good in positions.get() and sync.rejected_values == 1)
        assert bad not in positions.get() and "x must not be negative" in str(errors[0])
        srv.world.insert(bad, Position(x=2, y=0))  # now acceptable: it appears
        await until(lambda: bad in positions.get())
        srv.world.insert(bad, Position(x=-5, y=0))  # refused again: it is left out
        srv.world.insert(good, Position(x=3, y=3))
        await until(lambda: positions.get().get(good) == PickyPosition(x=3, y=3))
        assert bad not in positions.get() and sync.rejected_values == 2
        assert sync.resyncs == 0  # a fresh snapshot would not help: none was asked for


async def test_reconnecting_survives_connections_dropped_right_after_the_handshake(
    served: tuple[SyncServer, str],
) -> None:
    srv, url = served
    a = srv.world.spawn(Position(x=1, y=1))
    async with SyncProvider(url, REGISTRY, reconnect=FAST) as sync:
        positions = sync.components(Position)
        positions.subscribe(lambda _: None)
        await until(lambda: a in positions.get(), "first sync")
        # The race, made certain: the next 3 connections are gone by the time connect()
        # returns (the server dropped them right after the handshake).
        drops = {"left": 3}
        net = sync._net
        real_connect = net.connect

        async def flaky_connect(*args: Any, **kwargs: Any) -> Any:
            cid = await real_connect(*args, **kwargs)
            if drops["left"] > 0:
                drops["left"] -= 1
                await net.disconnect(cid, reason="flaky")
            return cid

        net.connect = flaky_connect  # type: ignore[method-assign]
        await srv.net.disconnect(srv.net.connections[0], reason="chaos")
        srv.world.insert(a, Position(x=2, y=2))
        await until(lambda: drops["left"] == 0, "three dropped attempts")
        await until(lambda: positions.get().get(a) == Position(x=2, y=2), "reconnected")
        await until(lambda: not sync.stale.get(), "fresh")


class NotSynced(BaseModel):
    level: int = 0


async def test_a_type_the_server_does_not_sync_and_a_refused_subscription_never_hang_wait_synced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The signal of a type the server does not sync stays empty (no KeyError, nothing sent);
    a subscription the server refuses is not waited for: wait_synced returns, stale clears,
    and the refusal is on ``errors``."""
    from pl3xus_rx import RemoteError

    server = SyncServer()
    server.sync_component(Position)
    server.world.spawn(Position(x=1, y=2))
    registry = ClientTypeRegistry.builder().register(Position).register(NotSynced).build()
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", registry) as sync,
    ):
        errors: list[Exception] = []
        sync.errors.subscribe(errors.append)
        missing = sync.components(NotSynced)
        missing.subscribe(lambda _: None)
        positions = sync.components(Position, max_rate_hz=0)  # refused by the server
        positions.subscribe(lambda _: None)
        await sync.wait_synced(5)
        assert not sync.stale.get()
        assert dict(missing.get()) == {}
        await wait_until(lambda: errors, what="the refusal")
        assert isinstance(errors[0], RemoteError) and errors[0].field == "max_rate_hz"
        good = sync.components(Position)
        good.subscribe(lambda _: None)
        await sync.wait_synced(5)
        assert list(good.get().values()) == [Position(x=1, y=2)]
    assert "refused subscription" in caplog.text


async def test_an_unreadable_welcome_is_refused_whole_and_the_client_keeps_trying() -> None:
    """A server (a broken or older gateway) whose WELCOME tables this client cannot read:
    the first connect fails with ConnectFailed naming it (not a TypeError), and a client
    that meets one while reconnecting tries again, and recovers when a good one comes."""
    import msgpack
    from websockets.asyncio.server import serve

    from client_sync import ReconnectPolicy
    from pl3xus_rx.protocol import MSGPACK_SUBPROTOCOL, TypeTable, schema_hash, welcome_frame

    good = {"components": [[1, "Position", schema_hash(Position), ["x", "y"]]]}
    bad = {**good, "one_way": 5}
    welcomes = [bad, good, bad, bad, good]
    served: list[dict[str, Any]] = []

    async def handler(ws: Any) -> None:
        body = welcomes.pop(0) if welcomes else good
        served.append(body)
        await ws.send(msgpack.packb(welcome_frame(len(served), TypeTable("message"), body)))
        if body is good and len(served) == 2:
            await asyncio.sleep(0.2)
            return  # the first good link drops: the client reconnects into two bad ones
        await asyncio.wait_for(ws.wait_closed(), 30)

    registry = ClientTypeRegistry.builder().register(Position).build()
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.1)
    async with serve(handler, "127.0.0.1", 0, subprotocols=[MSGPACK_SUBPROTOCOL]) as srv:  # type: ignore[list-item]
        url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
        with pytest.raises(ConnectFailed, match="one_way table"):
            async with SyncProvider(url, registry, reconnect=policy):
                pass
        async with SyncProvider(url, registry, reconnect=policy) as sync:
            await wait_until(lambda: len(served) >= 5, 10, "two bad welcomes, then a good one")
            await wait_until(lambda: sync.connection.get().state.value == "open", 10, "open again")
