"""Protocol v2 (issue 26): SYNC frames say how old their data is, idle connections get
BEACONs, and a client that acknowledges and falls behind gets the latest values instead of
a backlog. Sans-I/O engine tests first, then real sockets and a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import msgpack
import pytest
from conftest import UNIT, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from websockets.asyncio.client import connect as ws_connect

from client_sync import ClientTypeRegistry, SyncProvider
from client_sync.store import Store
from pl3xus_rx import SyncServer, SyncSettings, World
from pl3xus_rx.exceptions import FrameError
from pl3xus_rx.protocol import (
    JSON_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL,
    MSGPACK_SUBPROTOCOL_V2,
    FrameKind,
)
from pl3xus_rx.sync import ComponentRegistry, SyncEngine


class Clock(BaseModel):
    t: float = 0.0


def engine(**overrides: Any) -> tuple[World, SyncEngine]:
    world = World()
    registry = ComponentRegistry()
    registry.add(Clock)
    settings = SyncSettings(max_update_rate_hz=1000.0, **overrides)
    return world, SyncEngine(world, registry, settings)


def frames_of(sent: list[tuple[int, bytes | str]]) -> list[list[Any]]:
    return [msgpack.unpackb(data) for _, data in sent]


# ---------------------------------------------------------------------- sans-I/O


def test_a_v2_sync_says_how_old_its_data_is_and_v1_is_unchanged() -> None:
    world, eng = engine()
    entity = world.spawn(Clock(t=1.0))
    eng.add_client(1, version=2)
    eng.add_client(2, version=1)
    for connection in (1, 2):
        eng.handle_frame(connection, True, [FrameKind.SUBSCRIBE, 7, "Clock", None, {}])
    sent: list[tuple[int, bytes | str]] = []
    eng.flush_into(1.0, lambda c, d: sent.append((c, d)), (1700000000.5, 0.25))
    by = dict(zip([c for c, _ in sent], frames_of(sent), strict=True))
    assert by[1][:2] == [5, 1] and by[1][3:] == [1700000000.5, 0.25]
    assert len(by[2]) == 3 and by[2][2] == by[1][2]  # the same groups, v1's shape
    assert by[1][2][0][2] == [[int(entity), [1.0]]]


def test_beacons_go_to_idle_v2_connections_only() -> None:
    world, eng = engine(as_of_interval=0.25)
    world.spawn(Clock())
    eng.add_client(1, version=2)
    eng.add_client(2, version=1)
    for connection in (1, 2):
        eng.handle_frame(connection, True, [FrameKind.SUBSCRIBE, 1, "Clock", None, {}])
    eng.flush_into(10.0, lambda c, d: None, (500.0, 0.0))
    assert eng.beacons(10.1, (500.1, 0.0)) == []  # it was sent a SYNC just now
    beacons = eng.beacons(10.3, (500.3, 0.01))
    assert [c for c, _ in beacons] == [1]
    assert msgpack.unpackb(beacons[0][1]) == [18, 1, 500.3, 0.01]
    assert eng.beacons(10.4, (500.4, 0.0)) == []  # one per interval


def test_acks_are_checked() -> None:
    world, eng = engine()
    world.spawn(Clock())
    eng.add_client(1, version=2)
    eng.add_client(2, version=1)
    eng.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Clock", None, {}])
    eng.flush_into(1.0, lambda c, d: None)
    with pytest.raises(FrameError, match="only 1 were sent"):
        eng.handle_frame(1, True, [FrameKind.ACK, 2])
    eng.handle_frame(1, True, [FrameKind.ACK, 1])
    with pytest.raises(FrameError, match="went backwards"):
        eng.handle_frame(1, True, [FrameKind.ACK, 0])
    with pytest.raises(FrameError, match="protocol v2"):
        eng.handle_frame(2, True, [FrameKind.ACK, 0])
    with pytest.raises(FrameError, match=r"\[19, seq"):
        eng.handle_frame(1, True, [FrameKind.ACK, "1"])


def test_a_connection_behind_its_window_gets_one_catch_up_frame_with_the_latest() -> None:
    world, eng = engine(ack_window_seconds=0.5, ack_window_frames=1000)
    entity = world.spawn(Clock(t=0.0))
    gone = world.spawn(Clock(t=-1.0))
    eng.add_client(1, version=2)
    eng.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Clock", None, {}])
    sent: list[tuple[int, bytes | str]] = []
    eng.flush_into(0.0, lambda c, d: sent.append((c, d)))
    eng.handle_frame(1, True, [FrameKind.ACK, 1])  # from now on the window applies
    now = 0.0
    for step in range(1, 40):  # 10 ms apart; nothing acknowledged
        now = step * 0.01
        world.insert(entity, Clock(t=float(step)))
        if step == 30:
            world.despawn(gone)
        eng.flush_into(now, lambda c, d: sent.append((c, d)))
    frames = frames_of(sent)
    # 0.39 s of frames in flight: within the window, every flush went out
    assert len(frames) == 40 and [f[1] for f in frames] == list(range(1, len(frames) + 1))
    sent.clear()
    later = now + 1.0  # the client went quiet: everything in flight is old now
    world.insert(entity, Clock(t=100.0))
    eng.flush_into(later, lambda c, d: sent.append((c, d)))
    assert sent == []  # behind: nothing sent, the change merged
    world.insert(entity, Clock(t=101.0))
    eng.flush_into(later + 0.1, lambda c, d: sent.append((c, d)))
    assert sent == [] and eng.next_flush_delay(later + 0.1) is None  # (no busy flushing)
    stats = eng.statistics()
    assert (stats.behind, stats.acknowledging, stats.merged) == (1, 1, 2)
    assert eng.window_lag(later + 0.1) > 1.0
    last = frames[-1][1]
    eng.handle_frame(1, True, [FrameKind.ACK, last])
    eng.flush_into(later + 0.2, lambda c, d: sent.append((c, d)))
    (catch_up,) = frames_of(sent)
    assert (eng.statistics().behind, eng.statistics().catch_ups) == (0, 1)
    assert catch_up[1] == last + 1  # gapless
    assert catch_up[2][0][2] == [[int(entity), [101.0]]]  # only the latest


def test_a_byte_window_stops_a_client_that_never_acknowledges_again() -> None:
    world, eng = engine(ack_window_bytes=4096, ack_window_frames=1000)
    entity = world.spawn(Clock())
    eng.add_client(1, version=2)
    eng.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Clock", None, {}])
    eng.flush_into(0.0, lambda c, d: None)
    eng.handle_frame(1, True, [FrameKind.ACK, 1])
    sent: list[tuple[int, bytes | str]] = []
    for step in range(1, 2000):
        world.insert(entity, Clock(t=float(step)))
        eng.flush_into(step * 1e-4, lambda c, d: sent.append((c, d)))
    held = sum(len(d) for _, d in sent)
    assert 4096 <= held < 4096 + 200  # stopped right past the window
    assert eng.overdue(100.0) == [1] and eng.overdue(0.5) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "spawn", "despawn", "flush", "ack", "wait"]),
            st.integers(0, 5),
        ),
        max_size=80,
    )
)
def test_a_client_that_acknowledges_when_it_likes_converges_without_gaps(
    steps: list[tuple[str, int]],
) -> None:
    """Random changes, flushes, acknowledgements and pauses: the client's replica (the real
    client Store) never sees a gap, and after it acknowledges everything it holds exactly
    the World's state."""
    world, eng = engine(ack_window_seconds=0.05, ack_window_bytes=2048)
    entities = [world.spawn(Clock(t=float(i))) for i in range(3)]
    eng.add_client(1, version=2)
    eng.handle_frame(1, True, [FrameKind.SUBSCRIBE, 1, "Clock", None, {}])
    store = Store([[0, "Clock", "h", ["t"]]])
    store.add_subscription(1, "Clock", Clock)
    inbox: list[list[Any]] = []
    now = 0.0

    def flush() -> None:
        nonlocal now
        now += 0.01
        eng.flush_into(now, lambda c, d: inbox.append(msgpack.unpackb(d)))

    def read_and_ack() -> None:
        while inbox:
            store.apply(inbox.pop(0))  # raises on a gap
        eng.handle_frame(1, True, [FrameKind.ACK, store.seq])

    flush()
    read_and_ack()
    for action, n in steps:
        live = [e for e in entities if world.contains(e)]
        if action == "set" and live:
            world.insert(live[n % len(live)], Clock(t=float(n) + now))
        elif action == "spawn":
            entities.append(world.spawn(Clock(t=float(n))))
        elif action == "despawn" and live:
            world.despawn(live[n % len(live)])
        elif action == "flush":
            flush()
        elif action == "ack":
            read_and_ack()
        else:
            now += 0.03 * n  # the client sits on its frames
    for _ in range(3):  # it catches up: acknowledge, flush, until nothing is left
        read_and_ack()
        now += 0.2
        flush()
    read_and_ack()
    assert dict(store.view(1)) == {int(e): world.get(e, Clock) for e in world.peek(Clock)}


# ---------------------------------------------------------------------- real sockets


REGISTRY = ClientTypeRegistry.builder().register(Clock).build()


@pytest.mark.asyncio
async def test_a_provider_knows_how_old_its_data_is_and_beacons_keep_it_fresh() -> None:
    server = SyncServer(sync=SyncSettings(as_of_interval=0.2))
    server.sync_component(Clock)
    server.world.spawn(Clock())
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        clocks = sync.components(Clock)
        clocks.subscribe(lambda _: None)
        await sync.wait_synced(5 * UNIT)
        assert server.net.protocol_version(server.net.connections[0]) == 2
        for _ in range(8):  # idle: no SYNC, only beacons
            await asyncio.sleep(0.1)
            age = sync.age()
            assert age is not None and age < 0.2 + 0.15 * UNIT
            assert sync.as_of is not None and abs(time.time() - sync.as_of - age) < 0.05
        assert not sync.stale.get()
        assert server.engine.statistics().beacons >= 4
        assert server.metrics is not None
        text = server.metrics.render().decode()
        for name in ("pl3xus_connections_behind", "pl3xus_ack_lag_seconds", "pl3xus_beacons"):
            assert name in text


@pytest.mark.asyncio
async def test_a_v1_client_still_gets_v1() -> None:
    server = SyncServer()
    server.sync_component(Clock)
    server.world.spawn(Clock())
    async with server.serve("127.0.0.1", 0) as (host, port):
        for offer, version in ((MSGPACK_SUBPROTOCOL, 1), (JSON_SUBPROTOCOL, 1)):
            async with ws_connect(
                f"ws://{host}:{port}/",
                subprotocols=[offer],  # type: ignore[list-item]
            ) as ws:
                welcome = await asyncio.wait_for(ws.recv(), 5 * UNIT)
                decoded = msgpack.unpackb(welcome) if isinstance(welcome, bytes) else None
                if decoded is None:
                    import json

                    decoded = json.loads(welcome)
                assert decoded[1]["version"] == version and "as_of_interval" not in decoded[1]


@pytest.mark.asyncio
async def test_a_slow_reader_that_acknowledges_gets_the_latest_not_a_backlog() -> None:
    """A raw v2 client reads five frames a second and acknowledges each; the server updates
    a clock at 200 Hz. Without acknowledgements it falls further behind every second; with
    them the newest value it reads stays within about a window of the truth, and the server
    holds little for it."""
    server = SyncServer(sync=SyncSettings(max_update_rate_hz=60))
    server.sync_component(Clock)
    entity = server.world.spawn(Clock(t=time.time()))

    async def tick() -> None:
        while True:
            server.world.insert(entity, Clock(t=time.time()))
            await asyncio.sleep(0.005)

    async with server.serve("127.0.0.1", 0) as (host, port):
        ticking = asyncio.create_task(tick())
        try:
            async with ws_connect(
                f"ws://{host}:{port}/",
                subprotocols=[MSGPACK_SUBPROTOCOL_V2],  # type: ignore[list-item]
                max_queue=4,
            ) as ws:
                await asyncio.wait_for(ws.recv(), 5 * UNIT)  # the welcome
                await ws.send(msgpack.packb([FrameKind.SUBSCRIBE, 1, "Clock", None, {}]))
                lags = []
                deadline = time.monotonic() + 4.0
                while time.monotonic() < deadline:
                    frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
                    if frame[0] == FrameKind.SYNC:
                        lags.append(time.time() - frame[2][0][2][-1][1][0])
                        await ws.send(msgpack.packb([FrameKind.ACK, frame[1]]))
                    await asyncio.sleep(0.2)  # a slow reader
                conn = server.net.connection_statistics(server.net.connections[0])
        finally:
            ticking.cancel()
    assert len(lags) >= 10
    # at most ack_window_frames (4) in flight, read 5 a second: about 0.8 s at worst
    assert max(lags[5:]) < 1.5 * UNIT, lags  # latest values, not a growing backlog
    assert conn.queued_bytes < 1 << 20


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_stopped_server_is_seen_stale_then_dead_and_the_provider_comes_back() -> None:
    """A real server process is stopped (SIGSTOP): the provider marks its data stale past
    ``stale_after``, takes the link as dead after three beacon intervals (at least 2 s),
    and once the
    server runs again it reconnects and is fresh."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pl3xus_rx",
        "demo",
        "--port",
        "0",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(10):
            line = (await asyncio.wait_for(proc.stdout.readline(), 20 * UNIT)).decode()
            if "ws://" in line:
                url = line[line.index("ws://") :].split()[0]
                break
        assert url is not None
        from pl3xus_rx.demo import RobotStatus

        registry = ClientTypeRegistry.builder().register(RobotStatus).build()
        async with SyncProvider(url, registry, stale_after=0.5) as sync:
            robots = sync.components(RobotStatus)
            robots.subscribe(lambda _: None)
            await sync.wait_synced(10 * UNIT)
            first = sync.connection_id
            assert not sync.stale.get() and (sync.age() or 0) < 0.5
            os.kill(proc.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            await wait_until(lambda: sync.stale.get(), 3, "stale")
            assert time.monotonic() - stopped < 1.5 * UNIT
            await wait_until(lambda: sync.connection.get().state.value != "open", 5, "dead")
            assert time.monotonic() - stopped < 3.5 * UNIT  # 2 s (> 3 beacons) + a check
            os.kill(proc.pid, signal.SIGCONT)
            await wait_until(
                lambda: not sync.stale.get() and sync.connection_id != first, 15, "back"
            )
            assert (sync.age() or 1.0) < 0.5
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.asyncio
async def test_a_v2_client_that_asks_for_nothing_still_hears_beacons() -> None:
    """A client that subscribes to nothing (commands only) is beaconed from its welcome on:
    its link is never taken as dead for being quiet, and a stalled client loop does not
    count as a dead link either."""
    server = SyncServer(sync=SyncSettings(as_of_interval=0.1))
    server.sync_component(Clock)
    async with (
        server.serve("127.0.0.1", 0) as (host, port),
        SyncProvider(f"ws://{host}:{port}/", REGISTRY) as sync,
    ):
        first = sync.connection_id
        await asyncio.sleep(0.6)  # six intervals, twice the dead-link bound
        time.sleep(0.5)  # noqa: ASYNC251 (the client's own loop stalls: a slow redraw)
        await asyncio.sleep(0.3)
        assert sync.connection_id == first
        assert sync.connection.get().state.value == "open"
        assert (sync.age() or 1.0) < 0.3


class Setpoint(BaseModel):
    value: float = 0.0


@pytest.mark.asyncio
async def test_a_behind_client_still_reads_its_own_writes_at_once() -> None:
    """A v2 client past its window (it stopped acknowledging) writes a value: the value
    comes past the window, then the REPLY, without waiting for it to catch up."""
    from pl3xus_rx import Authorized

    server = SyncServer(sync=SyncSettings(max_update_rate_hz=60))
    server.sync_component(Clock)
    server.sync_component_builder(Setpoint).with_entity_policy(
        lambda world, ctx, entity: Authorized()
    ).build()
    clock = server.world.spawn(Clock())
    knob = server.world.spawn(Setpoint())

    async def tick() -> None:
        while True:
            server.world.insert(clock, Clock(t=time.time()))
            await asyncio.sleep(0.005)

    async with server.serve("127.0.0.1", 0) as (host, port):
        ticking = asyncio.create_task(tick())
        try:
            async with ws_connect(
                f"ws://{host}:{port}/",
                subprotocols=[MSGPACK_SUBPROTOCOL_V2],  # type: ignore[list-item]
            ) as ws:
                await asyncio.wait_for(ws.recv(), 5 * UNIT)  # the welcome
                for sub, name in ((1, "Clock"), (2, "Setpoint")):
                    await ws.send(msgpack.packb([FrameKind.SUBSCRIBE, sub, name, None, {}]))
                first = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
                await ws.send(msgpack.packb([FrameKind.ACK, first[1]]))
                # no more acknowledgements: behind within a few frames
                await wait_until(lambda: server.engine.statistics().behind == 1, 5, "behind")
                await ws.send(
                    msgpack.packb([FrameKind.MUTATE, 7, "Setpoint", int(knob), {"value": 3.5}])
                )
                saw_value = False
                started = time.monotonic()
                while True:
                    frame = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5 * UNIT))
                    if frame[0] == FrameKind.SYNC:
                        for group in frame[2]:
                            if group[0] == 2 and [int(knob), [3.5]] in group[2]:
                                saw_value = True
                    elif frame[0] == FrameKind.REPLY and frame[1] == 7:
                        assert frame[2] == "ok", frame
                        break
                assert saw_value  # read your writes, past the window
                assert time.monotonic() - started < 2.0 * UNIT
                assert server.engine.statistics().behind == 1  # still behind otherwise
        finally:
            ticking.cancel()


def test_the_age_counts_the_time_a_frame_waited_in_a_stalled_client() -> None:
    """The clocks' offset is the smallest gap seen: a frame that waited in a stalled loop
    does not look new (it showed as 0 s old before), and no clock has to be right."""
    from client_sync._freshness import Freshness

    fresh = Freshness(stale_after=1.0)
    fresh.connected(0.5, now=100.0)
    fresh.observe(100.0, as_of=5000.0, age=0.0)  # this client's clock is 4,900 s "behind"
    fresh.shown(5000.0)
    assert fresh.age(100.3) == pytest.approx(0.3)
    # the loop stalls 2 s; a frame sent at 5001.0 is only taken in at 103.0
    fresh.observe(103.0, as_of=5001.0, age=0.0)
    fresh.shown(5001.0)
    assert fresh.age(103.0) == pytest.approx(2.0) and fresh.too_old(103.0)
    # frames through a gateway arrive with their own age: the server's clock at sending
    fresh.observe(104.0, as_of=5002.5, age=1.5)
    fresh.shown(5002.5)
    assert fresh.age(104.0) == pytest.approx(1.5)
    assert Freshness(None).age(1.0) is None  # nothing observed: unknown
