"""Random server operations interleaved with random disconnects: every replica converges."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from client_sync import ClientTypeRegistry, ReconnectPolicy, SyncProvider
from pl3xus_rx import NetworkSettings, SyncServer, SyncSettings
from pl3xus_rx.testing import MemoryTransport


class Position(BaseModel):
    x: float
    y: float


class Status(BaseModel):
    text: str


REGISTRY = ClientTypeRegistry.builder().register(Position).register(Status).build()
FAST = ReconnectPolicy(initial_delay=0.001, max_delay=0.01)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("spawn"), st.integers(-5, 5)),
        st.tuples(st.just("move"), st.integers(0, 7), st.integers(-5, 5)),
        st.tuples(st.just("status"), st.integers(0, 7), st.sampled_from(["a", "b"])),
        st.tuples(st.just("strip"), st.integers(0, 7)),
        st.tuples(st.just("despawn"), st.integers(0, 7)),
        st.tuples(st.just("drop"), st.integers(0, 2)),  # server drops a client
        st.tuples(st.just("wait"), st.sampled_from([0, 1, 5])),
    ),
    max_size=40,
)


async def scenario(program: list[Any], chunk: int, snapshot_bytes: int = 8 << 20) -> None:
    hub = MemoryTransport()
    server = SyncServer(
        NetworkSettings(rate_limit_per_second=None),
        SyncSettings(
            max_update_rate_hz=1000, max_snapshot_items=chunk, max_snapshot_bytes=snapshot_bytes
        ),
        transport=hub,
    )
    server.sync_component(Position)
    server.sync_component(Status)
    world = server.world
    spawned: list[int] = []
    async with server.serve("mem", 1):
        providers = [
            SyncProvider("memory://mem:1", REGISTRY, reconnect=FAST, transport=hub)
            for _ in range(3)
        ]
        signals = []
        reconnecting: list[int] = []
        dropped = 0
        for i, p in enumerate(providers):
            await p.__aenter__()
            model = Position if i != 2 else Status
            sig = p.components(model)
            sig.subscribe(lambda _: None)
            signals.append((model, sig))
            p.connection.subscribe(
                lambda s, i=i: reconnecting.append(i) if s.state.value == "reconnecting" else None
            )

        def alive(i: int) -> int | None:
            return spawned[i] if i < len(spawned) and world.contains(spawned[i]) else None

        for op in program:
            kind = op[0]
            if kind == "spawn":
                spawned.append(world.spawn(Position(x=op[1], y=0)))
            elif kind == "move" and (e := alive(op[1])) is not None:
                world.insert(e, Position(x=op[2], y=1))
            elif kind == "status" and (e := alive(op[1])) is not None:
                world.insert(e, Status(text=op[2]))
            elif kind == "strip" and (e := alive(op[1])) is not None:
                world.remove(e, Position)
            elif kind == "despawn" and (e := alive(op[1])) is not None:
                world.despawn(e)
            elif kind == "drop":
                conns = server.net.connections
                if conns:
                    await server.net.disconnect(conns[op[1] % len(conns)], reason="chaos")
                    dropped += 1
            elif kind == "wait":
                for _ in range(op[1]):
                    await asyncio.sleep(0)

        # Let the links settle: every client reconnected and in step with the server.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            done = all(not p.stale.get() for p in providers) and all(
                dict(sig.get()) == dict(world.query(model)) for model, sig in signals
            )
            if done:
                break
            assert loop.time() < deadline, "replicas did not converge"
            await asyncio.sleep(0.005)
        assert bool(reconnecting) == bool(dropped)  # the chaos really happened
        for p in providers:
            await p.close()


@settings(max_examples=int(os.environ.get("PL3XUS_PROPERTY_EXAMPLES", "40")), deadline=None)
# snapshots in parts by items, or by bytes (30: a couple of items), or whole
@given(operations, st.sampled_from([(2, 8 << 20), (20_000, 30), (20_000, 8 << 20)]))
def test_replicas_converge_after_random_disconnects(
    program: list[Any], parts: tuple[int, int]
) -> None:
    asyncio.run(scenario(program, *parts))
