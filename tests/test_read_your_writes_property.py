"""Read your writes, by property: random mutations, server writes, disconnects, snapshot
part sizes, rate caps and deadbands over the in-memory transport; whenever mutate() returns,
every signal of the caller that covers the entity shows the value written."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_read_your_writes import FAST, REGISTRY, Setpoint, make_server, until

from client_sync import ConnectionState, SyncProvider
from pl3xus_rx.testing import MemoryTransport

steps = st.lists(
    st.one_of(
        st.tuples(st.just("mutate"), st.integers(0, 5), st.integers(0, 20)),
        st.tuples(st.just("server"), st.integers(0, 5), st.integers(0, 20)),
        st.tuples(st.just("drop")),
        st.tuples(st.just("wait"), st.sampled_from([0, 1, 3])),
    ),
    min_size=1,
    max_size=12,
)
subscriptions = st.lists(
    st.tuples(
        st.sampled_from([None, 0, 5]),  # entity: all, or one
        st.sampled_from([None, 20.0, 100.0]),  # max_rate_hz
        st.sampled_from([None, 3.0]),  # deadband
    ),
    min_size=1,
    max_size=3,
    unique=True,
)


async def scenario(program: list[Any], subs: list[Any], parts: int) -> None:
    hub = MemoryTransport()
    srv = make_server(rate_hz=500, parts=parts, transport=hub)
    ents = [srv.world.spawn(Setpoint(value=0)) for _ in range(6)]
    async with (
        srv.serve("mem", 1),
        SyncProvider("memory://mem:1", REGISTRY, reconnect=FAST, transport=hub) as sync,
    ):
        signals: list[tuple[int | None, Any]] = []
        for entity, rate, deadband in subs:
            if entity is None:
                sig: Any = sync.components(Setpoint, max_rate_hz=rate, deadband=deadband)
            else:  # (one entity's signal: no per-subscription options on the client API)
                sig = sync.entity_component(Setpoint, ents[entity])
            sig.subscribe(lambda _: None)
            signals.append((None if entity is None else ents[entity], sig))
        await sync.wait_synced(10)
        lost: list[object] = []
        sync.connection.subscribe(
            lambda s: lost.append(s) if s.state is ConnectionState.RECONNECTING else None
        )
        for step in program:
            if step[0] == "mutate":
                entity, value = ents[step[1]], float(step[2])
                await until(lambda: sync.connection.get().state is ConnectionState.OPEN)
                await sync.mutate(entity, Setpoint(value=value))
                for covers, sig in signals:
                    shown = sig.get() if covers is not None else sig.get().get(entity)
                    if covers is None or covers == entity:
                        assert shown == Setpoint(value=value), (step, covers)
            elif step[0] == "server":
                srv.world.insert(ents[step[1]], Setpoint(value=float(step[2])))
            elif step[0] == "drop" and srv.net.connections:
                before = len(lost)
                await srv.net.disconnect(srv.net.connections[0], reason="chaos")
                await until(lambda n=before: len(lost) > n, "the client to notice the drop")
            elif step[0] == "wait":
                for _ in range(step[1]):
                    await asyncio.sleep(0)


@settings(max_examples=int(os.environ.get("PL3XUS_PROPERTY_EXAMPLES", "25")), deadline=None)
@given(steps, subscriptions, st.sampled_from([1, 2, 20_000]))
def test_property_ok_means_the_caller_sees_it(
    program: list[Any], subs: list[Any], parts: int
) -> None:
    asyncio.run(asyncio.wait_for(scenario(program, subs, parts), 60))
